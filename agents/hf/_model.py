"""A ``ChatModel`` that runs a local Hugging Face checkpoint in-process.

For evaluating a checkpoint (for example one written by ``aloe train``)
without a server: ``transformers.AutoModelForCausalLM`` plus the
tokenizer's chat template. Loading and generation are blocking, so they run
on a worker thread, one at a time (``CapacityLimiter(1)``: one model, one
forward pass at a time; the event loop stays free for the other roles).

A GGUF file can stand in for a checkpoint directory (``gguf_file=``):
transformers de-quantizes it on load.
"""

from __future__ import annotations

import json
import re
import time
from pathlib import Path
from typing import Any

import anyio
from pydantic import BaseModel, ValidationError

from ...core.errors import ConfigError, LLMError, StructuredOutputError
from ..gateway import CallContext, CallRecord, ChatResult, Recorder, Sampling

__all__ = ["HFChatModel"]

_JSON = re.compile(r"\{.*\}", re.DOTALL)


class HFChatModel:
    """A local transformers checkpoint behind the ``ChatModel`` protocol.

    ``path``: a checkpoint directory (config + weights + tokenizer), or the
    directory holding ``gguf_file``. The model is loaded on first use (or by
    ``await load()``). ``recorder`` (e.g. the gateway's ``StoreRecorder``)
    records every call in ``llm_calls`` like the gateway does."""

    def __init__(self, path: str | Path, *, gguf_file: str | None = None, name: str | None = None,
                 device: str = "cpu", dtype: str = "auto", max_retries: int = 2,
                 recorder: Recorder | None = None) -> None:
        self.path = Path(path)
        if not self.path.is_dir():
            raise ConfigError("model.path", str(path), "a directory holding a Hugging Face checkpoint (or a GGUF file)")
        if gguf_file is not None and not (self.path / gguf_file).is_file():
            raise ConfigError("model.gguf_file", gguf_file, f"a file inside {self.path}")
        if gguf_file is None and not (self.path / "config.json").is_file():
            raise ConfigError("model.path", str(path), "a checkpoint directory with config.json (or set model.gguf_file)")
        self.gguf_file = gguf_file
        self.name = name or self.path.name
        self.device = device
        self.dtype = dtype
        self.max_retries = max_retries
        self.recorder = recorder
        self.endpoint = f"hf://{self.path}" + (f"/{gguf_file}" if gguf_file else "")
        self._limiter = anyio.CapacityLimiter(1)
        self._model: Any = None
        self._tokenizer: Any = None
        self.stats = {"calls": 0, "prompt_tokens": 0, "completion_tokens": 0}

    # -- loading ---------------------------------------------------------
    def _load_sync(self) -> None:
        if self._model is not None:
            return
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        kwargs: dict[str, Any] = {}
        if self.gguf_file:
            kwargs["gguf_file"] = self.gguf_file
        dtype = {"auto": "auto", "float32": torch.float32, "bfloat16": torch.bfloat16,
                 "float16": torch.float16}.get(self.dtype)
        if dtype is None:
            raise ConfigError("model.dtype", self.dtype, "auto | float32 | bfloat16 | float16")
        try:
            tokenizer = AutoTokenizer.from_pretrained(str(self.path), **kwargs)
            model = AutoModelForCausalLM.from_pretrained(str(self.path), dtype=dtype, **kwargs)
        except (OSError, ValueError) as exc:
            raise LLMError("load", self.endpoint, f"cannot load the checkpoint: {' '.join(str(exc).split())[:300]}") from None
        if not getattr(tokenizer, "chat_template", None):
            raise LLMError("load", self.endpoint, "the tokenizer has no chat template")
        model.to(self.device)
        model.eval()
        self._tokenizer, self._model = tokenizer, model

    async def load(self) -> None:
        """Load the weights now (on a worker thread) instead of on first use."""
        await anyio.to_thread.run_sync(self._load_sync, limiter=self._limiter)

    async def aclose(self) -> None:
        self._model = self._tokenizer = None

    # -- generation ------------------------------------------------------
    def _generate_sync(self, messages: list[dict[str, str]], sampling: Sampling) -> tuple[str, int, int]:
        import torch

        self._load_sync()
        tok, model = self._tokenizer, self._model
        enc = tok.apply_chat_template(messages, add_generation_prompt=True, return_tensors="pt", return_dict=True)
        enc = {k: v.to(self.device) for k, v in enc.items()}
        n_prompt = int(enc["input_ids"].shape[1])
        kwargs: dict[str, Any] = {"max_new_tokens": sampling.max_tokens}
        if sampling.temperature > 0:
            kwargs.update(do_sample=True, temperature=sampling.temperature, top_p=sampling.top_p)
        else:
            kwargs.update(do_sample=False, temperature=None, top_p=None, top_k=None)
        if tok.pad_token_id is None:
            kwargs["pad_token_id"] = tok.eos_token_id
        if sampling.seed is not None:
            torch.manual_seed(sampling.seed)
        with torch.inference_mode():
            out = model.generate(**enc, **kwargs)
        new = out[0][n_prompt:]
        return tok.decode(new, skip_special_tokens=True).strip(), n_prompt, int(new.shape[0])

    async def chat(
        self,
        messages: list[dict[str, str]],
        *,
        role: str,
        sampling: Sampling | None = None,
        schema: type[BaseModel] | None = None,
        context: CallContext | None = None,
    ) -> ChatResult:
        """Generate a reply on a worker thread. With ``schema``, the first
        JSON object of the reply is validated, retried ``max_retries`` times."""
        sampling = sampling or Sampling()
        request = {"model": self.name, "messages": messages, **sampling.as_params()}
        self.stats["calls"] += 1
        start = time.monotonic()
        attempts, prompt_tokens, completion_tokens = 0, 0, 0
        text, parsed, error, finish = "", None, None, None
        while True:
            attempts += 1
            try:
                text, p, c = await anyio.to_thread.run_sync(self._generate_sync, list(messages), sampling,
                                                            limiter=self._limiter)
            except LLMError as exc:
                error = exc
                break
            except (RuntimeError, ValueError) as exc:
                error = LLMError(role, self.endpoint, f"generation failed: {' '.join(str(exc).split())[:300]}", attempts)
                break
            prompt_tokens += p
            completion_tokens += c
            finish = "length" if c >= sampling.max_tokens else "stop"  # generate() stops at max_new_tokens
            if schema is None:
                if text:
                    break
                reason = "empty reply"
            else:
                m = _JSON.search(text)
                try:
                    parsed = schema.model_validate(json.loads(m.group(0) if m else text))
                    text = parsed.model_dump_json()
                    break
                except (ValidationError, json.JSONDecodeError) as exc:
                    reason = f"invalid structured output: {' '.join(str(exc).split())[:200]}"
            if attempts > self.max_retries:
                cls = StructuredOutputError if schema is not None else LLMError
                error = cls(role, self.endpoint, f"{reason} (retries exhausted)", attempts)
                break
            if sampling.seed is not None:   # a retry with the same seed would repeat the same reply
                sampling = Sampling(sampling.temperature or 0.7, sampling.max_tokens, sampling.top_p, sampling.seed + 1)
        latency = time.monotonic() - start
        self.stats["prompt_tokens"] += prompt_tokens
        self.stats["completion_tokens"] += completion_tokens
        if self.recorder is not None:
            await self.recorder.record(CallRecord(
                role, self.endpoint, self.name, context, request, None if error else text, prompt_tokens,
                completion_tokens, latency, attempts, False, None if error is None else error.reason, None,
                None if error else finish, 0.0), None)  # in-process: free
        if error is not None:
            raise error
        return ChatResult(text=text, parsed=parsed, prompt_tokens=prompt_tokens, completion_tokens=completion_tokens,
                          latency_s=latency, attempts=attempts, endpoint=self.endpoint, model=self.name,
                          finish_reason=finish)
