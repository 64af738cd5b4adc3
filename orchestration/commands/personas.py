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
from omegaconf import DictConfig

from ...core import ConfigError, json_safe, lone_error, run_interruptible, to_settings
from ...environment.personas import (
    PoolActionSettings,
    RunIdentity,
    export_files,
    import_files,
    pair_only,
    pool_stats,
    read_jsonl,
)
from ...environment.store import dumps
from ...inspection import end_of_command, personas_lines
from .._personas_run import grow_personas
from .._runs import lease_settings, plain_config
from .._schemas import ImportSettings, PersonasConfig

HELP = "grow, import, export and inspect the persona pools (profiles x personalities)"


# -- config ------------------------------------------------------------------

def settings(cfg: DictConfig) -> PoolActionSettings:
    """Validate the config; raises ConfigError naming the first bad key."""
    root: PersonasConfig = to_settings(cfg, PersonasConfig)
    imp: ImportSettings = to_settings(cfg.get("import"), ImportSettings, "import")
    p = root.personas
    files = {"profile": imp.profiles, "personality": imp.personalities}
    s = PoolActionSettings(
        db=root.db,
        seed=root.seed,
        action=p.action,
        threshold=p.threshold,
        keep_rate=p.keep_rate,
        targets={"profile": p.target_profiles, "personality": p.target_personalities},
        pairs=p.pairs,
        eval_pairs=p.eval_pairs,
        batch=p.batch,
        shots=p.shots,
        parallel=p.parallel,
        max_iterations=p.max_iterations,
        bottleneck_window=p.bottleneck.window,
        bottleneck_min=p.bottleneck.min_added,
        seeds=p.seeds,
        check_eval=p.check_eval,
        min_words=p.min_words,
        warn_keep_rate=p.warn_keep_rate,
        embedder_model=p.embedder.model,
        embedder_batch=p.embedder.batch_size,
        embedder_device=p.embedder.device,
        embedder_threads=p.embedder.threads,
        stats_thresholds=tuple(p.stats.thresholds),
        stats_keep_rates=tuple(p.stats.keep_rates),
        import_files={k: v for k, v in files.items() if v is not None},
        import_split=imp.split,
        filter=root.filter,
        export_dir=root.export.dir,
        export_split=root.export.split,
    )
    if s.action == "import" and not s.import_files:
        raise ConfigError("import.profiles", None, "a JSONL file (import.profiles and/or import.personalities)")
    if s.action == "export" and s.export_dir is None:
        raise ConfigError("export.dir", None, "a directory to export to")
    return s


def resolve_action(s: PoolActionSettings) -> str:
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
            files = {kind: read_jsonl(path) for kind, path in s.import_files.items()}
            summary: dict[str, Any] = anyio.run(import_files, s, files, record)
        elif action == "export":
            summary = export_files(s)
        elif action == "stats":
            summary = pool_stats(s)
        elif action == "pair":
            summary = anyio.run(pair_only, s, record)
        else:  # SIGINT / SIGTERM: what was committed stays, the run is marked interrupted (exit 130 / 143)
            summary = run_interruptible(grow_personas, cfg, s, record)
    end_of_command(json_safe(json.dumps(summary, ensure_ascii=False)), lambda: personas_lines(str(s.db), summary))
    return 0
