"""A pytest plugin that counts the requests the tests send through the test client, by status,
for the figures of a security sweep (docs/security-review-2.md):

    pytest -p tests.api.sweep_counter tests/api/test_tenancy_matrix.py

At the end it prints, per test file, the requests, how many were refused (401, 403, 404, 409,
413, 422, 423, 429) and how many answered 5xx. Nothing else changes: requests go through as
they would."""

from __future__ import annotations

import os
from collections import Counter, defaultdict
from collections.abc import Iterator
from typing import Any

import pytest
from starlette.testclient import TestClient

REFUSALS = {400, 401, 403, 404, 405, 409, 410, 413, 415, 422, 423, 429}
_counts: dict[str, Counter[int]] = defaultdict(Counter)
_current = ["?"]


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_call(item: pytest.Item) -> Iterator[None]:
    _current[0] = os.path.basename(str(item.fspath))
    yield


@pytest.fixture(autouse=True, scope="session")
def _count_requests() -> Iterator[None]:
    original = TestClient.request

    def counted(self: TestClient, method: str, url: Any, **kwargs: Any) -> Any:
        try:
            response = original(self, method, url, **kwargs)
        except Exception:
            _counts[_current[0]][599] += 1  # unhandled: the server did not answer
            raise
        _counts[_current[0]][response.status_code] += 1
        return response

    TestClient.request = counted  # type: ignore[method-assign]
    yield
    TestClient.request = original  # type: ignore[method-assign]


def pytest_terminal_summary(terminalreporter: Any) -> None:
    terminalreporter.write_line("")
    terminalreporter.write_line("sweep figures (requests through the test client):")
    for name, counts in sorted(_counts.items()):
        total = sum(counts.values())
        refused = sum(n for code, n in counts.items() if code in REFUSALS)
        fives = sum(n for code, n in counts.items() if code >= 500)
        codes = ", ".join(f"{code}: {n}" for code, n in sorted(counts.items()))
        terminalreporter.write_line(
            f"  {name}: {total} requests, {refused} refused, {fives} 5xx ({codes})"
        )
