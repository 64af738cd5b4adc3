"""The ALOE benchmark (paper section 3): simulated multi-turn conversations
between a role-play user and the evaluated model, scored turn by turn by an
LLM judge whose validity is checked on probes of known answer (the judge
check: ``run_judge_check``, ``summarize_probes``); the metrics AL(k), IR, N-IR and their fits (``metrics``); and
reports (JSON, Markdown in the layout of Table 1, the AL(k) curve as PNG)
that mark every figure of a judge that failed its check; the typed schemas of the ``benchmark`` and ``evaluation`` keys and of the
``model`` config group (the evaluated model); ``evaluate`` is the whole
``aloe evaluate`` use case for a checked plan."""

from . import metrics
from ._benchmark import BenchmarkModels, EvaluatedModel, EvaluationPlan, SecondJudge, evaluate
from ._cases import (
    Case,
    CaseSet,
    case_set_from_db,
    case_set_from_files,
    cases_from_db,
    cases_from_files,
    first_cases,
    read_items,
)
from ._judge_check import CHECK_ROLE, run_judge_check, summarize_probes
from ._rejudge import rejudge
from ._report import (
    build_report,
    load_evaluation,
    render_markdown,
    render_plot,
    summarize_evaluation,
    write_report,
)
from ._runner import EVALUATED_ROLE, BenchmarkSpec, CasesRunner, RunOutcome, run_benchmark, run_cases
from ._settings import (
    MODEL_SCHEMAS,
    BenchmarkSettings,
    EmbeddedModel,
    EvaluationSettings,
    HFModel,
    JudgeCheckSettings,
    ModelSettings,
    OpenAIModel,
    VLLMModel,
)

__all__ = [
    "CHECK_ROLE",
    "EVALUATED_ROLE",
    "MODEL_SCHEMAS",
    "BenchmarkModels",
    "BenchmarkSettings",
    "BenchmarkSpec",
    "Case",
    "CaseSet",
    "CasesRunner",
    "EmbeddedModel",
    "EvaluatedModel",
    "EvaluationPlan",
    "EvaluationSettings",
    "HFModel",
    "JudgeCheckSettings",
    "ModelSettings",
    "OpenAIModel",
    "RunOutcome",
    "SecondJudge",
    "VLLMModel",
    "build_report",
    "case_set_from_db",
    "case_set_from_files",
    "cases_from_db",
    "cases_from_files",
    "evaluate",
    "first_cases",
    "load_evaluation",
    "metrics",
    "read_items",
    "rejudge",
    "render_markdown",
    "render_plot",
    "run_benchmark",
    "run_cases",
    "run_judge_check",
    "summarize_evaluation",
    "summarize_probes",
    "write_report",
]
