from __future__ import annotations

import time

import pytest

from facesearch.security import passwords


def test_argon2id_roundtrip() -> None:
    stored = passwords.hash_password("correct horse battery staple")
    assert stored.startswith("$argon2id$")
    assert passwords.verify_password(stored, "correct horse battery staple")
    assert not passwords.verify_password(stored, "correct horse battery stapl")
    assert not passwords.verify_password("not a hash", "anything at all")


def test_default_parameters_are_strong() -> None:
    hasher = passwords.DEFAULT_HASHER  # (tests/api swaps a cheap one into HASHER)
    assert hasher.type.name == "ID"
    assert hasher.memory_cost >= 19 * 1024
    assert hasher.time_cost >= 2


@pytest.mark.parametrize(
    "bad",
    [
        "short",
        "elevenchars",
        "passwordpassword",
        "Password1234",
        "qwertyuiop123",
        "1234567890123",
        "iloveyou2024!",
        "aaaaaaaaaaaaaaa",
        "abababababab",
        "P@ssw0rd2025!!",
        "Monkey123456789",
        "!!!Dragon2024",
        "my  password 1",
    ],
)
def test_policy_rejects(bad: str) -> None:
    with pytest.raises(passwords.PasswordRejected):
        passwords.check_policy(bad)


def test_policy_rejects_email() -> None:
    with pytest.raises(passwords.PasswordRejected):
        passwords.check_policy("investigator.one@example.org", email="investigator.one@example.org")


@pytest.mark.parametrize(
    "good", ["correct horse battery staple", "Tr0ub4dor&3-lenient", "eine lange Passphrase"]
)
def test_policy_accepts(good: str) -> None:
    passwords.check_policy(good)


def test_common_list_is_shipped_and_large() -> None:
    common = passwords.common_passwords()
    assert len(common) > 3000
    assert "password" in common and "qwerty123456" in common


def test_burn_verify_costs_like_a_real_check() -> None:
    stored = passwords.hash_password("some long password here")
    t0 = time.perf_counter()
    for _ in range(5):
        passwords.verify_password(stored, "wrong password guess")
    real = time.perf_counter() - t0
    passwords.burn_verify("warm up")
    t0 = time.perf_counter()
    for _ in range(5):
        passwords.burn_verify("wrong password guess")
    burned = time.perf_counter() - t0
    assert burned > real / 5
