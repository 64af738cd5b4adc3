"""Typed settings of the persona pools: the schema of the ``personas`` config
group (paper section 2.1, Figure 2)."""

from __future__ import annotations

from dataclasses import dataclass

from ...core import Settings, setting

ACTIONS = ("auto", "grow", "import", "export", "pair", "stats")
MAX_POOL = 1_000_000      # items per pool a typo cannot exceed
MAX_PAIRS = 10_000_000    # personas per split


@dataclass(frozen=True)
class BottleneckSettings(Settings):
    """When growth stops for lack of new items."""

    window: int = setting(10, help="look at the last this-many iterations ...", ge=0, le=100_000)
    min_added: int = setting(3, help="... and stop when they added fewer items than this in total (0 disables)",
                             ge=0, le=MAX_POOL)


@dataclass(frozen=True)
class EmbedderSettings(Settings):
    """The sentence-embedding model of the similarity filter."""

    model: str | None = setting(None, help="sentence-transformers model path; null = the bundled all-MiniLM-L6-v2",
                                nonempty=True)
    batch_size: int = setting(64, help="texts per encode batch", ge=1, le=65_536)
    device: str = setting("cpu", help="torch device of the embedder", nonempty=True)
    threads: int = setting(1, help="encode calls allowed at once (CapacityLimiter)", ge=1, le=64)


@dataclass(frozen=True)
class StatsSettings(Settings):
    """What ``personas.action=stats`` reports."""

    thresholds: tuple[float, ...] = setting((0.5, 0.6, 0.7, 0.8, 0.9), ge=0, le=1,
                                            help="report how many items each threshold would keep")
    keep_rates: tuple[float, ...] = setting((0.25, 0.5, 0.75, 0.9), ge=0, le=1,
                                            help="report the threshold each keep-rate needs")


@dataclass(frozen=True)
class PersonasSettings(Settings):
    """How the pools grow, are filtered and are paired."""

    action: str = setting("auto", help="auto (import if import.* set, export if export.dir set, else grow) | grow "
                                       "| import | export | pair | stats", choices=ACTIONS)
    threshold: float = setting(0.6, help="keep a candidate iff max cosine similarity to pool and batch <= this "
                                         "(paper: 0.6)", ge=0, le=1)
    keep_rate: float | None = setting(None, help="if set: calibrate the threshold per pool so that this share of "
                                                 "the reference items pass", gt=0, le=1)
    target_profiles: int = setting(330, help="grow the train profile pool to this size (paper: 330)", ge=0,
                                   le=MAX_POOL)
    target_personalities: int = setting(71, help="grow the train personality pool to this size (paper: 71)", ge=0,
                                        le=MAX_POOL)
    pairs: int = setting(3310, help="train personas (profile x personality pairs) to hold after pairing (paper: "
                                    "3,310)", ge=0, le=MAX_PAIRS)
    eval_pairs: int = setting(25, help="eval personas to pair from the eval pools", ge=0, le=MAX_PAIRS)
    batch: int = setting(20, help="items requested from the generator per iteration (paper: 20)", ge=1, le=1000)
    shots: int = setting(5, help="examples sampled from the pool per iteration (paper: 5)", ge=1, le=1000)
    parallel: int = setting(2, help="iterations generated concurrently (also the round width: keep it fixed to "
                                    "reproduce a pool)", ge=1, le=1024)
    max_iterations: int = setting(500, help="hard cap on iterations per pool, counted across resumed runs", ge=0,
                                  le=MAX_POOL)
    bottleneck: BottleneckSettings = setting(help="stop growing when recent iterations add too little",
                                             factory=BottleneckSettings)
    seeds: bool = setting(True, help="put the 20 shipped seed examples (and 5 eval seeds) into empty pools")
    check_eval: bool = setting(True, help="also reject train items too similar to an eval item (no near-copies "
                                          "of benchmark personas)")
    min_words: int = setting(5, help="generator lines with fewer words are not items (headings, chatter)", ge=1,
                             le=10_000)
    warn_keep_rate: float = setting(0.05, help="warn when a run keeps less than this share of its candidates",
                                    ge=0, le=1)
    embedder: EmbedderSettings = setting(help="the embedding model", factory=EmbedderSettings)
    stats: StatsSettings = setting(help="personas.action=stats", factory=StatsSettings)
