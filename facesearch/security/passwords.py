"""Password hashing (argon2id via argon2-cffi) and the password policy.

Policy: at least 12 characters, at most 256, not in the list of common passwords shipped with the
package (`common_passwords.txt`), not the account's email address.
"""

from __future__ import annotations

import unicodedata
from functools import lru_cache
from importlib import resources

from argon2 import PasswordHasher, Type
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

MIN_LENGTH = 12
MAX_LENGTH = 256

#: argon2id with the library's RFC 9106 low-memory profile (t=3, m=64 MiB, p=4).
DEFAULT_HASHER = PasswordHasher(type=Type.ID)
HASHER = DEFAULT_HASHER
_LEET = str.maketrans(
    {"@": "a", "4": "a", "3": "e", "1": "i", "!": "i", "0": "o", "$": "s", "5": "s", "7": "t"}
)
_TRAILING = "0123456789!@#$%^&*?.,_-+= "


class PasswordRejected(ValueError):
    """The password does not meet the policy; the message says why."""


@lru_cache(maxsize=1)
def common_passwords() -> frozenset[str]:
    text = (
        resources.files("facesearch.security")
        .joinpath("common_passwords.txt")
        .read_text(encoding="utf-8")
    )
    return frozenset(
        line.strip().lower()
        for line in text.splitlines()
        if line.strip() and not line.startswith("#")
    )


def _normalise(password: str) -> str:
    return unicodedata.normalize("NFKC", password)


def check_policy(password: str, *, email: str | None = None) -> None:
    """Raise PasswordRejected when the password is too short, too common or the email."""
    pw = _normalise(password)
    if len(pw) < MIN_LENGTH:
        raise PasswordRejected(f"the password must have at least {MIN_LENGTH} characters")
    if len(pw) > MAX_LENGTH:
        raise PasswordRejected(f"the password must have at most {MAX_LENGTH} characters")
    lowered = pw.lower()
    common = common_passwords()
    candidates: set[str] = set()
    for variant in (lowered, lowered.replace(" ", "")):
        for form in (variant, variant.strip(_TRAILING)):
            candidates |= {form, form.translate(_LEET)}
    if any(c in common for c in candidates if c):
        raise PasswordRejected(
            "this password is too common (or a common password with a few "
            "characters added); choose another one"
        )
    if len(set(lowered)) < 4:
        raise PasswordRejected("the password repeats too few different characters")
    if email and lowered in {email.lower(), email.lower().split("@")[0]}:
        raise PasswordRejected("the password must not be the email address")


def hash_password(password: str) -> str:
    return HASHER.hash(_normalise(password))


def verify_password(stored_hash: str, password: str) -> bool:
    """Constant-work check of a password against its argon2 hash; never raises on mismatch."""
    try:
        return HASHER.verify(stored_hash, _normalise(password))
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return False


def needs_rehash(stored_hash: str) -> bool:
    try:
        return HASHER.check_needs_rehash(stored_hash)
    except InvalidHashError:
        return True


@lru_cache(maxsize=1)
def _dummy_hash() -> str:
    return HASHER.hash("facesearch-dummy-password-for-timing")


def burn_verify(password: str) -> None:
    """Spend the same work as a real verification, for unknown or locked accounts, so that the
    timing of a failed sign-in does not tell whether an account exists."""
    verify_password(_dummy_hash(), password)
