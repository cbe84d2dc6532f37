"""Sliding-window rate limiter (thread-safe). One instance per app. The authentication policies
(`PERSISTENT_POLICIES`) are counted in the database when the limiter has a `store`
(`security.throttle.DatabaseHits`, which the app plugs in), so a restart or a second process
shares them; the others (searches) are counted in the process."""

from __future__ import annotations

import math
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from facesearch.config import Settings


@dataclass(frozen=True)
class Limit:
    requests: int
    window_s: float


#: Named policies; an app may replace any of them (tests shrink them).
DEFAULT_LIMITS: dict[str, Limit] = {
    "signin:account": Limit(10, 300.0),
    "signin:address": Limit(30, 300.0),
    "mfa:account": Limit(10, 300.0),
    "invitation:address": Limit(20, 300.0),
    "reset:address": Limit(20, 300.0),
    "search:account": Limit(60, 60.0),
    "search:address": Limit(120, 60.0),
}


def limits_for(settings: Settings) -> dict[str, Limit]:
    """The default policies with the deployment's search limits."""
    return {
        **DEFAULT_LIMITS,
        "search:account": Limit(settings.searches_per_minute_per_account, 60.0),
        "search:address": Limit(settings.searches_per_minute_per_address, 60.0),
    }


#: Policies counted in the database when the limiter has a store.
PERSISTENT_POLICIES = frozenset(
    {"signin:account", "signin:address", "mfa:account", "invitation:address", "reset:address"}
)


class HitStore(Protocol):
    def hit(self, policy: str, subject: str, requests: int, window_s: float) -> float | None: ...


class RateLimiter:
    def __init__(
        self,
        limits: dict[str, Limit] | None = None,
        clock: Callable[[], float] = time.monotonic,
        max_keys: int = 100_000,
        store: HitStore | None = None,
    ) -> None:
        self.limits = dict(DEFAULT_LIMITS if limits is None else limits)
        self.store = store
        self._clock = clock
        self._hits: dict[tuple[str, str], deque[float]] = {}
        self._lock = threading.Lock()
        self._max_keys = max_keys

    def hit(self, policy: str, key: str) -> float | None:
        """Count one request; None when allowed, else the seconds to wait (Retry-After)."""
        limit = self.limits.get(policy)
        if limit is None:
            return None
        if self.store is not None and policy in PERSISTENT_POLICIES:
            return self.store.hit(policy, key, limit.requests, limit.window_s)
        now = self._clock()
        with self._lock:
            bucket = self._hits.get((policy, key))
            if bucket is None:
                if len(self._hits) >= self._max_keys:
                    self._prune(now)
                bucket = self._hits[(policy, key)] = deque()
            while bucket and bucket[0] <= now - limit.window_s:
                bucket.popleft()
            if len(bucket) >= limit.requests:
                return max(1.0, math.ceil(bucket[0] + limit.window_s - now))
            bucket.append(now)
            return None

    def reset(self) -> None:
        with self._lock:
            self._hits.clear()

    def _prune(self, now: float) -> None:
        longest = max((lim.window_s for lim in self.limits.values()), default=0.0)
        for k in [k for k, b in self._hits.items() if not b or b[-1] <= now - longest]:
            del self._hits[k]
