"""Adaptive concurrency of one endpoint (``backend.adaptive=true``).

``AdaptiveLimiter`` holds the in-flight limit of an endpoint between
``backend.min_concurrency`` and ``backend.concurrency`` (the ceiling) and moves
it by AIMD. It starts at the ceiling: a server that refuses nothing is used
exactly as a fixed limit would use it, with no warm-up (a slow start from the
floor cost a latency-bound run log2(ceiling) round trips). A 429, a 503 or a
timeout multiplies it by ``DECREASE``, once per window: only a call sent after
the last cut can cut again (the calls already sent answer for the old limit).
While calls succeed with the limit in use it grows by one per round trip; it
does not grow for a round trip after a refusal, and near the limit it was
last cut at it grows by a quarter of the usual step (``PROBE``).

Where the server sends rate-limit headers (``RateHeaders``: OpenAI's
``x-ratelimit-limit|remaining|reset-requests|tokens``, ``Retry-After``,
``retry-after-ms``) they steer it directly: the allowed calls per second
(requests per minute, or tokens per minute over the mean tokens per call,
whichever is lower) paces the calls (one every 1/rate seconds) and, times
the mean latency, is the concurrency that uses the whole budget (Little's
law): the limit is set a quarter above it (``HEADROOM``); when nothing is
left (remaining 0, or fewer tokens than a call uses) new calls wait until
enough has been refilled, and a ``Retry-After`` holds new calls as long.
Without headers a refused call keeps its place for a mean latency (a place
freed at once would only be refused again).

``PeakLimiter`` (``_limits``) stays the limiter of ``adaptive=false``.
"""

from __future__ import annotations

import math
import re
import time
from dataclasses import dataclass
from typing import Any, Self

import anyio

from ._faults import retry_after

__all__ = ["DECREASE", "AdaptiveLimiter", "RateHeaders", "duration_s"]

DECREASE = 0.5      # multiplicative decrease on a refusal (a server's bucket banks what the dip leaves)
MAX_PAUSE_S = 60.0  # no header holds calls back longer than this
MAX_HOLD_S = 10.0   # the longest a refused call keeps its place
GROWTH = 1.0       # additive increase per round trip after the first cut
CATCH_UP_S = 0.25   # pacing makes up the admissions it missed this recently (a late loop, no caller ready)
PROBE = 0.25       # share of the additive increase near the limit of the last cut
HEADROOM = 1.25     # limit over the fitting concurrency when the headers pace the calls
_SMOOTH = 0.1       # weight of a new sample in the latency / tokens-per-call means
_DURATION = re.compile(r"(\d+(?:\.\d+)?)(ms|h|m|s)")


def duration_s(value: Any) -> float | None:
    """Seconds of a reset header: ``"1.5"``, ``"20ms"``, ``"6m0s"``, ``"1h2m3.5s"``; None when unreadable."""
    if value is None:
        return None
    text = str(value).strip()
    try:
        number = float(text)
        return number if math.isfinite(number) and number >= 0 else None
    except ValueError:
        pass
    parts = _DURATION.findall(text)
    if not parts or "".join(n + u for n, u in parts) != text:
        return None
    scale = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}
    return sum(float(n) * scale[u] for n, u in parts)


def _number(value: Any) -> float | None:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) and number >= 0 else None


@dataclass(frozen=True)
class RateHeaders:
    """What a reply said about the server's rate limits (None: not sent, or unreadable)."""

    limit_requests: float | None = None
    limit_tokens: float | None = None
    remaining_requests: float | None = None
    remaining_tokens: float | None = None
    reset_requests: float | None = None
    reset_tokens: float | None = None
    retry_after: float | None = None

    @classmethod
    def read(cls, headers: Any) -> RateHeaders:
        if headers is None:
            return cls()
        get = headers.get
        return cls(_number(get("x-ratelimit-limit-requests")), _number(get("x-ratelimit-limit-tokens")),
                   _number(get("x-ratelimit-remaining-requests")), _number(get("x-ratelimit-remaining-tokens")),
                   duration_s(get("x-ratelimit-reset-requests")), duration_s(get("x-ratelimit-reset-tokens")),
                   retry_after(headers))

    @property
    def any(self) -> bool:
        return any(v is not None for v in (self.limit_requests, self.limit_tokens, self.remaining_requests,
                                           self.remaining_tokens))


class AdaptiveLimiter:
    """The in-flight limit of one endpoint, moved by AIMD and by rate-limit headers.

    Used like ``PeakLimiter`` (``async with``; ``in_flight``, ``peak``, ``total``);
    the gateway reports each answer (``answered``), each refusal or timeout
    (``refused``) and the tokens of each call (``used_tokens``)."""

    def __init__(self, ceiling: int, floor: int = 1) -> None:
        self.ceiling, self.floor = ceiling, min(floor, ceiling)
        self.limit = float(self.ceiling)  # the current limit (fractional: additive increase is 1/limit per answer)
        self._limiter = anyio.CapacityLimiter(self.ceiling)
        self.in_flight = 0
        self.peak = 0
        self.cuts = 0                   # multiplicative decreases
        self.refusals = 0               # 429 / 503 / timeouts seen
        self.steered = 0                # answers whose headers set the limit
        self.paused_s = 0.0             # seconds new calls were held back by headers
        self.latency = 0.0              # mean seconds per answered call
        self.tokens_per_call = 0.0      # mean tokens per answered call
        self._last_cut = self._last_refusal = -math.inf
        self._cut_at = math.inf          # the limit when it was last cut
        self._paused_until = 0.0
        self._interval = 0.0            # seconds between admissions the headers' budget allows (0: unknown)
        self._next_at = 0.0             # when the next admission may go (pacing)

    @property
    def total(self) -> int:
        return int(self._limiter.total_tokens)

    def _set(self, value: float, *, up: bool = False) -> None:
        """The limit becomes ``value`` within [floor, ceiling]; calls in flight: its whole part
        (``up``: rounded up, when the headers' fitting concurrency is the target)."""
        self.limit = min(float(self.ceiling), max(float(self.floor), value))
        self._limiter.total_tokens = max(1, math.ceil(self.limit) if up else int(self.limit))

    async def __aenter__(self) -> Self:
        await self._limiter.acquire()
        self.in_flight += 1
        self.peak = max(self.peak, self.in_flight)
        try:
            while (wait := self._paused_until - time.monotonic()) > 0:  # the server said: nothing left for now
                await anyio.sleep(wait)
            if self._interval > 0:  # paced at the rate the headers allow: no burst after a pause either
                now = time.monotonic()
                at = max(now - CATCH_UP_S, self._next_at)  # a slot missed in the last CATCH_UP_S is made up
                self._next_at = at + self._interval
                if at > now:
                    await anyio.sleep(at - now)
        except BaseException:
            await self.__aexit__()
            raise
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.in_flight -= 1
        self._limiter.release()

    def _pause(self, seconds: float) -> None:
        now = time.monotonic()
        until = now + min(seconds, MAX_PAUSE_S)
        if until > self._paused_until:
            self.paused_s += until - max(now, self._paused_until)
            self._paused_until = until

    def answered(self, latency: float, headers: Any = None) -> None:
        """A call came back (call it before leaving the limit): grow, or follow the headers."""
        self.latency = latency if self.latency == 0 else self.latency + _SMOOTH * (latency - self.latency)
        rate = RateHeaders.read(headers)
        if rate.any and self._steer(rate):
            return
        if self.in_flight < self.total - 1:  # the limit is not what holds calls back: no reason to grow
            return
        if time.monotonic() - self._last_refusal < self.latency:  # refused within a round trip: no room
            return
        # +GROWTH per round trip (1/limit per answer), near the limit of the last cut only PROBE of that
        # (the refusals come where it overshoots)
        step = GROWTH / self.limit
        self._set(self.limit + (step * PROBE if self.limit >= self._cut_at * 0.9 else step))

    def used_tokens(self, tokens: int) -> None:
        """The tokens (prompt + completion) an answered call used."""
        if tokens > 0:
            m = self.tokens_per_call
            self.tokens_per_call = float(tokens) if m == 0 else m + _SMOOTH * (tokens - m)

    def refused(self, headers: Any = None, *, sent_at: float | None = None) -> float:
        """A 429, a 503 or a timeout: cut the limit (once per window), hold calls for Retry-After.
        ``sent_at``: when the refused call was sent (``time.monotonic()``); a call sent before the
        last cut does not cut again (without it: not within a mean latency of the last cut).
        Returns how long the refused call should keep its place: a refusal comes back at once, and
        a place freed at once would only be refused again (a place stands for one call per round trip)."""
        self.refusals += 1
        self._last_refusal = time.monotonic()
        rate = RateHeaders.read(headers)
        if rate.retry_after is not None:
            self._pause(rate.retry_after)
        elif rate.any:
            self._steer(rate)
        now = time.monotonic()
        hold = 0.0 if rate.retry_after is not None or self._interval > 0 else min(self.latency, MAX_HOLD_S)
        if (sent_at < self._last_cut) if sent_at is not None else (now - self._last_cut < max(self.latency, 0.001)):
            return hold
        self._last_cut = now
        self.cuts += 1
        self._cut_at = self.limit
        self._set(self.limit * DECREASE)
        return hold

    def _steer(self, rate: RateHeaders) -> bool:
        """Set the limit from the headers; True when they said enough to do so."""
        per_s = []
        if rate.limit_requests:
            per_s.append(rate.limit_requests / 60.0)
        if rate.limit_tokens and self.tokens_per_call > 0:
            per_s.append(rate.limit_tokens / 60.0 / self.tokens_per_call)
        if rate.remaining_requests is not None and rate.remaining_requests < 1:
            refill = (1 - rate.remaining_requests) / per_s[0] if rate.limit_requests else rate.reset_requests
            self._pause(refill or 0.0)
        if rate.remaining_tokens is not None and rate.remaining_tokens < max(self.tokens_per_call, 1):
            need = max(self.tokens_per_call, 1) - rate.remaining_tokens
            refill = need / (rate.limit_tokens / 60.0) if rate.limit_tokens else rate.reset_tokens
            self._pause(refill or 0.0)
        if not per_s or self.latency <= 0:
            return False
        self.steered += 1
        self._interval = 1.0 / min(per_s)
        # the pacing holds the rate; the limit leaves room above the fitting concurrency for slower replies
        self._set(min(per_s) * self.latency * HEADROOM, up=True)
        return True

    def as_dict(self) -> dict[str, Any]:
        """What the run's stats keep of this limit."""
        return {"limit": self.total, "min": self.floor, "max": self.ceiling,
                "peak": self.peak, "cuts": self.cuts, "refusals": self.refusals, "steered": self.steered,
                "paused_s": round(self.paused_s, 2)}
