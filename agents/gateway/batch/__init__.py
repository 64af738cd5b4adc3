"""Batch mode: a backend's calls through a provider's batch API, in turn waves.

``BatchModel`` is a ``ChatModel`` (``backend.mode=batch``): the requests of one
hop from all trees in flight are collected into a wave, submitted as one
batch (split at the provider's limits), waited for, and handed back to the
callers as if they had come online; failed requests are retried, submitted
batches are journaled (``Batches``) so a re-run resumes them, calls are priced
at batch rates. ``BatchProvider`` is the five-call protocol a provider meets
(upload, submit, poll, results, cancel); ``OpenAIBatches`` is OpenAI's Batch API.
"""

from ._model import BatchModel
from ._provider import (
           FINAL_STATES,
           BatchError,
           BatchLine,
           BatchProvider,
           BatchStatus,
           OpenAIBatches,
           split_lines,
)

__all__ = ["FINAL_STATES", "BatchError", "BatchLine", "BatchModel", "BatchProvider", "BatchStatus", "OpenAIBatches",
           "split_lines"]
