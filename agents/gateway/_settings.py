"""Typed settings of one backend (a model behind one or more OpenAI-compatible
endpoints). Built from the ``backend`` config group; every bad value is a
``ConfigError`` naming the key, the value and what is allowed."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from typing import Any

from ...core.errors import ConfigError

KINDS = ("embedded", "openai", "vllm")
DIALECTS = ("llamacpp", "openai")


@dataclass(frozen=True)
class BackendSettings:
    kind: str = "embedded"             # embedded | openai | vllm
    model: str = "SmolLM2-135M-Instruct"
    base_url: str | None = None        # one URL (openai, external vllm)
    base_urls: tuple[str, ...] = ()    # several replicas, routed by least outstanding requests
    api_key_env: str | None = None     # NAME of the environment variable holding the key
    dialect: str = "llamacpp"          # structured-output dialect
    concurrency: int = 4               # max in-flight requests per endpoint
    rpm: float | None = None
    tpm: float | None = None
    timeout: float = 120.0
    max_retries: int = 4
    retry_budget: int = 10000
    backoff_base: float = 0.5          # first retry waits about this long (with jitter)
    backoff_max: float = 30.0
    max_reply_chars: int = 100_000     # a longer reply is cut here (recorded with finish_reason "length")
    # managed servers (embedded / vllm with no base_url)
    gguf: str | None = None
    servers: int = 1
    port: int | None = None
    n_ctx: int = 4096
    n_threads: int | None = None
    startup_timeout: float = 120.0
    max_restarts: int = 2              # a managed server that dies is restarted this often, then the run stops
    hang_timeout: float = 60.0         # a managed server that answers no health check this long is restarted
    extra: dict[str, Any] = field(default_factory=dict)   # anything else (e.g. vLLM server args)

    @classmethod
    def from_config(cls, cfg: Mapping[str, Any], prefix: str = "backend") -> BackendSettings:
        known = {f.name for f in fields(cls)}
        kwargs: dict[str, Any] = {}
        extra: dict[str, Any] = {}
        for key, value in dict(cfg).items():
            if key in known:
                kwargs[key] = value
            else:
                extra[key] = value
        if "base_urls" in kwargs:
            kwargs["base_urls"] = tuple(kwargs["base_urls"] or ())
        kwargs["extra"] = {**dict(kwargs.get("extra") or {}), **extra}
        settings = cls(**kwargs)
        settings.validate(prefix)
        return settings

    def validate(self, prefix: str = "backend") -> None:
        def bad(key: str, value: Any, allowed: str) -> ConfigError:
            return ConfigError(f"{prefix}.{key}", value, allowed)

        if self.kind not in KINDS:
            raise bad("kind", self.kind, " | ".join(KINDS))
        if self.dialect not in DIALECTS:
            raise bad("dialect", self.dialect, " | ".join(DIALECTS))
        for key in ("concurrency", "servers", "n_ctx", "max_reply_chars"):
            value = getattr(self, key)
            if not isinstance(value, int) or value < 1:
                raise bad(key, value, "an integer >= 1")
        for key in ("max_retries", "retry_budget", "max_restarts"):
            value = getattr(self, key)
            if not isinstance(value, int) or value < 0:
                raise bad(key, value, "an integer >= 0")
        for key in ("timeout", "startup_timeout", "backoff_base", "backoff_max", "hang_timeout"):
            value = getattr(self, key)
            if not isinstance(value, (int, float)) or value <= 0:
                raise bad(key, value, "a number > 0")
        for key in ("rpm", "tpm"):
            value = getattr(self, key)
            if value is not None and (not isinstance(value, (int, float)) or value <= 0):
                raise bad(key, value, "null or a number > 0")
        if self.port is not None and not (isinstance(self.port, int) and 0 < self.port < 65536):
            raise bad("port", self.port, "null or a TCP port 1-65535")
        if self.kind == "openai" and not (self.base_url or self.base_urls):
            raise bad("base_url", self.base_url, "the URL of an OpenAI-compatible API (e.g. https://api.openai.com/v1)")

    @property
    def urls(self) -> tuple[str, ...]:
        if self.base_urls:
            return tuple(self.base_urls)
        return (self.base_url,) if self.base_url else ()

    @property
    def managed(self) -> bool:
        """True when aloesim must start the server(s) itself."""
        return not self.urls and self.kind in ("embedded", "vllm")
