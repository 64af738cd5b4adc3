"""The typed schema of each ``aloe`` command's config: its own top-level keys,
plus the settings of the rooms it uses (``backend``, ``agents``, ``prompts``,
``generation``, ``personas``, ``training``, ``model``, ``benchmark``,
``evaluation``, ``quality``), each defined once, in its room. ``conf/<command>.yaml``
names ``<command>_schema`` first in its defaults list; ``_config`` registers
every schema in Hydra's ConfigStore (``COMMANDS``)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..agents import AgentsSettings, PromptsSettings
from ..agents.gateway import BackendSettings, BudgetSettings, PricingSettings
from ..core import Settings, setting
from ..core.errors import ConfigError
from ..environment import MAX_TURNS
from ..environment.personas import PersonasSettings
from ..environment.quality import REASONS, QualitySettings, parse_reasons
from ..environment.store import LeaseSettings
from ..evaluation import BenchmarkSettings, EvaluationSettings, ModelSettings
from ..training import TrainingSettings, parse_runs
from ._generate import GenerationSettings

ID_MAX = 2**63 - 1   # SQLite's largest integer: any id beyond cannot exist
SPLITS = ("train", "eval")
PROMPTS: Any = "???"  # a mandatory node: the `prompts` group option fills it


@dataclass(frozen=True)
class LogSettings(Settings):
    level: str = setting("INFO", help="DEBUG | INFO | WARNING | ERROR", choices=("DEBUG", "INFO", "WARNING", "ERROR"))
    format: str = setting("auto", help="auto (console on a TTY, JSON lines otherwise) | console | json",
                          choices=("auto", "console", "json"))


@dataclass(frozen=True)
class BaseConfig(Settings):
    """Keys every aloe command shares."""

    db: str = setting("aloe.db", help="SQLite database file (created if missing by commands that write)",
                      nonempty=True, allowed="a database file path")
    seed: int = setting(0, help="master seed: persona sampling, branch choices, LLM sampling seeds", ge=0,
                        le=2**32 - 1)
    cache: bool = setting(True, help="replay identical LLM requests from the response cache in the database")
    log: LogSettings = setting(help="logging", factory=LogSettings)


_BACKEND_HELP = "the default model endpoint(s): a `backend` group option (embedded | openai | vllm)"
_LEASE_HELP = "one process at a time holds a run; a second one on it is refused (docs/store.md)"


@dataclass(frozen=True)
class RolesConfig(BaseConfig):
    """Keys every command that talks to models through roles shares."""

    backend: BackendSettings = setting(help=_BACKEND_HELP, factory=BackendSettings)
    agents: AgentsSettings = setting(help="one entry per role: backend, model, sampling, concurrency",
                                     factory=AgentsSettings)
    prompts: PromptsSettings = setting(PROMPTS, help="one prompt per role: a `prompts` group option (paper)")
    lease: LeaseSettings = setting(help=_LEASE_HELP, factory=LeaseSettings)
    pricing: PricingSettings = setting(help="dollars per call: genai-prices, your overrides, free kinds "
                                            "(docs/cost.md)", factory=PricingSettings)


@dataclass(frozen=True)
class GenerateConfig(RolesConfig):
    generation: GenerationSettings = setting(help="the trees to grow", factory=GenerationSettings)
    retry_failed: bool = setting(False, help="also pick up trees a previous run marked failed")
    resume: bool = setting(True, help="continue the unfinished run with the same config, if there is one")
    dry_run: bool = setting(False, help="print the planned calls, tokens and dollars per role and exit 0: no model "
                                        "is called, nothing is written (docs/cost.md)")
    budget: BudgetSettings = setting(help="a spending limit in dollars (docs/cost.md)", factory=BudgetSettings)


@dataclass(frozen=True)
class ImportSettings(Settings):
    """``aloe personas import.*`` (the key is a Python keyword: this schema joins as ``import_schema@import``)."""

    profiles: str | None = setting(None, help="JSONL file of profiles to import (one JSON string per line)",
                                   nonempty=True, allowed="a file path or null")
    personalities: str | None = setting(None, help="JSONL file of personalities to import", nonempty=True,
                                        allowed="a file path or null")
    split: str = setting("train", help="pool the imported items join: train | eval", choices=SPLITS)


@dataclass(frozen=True)
class PoolExportSettings(Settings):
    dir: str | None = setting(None, help="write DIR/profiles.jsonl, DIR/personalities.jsonl, DIR/personas.jsonl",
                              nonempty=True, allowed="a directory path or null")
    split: str = setting("train", help="which split to export: train | eval", choices=SPLITS)


@dataclass(frozen=True)
class PersonasConfig(RolesConfig):
    personas: PersonasSettings = setting(help="growth, filter and pairing", factory=PersonasSettings)
    filter: bool = setting(True, help="pass imported items through the similarity filter (false = keep all but "
                                      "exact duplicates)")
    export: PoolExportSettings = setting(help="export the pools", factory=PoolExportSettings)


@dataclass(frozen=True)
class EvaluateConfig(RolesConfig):
    model: ModelSettings = setting(help="the evaluated model: a `model` group option (embedded | openai | vllm | "
                                        "hf)", factory=ModelSettings)
    benchmark: BenchmarkSettings = setting(help="the cases and their length", factory=BenchmarkSettings)
    evaluation: EvaluationSettings = setting(help="the run and its report", factory=EvaluationSettings)
    dry_run: bool = setting(False, help="print the planned calls, tokens and dollars per role and exit 0: no model "
                                        "is called or loaded, nothing is written (docs/cost.md)")
    budget: BudgetSettings = setting(help="a spending limit in dollars (docs/cost.md)", factory=BudgetSettings)


@dataclass(frozen=True)
class ExportSettings(Settings):
    dir: str = setting("export", help="output directory (created; files replaced atomically)", nonempty=True,
                       allowed="a directory path")
    run: Any = setting(None, help="generate run id or list of ids; null = all runs",
                       allowed="null, a run id, or a list of run ids")
    include_incomplete: bool = setting(False, help="also export nodes of trees whose generation did not complete")
    exclude: tuple[str, ...] = setting((), choices=REASONS, help=(
        "drop nodes flagged for these reasons, and every node after them (docs/quality.md), e.g."
        " [truncated,leaked,role_flip,judge_disagree]"))

    def __post_init__(self) -> None:
        super().__post_init__()
        parse_runs(self.run, "run")
        object.__setattr__(self, "exclude", parse_reasons(self.exclude, "exclude"))


@dataclass(frozen=True)
class ExportConfig(BaseConfig):
    export: ExportSettings = setting(help="where and what to export", factory=ExportSettings)
    quality: QualitySettings = setting(help="the detectors' thresholds (export.exclude): a `quality` group option",
                                       factory=QualitySettings)


def _files(value: Any) -> list[str] | None:
    items = [value] if isinstance(value, str) else value
    if isinstance(items, (list, tuple)) and items and all(isinstance(v, str) and v.strip() for v in items):
        return list(items)
    return None


@dataclass(frozen=True)
class MergeConfig(BaseConfig):
    inputs: Any = setting(help="database files to merge into db, e.g. inputs=[a.db,b.db]", factory=list,
                          allowed="a non-empty list of database files, e.g. inputs=[a.db,b.db]")

    def __post_init__(self) -> None:
        super().__post_init__()
        if _files(self.inputs) is None:
            raise ConfigError("inputs", self.inputs, "a non-empty list of database files, e.g. inputs=[a.db,b.db]")


@dataclass(frozen=True)
class ReportSettings(Settings):
    evaluations: Any = setting(help="evaluation ids to compare, e.g. [1,2,3]; [] = every stored evaluation",
                               factory=list, allowed="a list of evaluation ids (integers >= 1), e.g. [1,2]")

    def __post_init__(self) -> None:
        super().__post_init__()
        ids = [self.evaluations] if isinstance(self.evaluations, int) else self.evaluations
        if not isinstance(ids, (list, tuple)) or not all(
                isinstance(i, int) and not isinstance(i, bool) and 1 <= i <= ID_MAX for i in ids):
            raise ConfigError("evaluations", self.evaluations, "a list of evaluation ids (integers >= 1), e.g. [1,2]")
        object.__setattr__(self, "evaluations", tuple(ids))


@dataclass(frozen=True)
class ReportConfig(BaseConfig):
    evaluation: EvaluationSettings = setting(help="the report's files and intervals", factory=EvaluationSettings)
    report: ReportSettings = setting(help="which evaluations", factory=ReportSettings)


@dataclass(frozen=True)
class RunsConfig(BaseConfig):
    kind: str | None = setting(None, help="only runs of this kind; null = all",
                               choices=("generate", "personas", "evaluate", "train", "merge"))
    format: str = setting("table", help="table | json", choices=("table", "json"))


@dataclass(frozen=True)
class ServeConfig(BaseConfig):
    backend: BackendSettings = setting(help=_BACKEND_HELP, factory=BackendSettings)


def _id(help: str) -> Any:
    return setting(None, help=help, ge=1, le=ID_MAX, allowed="an integer id >= 1 (at most 2^63 - 1)")


@dataclass(frozen=True)
class ShowSettings(Settings):
    calls: bool = setting(False, help="also print the exact prompt (messages and params) each role received, "
                                      "and its reply")
    format: str = setting("rich", help="rich (terminal) | md (Markdown; tree or case) | json (any of the four)",
                          choices=("rich", "md", "json"))
    out: str | None = setting(None, help="write to this file instead of stdout (its folder must exist); null = "
                                         "stdout", nonempty=True)
    width: int | None = setting(None, help="terminal width for rich output; null = detect (replies side by side "
                                           "from 110 columns)", ge=40, le=10_000)
    cases: int = setting(20, help="evaluation: at most this many case transcripts (by case index); 0 = scores "
                                  "only", ge=0, le=1_000_000)
    page: int = setting(1, help="run: which page of the run's tree ids (50 per page)", ge=1, le=ID_MAX)


def _nothing_to_show() -> ConfigError:
    """``aloe show`` with no target: say what to pass and where ids come from."""
    err = ConfigError("tree|run|evaluation|case", None, "one of tree=ID, run=ID, evaluation=ID or case=ID")
    err.args = (("nothing to show: pass one of tree=ID | run=ID | evaluation=ID | case=ID "
                "(`aloe runs db=PATH` lists the runs; `aloe show run=ID` lists a run's trees and evaluations)"),)
    return err


@dataclass(frozen=True)
class ShowConfig(BaseConfig):
    """Give exactly one of tree, run, evaluation, case."""

    tree: int | None = _id("id of a tree to show: turns, inferred persona (changes highlighted), both replies, "
                           "calls")
    run: int | None = _id("id of a run to summarize: config, trees by status, nodes, calls, tokens, failures, "
                          "wall time")
    evaluation: int | None = _id("id of an evaluation: AL(k) per turn, IR, and its cases' transcripts with scores")
    case: int | None = _id("id of one benchmark case (eval_cases.id): its transcript, scores and calls")
    show: ShowSettings = setting(help="how to show it", factory=ShowSettings)

    def __post_init__(self) -> None:
        super().__post_init__()
        given = {k: getattr(self, k) for k in ("tree", "run", "evaluation", "case") if getattr(self, k) is not None}
        if not given:
            raise _nothing_to_show()
        if len(given) != 1:
            raise ConfigError("tree|run|evaluation|case", " ".join(f"{k}={v}" for k, v in given.items()) or None,
                              "exactly one of tree=ID, run=ID, evaluation=ID or case=ID")
        if self.show.format == "md" and not given.keys() & {"tree", "case"}:
            kind = next(iter(given))
            raise ConfigError("show.format", "md", f"rich or json for {kind}= (Markdown export is for tree= and case=)")

    @property
    def target(self) -> tuple[str, int]:
        """(kind, id) of what to show."""
        return next((k, getattr(self, k)) for k in ("tree", "run", "evaluation", "case") if getattr(self, k))


@dataclass(frozen=True)
class QualityConfig(BaseConfig):
    run: int | None = _id("id of the generate run to check (see `aloe runs`); null = the newest generate run")
    quality: QualitySettings = setting(help="detector and report thresholds, output folder, embedder: a `quality`"
                                            " group option", factory=QualitySettings)


@dataclass(frozen=True)
class TrainConfig(BaseConfig):
    training: TrainingSettings = setting(help="SFT then DPO: a `training` group option", factory=TrainingSettings)
    lease: LeaseSettings = setting(help=_LEASE_HELP, factory=LeaseSettings)


@dataclass(frozen=True)
class ViewSettings(Settings):
    host: str = setting("127.0.0.1", help="interface to listen on; anything but loopback exposes your transcripts "
                                          "(a warning is printed)", nonempty=True,
                        allowed="an interface address such as 127.0.0.1")
    port: int = setting(8765, help="TCP port; 0 = any free port (printed at start)", ge=0, le=65535)
    page_size: int = setting(50, help="rows per page on the runs, trees and cases lists", ge=1, le=1000)
    threads: int = setting(8, help="worker threads reading the database concurrently", ge=1, le=64)
    warm_runs: int = setting(3, help="at start, compute the LLM-call totals of the newest N runs in the background "
                                     "(0 = off)", ge=0, le=1000)


@dataclass(frozen=True)
class ViewConfig(BaseConfig):
    view: ViewSettings = setting(help="the web viewer", factory=ViewSettings)


def _count(default: int, help: str, le: int = 1_000_000) -> Any:
    return setting(default, help=help, ge=1, le=le)


@dataclass(frozen=True)
class DemoPersonas(Settings):
    profiles: int = _count(24, "grow the profile pool (20 seeds) towards this size")
    personalities: int = _count(24, "grow the personality pool (20 seeds) towards this size")
    iterations: int = _count(1, "generation rounds per pool")
    pairs: int = _count(8, "training personas")


@dataclass(frozen=True)
class DemoJudge(Settings):
    backend: str | None = setting(None, help="the ALOE judge of the evaluation stages: null = the embedded model; "
                                             "e.g. openai (key from $OPENAI_API_KEY)",
                                  choices=("default", "embedded", "openai", "vllm"))
    model: str | None = setting(None, help="its model, e.g. gpt-4o (aloe demo agents.judge.backend=openai "
                                           "agents.judge.model=gpt-4o)", nonempty=True)


@dataclass(frozen=True)
class DemoAgents(Settings):
    judge: DemoJudge = setting(help="the judge of the evaluation stages", factory=DemoJudge)


@dataclass(frozen=True)
class DemoConfig(BaseConfig):
    out_dir: str = setting("aloe-demo", help="every output of the demo goes under this folder", nonempty=True)
    personas: DemoPersonas = setting(help="the persona pool", factory=DemoPersonas)
    trees: int = _count(4, "preference trees to grow")
    turns: int = _count(3, "turns per tree", le=MAX_TURNS)
    max_tokens: int = _count(64, "reply length of the simulated user and the responders", le=131_072)
    train_steps: int = _count(3, "optimizer steps per stage (SFT, then DPO)")
    eval_cases: int = _count(3, "ALOE cases per evaluated model")
    eval_turns: int = _count(3, "turns per ALOE case", le=MAX_TURNS)
    judge_pairs: int = setting(8, help="judge check probes per evaluation (each two judge calls); the verdict is "
                                       "printed at the end", ge=2, le=10_000)
    agents: DemoAgents = setting(help="agents.judge.backend / .model: the judge of the evaluation stages",
                                 factory=DemoAgents)


COMMANDS: dict[str, type[BaseConfig]] = {
    "demo": DemoConfig, "serve": ServeConfig, "personas": PersonasConfig, "generate": GenerateConfig,
    "runs": RunsConfig, "merge": MergeConfig, "export": ExportConfig, "quality": QualityConfig, "train": TrainConfig,
    "evaluate": EvaluateConfig, "report": ReportConfig, "show": ShowConfig, "view": ViewConfig,
}
"""The root schema of each command (``conf/<command>.yaml`` names ``<command>_schema``)."""
