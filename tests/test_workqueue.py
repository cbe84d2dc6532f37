"""The fair-share admission queue for model work (issue 11, Medium 8): bounded, a share per
organisation, the next slot to the organisation with the fewest running, 429/503 when full."""

from __future__ import annotations

import threading
import time

import pytest

from facesearch.errors import TooManyRequests, Unavailable
from facesearch.workqueue import FairQueue


def _hold(queue: FairQueue, key: str, release: threading.Event, log: list[str]) -> threading.Thread:
    def run() -> None:
        try:
            with queue.slot(key):
                log.append(key)
                release.wait(10)
        except (TooManyRequests, Unavailable) as exc:
            log.append(f"{key}:{type(exc).__name__}")

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


def _wait_for(predicate: object, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():  # type: ignore[operator]
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.01)


def test_over_the_share_is_429_and_a_full_queue_503_with_retry_after() -> None:
    queue = FairQueue(slots=1, queue_size=1, per_key=2, wait_seconds=5)
    release = threading.Event()
    log: list[str] = []
    threads = [_hold(queue, "a", release, log)]
    _wait_for(lambda: log == ["a"])
    threads.append(_hold(queue, "a", release, log))  # waits
    _wait_for(lambda: queue.snapshot().waiting == {"a": 1})
    with pytest.raises(TooManyRequests) as share, queue.slot("a"):
        pass
    assert share.value.retry_after >= 1
    with pytest.raises(Unavailable) as full, queue.slot("b"):
        pass
    assert full.value.retry_after >= 1
    release.set()
    for t in threads:
        t.join(5)
    assert log == ["a", "a"]
    assert queue.snapshot().running == {} and queue.snapshot().waiting == {}


def test_the_next_slot_goes_to_the_organisation_with_fewest_running() -> None:
    queue = FairQueue(slots=2, queue_size=10, per_key=10, wait_seconds=5)
    first, release = threading.Event(), threading.Event()
    log: list[str] = []
    threads = [_hold(queue, "flood", first, log), _hold(queue, "flood", release, log)]
    _wait_for(lambda: len(log) == 2)
    threads += [_hold(queue, "flood", release, log) for _ in range(5)]
    _wait_for(lambda: queue.snapshot().waiting.get("flood") == 5)
    threads.append(_hold(queue, "other", release, log))  # arrives last
    _wait_for(lambda: queue.snapshot().waiting.get("other") == 1)
    # one slot frees: it goes to "other", not to the five older "flood" requests
    first.set()
    _wait_for(lambda: "other" in log)
    assert log.index("other") == 2
    release.set()
    for t in threads:
        t.join(5)
    assert log.count("flood") == 7 and queue.snapshot().running == {}


def test_a_wait_over_the_limit_is_503() -> None:
    queue = FairQueue(slots=1, queue_size=5, per_key=5, wait_seconds=0.2)
    release = threading.Event()
    log: list[str] = []
    thread = _hold(queue, "a", release, log)
    _wait_for(lambda: log == ["a"])
    started = time.monotonic()
    with pytest.raises(Unavailable), queue.slot("b"):
        pass
    assert time.monotonic() - started < 2
    assert queue.snapshot().waiting == {}
    release.set()
    thread.join(5)
