"""A provider's batch API behind a small protocol, and OpenAI's Batch API.

``BatchProvider`` is what the batch model needs of a provider: ``upload`` a
JSONL file of requests, ``submit`` it, ``poll`` a batch's status, ``results``
of a finished batch (one ``BatchLine`` per answered or failed request) and
``cancel``. ``OpenAIBatches`` speaks OpenAI's files + batches endpoints
(``POST /files`` purpose=batch, ``POST /batches`` for /v1/chat/completions,
``GET /batches/{id}``, ``GET /files/{id}/content``, ``POST /batches/{id}/cancel``);
Anthropic's Message Batches and vLLM's offline ``run-batch`` fit the same
five calls. Transient faults (timeouts, connection errors, 408/409/429/5xx)
are retried with backoff; any other answer is a ``BatchError`` naming the
step, never a traceback. Redirects are never followed and the API key never
appears in an error.
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass
from typing import Any, Protocol

import anyio
import httpx2
import openai

from ....core.errors import LLMError
from .._faults import RETRY_STATUS, redactor, short

__all__ = ["FINAL_STATES", "BatchError", "BatchLine", "BatchProvider", "BatchStatus", "OpenAIBatches", "split_lines"]

FINAL_STATES = ("completed", "failed", "expired", "cancelled")


class BatchError(LLMError):
    """A batch step the provider refused or never answered (``role`` is the step)."""


@dataclass(frozen=True, slots=True)
class BatchStatus:
    id: str
    state: str  # validating | in_progress | finalizing | completed | failed | expired | cancelling | cancelled
    output_file: str | None = None
    error_file: str | None = None
    detail: str = ""

    @property
    def final(self) -> bool:
        return self.state in FINAL_STATES


@dataclass(frozen=True, slots=True)
class BatchLine:
    """One request's outcome in a finished batch: ``body`` (a chat completion, as
    bytes) or ``error`` (why it failed)."""

    custom_id: str
    body: bytes | None
    error: str | None


class BatchProvider(Protocol):
    name: str

    async def upload(self, lines: list[bytes]) -> str: ...

    async def submit(self, file_id: str) -> str: ...

    async def poll(self, batch_id: str) -> BatchStatus: ...

    async def results(self, status: BatchStatus) -> list[BatchLine]: ...

    async def cancel(self, batch_id: str) -> None: ...

    async def aclose(self) -> None: ...


def request_line(custom_id: str, body: dict[str, Any]) -> bytes:
    """One line of an OpenAI batch input file."""
    return json.dumps({"custom_id": custom_id, "method": "POST", "url": "/v1/chat/completions", "body": body},
                      ensure_ascii=False, separators=(",", ":")).encode() + b"\n"


def split_lines(lines: list[bytes], max_requests: int, max_bytes: int) -> list[list[bytes]]:
    """The lines cut into files of at most ``max_requests`` lines and ``max_bytes`` bytes."""
    files: list[list[bytes]] = []
    size = 0
    for line in lines:
        if len(line) > max_bytes:
            raise ValueError(f"one request is {len(line)} bytes, over the batch file limit of {max_bytes}")
        if not files or len(files[-1]) >= max_requests or size + len(line) > max_bytes:
            files.append([])
            size = 0
        files[-1].append(line)
        size += len(line)
    return files


def _read_lines(data: bytes) -> list[BatchLine]:
    """The outcomes in an output or error file; a line that cannot be read is skipped
    (its request has no outcome, so it is retried)."""
    out = []
    for raw in data.splitlines():
        try:
            item = json.loads(raw)
        except ValueError:
            continue
        if not isinstance(item, dict) or not isinstance(item.get("custom_id"), str):
            continue
        response, error = item.get("response"), item.get("error")
        status = response.get("status_code") if isinstance(response, dict) else None
        if status == 200 and isinstance(response.get("body"), dict):
            out.append(BatchLine(item["custom_id"], json.dumps(response["body"]).encode(), None))
            continue
        if isinstance(error, dict):
            reason = f"{error.get('code')}: {error.get('message')}"
        elif isinstance(response, dict):
            body = response.get("body")
            msg = body.get("error", {}).get("message") if isinstance(body, dict) and isinstance(
                body.get("error"), dict) else None
            reason = f"HTTP {status}" + (f": {msg}" if msg else "")
        else:
            reason = "no response"
        out.append(BatchLine(item["custom_id"], None, short(str(reason), 200)))
    return out


class OpenAIBatches:
    """OpenAI's Batch API (and any server that speaks it) at ``base_url``."""

    name = "openai"

    def __init__(self, base_url: str, api_key: str, *, timeout: float = 120.0, attempts: int = 6,
                 transport: httpx2.AsyncBaseTransport | None = None) -> None:
        self.base_url = base_url.rstrip("/")
        self.attempts = attempts
        self._redact = redactor(api_key if api_key else None)
        http = openai.DefaultAsyncHttpxClient(
            timeout=httpx2.Timeout(timeout, connect=min(10.0, timeout)), follow_redirects=False,
            **({"transport": transport} if transport is not None else {}))
        self.client = openai.AsyncOpenAI(base_url=self.base_url, api_key=api_key, max_retries=0, timeout=timeout,
                                         http_client=http)
        self._rng = random.Random(0)

    async def aclose(self) -> None:
        await self.client.close()

    async def _call(self, step: str, fn: Any) -> Any:
        for attempt in range(1, self.attempts + 1):
            try:
                return await fn()
            except openai.APIStatusError as exc:
                if exc.status_code not in RETRY_STATUS or attempt == self.attempts:
                    body = exc.body if isinstance(exc.body, dict) else {}
                    text = body.get("message") if isinstance(body.get("message"), str) else exc.message
                    raise BatchError(step, self.base_url, f"HTTP {exc.status_code}: "
                                                          f"{short(self._redact(text), 200)}", attempt) from None
            except (openai.APIConnectionError, openai.APITimeoutError, httpx2.HTTPError, OSError) as exc:
                if attempt == self.attempts:
                    raise BatchError(step, self.base_url, f"connection error: {type(exc).__name__}", attempt) from None
            except openai.OpenAIError as exc:
                raise BatchError(step, self.base_url, f"malformed response: {short(self._redact(str(exc)), 200)}",
                                 attempt) from None
            await anyio.sleep(self._rng.uniform(0, min(30.0, 0.5 * 2 ** attempt)))
        raise AssertionError("unreachable")

    async def upload(self, lines: list[bytes]) -> str:
        data = b"".join(lines)
        obj = await self._call("batch upload", lambda: self.client.files.create(
            file=("requests.jsonl", data, "application/jsonl"), purpose="batch"))
        return str(obj.id)

    async def submit(self, file_id: str) -> str:
        obj = await self._call("batch submit", lambda: self.client.batches.create(
            input_file_id=file_id, endpoint="/v1/chat/completions", completion_window="24h"))
        return str(obj.id)

    async def poll(self, batch_id: str) -> BatchStatus:
        obj = await self._call("batch poll", lambda: self.client.batches.retrieve(batch_id))
        errors = getattr(obj, "errors", None)
        data = getattr(errors, "data", None) or []
        detail = "; ".join(f"{getattr(e, 'code', '')}: {getattr(e, 'message', '')}" for e in data[:3])
        return BatchStatus(str(obj.id), str(obj.status), obj.output_file_id, obj.error_file_id,
                           short(self._redact(detail), 200))

    async def results(self, status: BatchStatus) -> list[BatchLine]:
        out: list[BatchLine] = []
        for file_id in (status.output_file, status.error_file):
            if file_id:
                content = await self._call("batch results", lambda f=file_id: self.client.files.content(f))
                out.extend(_read_lines(content.content))
        return out

    async def cancel(self, batch_id: str) -> None:
        await self._call("batch cancel", lambda: self.client.batches.cancel(batch_id))
