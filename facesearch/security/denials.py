"""Denied attempts on the record (issue 11, Medium 9): a 403 or 404 answered to an authenticated
caller (another tenant's object, a missing scope or role) becomes an `access.denied` audit entry.

The request's own transaction has been rolled back by then, so the entry is written in a session
of its own. Each caller (user and key) gets at most `limit` entries per `window` seconds; what
is left out is counted and reported in the caller's next entry (`suppressed`), so a caller who
probes ids by the thousand cannot flood the log, and the log still shows that it happened."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field

from facesearch.security import audit
from facesearch.security.actor import Actor
from facesearch.store.db import Database


@dataclass
class _Window:
    start: float
    recorded: int = 0
    suppressed: int = 0


@dataclass
class DenialLog:
    db: Database
    limit: int = 20
    window: float = 600.0
    _windows: dict[tuple[int | None, int | None], _Window] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def _admit(self, key: tuple[int | None, int | None]) -> tuple[bool, int]:
        """Whether to write an entry for this caller now, and how many were left out before."""
        now = time.monotonic()
        with self._lock:
            if len(self._windows) > 10_000:  # forget finished windows
                self._windows = {
                    k: w for k, w in self._windows.items() if now - w.start < self.window
                }
            win = self._windows.get(key)
            if win is None or now - win.start >= self.window:
                left_out = win.suppressed if win else 0
                win = self._windows[key] = _Window(now)
                win.recorded = 1
                return True, left_out
            if win.recorded < self.limit:
                win.recorded += 1
                left_out, win.suppressed = win.suppressed, 0
                return True, left_out
            win.suppressed += 1
            return False, 0

    def record(self, actor: Actor, *, status: int, method: str, path: str, reason: str) -> bool:
        """Write the `access.denied` entry (unless the caller's quota is spent); True if it did."""
        admitted, left_out = self._admit((actor.user_id, actor.api_key_id))
        if not admitted:
            return False
        details: dict[str, object] = {
            "status": status,
            "method": method,
            "path": path[:300],
            "reason": reason[:200],
        }
        if left_out:
            details["suppressed"] = left_out
        with self.db.session() as s:
            audit.record_for(s, actor, "access.denied", target_type="request", details=details)
        return True
