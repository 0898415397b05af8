"""The package's one retry policy: exponential backoff with jitter.

Used by the compare-and-swap loops of :mod:`warden.store.gcs` (small delays: a lost race is
resolved in milliseconds) and by the alert receivers (seconds: a webhook that answered 5xx or 429).
Each caller picks its own numbers; the shape is the same. Google's own calls retry inside the
client libraries (``google.api_core.retry``); this is only for Warden's loops.

Foundation: imports nothing from Warden.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from dataclasses import dataclass

__all__ = ["Backoff"]


@dataclass(frozen=True)
class Backoff:
    """Before retry ``n`` (0 after the first failure) wait a random time between ``floor`` and 1
    times ``min(cap, base * 2**n)`` seconds (``floor`` 0: full jitter, 0.5: equal jitter); at
    most ``attempts`` tries in all."""

    base: float = 0.005
    cap: float = 0.5
    attempts: int = 25
    floor: float = 0.0

    def delay(self, retry: int) -> float:
        spread = self.floor + (1.0 - self.floor) * random.random()  # noqa: S311 - jitter only
        return min(self.cap, self.base * 2.0**retry) * spread

    def pause(self, retry: int, sleep: Callable[[float], None] = time.sleep) -> None:
        sleep(self.delay(retry))
