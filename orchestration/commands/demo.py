"""aloe demo: the main job. Runs every stage of the pipeline, small, on the
embedded model, by calling the other commands one after another; each
stage resumes if the demo is run again. At the end it prints the judge
check of the evaluations and says plainly whether their figures mean
anything (measured by the check, not assumed)."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

from omegaconf import DictConfig

from ...core import terminal_safe, to_settings
from ...core.errors import AloeError
from .._demo_verdict import judge_lines, quality_lines
from .._schemas import DemoConfig

HELP = "run the whole pipeline small on the embedded model: personas, trees, export, SFT+DPO, ALOE report"


def stages(cfg: DictConfig) -> list[tuple[str, str, list[str]]]:
    """(name, command, overrides) of each stage, in order."""
    c: DemoConfig = to_settings(cfg, DemoConfig)  # every count >= 1 (and capped), before any stage starts
    out = Path(str(cfg.out_dir))
    db = str(cfg.db)
    common = [f"db={db}", f"seed={cfg.seed}", f"cache={str(bool(cfg.cache)).lower()}",
              f"log.level={cfg.log.level}", f"log.format={cfg.log.format}"]
    short = [f"agents.{r}.max_tokens={cfg.max_tokens}" for r in ("user", "preferred", "rejected")]
    p = cfg.personas
    final = out / "train" / "final"
    judge = [f"evaluation.judge_check.pairs={c.judge_pairs}"]
    judge += [f"agents.judge.{k}={v}" for k, v in (("backend", c.agents.judge.backend),
                                                   ("model", c.agents.judge.model)) if v]
    return [
        ("persona pool", "personas", common + [
            f"personas.target_profiles={p.profiles}", f"personas.target_personalities={p.personalities}",
            f"personas.pairs={p.pairs}", f"personas.max_iterations={p.iterations}", "personas.parallel=1",
            "personas.eval_pairs=4"]),
        ("preference trees", "generate", common + short + [
            f"generation.trees={cfg.trees}", f"generation.turns={cfg.turns}", "retry_failed=true"]),
        ("export", "export", common + [f"export.dir={out / 'export'}"]),
        ("SFT then DPO", "train", common + [
            "training=tiny", "training.stage=sft+dpo", f"training.max_steps={cfg.train_steps}",
            f"training.output_dir={out / 'train'}"]),
        ("ALOE: base model", "evaluate", common + [
            "model=embedded", f"benchmark.cases={cfg.eval_cases}", f"benchmark.turns={cfg.eval_turns}",
            f"agents.user.max_tokens={cfg.max_tokens}", f"model.max_tokens={cfg.max_tokens}",
            "evaluation.label=Base", f"evaluation.out_dir={out / 'eval-base'}", *judge]),
        ("ALOE: trained model", "evaluate", common + [
            "model=hf", f"model.path={final}", f"benchmark.cases={cfg.eval_cases}",
            f"benchmark.turns={cfg.eval_turns}", f"agents.user.max_tokens={cfg.max_tokens}",
            f"model.max_tokens={cfg.max_tokens}", "evaluation.label=SFT+DPO",
            f"evaluation.out_dir={out / 'eval-trained'}", *judge]),
        ("comparison report", "report", common + [f"evaluation.out_dir={out / 'report'}"]),
    ]


def run(cfg: DictConfig) -> int:
    from ..cli import run_command

    plan = stages(cfg)
    out = Path(str(cfg.out_dir))
    out.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    timings = []
    final = out / "train" / "final"
    for i, (name, command, overrides) in enumerate(plan, 1):
        if command == "train" and (final / "config.json").is_file():
            # the other stages resume by themselves; a finished training run is kept as it is
            print(f"[demo {i}/{len(plan)}] {name}: already done ({final})", file=sys.stderr, flush=True)
            timings.append({"stage": name, "command": command, "seconds": 0.0, "exit": 0, "skipped": True})
            continue
        print(f"[demo {i}/{len(plan)}] {name}: aloe {command} {' '.join(overrides)}", file=sys.stderr, flush=True)
        t0 = time.monotonic()
        try:
            code = run_command(command, overrides)
        except AloeError as exc:
            print(f"aloe demo: stage '{name}' failed: {terminal_safe(str(exc))}", file=sys.stderr)
            return exc.exit_code
        timings.append({"stage": name, "command": command, "seconds": round(time.monotonic() - t0, 1), "exit": code})
        if code != 0:
            print(f"aloe demo: stage '{name}' exited with {code}", file=sys.stderr)
            return code
    summary = {
        "database": str(cfg.db),
        "datasets": str(out / "export"),
        "checkpoint": str(out / "train" / "final"),
        "reports": [str(out / d) for d in ("eval-base", "eval-trained", "report")],
        "stages": timings,
        "wall_s": round(time.monotonic() - started, 1),
    }
    verdict, lines = judge_lines(out, cfg)
    summary["judge_check"] = verdict
    (out / "demo.json").write_text(json.dumps(summary, indent=2))
    print("\naloe demo finished in {:.0f} s. Outputs:".format(summary["wall_s"]))
    print(f"  database        {summary['database']}   (aloe show / aloe view db={summary['database']})")
    print(f"  datasets        {summary['datasets']}/{{sft,sft_rejected,dpo}}.jsonl")
    print(f"  checkpoint      {summary['checkpoint']}")
    for d in summary["reports"]:
        print(f"  report          {d}/report.md, report.json, al_curve.png")
    print(f"  summary         {out / 'demo.json'}")
    for line in lines + quality_lines(str(cfg.db)):
        print(line)
    return 0
