from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime

import pytest

from facesearch import clock
from facesearch.security import totp


@pytest.fixture
def frozen() -> Iterator[datetime]:
    moment = datetime(2025, 5, 1, 12, 0, 10, tzinfo=UTC)
    clock.set_clock(lambda: moment)
    yield moment
    clock.set_clock(None)


def test_window_of_one_step(frozen: object) -> None:
    secret = totp.new_secret()
    now = totp.current_step()
    for offset in (-1, 0, 1):
        assert totp.match_step(secret, totp.code_at(secret, now + offset)) == now + offset
    for offset in (-3, -2, 2, 3):
        assert totp.match_step(secret, totp.code_at(secret, now + offset)) is None


def test_replay_refused(frozen: object) -> None:
    secret = totp.new_secret()
    step = totp.current_step()
    code = totp.code_at(secret, step)
    accepted = totp.match_step(secret, code)
    assert accepted == step
    assert totp.match_step(secret, code, last_step=accepted) is None
    # an older code inside the window is refused too once a newer one was used
    assert totp.match_step(secret, totp.code_at(secret, step - 1), last_step=accepted) is None
    assert totp.match_step(secret, totp.code_at(secret, step + 1), last_step=accepted) == step + 1


@pytest.mark.parametrize("junk", ["", "12345", "1234567", "abcdef", "12 34 5x"])
def test_malformed_codes(junk: str, frozen: object) -> None:
    assert totp.match_step(totp.new_secret(), junk) is None


def test_provisioning_uri_and_qr() -> None:
    secret = totp.new_secret()
    uri = totp.provisioning_uri(secret, "a@example.org")
    assert uri.startswith("otpauth://totp/") and f"secret={secret}" in uri
    assert "issuer=facesearch" in uri
    svg = totp.qr_svg(uri)
    assert svg.lstrip().startswith("<svg") and "http://" not in svg.replace(
        "http://www.w3.org/2000/svg", ""
    )
