"""What a call costs in US dollars, from the token counts the server reported.

Prices come from ``genai-prices`` (pydantic's maintained price table of the
field, read from the installed package: no network), with the user's
``pricing.models`` overrides first (per-model input/output $ per million
tokens, for custom or local models or a negotiated rate). The backend kinds
in ``pricing.free`` (embedded llama.cpp and vLLM by default: hardware you
run) cost nothing unless a model there has an override. A model neither
listed nor known to the library has an unknown price: ``None``, never 0.

    pricer = Pricer(PricingSettings())
    pricer.price("gpt-4o", 1200, 300, kind="openai")        # 0.006 (the library's rates)
    pricer.price("my-model", 1200, 300, kind="openai")      # None: unknown
    price("gpt-4o", 1200, 300, batch=True)                   # the library's batch rate, or None
"""

from __future__ import annotations

import functools
import threading
import warnings
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from ...core import Settings, setting

__all__ = ["ModelPrice", "Pricer", "PricingSettings", "library_version", "price"]

_KINDS = ("embedded", "openai", "vllm", "hf")
_MTOK = 1_000_000


@dataclass(frozen=True)
class ModelPrice(Settings):
    """One model's price, in US dollars per million tokens."""

    model: str = setting("???", help="the model name as sent with each request (backend.model)", nonempty=True)
    input: float = setting(0.0, help="$ per million prompt tokens", ge=0, le=1_000_000)
    output: float = setting(0.0, help="$ per million completion tokens", ge=0, le=1_000_000)
    batch_input: float | None = setting(None, help="$ per million prompt tokens of a provider batch job; null = "
                                                   "unknown", ge=0, le=1_000_000)
    batch_output: float | None = setting(None, help="$ per million completion tokens of a batch job; null = "
                                                    "unknown", ge=0, le=1_000_000)


@dataclass(frozen=True)
class PricingSettings(Settings):
    """The ``pricing`` config group: where a call's dollars come from (docs/cost.md)."""

    models: tuple[ModelPrice, ...] = setting(
        (), help="overrides, first: [{model: NAME, input: $/Mtok, output: $/Mtok}, ...]")
    free: tuple[str, ...] = setting(("embedded", "vllm", "hf"), help="backend kinds whose calls cost nothing "
                                    "(hardware you run) unless their model has an override", choices=_KINDS)
    library: bool = setting(True, help="price other models from the genai-prices table (false: only overrides; "
                                       "the rest is unknown)")
    completion_fraction: float = setting(
        1.0, help="dry runs: the share of max_tokens a reply is expected to use (1 = every reply at its limit, "
                  "an upper bound)", gt=0, le=1)


def library_version() -> str | None:
    """The installed genai-prices version (None when it is not installed)."""
    try:
        import genai_prices
    except ImportError:
        return None
    return str(genai_prices.__version__)


_LOADING = threading.Lock()  # the table loads once, in whichever thread asks first (``Pricer.warm``)


@functools.lru_cache(maxsize=256)
def _library_model(model: str) -> tuple[Any, Any] | None:
    """(provider, model info) of genai-prices for a model name, or None when the table does not know it."""
    try:
        with _LOADING:
            from genai_prices import data_snapshot

            snapshot = data_snapshot.get_snapshot()
    except ImportError:
        return None
    try:
        return snapshot.find_provider_model(model, None, None, None)
    except (LookupError, ValueError):
        return None


@functools.lru_cache(maxsize=512)
def _library_rates(model: str, batch: bool) -> tuple[Any, Any] | None:
    """(provider, the library's resolved ModelPrice) of a model, batch variant or standard; None when unknown
    (a batch price without a published batch rate is unknown, not the standard one)."""
    found = _library_model(model)
    if found is None:
        return None
    provider, info = found
    if batch and not any(v.when.get("processing") == "batch" for v in (info.price_variants or ())):
        return None
    from datetime import UTC, datetime

    context = {"processing": "batch"} if batch else None
    return provider, info.get_prices(datetime.now(tz=UTC), context)


def _library_price(model: str, prompt_tokens: int, completion_tokens: int, batch: bool) -> float | None:
    rates = _library_rates(model, batch)
    if rates is None:
        return None
    _, prices = rates
    rate_in, rate_out = prices.input_mtok, prices.output_mtok
    if isinstance(rate_in, Decimal) and isinstance(rate_out, Decimal):  # flat rates (the common case): 1 us
        return float((prompt_tokens * rate_in + completion_tokens * rate_out) / _MTOK)
    from genai_prices import Usage  # tiered prices: the library's own calculation (about 200 us)

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        calc = prices.calc_price(Usage(input_tokens=prompt_tokens, output_tokens=completion_tokens))
    return float(calc["total_price"])


class Pricer:
    """Prices calls as ``PricingSettings`` says: override, free kind, library, else unknown."""

    def __init__(self, settings: PricingSettings | None = None) -> None:
        self.settings = settings or PricingSettings()
        self._overrides = {m.model: m for m in self.settings.models}

    def source(self, model: str, *, kind: str = "openai") -> str:
        """Where the price of ``model`` comes from: override | free | genai-prices | unknown."""
        if model in self._overrides:
            return "override"
        if kind in self.settings.free:
            return "free"
        if self.settings.library and _library_model(model) is not None:
            return "genai-prices"
        return "unknown"

    def uses_table(self, model: str, *, kind: str = "openai") -> bool:
        """Whether pricing ``model`` on a ``kind`` backend reads the genai-prices table."""
        return model not in self._overrides and kind not in self.settings.free and self.settings.library

    def warm(self, model: str, *, kind: str = "openai") -> None:
        """Load what pricing ``model`` needs (the genai-prices table: about 0.15 s of CPU) now; run it in a
        worker thread as a backend opens, so the first answered call does not load it on the event loop."""
        self.price(model, 1, 1, kind=kind)

    def price(self, model: str, prompt_tokens: int, completion_tokens: int, *, kind: str = "openai",
              batch: bool = False) -> float | None:
        """US dollars of one call of ``model`` on a ``kind`` backend; None when unknown."""
        prompt_tokens, completion_tokens = max(0, int(prompt_tokens)), max(0, int(completion_tokens))
        over = self._overrides.get(model)
        if over is not None:
            rate_in, rate_out = (over.batch_input, over.batch_output) if batch else (over.input, over.output)
            if rate_in is None or rate_out is None:
                return None
            return (prompt_tokens * rate_in + completion_tokens * rate_out) / _MTOK
        if kind in self.settings.free:
            return 0.0
        if not self.settings.library:
            return None
        return _library_price(model, prompt_tokens, completion_tokens, batch)


_DEFAULT = Pricer()


def price(model: str, prompt_tokens: int, completion_tokens: int, *, batch: bool = False,
          kind: str = "openai") -> float | None:
    """US dollars of one call with the default pricing (the library's table); None when unknown."""
    return _DEFAULT.price(model, prompt_tokens, completion_tokens, kind=kind, batch=batch)
