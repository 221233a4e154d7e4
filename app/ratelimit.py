"""Per-connection event rate limiting: a token bucket (pure, no I/O, no framework).

One :class:`EventLimit` (the policy: rate, burst, patience) is shared by every
socket; each socket holds only a three-slot :class:`TokenBucket`. ``check``
answers whether one more event may run now, and whether the sender has been
flooding long enough that the connection should be dropped.
"""

from __future__ import annotations

from enum import Enum


class Verdict(Enum):
    ALLOW = "allow"
    REFUSE = "refuse"  # answer with an error; the connection stays
    DROP = "drop"  # persistent flooding: disconnect the sender


class TokenBucket:
    """One sender's state: tokens left, when they were counted, refusals in a row."""

    __slots__ = ("refused", "stamp", "tokens")

    def __init__(self, tokens: float, stamp: float) -> None:
        self.tokens = tokens
        self.stamp = stamp
        self.refused = 0


class EventLimit:
    """``rate`` events per second on average, bursts of up to ``burst``.

    A sender refused ``patience`` times in a row (no allowed event between) is
    flooding rather than bursting: :meth:`check` then says ``DROP``. Times are
    monotonic seconds supplied by the caller, so tests need no real clock.
    """

    __slots__ = ("burst", "patience", "rate")

    def __init__(self, rate: float, burst: int, patience: int | None = None) -> None:
        if rate <= 0 or burst < 1:
            raise ValueError("rate must be > 0 and burst >= 1")
        self.rate = float(rate)
        self.burst = float(burst)
        self.patience = patience if patience is not None else max(10, burst)
        if self.patience < 1:
            raise ValueError("patience must be >= 1")

    def new_bucket(self, now: float) -> TokenBucket:
        return TokenBucket(self.burst, now)

    def check(self, bucket: TokenBucket, now: float) -> Verdict:
        elapsed = now - bucket.stamp
        if elapsed > 0:
            tokens = bucket.tokens + elapsed * self.rate
            bucket.tokens = tokens if tokens < self.burst else self.burst
            bucket.stamp = now
        if bucket.tokens >= 1.0:
            bucket.tokens -= 1.0
            bucket.refused = 0
            return Verdict.ALLOW
        bucket.refused += 1
        if bucket.refused >= self.patience:
            return Verdict.DROP
        return Verdict.REFUSE

    def retry_after(self, bucket: TokenBucket) -> float:
        """Seconds until the next event would be allowed."""
        missing = 1.0 - bucket.tokens
        return missing / self.rate if missing > 0 else 0.0
