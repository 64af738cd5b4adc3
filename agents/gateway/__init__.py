"""The LLM gateway: the only way agents reach a model.

``Backend`` is a ``ChatModel`` over one or more OpenAI-compatible endpoints
(GPT-4o, vLLM replicas, the embedded llama.cpp server) with limits, retries,
structured output (a JSON schema, or a ``TextOutput`` read from plain text),
call records and a response cache.
"""

from ._backend import Backend, Endpoint
from ._cache import request_key
from ._limits import PeakLimiter, RetryBudget, TokenBucket
from ._outputs import TextOutput, is_text_output, response_format
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
    "TextOutput",
    "TokenBucket",
    "VLLMBackend",
    "is_text_output",
    "request_key",
    "response_format",
]
