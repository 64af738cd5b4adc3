"""The LLM gateway: the only way agents reach a model.

``Backend`` is a ``ChatModel`` over one or more OpenAI-compatible endpoints
(GPT-4o, vLLM replicas, the embedded llama.cpp server) with limits, retries,
structured output, call records and a response cache.
"""

from ._backend import Backend, Endpoint, response_format
from ._cache import request_key
from ._limits import PeakLimiter, RetryBudget, TokenBucket
from ._record import CallRecord, Recorder, StoreRecorder
from ._settings import BACKEND_SCHEMAS, BackendSettings, EmbeddedBackend, OpenAIBackend, VLLMBackend
from ._types import CallContext, ChatModel, ChatResult, Sampling

__all__ = [
    "BACKEND_SCHEMAS",
    "Backend",
    "BackendSettings",
    "CallContext",
    "CallRecord",
    "ChatModel",
    "ChatResult",
    "EmbeddedBackend",
    "Endpoint",
    "OpenAIBackend",
    "PeakLimiter",
    "Recorder",
    "RetryBudget",
    "Sampling",
    "StoreRecorder",
    "TokenBucket",
    "VLLMBackend",
    "request_key",
    "response_format",
]
