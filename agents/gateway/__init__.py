"""The LLM gateway: the only way agents reach a model.

``Backend`` is a ``ChatModel`` over one or more OpenAI-compatible endpoints
(GPT-4o, vLLM replicas, the embedded llama.cpp server) with limits (fixed, or
adaptive to rate limits: ``AdaptiveLimiter``), retries,
structured output (a JSON schema, or a ``TextOutput`` read from plain text),
call records (with each call's price in dollars: ``Pricer``, from
genai-prices and the user's overrides), a run's spending limit
(``SpendLimit``, ``budget.usd``) and a response cache. Every reply is read
by ``parse_reply`` (raw bytes to a validated, storable ``Reply``); redirects
are never followed; an ``EndpointGuard`` watches a managed server.
"""

from ._adaptive import AdaptiveLimiter, RateHeaders
from ._backend import Backend
from ._cache import request_key
from ._endpoint import Endpoint, EndpointGuard
from ._limits import PeakLimiter, RetryBudget, TokenBucket
from ._outputs import TextOutput, is_text_output, response_format
from ._pricing import ModelPrice, Pricer, PricingSettings, library_version, price
from ._record import CallRecord, Recorder, StoreRecorder
from ._reply import MalformedReply, Reply, parse_reply
from ._settings import BACKEND_SCHEMAS, BackendSettings, EmbeddedBackend, OpenAIBackend, VLLMBackend
from ._spend import BudgetSettings, SpendLimit, SpendStop
from ._types import CallContext, ChatModel, ChatResult, Sampling

__all__ = [
    "BACKEND_SCHEMAS",
    "AdaptiveLimiter",
    "Backend",
    "BackendSettings",
    "BudgetSettings",
    "CallContext",
    "CallRecord",
    "ChatModel",
    "ChatResult",
    "EmbeddedBackend",
    "Endpoint",
    "EndpointGuard",
    "MalformedReply",
    "ModelPrice",
    "OpenAIBackend",
    "PeakLimiter",
    "Pricer",
    "PricingSettings",
    "RateHeaders",
    "Recorder",
    "Reply",
    "RetryBudget",
    "Sampling",
    "SpendLimit",
    "SpendStop",
    "StoreRecorder",
    "TextOutput",
    "TokenBucket",
    "VLLMBackend",
    "is_text_output",
    "library_version",
    "parse_reply",
    "price",
    "request_key",
    "response_format",
]
