"""TOTP second factor (RFC 6238 via pyotp): 30-second steps, 6 digits, a window of ±1 step.

A code is accepted at most once: the step it matched must be later than the last step accepted
for the user (`User.totp_last_step`), so a code seen over someone's shoulder cannot be replayed.
"""

from __future__ import annotations

import hmac
import io

import pyotp
import segno

from facesearch import clock

ISSUER = "facesearch"
INTERVAL = 30
DIGITS = 6
WINDOW = 1


def new_secret() -> str:
    return pyotp.random_base32(length=32)  # 160 bits


def provisioning_uri(secret: str, account: str, issuer: str = ISSUER) -> str:
    return pyotp.TOTP(secret, digits=DIGITS, interval=INTERVAL).provisioning_uri(
        name=account, issuer_name=issuer
    )


def qr_svg(uri: str) -> str:
    """The provisioning URI as an SVG QR code (inline, no external resources)."""
    buffer = io.BytesIO()
    segno.make(uri, error="m").save(buffer, kind="svg", scale=4, xmldecl=False)
    return buffer.getvalue().decode()


def current_step(at: float | None = None) -> int:
    ts = clock.now().timestamp() if at is None else at
    return int(ts // INTERVAL)


def code_at(secret: str, step: int) -> str:
    return pyotp.TOTP(secret, digits=DIGITS, interval=INTERVAL).at(step * INTERVAL)


def match_step(secret: str, code: str, *, last_step: int | None = None) -> int | None:
    """The time step the code belongs to (within ±WINDOW of now and later than `last_step`),
    else None."""
    code = code.strip().replace(" ", "")
    # ASCII digits only: str.isdigit() also accepts Arabic-Indic, full-width and superscript
    # digits, which compare_digest cannot compare (a 500 before)
    if len(code) != DIGITS or not (code.isascii() and code.isdigit()):
        return None
    now_step = current_step()
    found: int | None = None
    for step in range(now_step - WINDOW, now_step + WINDOW + 1):
        if hmac.compare_digest(code_at(secret, step), code) and found is None:
            found = step
    if found is None or (last_step is not None and found <= last_step):
        return None
    return found
