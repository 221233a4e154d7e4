"""The per-socket token bucket (app.ratelimit): pure, driven by explicit times."""

from __future__ import annotations

import pytest

from app.ratelimit import EventLimit, Verdict


def test_burst_then_refuse() -> None:
    limit = EventLimit(rate=10, burst=5, patience=100)
    bucket = limit.new_bucket(now=0.0)
    assert [limit.check(bucket, 0.0) for _ in range(5)] == [Verdict.ALLOW] * 5
    assert limit.check(bucket, 0.0) is Verdict.REFUSE


def test_refills_at_rate_and_caps_at_burst() -> None:
    limit = EventLimit(rate=10, burst=5, patience=100)
    bucket = limit.new_bucket(now=0.0)
    for _ in range(5):
        limit.check(bucket, 0.0)
    assert limit.check(bucket, 0.05) is Verdict.REFUSE  # half a token
    assert limit.check(bucket, 0.1) is Verdict.ALLOW  # one token after 0.1 s
    # A long pause refills to the burst, not beyond it.
    allowed = sum(limit.check(bucket, 100.0) is Verdict.ALLOW for _ in range(20))
    assert allowed == 5


def test_sustained_rate_is_allowed_forever() -> None:
    limit = EventLimit(rate=20, burst=2, patience=3)
    bucket = limit.new_bucket(now=0.0)
    verdicts = {limit.check(bucket, i / 20) for i in range(1, 2000)}
    assert verdicts == {Verdict.ALLOW}


def test_persistent_flooding_drops() -> None:
    limit = EventLimit(rate=1, burst=2, patience=4)
    bucket = limit.new_bucket(now=0.0)
    verdicts = [limit.check(bucket, 0.0) for _ in range(6)]
    assert verdicts == [Verdict.ALLOW, Verdict.ALLOW, Verdict.REFUSE, Verdict.REFUSE,
                        Verdict.REFUSE, Verdict.DROP]


def test_an_allowed_event_resets_patience() -> None:
    limit = EventLimit(rate=1, burst=1, patience=3)
    bucket = limit.new_bucket(now=0.0)
    assert limit.check(bucket, 0.0) is Verdict.ALLOW
    assert limit.check(bucket, 0.0) is Verdict.REFUSE
    assert limit.check(bucket, 0.0) is Verdict.REFUSE
    assert limit.check(bucket, 1.0) is Verdict.ALLOW  # backed off in time
    assert limit.check(bucket, 1.0) is Verdict.REFUSE
    assert limit.check(bucket, 1.0) is Verdict.REFUSE
    assert limit.check(bucket, 1.0) is Verdict.DROP


def test_clock_going_backwards_does_not_mint_tokens() -> None:
    limit = EventLimit(rate=10, burst=1, patience=100)
    bucket = limit.new_bucket(now=5.0)
    assert limit.check(bucket, 5.0) is Verdict.ALLOW
    assert limit.check(bucket, 4.0) is Verdict.REFUSE


def test_retry_after() -> None:
    limit = EventLimit(rate=4, burst=1, patience=100)
    bucket = limit.new_bucket(now=0.0)
    assert limit.retry_after(bucket) == 0.0
    limit.check(bucket, 0.0)
    assert limit.retry_after(bucket) == pytest.approx(0.25)


def test_bucket_is_small() -> None:
    bucket = EventLimit(rate=1, burst=1).new_bucket(0.0)
    assert not hasattr(bucket, "__dict__")


@pytest.mark.parametrize(("rate", "burst"), [(0, 1), (-1, 1), (1, 0)])
def test_rejects_nonsense(rate: float, burst: int) -> None:
    with pytest.raises(ValueError):
        EventLimit(rate=rate, burst=burst)
