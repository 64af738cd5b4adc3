"""The ``aloe`` command line.

    aloe <command> [key=value ...] [-m|--multirun]

Each command composes the Hydra config ``conf/<command>.yaml`` with the
overrides and calls ``aloesim.orchestration.commands.<command>.run(cfg)``.
``-m`` runs one job per combination of comma-separated values, one after
another in this process; with ``hydra/launcher=NAME`` (or any ``hydra.*``
override) the sweep goes to Hydra's own multirun and its launcher plugins
(joblib on one host, submitit on Slurm, ray). Every combination is validated
before the first job runs. Deliberate errors
(``AloeError``) print one line and exit non-zero; only bugs keep their
traceback.
"""

from __future__ import annotations

import functools
import importlib
import os
import pkgutil
import signal
import sys
from collections.abc import Sequence

from omegaconf import DictConfig

from ..core import AloeError, Interrupted, terminal_safe, the_lone_error
from . import commands as _commands_pkg
from ._config import CONFIG_MODULE, check_config, compose_config, config_yaml, sweep_combinations
from ._hydra_plugins import check_hydra_choices
from ._logging import configure_logging

ORDER = ["demo", "serve", "personas", "generate", "runs", "merge", "export", "train", "evaluate", "report",
         "show", "view"]


def available_commands() -> dict[str, str]:
    """``{name: one-line help}`` of the commands that are installed."""
    found = {}
    for info in pkgutil.iter_modules(_commands_pkg.__path__):
        if info.name.startswith("_"):
            continue
        try:
            module = importlib.import_module(f"{_commands_pkg.__name__}.{info.name}")
        except ImportError as exc:  # an optional extra is missing
            found[info.name] = f"(unavailable: {exc})"
            continue
        found[info.name] = getattr(module, "HELP", "")
    return dict(sorted(found.items(), key=lambda kv: (ORDER.index(kv[0]) if kv[0] in ORDER else 99, kv[0])))


def usage() -> str:
    lines = ["usage: aloe <command> [key=value ...] [-m|--multirun]", "", "commands:"]
    for name, text in available_commands().items():
        lines.append(f"  {name:<10} {text}")
    lines += ["", "Every command takes db=PATH and Hydra overrides; `aloe <command> --help` shows its config."]
    return "\n".join(lines)


def _err(command: str, exc: AloeError) -> int:
    print(f"aloe {command}: {terminal_safe(str(exc))}", file=sys.stderr)
    return exc.exit_code


def _interrupted(command: str, exc: KeyboardInterrupt) -> int:
    name = exc.name if isinstance(exc, Interrupted) else "SIGINT"
    print(f"aloe {command}: interrupted ({name}); what was committed is kept: run the same command again to "
          "continue", file=sys.stderr)
    return exc.exit_code if isinstance(exc, Interrupted) else 130


def run_command(command: str, overrides: Sequence[str]) -> int:
    cfg = compose_config(command, overrides)
    check_config(cfg)  # every key of the command, before it touches anything
    log_cfg = cfg.get("log") or {}
    configure_logging(log_cfg.get("level", "INFO"), log_cfg.get("format", "auto"))
    module = importlib.import_module(f"{_commands_pkg.__name__}.{command}")
    return int(module.run(cfg) or 0)


def _lone_aloe_error(group: BaseExceptionGroup) -> AloeError | None:
    """The AloeError behind a task group's failure, if that is all there is."""
    lone = the_lone_error(group)
    return lone if isinstance(lone, AloeError) else None


def _hydra_job(command: str, cfg: DictConfig) -> int:
    """One job of a Hydra-launched sweep (module level, so launchers can pickle it)."""
    log_cfg = cfg.get("log") or {}
    configure_logging(log_cfg.get("level", "INFO"), log_cfg.get("format", "auto"))
    module = importlib.import_module(f"{_commands_pkg.__name__}.{command}")
    try:
        check_config(cfg)  # again, now that ${hydra:...} values are resolved
        code = int(module.run(cfg) or 0)
    except AloeError as exc:
        code = _err(command, exc)
    if code:
        raise SystemExit(code)  # stop the sweep with this job's exit code
    return code


def _hydra_multirun(command: str, app: list[str], hydra_overrides: list[str]) -> int:
    """Hand the sweep to Hydra itself, so its launcher plugins (joblib, submitit,
    ray) run the jobs; chosen with ``hydra/launcher=NAME`` or any ``hydra.*`` key."""
    from hydra import version
    from hydra._internal.utils import _run_hydra, get_args_parser

    version.setbase("1.3")
    defaults = ["hydra.sweep.dir=aloe-multirun/${now:%Y-%m-%d_%H-%M-%S}", "hydra.job.chdir=false",
                f"hydra.job.name=aloe-{command}"]
    parser = get_args_parser()
    args = parser.parse_args(["--multirun", *defaults, *hydra_overrides, *app])
    _run_hydra(args=args, args_parser=parser, task_function=functools.partial(_hydra_job, command),
               config_path=f"pkg://{CONFIG_MODULE}", config_name=command)
    return 0


def _multirun(command: str, overrides: list[str]) -> int:
    hydra_overrides = [o for o in overrides if o.startswith(("hydra/", "hydra.", "+hydra"))]
    overrides = [o for o in overrides if o not in hydra_overrides]
    jobs = sweep_combinations(overrides)
    module = importlib.import_module(f"{_commands_pkg.__name__}.{command}")
    validate = getattr(module, "validate", None)  # optional: a command's checks that need no side effects
    for job in jobs:  # validate every combination before running any
        cfg = compose_config(command, job)
        check_config(cfg)
        if validate is not None:
            validate(cfg)
    if hydra_overrides:
        check_hydra_choices(hydra_overrides)  # a launcher that is not installed: say which package to install
        return _hydra_multirun(command, overrides, hydra_overrides)
    worst = 0
    for i, job in enumerate(jobs):
        print(f"[aloe -m] job {i + 1}/{len(jobs)}: {' '.join(job)}", file=sys.stderr)
        try:
            code = run_command(command, job)
        except AloeError as exc:
            code = _err(command, exc)
        except BaseExceptionGroup as group:
            lone = _lone_aloe_error(group)
            if lone is None:
                raise
            code = _err(command, lone)
        worst = max(worst, code)
    return worst


def main(argv: Sequence[str] | None = None) -> int:
    """The ``aloe`` command line; returns the exit code."""
    try:
        code = _main(argv)
        sys.stdout.flush()  # inside the try: a reader that went away is seen here, not at exit
        return code
    except BrokenPipeError:  # `aloe ... | head`: the reader stopped reading; stop quietly, like cat
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())  # the interpreter's own flush at exit must not fail again
        return 128 + signal.SIGPIPE


def _main(argv: Sequence[str] | None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] in ("-h", "--help", "help"):
        print(usage())
        return 0
    if args[0] == "--version":
        from importlib.metadata import version

        print(f"aloesim {version('aloesim')}")
        return 0
    command, rest = args[0], args[1:]
    commands = available_commands()
    if command not in commands:
        print(f"aloe: unknown command {command!r}; expected one of: {', '.join(commands)}", file=sys.stderr)
        return 2
    multirun = any(a in ("-m", "--multirun") for a in rest)
    overrides = [a for a in rest if a not in ("-m", "--multirun")]
    try:
        if any(a in ("-h", "--help") for a in overrides):
            cfg = compose_config(command, [a for a in overrides if a not in ("-h", "--help")])
            print(f"aloe {command}: {commands[command]}\n\nconfig (override any key with key=value):\n")
            print(config_yaml(cfg))
            return 0
        if multirun:
            return _multirun(command, overrides)
        return run_command(command, overrides)
    except AloeError as exc:
        return _err(command, exc)
    except BaseExceptionGroup as group:  # an AloeError raised alone inside a task group
        lone = _lone_aloe_error(group)
        if lone is None:
            raise
        return _err(command, lone)
    except KeyboardInterrupt as exc:  # Ctrl-C, or SIGTERM through run_interruptible / terminate_as_interrupt
        return _interrupted(command, exc)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
