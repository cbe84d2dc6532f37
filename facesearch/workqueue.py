"""A bounded admission queue with a fair share per organisation, for model work.

Model work (decoding a probe, detection, embedding) is what an attacker can make expensive, so
it runs in a fixed number of slots. A request either gets a slot at once or waits in a bounded
queue; when a slot frees, the organisation with the fewest requests running gets it (the oldest
waiting request first among equals), so a flood by one organisation never starves another's.

Refusals carry a Retry-After estimate from the recent service time:
- an organisation already holding its share (running + waiting) → `TooManyRequests` (429);
- the queue full, or the wait over its limit → `Unavailable` (503).
"""

from __future__ import annotations

import itertools
import math
import threading
import time
from collections import deque
from collections.abc import Hashable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

from facesearch.errors import TooManyRequests, Unavailable


@dataclass
class _Ticket:
    key: Hashable
    seq: int
    granted: bool = False


@dataclass
class QueueStats:
    running: dict[Hashable, int] = field(default_factory=dict)
    waiting: dict[Hashable, int] = field(default_factory=dict)
    refused_share: int = 0
    refused_full: int = 0
    timed_out: int = 0


class FairQueue:
    """`slots` concurrent holders; at most `queue_size` waiting; at most `per_key` running or
    waiting for one key (an organisation); a wait ends after `wait_seconds`."""

    def __init__(self, *, slots: int, queue_size: int, per_key: int, wait_seconds: float) -> None:
        self.slots = max(1, slots)
        self.queue_size = max(0, queue_size)
        self.per_key = max(1, per_key)
        self.wait_seconds = wait_seconds
        self._cond = threading.Condition()
        self._running: dict[Hashable, int] = {}
        self._waiting: dict[Hashable, deque[_Ticket]] = {}
        self._seq = itertools.count()
        self._service_seconds = 1.0  # moving average of how long a slot is held
        self.stats = QueueStats()

    # -- the estimate -----------------------------------------------------------------------------
    def _retry_after(self, ahead: int) -> int:
        return max(1, min(120, math.ceil(self._service_seconds * (ahead + 1) / self.slots)))

    def _total_running(self) -> int:
        return sum(self._running.values())

    def _total_waiting(self) -> int:
        return sum(len(q) for q in self._waiting.values())

    # -- admission --------------------------------------------------------------------------------
    @contextmanager
    def slot(self, key: Hashable) -> Iterator[None]:
        """Hold a slot for `key` while the block runs (raises before it when refused)."""
        self._acquire(key)
        started = time.monotonic()
        try:
            yield
        finally:
            self._release(key, time.monotonic() - started)

    def _acquire(self, key: Hashable) -> None:
        with self._cond:
            mine = self._running.get(key, 0) + len(self._waiting.get(key, ()))
            if mine >= self.per_key:
                self.stats.refused_share += 1
                raise TooManyRequests(self._retry_after(mine))
            if self._total_running() < self.slots and not self._total_waiting():
                self._running[key] = self._running.get(key, 0) + 1
                return
            waiting = self._total_waiting()
            if waiting >= self.queue_size:
                self.stats.refused_full += 1
                raise Unavailable(self._retry_after(waiting))
            ticket = _Ticket(key, next(self._seq))
            self._waiting.setdefault(key, deque()).append(ticket)
            self._dispatch()
            deadline = time.monotonic() + self.wait_seconds
            while not ticket.granted:
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                self._cond.wait(left)
            if ticket.granted:
                return
            queue = self._waiting.get(key)
            if queue is not None and ticket in queue:
                queue.remove(ticket)
                if not queue:
                    del self._waiting[key]
            self.stats.timed_out += 1
            raise Unavailable(self._retry_after(self._total_waiting()))

    def _release(self, key: Hashable, held: float) -> None:
        with self._cond:
            left = self._running.get(key, 0) - 1
            if left > 0:
                self._running[key] = left
            else:
                self._running.pop(key, None)
            self._service_seconds = 0.8 * self._service_seconds + 0.2 * held
            self._dispatch()

    def _dispatch(self) -> None:
        """Give free slots to waiting tickets: fewest running first, then the oldest."""
        granted = False
        while self._waiting and self._total_running() < self.slots:
            key = min(
                self._waiting,
                key=lambda k: (self._running.get(k, 0), self._waiting[k][0].seq),
            )
            queue = self._waiting[key]
            ticket = queue.popleft()
            if not queue:
                del self._waiting[key]
            ticket.granted = True
            self._running[key] = self._running.get(key, 0) + 1
            granted = True
        if granted:
            self._cond.notify_all()

    def snapshot(self) -> QueueStats:
        with self._cond:
            return QueueStats(
                running=dict(self._running),
                waiting={k: len(q) for k, q in self._waiting.items()},
                refused_share=self.stats.refused_share,
                refused_full=self.stats.refused_full,
                timed_out=self.stats.timed_out,
            )
