"""The pacer keeps every published Teams window and drains as fast as they allow."""

from collections import deque

from connector.pacing import THREAD_WINDOWS, Pacer, SlidingWindowLimiter


def violations(times: list[float], windows) -> list[str]:
    bad = []
    for limit, span in windows:
        j = 0
        for i, t in enumerate(times):
            while times[j] <= t - span:
                j += 1
            if i - j + 1 > limit:
                bad.append(f"{i - j + 1} sends within {span}s ending at {t:.3f}")
    return bad


def test_thread_burst_respects_every_window_and_is_tight() -> None:
    now = [0.0]
    pacer = Pacer(clock=lambda: now[0], margin=0.0)
    slots = [pacer.reserve(["thread:a"]) for _ in range(200)]
    assert violations(slots, THREAD_WINDOWS) == []
    # Fastest schedule by hand: 7 at t=0, the 8th at t=1 (7/1s), then 60 per 30 s sustained.
    assert slots[6] == 0.0 and slots[7] == 1.0
    assert slots[60] == 30.0  # the 61st send waits for the first to leave the 30 s window
    assert slots[-1] <= 3 * 30.0 + 30.0


def test_tenant_limit_spreads_over_channels() -> None:
    now = [0.0]
    pacer = Pacer(clock=lambda: now[0], margin=0.0)
    slots = [pacer.reserve([f"thread:{i % 20}", "tenant:t"]) for i in range(400)]
    assert violations(sorted(slots), ((50, 1.0),)) == []
    assert max(slots) >= 7.0  # 400 sends at 50/s take at least 7 s after the first second


def test_margin_and_penalty() -> None:
    now = [10.0]
    pacer = Pacer(clock=lambda: now[0], margin=0.1)
    pacer.penalize("thread:a", 5.0)
    assert pacer.reserve(["thread:a"]) == 15.0
    lim = SlidingWindowLimiter(((1, 1.0),), margin=0.1)
    lim.record(0.0)
    assert lim.next_slot(0.0) == 1.1


def test_backlog_estimate_does_not_reserve() -> None:
    pacer = Pacer(clock=lambda: 0.0, margin=0.0)
    assert pacer.backlog_seconds("thread:x", 61) == 30.0
    assert pacer.reserve(["thread:x"]) == 0.0


def test_settle_counts_a_slow_send_at_its_completion() -> None:
    now = [0.0]
    pacer = Pacer(clock=lambda: now[0], margin=0.0, thread_windows=((2, 1.0),), tenant_windows=((100, 1.0),))
    first = pacer.reserve(["thread:a"])
    now[0] = 0.6  # the first post took 0.6 s (token, connection): Teams saw it arrive late
    pacer.settle(["thread:a"], first)
    pacer.reserve(["thread:a"])
    # without settling, the third send would fit at t=1.0; Teams would count 0.6 and 1.0 inside (0.0, 1.0]+...
    assert pacer.reserve(["thread:a"]) == 1.6


def test_next_slot_terminates_on_floating_point_edges() -> None:
    """Regression: 4068.302060597 + 30.05 - 30.05 < 4068.302060597 made next_slot loop forever."""
    a = 4068.302060597
    lim = SlidingWindowLimiter(THREAD_WINDOWS, 0.05, deque([a] + [a + 10 + i * 0.1 for i in range(59)]))
    t = lim.next_slot(a + 1)
    assert t >= a + 30.05
    # and over many arbitrary floats (what settle() produces) every call returns a slot that fits
    import random

    rng = random.Random(7)
    lim = SlidingWindowLimiter(THREAD_WINDOWS, 0.05)
    now = 1000.0 + rng.random()
    times = []
    for _ in range(500):
        slot = lim.next_slot(now)
        lim.record(slot)
        lim.settle(slot, slot + rng.random() * 0.3)
        times.append(slot)
        now = slot + rng.random() * 0.01
    assert times == sorted(times)
