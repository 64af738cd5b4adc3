"""``aloe personas``: grow, import, export and inspect the persona pools.

    aloe personas db=PATH personas.target_profiles=N personas.target_personalities=M personas.pairs=K
    aloe personas db=PATH import.profiles=FILE import.personalities=FILE personas.threshold=T
    aloe personas db=PATH export.dir=DIR
    aloe personas db=PATH personas.action=stats               # similarity distribution of the pools
    aloe personas personas.action=stats import.profiles=FILE  # ... of a file, before importing it

``personas.action=auto`` (the default) imports when ``import.*`` is set,
exports when ``export.dir`` is set, and otherwise grows both pools with the
``generator`` role and pairs them. Every action prints one line of JSON.
Growing is resumable: each iteration is committed with its items, and a
new run continues from the stored pools. SIGINT/SIGTERM stop growing cleanly
(the run is marked interrupted, exit code 130 / 143); even a SIGKILL loses
at most the iterations in flight. The use cases live in
``environment.personas`` (import, export, stats, pair) and
``orchestration._personas_run`` (growing with the generator model).
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

import anyio
from omegaconf import DictConfig, OmegaConf

from ...core import ConfigError, lone_error, run_interruptible
from ...environment.personas import (
    PersonasSettings,
    RunIdentity,
    export_files,
    import_files,
    pair_only,
    pool_stats,
    read_items,
)
from ...environment.store import dumps
from .._personas_run import grow_personas
from .._runs import lease_settings, plain_config

HELP = "grow, import, export and inspect the persona pools (profiles x personalities)"

ACTIONS = ("auto", "grow", "import", "export", "pair", "stats")
_FILE_KEYS = {"profile": "import.profiles", "personality": "import.personalities"}


# -- config ------------------------------------------------------------------

def _num(cfg: DictConfig, key: str, kind: type, lo: float | None = None, hi: float | None = None,
         allowed: str = "", nullable: bool = False) -> Any:
    value = OmegaConf.select(cfg, key)
    if value is None and nullable:
        return None
    try:
        if kind is int and (isinstance(value, bool) or float(value) != int(value)):
            raise ValueError
        out = kind(value)
    except (TypeError, ValueError):
        raise ConfigError(key, value, allowed) from None
    if (lo is not None and out < lo) or (hi is not None and out > hi):
        raise ConfigError(key, value, allowed)
    return out


def _choice(cfg: DictConfig, key: str, options: tuple[str, ...]) -> str:
    value = OmegaConf.select(cfg, key)
    if value not in options:
        raise ConfigError(key, value, "one of " + " | ".join(options))
    return value


def _flag(cfg: DictConfig, key: str) -> bool:
    value = OmegaConf.select(cfg, key)
    if not isinstance(value, bool):
        raise ConfigError(key, value, "true or false")
    return value


def settings(cfg: DictConfig) -> PersonasSettings:
    """Validate the config; raises ConfigError naming the first bad key."""
    p = "personas."
    count = "an integer >= 0"
    positive = "an integer >= 1"
    files = {kind: OmegaConf.select(cfg, key) for kind, key in _FILE_KEYS.items()}
    for kind, key in _FILE_KEYS.items():
        if files[kind] is not None and (not isinstance(files[kind], str) or not files[kind].strip()):
            raise ConfigError(key, files[kind], "a file path or null")
    export_dir = OmegaConf.select(cfg, "export.dir")
    if export_dir is not None and (not isinstance(export_dir, str) or not export_dir.strip()):
        raise ConfigError("export.dir", export_dir, "a directory path or null")
    db = OmegaConf.select(cfg, "db")
    if not isinstance(db, str) or not db.strip():
        raise ConfigError("db", db, "a database file path")

    def floats(key: str, lo: float, hi: float) -> tuple[float, ...]:
        value = OmegaConf.select(cfg, key)
        try:
            out = tuple(float(v) for v in value)
        except (TypeError, ValueError):
            raise ConfigError(key, value, f"a list of numbers in [{lo}, {hi}]") from None
        if any(not lo <= v <= hi for v in out):
            raise ConfigError(key, value, f"a list of numbers in [{lo}, {hi}]")
        return out

    s = PersonasSettings(
        db=db,
        seed=_num(cfg, "seed", int, allowed="an integer"),
        action=_choice(cfg, p + "action", ACTIONS),
        threshold=_num(cfg, p + "threshold", float, 0.0, 1.0, "a number in [0, 1]"),
        keep_rate=_num(cfg, p + "keep_rate", float, 1e-9, 1.0, "null or a number in (0, 1]", nullable=True),
        targets={"profile": _num(cfg, p + "target_profiles", int, 0, allowed=count),
                 "personality": _num(cfg, p + "target_personalities", int, 0, allowed=count)},
        pairs=_num(cfg, p + "pairs", int, 0, allowed=count),
        eval_pairs=_num(cfg, p + "eval_pairs", int, 0, allowed=count),
        batch=_num(cfg, p + "batch", int, 1, allowed=positive),
        shots=_num(cfg, p + "shots", int, 1, allowed=positive),
        parallel=_num(cfg, p + "parallel", int, 1, allowed=positive),
        max_iterations=_num(cfg, p + "max_iterations", int, 0, allowed=count),
        bottleneck_window=_num(cfg, p + "bottleneck.window", int, 0, allowed=count),
        bottleneck_min=_num(cfg, p + "bottleneck.min_added", int, 0, allowed=count),
        seeds=_flag(cfg, p + "seeds"),
        check_eval=_flag(cfg, p + "check_eval"),
        min_words=_num(cfg, p + "min_words", int, 1, allowed=positive),
        warn_keep_rate=_num(cfg, p + "warn_keep_rate", float, 0.0, 1.0, "a number in [0, 1]"),
        embedder_model=OmegaConf.select(cfg, p + "embedder.model"),
        embedder_batch=_num(cfg, p + "embedder.batch_size", int, 1, allowed=positive),
        embedder_device=str(OmegaConf.select(cfg, p + "embedder.device")),
        embedder_threads=_num(cfg, p + "embedder.threads", int, 1, allowed=positive),
        stats_thresholds=floats(p + "stats.thresholds", 0.0, 1.0),
        stats_keep_rates=floats(p + "stats.keep_rates", 0.0, 1.0),
        import_files={k: v for k, v in files.items() if v is not None},
        import_split=_choice(cfg, "import.split", ("train", "eval")),
        filter=_flag(cfg, "filter"),
        export_dir=export_dir,
        export_split=_choice(cfg, "export.split", ("train", "eval")),
    )
    if s.action == "import" and not s.import_files:
        raise ConfigError("import.profiles", None, "a JSONL file (import.profiles and/or import.personalities)")
    if s.action == "export" and s.export_dir is None:
        raise ConfigError("export.dir", None, "a directory to export to")
    return s


def resolve_action(s: PersonasSettings) -> str:
    if s.action != "auto":
        return s.action
    if s.import_files:
        return "import"
    if s.export_dir is not None:
        return "export"
    return "grow"


# -- entry point ---------------------------------------------------------------

def run(cfg: DictConfig) -> int:
    """Do the configured action and print its one-line JSON summary."""
    s = settings(cfg)
    action = resolve_action(s)
    config = plain_config(cfg)
    record = RunIdentity(config, hashlib.sha256(dumps(config).encode()).hexdigest(), lease_settings(cfg))
    with lone_error():  # an error inside the store's task group surfaces as itself
        if action == "import":
            # parse every file fully before the database is opened: a bad file changes nothing
            items = {kind: read_items(path) for kind, path in s.import_files.items()}
            summary: dict[str, Any] = anyio.run(import_files, s, items, record)
        elif action == "export":
            summary = export_files(s)
        elif action == "stats":
            summary = pool_stats(s)
        elif action == "pair":
            summary = anyio.run(pair_only, s, record)
        else:  # SIGINT / SIGTERM: what was committed stays, the run is marked interrupted (exit 130 / 143)
            summary = run_interruptible(grow_personas, cfg, s, record)
    print(json.dumps(summary, ensure_ascii=False))
    return 0
