"""Property-based run over the app's OpenAPI document (schemathesis + hypothesis) with valid
credentials: no request may answer 5xx. Bounded: 25 positive and 10 negative examples per
operation. Prints the number of requests and the status-code counts."""

from __future__ import annotations

import time
from collections import Counter
from typing import Any

import pytest
import schemathesis
from fastapi import FastAPI
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode

from facesearch.api.public_routes import PUBLIC_ROUTES
from facesearch.deployment import Deployment
from facesearch.ingest.jobs import runner_for
from tests.api.casework_world import LEGAL
from tests.api.conftest import MakeUser

ALL_SCOPES = ["search", "ingest", "review", "audit", "admin"]
ROLES = ["org_admin", "investigator", "reviewer", "auditor", "ingestor"]
POSITIVE, NEGATIVE = 25, 10


class Credentials:
    """An API key holding every scope; replaced when a fuzzed request revoked or disabled it."""

    def __init__(self, make_user: MakeUser) -> None:
        self.make_user = make_user
        self.renewed = 0
        self.header = self._new()

    def _new(self) -> dict[str, str]:
        user = self.make_user("Fuzz Org", ROLES)
        reply = user.client.post(
            "/api/v1/collections",
            json={
                "name": f"fuzz-{time.monotonic_ns()}",
                "legal_basis": LEGAL,
                "retention_days": 30,
            },
        )
        assert reply.status_code == 201, reply.text
        return {"Authorization": f"Bearer {user.api_key(ALL_SCOPES)}"}

    def renew(self) -> None:
        self.renewed += 1
        self.header = self._new()


def test_no_5xx_over_the_openapi_document(
    module_deployment: Deployment, module_app: FastAPI, module_make_user: MakeUser
) -> None:
    creds = Credentials(module_make_user)
    schema = schemathesis.openapi.from_asgi("/api/v1/openapi.json", module_app)
    operations = [result.ok() for result in schema.get_all_operations()]
    statuses: Counter[int] = Counter()
    failures: list[str] = []
    skipped: list[str] = []
    started = time.monotonic()

    def check(case: Any) -> None:
        try:
            response = case.call(headers=dict(creds.header))
        except Exception as exc:  # the test client re-raises what the server did not handle
            statuses[500] += 1
            failures.append(
                f"{case.method} {case.formatted_path} query={case.query} -> "
                f"unhandled {type(exc).__name__}: {exc}"
            )
            return
        statuses[response.status_code] += 1
        if response.status_code >= 500:
            failures.append(
                f"{case.method} {case.formatted_path} -> {response.status_code}: "
                f"{response.text[:200]}"
            )
        if response.status_code == 401 and (case.method.upper(), case.path) not in PUBLIC_ROUTES:
            creds.renew()  # the fuzzer revoked our key or disabled our user: carry on

    for operation in operations:
        for mode, examples in (
            (GenerationMode.POSITIVE, POSITIVE),
            (GenerationMode.NEGATIVE, NEGATIVE),
        ):
            try:
                strategy = operation.as_strategy(generation_mode=mode)
            except Exception:  # an operation with nothing to negate
                continue

            @settings(
                max_examples=examples,
                deadline=None,
                database=None,
                phases=[Phase.generate],
                suppress_health_check=list(HealthCheck),
            )
            @given(case=strategy)
            def run(case: Any) -> None:
                check(case)

            try:
                run()
            except Unsatisfiable:  # no invalid input exists (an operation without parameters)
                skipped.append(f"{operation.method.upper()} {operation.path} {mode.value}")
    runner_for(module_deployment).wait_idle(60)
    total = sum(statuses.values())
    seconds = time.monotonic() - started
    print(
        f"\nfuzzed {len(operations)} operations: {total} requests in {seconds:.1f} s; "
        f"credentials renewed {creds.renewed} times"
    )
    print(f"operations without negative cases: {len(skipped)}")
    print("status counts: " + ", ".join(f"{code}: {n}" for code, n in sorted(statuses.items())))
    assert total >= len(operations) * 10
    assert not failures, "\n".join(failures[:20])


@pytest.fixture(autouse=True)
def _quiet_limits(module_app: FastAPI) -> None:
    """The search limiter would answer most fuzzed searches 429; keep it generous here."""
    from facesearch.security.ratelimit import Limit

    module_app.state.limiter.limits["search:account"] = Limit(100_000, 60.0)
    module_app.state.limiter.limits["search:address"] = Limit(100_000, 60.0)
