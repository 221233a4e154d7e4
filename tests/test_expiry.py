"""The one expiry scheduler (app.expiry): timer wheel semantics, and its driver on real time."""

from __future__ import annotations

import asyncio
import math
import time

from app.clock import FrozenClock, SystemClock
from app.expiry import ExpiryScheduler
from tests.support.waiting import wait_for, wait_future

T0 = 1_800_000_000.0


class Recorder:
    def __init__(self, clock: SystemClock | FrozenClock) -> None:
        self.clock = clock
        self.notices: list[tuple[str, int, float]] = []
        self.expiries: list[tuple[str, int, float]] = []

    async def notice(self, key: str, exp: int) -> None:
        self.notices.append((key, exp, self.clock.now()))

    async def expire(self, key: str, exp: int) -> None:
        self.expiries.append((key, exp, self.clock.now()))


def make(clock: SystemClock | FrozenClock, notice: float = 10) -> tuple[ExpiryScheduler[str],
                                                                        Recorder]:
    rec = Recorder(clock)
    return ExpiryScheduler(clock, notice=notice, on_notice=rec.notice,
                           on_expire=rec.expire), rec


def test_notice_then_expiry_in_time_order() -> None:
    clock = FrozenClock(T0)
    sched, _ = make(clock, notice=10)
    sched.schedule("a", int(T0) + 100)
    sched.schedule("b", int(T0) + 50)
    assert sched.next_due() == int(T0) + 40
    assert sched.pop_due(T0 + 39.9) == ([], [])
    assert sched.pop_due(T0 + 40) == ([("b", int(T0) + 50)], [])
    assert sched.pop_due(T0 + 95) == ([("a", int(T0) + 100)], [("b", int(T0) + 50)])
    assert sched.pop_due(T0 + 100) == ([], [("a", int(T0) + 100)])
    assert len(sched) == 0 and sched.next_due() is None


def test_token_already_in_notice_window_gets_notice_at_once() -> None:
    clock = FrozenClock(T0)
    sched, _ = make(clock, notice=60)
    sched.schedule("a", int(T0) + 3)
    assert sched.pop_due(T0) == ([("a", int(T0) + 3)], [])
    assert sched.pop_due(T0 + 3) == ([], [("a", int(T0) + 3)])


def test_zero_notice_means_no_notice() -> None:
    clock = FrozenClock(T0)
    sched, _ = make(clock, notice=0)
    sched.schedule("a", int(T0) + 3)
    assert sched.pop_due(T0 + 3) == ([], [("a", int(T0) + 3)])


def test_same_exp_again_is_a_noop_and_notice_is_not_repeated() -> None:
    clock = FrozenClock(T0)
    sched, _ = make(clock, notice=10)
    exp = int(T0) + 20
    sched.schedule("a", exp)
    assert sched.pop_due(T0 + 10) == ([("a", exp)], [])
    clock.advance(11)
    sched.schedule("a", exp)  # the same token re-sent on refresh
    assert sched.pop_due(T0 + 19) == ([], [])
    assert sched.pop_due(T0 + 20) == ([], [("a", exp)])


def test_reschedule_moves_both_timers() -> None:
    clock = FrozenClock(T0)
    sched, _ = make(clock, notice=10)
    sched.schedule("a", int(T0) + 20)
    sched.schedule("a", int(T0) + 200)
    assert sched.scheduled("a") == int(T0) + 200
    assert sched.pop_due(T0 + 100) == ([], [])  # neither old timer fires
    assert sched.pop_due(T0 + 190) == ([("a", int(T0) + 200)], [])
    assert sched.pop_due(T0 + 200) == ([], [("a", int(T0) + 200)])
    assert len(sched) == 0


def test_notice_is_dropped_when_the_token_is_already_due() -> None:
    clock = FrozenClock(T0)
    sched, _ = make(clock, notice=10)
    sched.schedule("a", int(T0) + 20)
    # The driver was late: both are due; ending the socket makes a notice pointless.
    assert sched.pop_due(T0 + 25) == ([], [("a", int(T0) + 20)])


def test_cancel_leaves_nothing_behind() -> None:
    clock = FrozenClock(T0)
    sched, _ = make(clock, notice=10)
    for i in range(1000):
        sched.schedule(f"k{i}", int(T0) + 100 + i % 7)
        sched.schedule(f"k{i}", int(T0) + 200 + i % 5)  # a refresh
    for i in range(1000):
        sched.cancel(f"k{i}")
    sched.cancel("never-scheduled")
    assert len(sched) == 0
    assert sched.next_due() is None
    assert sched.pop_due(T0 + 10_000) == ([], [])


def test_many_keys_share_one_bucket() -> None:
    clock = FrozenClock(T0)
    sched, _ = make(clock, notice=0)
    for i in range(5000):
        sched.schedule(f"k{i}", int(T0) + 5)
    notices, expiries = sched.pop_due(T0 + 5)
    assert notices == [] and len(expiries) == 5000


async def test_driver_follows_a_moved_clock() -> None:
    clock = FrozenClock(T0)
    sched, rec = make(clock, notice=10)
    task = asyncio.create_task(sched.run())
    try:
        sched.schedule("a", int(T0) + 30)
        await asyncio.sleep(0.05)
        assert rec.notices == [] and rec.expiries == []
        clock.advance(20)
        sched.wake()
        await wait_for(lambda: rec.notices, 2.0, message="notice")
        assert rec.expiries == []
        clock.advance(10)
        sched.wake()
        await wait_for(lambda: rec.expiries, 2.0, message="expiry")
        assert [k for k, _, _ in rec.notices] == ["a"]
        assert [k for k, _, _ in rec.expiries] == ["a"]
    finally:
        task.cancel()


async def test_driver_fires_on_real_time_within_bounds() -> None:
    clock = SystemClock()
    sched, rec = make(clock, notice=1)
    task = asyncio.create_task(sched.run())
    try:
        exp = math.ceil(time.time()) + 2
        sched.schedule("a", exp)
        await wait_for(lambda: rec.expiries, 4.0, message="expiry")
        (_, notice_exp, notice_at), = rec.notices
        (_, expired_exp, expired_at), = rec.expiries
        assert notice_exp == expired_exp == exp
        assert exp - 1 <= notice_at < exp - 1 + 0.25
        assert exp <= expired_at < exp + 0.25
    finally:
        task.cancel()


async def test_earlier_entry_wakes_a_sleeping_driver() -> None:
    clock = SystemClock()
    sched, rec = make(clock, notice=0)
    sched._max_sleep = 60.0  # so only the wake-up can explain a timely expiry
    task = asyncio.create_task(sched.run())
    try:
        sched.schedule("late", math.ceil(time.time()) + 50)
        await asyncio.sleep(0.05)
        exp = math.ceil(time.time()) + 1
        sched.schedule("soon", exp)
        await wait_for(lambda: rec.expiries, 3.0, message="expiry")
        assert rec.expiries[0][0] == "soon" and rec.expiries[0][2] < exp + 0.25
    finally:
        task.cancel()


async def test_five_thousand_expiring_together_end_within_a_second() -> None:
    clock = SystemClock()
    sched, rec = make(clock, notice=0)
    task = asyncio.create_task(sched.run())
    try:
        exp = math.ceil(time.time()) + 1
        for i in range(5000):
            sched.schedule(f"k{i}", exp)
        await wait_for(lambda: len(rec.expiries) == 5000, 4.0, message="5000 expiries")
        assert max(at for _, _, at in rec.expiries) < exp + 1.0
        assert len(sched) == 0
    finally:
        task.cancel()


async def test_failing_callback_does_not_stop_the_batch() -> None:
    clock = FrozenClock(T0)
    ended: list[str] = []

    async def expire(key: str, exp: int) -> None:
        if key == "bad":
            raise RuntimeError("boom")
        ended.append(key)

    async def notice(key: str, exp: int) -> None:
        return None

    sched: ExpiryScheduler[str] = ExpiryScheduler(clock, notice=0, on_notice=notice,
                                                  on_expire=expire)
    for key in ("a", "bad", "b"):
        sched.schedule(key, int(T0) + 1)
    task = asyncio.create_task(sched.run())
    try:
        clock.advance(1)
        sched.wake()
        await wait_for(lambda: len(ended) == 2, 2.0, message="both good keys")
        assert sorted(ended) == ["a", "b"]
        assert not task.done()
    finally:
        task.cancel()


async def test_cancelling_the_driver_stops_it() -> None:
    sched, _ = make(SystemClock(), notice=0)
    task = asyncio.create_task(sched.run())
    await asyncio.sleep(0)
    task.cancel()
    try:
        await wait_future(task, 1.0, "driver to stop")
    except asyncio.CancelledError:
        pass
    assert task.cancelled()


def test_gc_paused_restores_the_collector() -> None:
    import gc

    from app.expiry import gc_paused

    assert gc.isenabled()
    with gc_paused():
        assert not gc.isenabled()
        with gc_paused():  # nested: the outer one owns the pause
            assert not gc.isenabled()
        assert not gc.isenabled()
    assert gc.isenabled()
    with gc_paused(False):
        assert gc.isenabled()
    try:
        with gc_paused():
            raise RuntimeError("boom")
    except RuntimeError:
        pass
    assert gc.isenabled()
