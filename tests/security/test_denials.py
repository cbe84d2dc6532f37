"""Denied attempts are audited, rate-limited per caller (issue 11, Medium 9)."""

from __future__ import annotations

import pytest
from sqlalchemy import select

from facesearch.deployment import Deployment
from facesearch.security import audit, denials
from facesearch.security.actor import Principal
from facesearch.store.audit import AuditEntry


def _principal(user_id: int, key_id: int | None = None) -> Principal:
    return Principal(user_id, 7, frozenset(), frozenset(), key_id, None, "10.0.0.9")


def test_denials_are_recorded_up_to_a_quota_then_counted(
    deployment: Deployment, monkeypatch: pytest.MonkeyPatch
) -> None:
    now = [1000.0]
    monkeypatch.setattr(denials.time, "monotonic", lambda: now[0])
    log = denials.DenialLog(deployment.db, limit=3, window=60)
    prober, other = _principal(1, 11), _principal(2)
    written = [
        log.record(prober, status=404, method="GET", path=f"/api/v1/cases/{n}", reason="no")
        for n in range(10)
    ]
    assert written == [True] * 3 + [False] * 7
    assert log.record(other, status=403, method="POST", path="/x", reason="scope")  # own quota
    now[0] += 61
    assert log.record(prober, status=404, method="GET", path="/api/v1/cases/99", reason="no")
    with deployment.db.session() as s:
        rows = list(s.scalars(select(AuditEntry).where(AuditEntry.action == "access.denied")))
        assert audit.verify_chain(s).ok
    mine = [r for r in rows if r.actor_key_id == 11]
    assert len(mine) == 4 and mine[-1].details["suppressed"] == 7
    assert all(r.org_id == 7 and r.ip == "10.0.0.9" for r in rows)
