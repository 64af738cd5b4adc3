"""A loopback fake of OpenAI's Batch API (and of its online chat endpoint),
with known answers, for the batch mode's tests and benchmark.

    from tests.support.batch_api import BatchAPI
    with BatchAPI(in_progress_s=0.2) as api:      # api.url = http://127.0.0.1:PORT/v1
        ...  # backend=openai backend.mode=batch backend.base_url=api.url

It listens on 127.0.0.1 only (Starlette on uvicorn, in a thread of the test
process) and answers:

- ``POST /v1/chat/completions``: the deterministic reply of the benchmarks'
  latency server (``benchmarks/latency_server.py``: ``FakeLLM.completion``),
  keyed by the canonical JSON of the request (sorted keys), so the same
  request gets the same reply online and inside a batch;
- ``POST /v1/files`` (multipart, ``purpose=batch``): a JSONL input file, checked
  as OpenAI checks it (one JSON object a line with ``custom_id``, ``method``
  POST, ``url`` /v1/chat/completions and a ``body``; unique custom ids; at most
  ``max_requests`` lines and ``max_bytes`` bytes): 400 otherwise;
- ``POST /v1/batches``, ``GET /v1/batches/{id}``, ``POST /v1/batches/{id}/cancel``:
  a batch goes validating (``validating_s``) -> in_progress (``in_progress_s``
  + ``per_request_s`` per request, all times x ``time_scale``) -> completed, or
  failed (``fail_batches``: how many of the next batches fail validation),
  expired (``expire_batches``: how many of the next batches expire with only
  their first half answered), cancelling -> cancelled. While ``hold`` is set
  no batch leaves in_progress;
- ``GET /v1/files/{id}/content``: input, output and error files. A request
  fails inside a batch (its line in the error file, status 500) with
  probability ``fail_rate``, drawn from a hash of (custom_id, how many times
  that custom_id was submitted): a resubmission gets a fresh draw.

``log`` holds every request as ``(method, path)``; ``submitted`` every
batch's custom ids, in order of creation.
"""

from __future__ import annotations

import contextlib
import email.parser
import email.policy
import hashlib
import json
import socket
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Self

import uvicorn
from latency_server import FakeLLM, ServerConfig
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

__all__ = ["BatchAPI", "canonical"]


def canonical(req: dict[str, Any]) -> bytes:
    """The identity of a chat request for the fake model (key order does not matter)."""
    return json.dumps(req, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()


def _error(status: int, message: str) -> JSONResponse:
    return JSONResponse({"error": {"message": message, "type": "invalid_request_error"}}, status_code=status)


@dataclass
class _Batch:
    id: str
    input_file_id: str
    created: float
    ids: list[str]
    lines: list[dict[str, Any]]
    fate: str = "completed"  # completed | failed | expired
    cancelled_at: float | None = None
    output_file_id: str | None = None
    error_file_id: str | None = None
    final: str | None = None


@dataclass
class BatchAPI:
    validating_s: float = 0.02
    in_progress_s: float = 0.1
    per_request_s: float = 0.0
    time_scale: float = 1.0
    fail_rate: float = 0.0
    fail_batches: int = 0
    expire_batches: int = 0
    max_requests: int = 50_000
    max_bytes: int = 200 * 1024 * 1024
    seed: int = 0
    hold: bool = False
    log: list[tuple[str, str]] = field(default_factory=list)
    submitted: list[list[str]] = field(default_factory=list)
    online: int = 0

    def __post_init__(self) -> None:
        self.model = FakeLLM(ServerConfig(seed=self.seed))
        self.files: dict[str, bytes] = {}
        self.batches: dict[str, _Batch] = {}
        self.tries: Counter[str] = Counter()
        self._lock = threading.Lock()
        self.url = ""

    # -- the model ---------------------------------------------------------
    def complete(self, req: dict[str, Any]) -> dict[str, Any]:
        return self.model.completion(req, hashlib.blake2b(canonical(req), digest_size=12).digest())

    def count(self, method: str, path_prefix: str) -> int:
        return sum(1 for m, p in self.log if m == method and p.startswith(path_prefix))

    # -- state -------------------------------------------------------------
    def _state(self, b: _Batch) -> str:
        if b.final is not None:
            return b.final
        now = time.monotonic()
        if b.cancelled_at is not None:
            return self._finish(b, "cancelled") if now - b.cancelled_at >= self.validating_s * self.time_scale \
                else "cancelling"
        age = (now - b.created) / self.time_scale
        if age < self.validating_s:
            return "validating"
        if b.fate == "failed":
            return self._finish(b, "failed")
        if self.hold or age < self.validating_s + self.in_progress_s + self.per_request_s * len(b.lines):
            return "in_progress"
        return self._finish(b, b.fate)

    def _finish(self, b: _Batch, state: str) -> str:
        if state == "failed":
            b.final = state
            return state
        out, err = [], []
        answered = len(b.lines) if state == "completed" else len(b.lines) // 2
        for i, line in enumerate(b.lines):
            cid = line["custom_id"]
            if i >= answered:
                code = "batch_expired" if state == "expired" else "batch_cancelled"
                err.append({"id": f"req_{cid[:12]}", "custom_id": cid, "response": None,
                            "error": {"code": code, "message": f"This request could not be executed ({code})."}})
                continue
            self.tries[cid] += 1
            draw = hashlib.blake2b(f"{self.seed}:{cid}:{self.tries[cid]}".encode(), digest_size=8).digest()
            if int.from_bytes(draw, "little") / 2**64 < self.fail_rate:
                err.append({"id": f"req_{cid[:12]}", "custom_id": cid, "error": None, "response": {
                    "status_code": 500, "request_id": "r", "body": {"error": {
                        "message": "The server had an error processing your request (injected).",
                        "type": "server_error"}}}})
                continue
            out.append({"id": f"req_{cid[:12]}", "custom_id": cid, "error": None, "response": {
                "status_code": 200, "request_id": "r", "body": self.complete(line["body"])}})
        if out:
            b.output_file_id = self._store("\n".join(json.dumps(x) for x in out).encode() + b"\n")
        if err:
            b.error_file_id = self._store("\n".join(json.dumps(x) for x in err).encode() + b"\n")
        b.final = state
        return state

    def _store(self, data: bytes) -> str:
        fid = f"file-{len(self.files) + 1}"
        self.files[fid] = data
        return fid

    def _object(self, b: _Batch) -> dict[str, Any]:
        state = self._state(b)
        done = len(b.lines) if state == "completed" else 0
        obj: dict[str, Any] = {
            "id": b.id, "object": "batch", "endpoint": "/v1/chat/completions", "input_file_id": b.input_file_id,
            "completion_window": "24h", "status": state, "output_file_id": b.output_file_id,
            "error_file_id": b.error_file_id, "created_at": int(time.time()), "errors": None,
            "request_counts": {"total": len(b.lines), "completed": done, "failed": 0},
        }
        if state == "failed":
            obj["errors"] = {"object": "list", "data": [{"code": "invalid_request", "message": "injected failure",
                                                         "line": 1}]}
        return obj

    # -- HTTP --------------------------------------------------------------
    def _app(self) -> Starlette:
        async def chat(request: Request) -> Response:
            req = json.loads(await request.body())
            with self._lock:
                self.log.append(("POST", "/v1/chat/completions"))
                self.online += 1
                return JSONResponse(self.complete(req))

        async def upload(request: Request) -> Response:
            body = await request.body()
            head = f"Content-Type: {request.headers.get('content-type', '')}\r\n\r\n".encode()
            msg = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(head + body)
            parts = {p.get_param("name", header="content-disposition"): p.get_payload(decode=True)
                     for p in msg.iter_parts()} if msg.is_multipart() else {}
            with self._lock:
                self.log.append(("POST", "/v1/files"))
                data, purpose = parts.get("file"), (parts.get("purpose") or b"").decode()
                if data is None or purpose != "batch":
                    return _error(400, "a file with purpose=batch is required")
                if len(data) > self.max_bytes:
                    return _error(400, f"file is larger than {self.max_bytes} bytes")
                try:
                    lines = [json.loads(x) for x in data.decode().splitlines() if x.strip()]
                except ValueError:
                    return _error(400, "not JSONL")
                if len(lines) > self.max_requests:
                    return _error(400, f"more than {self.max_requests} requests")
                ids = [x.get("custom_id") for x in lines]
                if len(set(ids)) != len(ids) or not all(
                        x.get("method") == "POST" and x.get("url") == "/v1/chat/completions"
                        and isinstance(x.get("body"), dict) for x in lines):
                    return _error(400, "each line needs a unique custom_id, method POST, url, body")
                fid = self._store(data)
                return JSONResponse({"id": fid, "object": "file", "bytes": len(data), "purpose": "batch",
                                     "filename": "input.jsonl", "created_at": int(time.time()), "status": "processed"})

        async def create(request: Request) -> Response:
            req = json.loads(await request.body())
            with self._lock:
                self.log.append(("POST", "/v1/batches"))
                fid = req.get("input_file_id")
                if fid not in self.files or req.get("endpoint") != "/v1/chat/completions" \
                        or req.get("completion_window") != "24h":
                    return _error(400, "unknown input file, endpoint or completion window")
                lines = [json.loads(x) for x in self.files[fid].decode().splitlines() if x.strip()]
                b = _Batch(f"batch_{len(self.batches) + 1}", fid, time.monotonic(), [x["custom_id"] for x in lines],
                           lines)
                if self.fail_batches:
                    self.fail_batches -= 1
                    b.fate = "failed"
                elif self.expire_batches:
                    self.expire_batches -= 1
                    b.fate = "expired"
                self.batches[b.id] = b
                self.submitted.append(b.ids)
                return JSONResponse(self._object(b))

        async def retrieve(request: Request) -> Response:
            with self._lock:
                self.log.append(("GET", f"/v1/batches/{request.path_params['id']}"))
                b = self.batches.get(request.path_params["id"])
                return _error(404, "no such batch") if b is None else JSONResponse(self._object(b))

        async def cancel(request: Request) -> Response:
            with self._lock:
                self.log.append(("POST", f"/v1/batches/{request.path_params['id']}/cancel"))
                b = self.batches.get(request.path_params["id"])
                if b is None:
                    return _error(404, "no such batch")
                if b.final is None:
                    b.cancelled_at = time.monotonic()
                return JSONResponse(self._object(b))

        async def content(request: Request) -> Response:
            with self._lock:
                self.log.append(("GET", f"/v1/files/{request.path_params['id']}/content"))
                data = self.files.get(request.path_params["id"])
                return _error(404, "no such file") if data is None else Response(data, media_type="application/jsonl")

        return Starlette(routes=[
            Route("/v1/chat/completions", chat, methods=["POST"]),
            Route("/v1/files", upload, methods=["POST"]),
            Route("/v1/files/{id}/content", content, methods=["GET"]),
            Route("/v1/batches", create, methods=["POST"]),
            Route("/v1/batches/{id}", retrieve, methods=["GET"]),
            Route("/v1/batches/{id}/cancel", cancel, methods=["POST"]),
        ])

    def __enter__(self) -> Self:
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._sock.bind(("127.0.0.1", 0))
        self._server = uvicorn.Server(uvicorn.Config(self._app(), log_level="warning", lifespan="off"))
        self._thread = threading.Thread(target=self._server.run, kwargs={"sockets": [self._sock]}, daemon=True)
        self._thread.start()
        deadline = time.monotonic() + 10
        while not self._server.started:
            if time.monotonic() > deadline:
                raise RuntimeError("the batch API fake did not start")
            time.sleep(0.01)
        self.url = f"http://127.0.0.1:{self._sock.getsockname()[1]}/v1"
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.should_exit = True
        self._thread.join(10)
        with contextlib.suppress(OSError):
            self._sock.close()
