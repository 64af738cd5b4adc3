"""Typed settings of the batch mode of a backend (``backend.batch``)."""

from __future__ import annotations

from dataclasses import dataclass

from ...core import Settings, setting

__all__ = ["MODES", "BatchSettings"]

MODES = ("online", "batch")


@dataclass(frozen=True)
class BatchSettings(Settings):
    """How a ``backend.mode=batch`` backend collects, submits and waits for turn waves."""

    window: float = setting(30.0, help="a wave not yet full closes when no request joined it, and no result was "
                                       "handed out, for this many seconds (it closes at once when every tree in "
                                       "flight has asked or waits on the model)", gt=0, le=3600)
    retry: str = setting("wave", help="a request that failed or expired inside a batch is retried in the next "
                                      "wave (wave) or online (online)", choices=("wave", "online"))
    max_requests: int = setting(50_000, help="requests per batch file (OpenAI: 50,000); a larger wave is split",
                                ge=1, le=1_000_000)
    max_bytes: int = setting(200 * 1024 * 1024, help="bytes per batch file (OpenAI: 200 MB); a larger wave is "
                                                     "split", ge=1024, le=10 * 1024**3)
    poll_initial: float = setting(1.0, help="seconds before the first status poll (then doubled each poll)",
                                  gt=0, le=3600)
    poll_max: float = setting(60.0, help="longest wait between two status polls, in seconds", gt=0, le=3600)
    completion_window: str = setting("24h", help="the provider's completion window", choices=("24h",))
