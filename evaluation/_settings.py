"""Typed settings of the ALOE benchmark: the ``benchmark`` and ``evaluation``
keys of ``aloe evaluate`` / ``aloe report`` (with the judge's: its validity
check, its scoring, its log-probabilities), and the schemas of the ``model``
config group (the evaluated model, one class per kind)."""

from __future__ import annotations

from dataclasses import dataclass

from ..agents.gateway import Sampling
from ..core import Settings, setting
from ..core.errors import ConfigError
from ..environment import MAX_TURNS

MODEL_KINDS = ("embedded", "openai", "vllm", "hf")
JUDGES = ("default", "embedded", "openai", "vllm")
SCORINGS = ("sample", "expected")
LOGPROBS = ("auto", "true", "false")


@dataclass(frozen=True)
class BenchmarkSettings(Settings):
    """Which cases, and how long each conversation runs."""

    profiles: str | None = setting(None, help="file of evaluation profiles, one JSON string per line; null = the "
                                              "database's eval split", nonempty=True)
    personalities: str | None = setting(None, help="file of evaluation personalities (cases = profiles x "
                                                   "personalities)", nonempty=True)
    cases: int | None = setting(None, help="take the first N cases (profile-major order); null = all (published "
                                           "benchmark: 100)", ge=1, le=1_000_000)
    turns: int = setting(10, help="conversation turns K per case", ge=1, le=MAX_TURNS)
    name: str | None = setting(None, help="name of the case set in reports (benchmark=aloe: ALOE); null = named by "
                                          "its source (files or the database's eval split)", nonempty=True)
    personalities_per_profile: int | None = setting(None, help="pair each profile with only the first N "
                                                               "personalities of the file (benchmark=aloe: 5); "
                                                               "null = all", ge=1, le=1_000_000)
    expected_cases: int | None = setting(None, help="refuse files that do not give exactly this many cases "
                                                    "(benchmark=aloe: 100); null = any", ge=1, le=1_000_000)

    def __post_init__(self) -> None:
        super().__post_init__()
        if (self.profiles is None) != (self.personalities is None):
            missing = "personalities" if self.personalities is None else "profiles"
            raise ConfigError(missing, None,
                              "a file too (profiles and personalities go together), or neither for the DB")
        if self.profiles is None and (self.personalities_per_profile is not None or self.expected_cases is not None):
            preset = f"the {self.name} case set" if self.name else "this case set"
            raise ConfigError("profiles", None, f"the published files ({preset} is built from them): "
                                                "benchmark.profiles=.../profile_eval.jsonl "
                                                "benchmark.personalities=.../personality_eval.jsonl")


@dataclass(frozen=True)
class JudgeCheckSettings(Settings):
    """``evaluation.judge_check``: the judge validity check run beside the cases
    of every evaluation (docs/evaluation.md). Each probe costs two judge calls."""

    enabled: bool = setting(True, help="score the probes; false = no check (the report then says the judge was "
                                       "not checked)")
    pairs: int = setting(32, help="probes, each two judge calls (half persona swaps, half reply swaps); more = a "
                                  "tighter interval (32: 64 extra judge calls per evaluation)", ge=2, le=10_000)
    threshold: float = setting(0.75, help="reliable = accuracy >= threshold AND the 95% Wilson lower bound > 0.5",
                               gt=0.5, le=1)
    preference: bool = setting(False, help="also check the pairwise preference judge (agents.preference_judge) on "
                                           "order-swapped probes (pairs more calls)")


@dataclass(frozen=True)
class EvaluationSettings(Settings):
    """The benchmark run and its report."""

    out_dir: str = setting("aloe_eval", help="folder for report.json, report.md and al_curve.png (created if "
                                             "missing)", nonempty=True, allowed="a folder for the report files")
    label: str | None = setting(None, help="name of this evaluation in reports (e.g. Base, SFT, DPO); null = the "
                                           "evaluated model's name", nonempty=True)
    concurrency: int = setting(16, help="benchmark cases in flight at once", ge=1, le=4096)
    bootstrap: int = setting(2000, help="bootstrap resamples over cases for the intervals", ge=100,
                             le=1_000_000)
    ci_level: float = setting(0.95, help="confidence level of the intervals", ge=0.5, lt=1)
    labels: str | None = setting(None, help="CSV (columns case,turn,score) of human or second-judge scores: "
                                            "Cohen's kappa vs the judge", nonempty=True)
    second_judge: str | None = setting(None, help="a second judge for agreement (Cohen's kappa vs the judge): "
                                                  "default (= backend) | embedded | openai | vllm; null = none",
                                       choices=JUDGES, allowed="null, default (= the `backend` group) or a backend "
                                                               "preset: embedded | openai | vllm")
    second_judge_model: str | None = setting(None, help="model name of the second judge (e.g. gpt-4o); null = "
                                                        "that backend's model", nonempty=True)
    judge_scoring: str = setting("sample", help="which judge score AL(k) uses: sample (the sampled 1-5 score: the "
                                                "paper's) | expected (sum of k*P(k) from the judge's token "
                                                "logprobs); the report shows both when the judge returned logprobs",
                                 choices=SCORINGS)
    judge_logprobs: str = setting("auto", help="ask the judge for token logprobs (its distribution over 1-5): auto "
                                               "(managed embedded/vLLM servers and api.openai.com; the embedded "
                                               "judge then gets its own llama.cpp server with logits_all) | true | "
                                               "false", choices=(*LOGPROBS, "True", "False"),
                                  allowed="auto | true | false")
    judge_check: JudgeCheckSettings = setting(help="the judge validity check of every evaluation",
                                              factory=JudgeCheckSettings)
    workers: int | None = setting(None, help="worker processes running the cases' conversations (each its own "
                                             "event loop, disjoint cases, one database; the judge check, second "
                                             "judge and report stay in the command's process); null = auto: the "
                                             "cores, one per 16 cases; 1 = one process", ge=1, le=1024,
                                  allowed="null or 1..1024")
    engine: str = setting("local", help="local = this machine (evaluation.workers processes) | ray = Ray tasks on "
                                        "a cluster, one shard database of cases each, merged into db",
                          choices=("local", "ray"))
    ray_address: str | None = setting(None, help="engine=ray: the cluster to join (e.g. ray://head:10001 or auto); "
                                                 "null = start a local Ray")

    def __post_init__(self) -> None:
        if isinstance(self.judge_logprobs, bool):   # a mapping given in code (YAML's true/false reach here as text)
            object.__setattr__(self, "judge_logprobs", str(self.judge_logprobs))
        if isinstance(self.judge_logprobs, str):
            object.__setattr__(self, "judge_logprobs", self.judge_logprobs.lower())
        super().__post_init__()
        if self.second_judge is not None and self.labels is not None:
            raise ConfigError("second_judge", self.second_judge,
                              "null when evaluation.labels is set (kappa against one of them)")
        if self.judge_scoring == "expected" and self.judge_logprobs == "false":
            raise ConfigError("judge_scoring", self.judge_scoring,
                              "sample when evaluation.judge_logprobs=false (expected scores need the logprobs)")


@dataclass(frozen=True)
class ModelSettings(Settings):
    """The evaluated model: what every kind shares (its name and sampling)."""

    kind: str = setting("embedded", help="embedded | openai | vllm | hf", choices=MODEL_KINDS)
    name: str | None = setting(None, help="model name in requests and reports; null = the backend's model",
                               nonempty=True)
    temperature: float = setting(0.7, help="sampling temperature of the evaluated model's replies", ge=0, le=2)
    max_tokens: int = setting(128, help="max tokens per reply", ge=1, le=131_072)
    top_p: float = setting(0.95, help="nucleus sampling", gt=0, le=1)

    @property
    def sampling(self) -> Sampling:
        return Sampling(temperature=float(self.temperature), max_tokens=self.max_tokens, top_p=float(self.top_p))


@dataclass(frozen=True)
class EmbeddedModel(ModelSettings):
    """The embedded llama.cpp server (shared with ``backend`` when that is embedded too)."""

    kind: str = setting("embedded", help="embedded (another kind: model=openai | vllm | hf)", choices=("embedded",),
                     allowed="embedded (for another kind: model=openai | vllm | hf)")
    gguf: str | None = setting(None, help="GGUF file to evaluate; null = the one `backend` serves", nonempty=True)


@dataclass(frozen=True)
class OpenAIModel(ModelSettings):
    """Any OpenAI-compatible API (GPT-4o, a vLLM or llama.cpp server you run)."""

    kind: str = setting("openai", help="openai (another kind: model=embedded | vllm | hf)", choices=("openai",),
                     allowed="openai (for another kind: model=embedded | vllm | hf)")
    name: str | None = setting("gpt-4o", help="model name sent with each request (and shown in reports)",
                               nonempty=True)
    base_url: str | None = setting("https://api.openai.com/v1", help="the endpoint")
    base_urls: tuple[str, ...] = setting((), help="or several replicas (overrides base_url), least-outstanding "
                                                  "routing")
    api_key_env: str | None = setting("OPENAI_API_KEY", help="NAME of the env variable holding the key; if it is "
                                                             "unset, no key is sent (local servers)")
    dialect: str = setting("openai", help="structured-output dialect (unused by the evaluated model)",
                           choices=("llamacpp", "openai"))
    concurrency: int = setting(32, help="max in-flight requests to the endpoint", ge=1, le=4096)
    timeout: float = setting(120.0, help="seconds per attempt", gt=0, le=86_400)
    max_retries: int = setting(6, help="retries per call (timeouts, 408/409/429/5xx, empty replies)", ge=0, le=100)
    max_tokens: int = setting(256, help="max tokens per reply", ge=1, le=131_072)


@dataclass(frozen=True)
class VLLMModel(ModelSettings):
    """A vLLM server: managed (base_url null) or one you run."""

    kind: str = setting("vllm", help="vllm (another kind: model=embedded | openai | hf)", choices=("vllm",),
                     allowed="vllm (for another kind: model=embedded | openai | hf)")
    name: str | None = setting("Qwen/Qwen2-7B-Instruct", help="Hugging Face id or local checkpoint folder (e.g. an "
                                                              "`aloe train` output)", nonempty=True)
    base_url: str | None = setting(None, help="null = managed server; or http://host:8000/v1")
    base_urls: tuple[str, ...] = setting((), help="several running replicas (overrides base_url)")
    api_key_env: str | None = setting(None, help="NAME of the env variable with the key of a remote vLLM; null = "
                                                 "none")
    servers: int = setting(1, help="managed replicas", ge=1, le=64)
    port: int | None = setting(None, help="port of the first managed replica; null = a free port", ge=1, le=65535)
    args: tuple[str, ...] = setting((), help="extra `vllm serve` arguments")
    startup_timeout: float = setting(600.0, help="seconds to wait for a managed replica", gt=0, le=86_400)
    concurrency: int = setting(64, help="max in-flight requests per replica", ge=1, le=4096)
    timeout: float = setting(300.0, help="seconds per attempt", gt=0, le=86_400)
    max_retries: int = setting(4, help="retries per call", ge=0, le=100)
    max_tokens: int = setting(256, help="max tokens per reply", ge=1, le=131_072)


@dataclass(frozen=True)
class HFModel(ModelSettings):
    """A local Hugging Face checkpoint run in-process with transformers (the `train` extra)."""

    kind: str = setting("hf", help="hf (another kind: model=embedded | openai | vllm)", choices=("hf",),
                     allowed="hf (for another kind: model=embedded | openai | vllm)")
    path: str | None = setting(None, help="checkpoint directory (config.json, weights, tokenizer), or the folder "
                                          "holding gguf_file", nonempty=True)
    gguf_file: str | None = setting(None, help="a GGUF file inside `path` to load (de-quantized by transformers) "
                                               "instead of safetensors", nonempty=True)
    name: str | None = setting(None, help="name in reports; null = the folder's name", nonempty=True)
    device: str = setting("cpu", help="torch device: cpu | cuda | cuda:N | mps", nonempty=True)
    dtype: str = setting("auto", help="weights dtype", choices=("auto", "float32", "bfloat16", "float16"))
    max_retries: int = setting(2, help="regenerations of an empty reply", ge=0, le=100)


MODEL_SCHEMAS: dict[str, type[ModelSettings]] = {"embedded": EmbeddedModel, "openai": OpenAIModel,
                                                 "vllm": VLLMModel, "hf": HFModel}
"""The schema of each evaluated-model kind (``conf/model/<kind>.yaml`` names it)."""
