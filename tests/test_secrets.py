"""Unit tests of `secrets`: keys, encryption at rest, event tokens, signing, fingerprints."""

from __future__ import annotations

import base64
import hashlib
import re

import pytest

from together_reconcile.secrets import (
    MISSING_KEYS_MESSAGE,
    DecryptionError,
    Keyring,
    SecretKeysError,
    fingerprint,
    generate_key,
)

BAD_KEY_MESSAGE = (
    "entry {n} of TOGETHER_SECRET_KEYS is not a valid key (expected the url-safe base64 of 32 "
    'bytes, as printed by "together-reconcile keygen")'
)


@pytest.fixture
def old_key() -> str:
    return generate_key()


@pytest.fixture
def new_key() -> str:
    return generate_key()


# Keys ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("value", [None, "", "   ", "\n"])
def test_missing_keys_say_how_to_make_one(value: str | None) -> None:
    with pytest.raises(SecretKeysError) as raised:
        Keyring.from_env(value)
    assert str(raised.value) == (
        'TOGETHER_SECRET_KEYS is not set: run "together-reconcile keygen" and export '
        "TOGETHER_SECRET_KEYS=<key>"
    )
    assert str(raised.value) == MISSING_KEYS_MESSAGE


@pytest.mark.parametrize(
    "bad",
    [
        "not-a-key-at-all",
        base64.urlsafe_b64encode(b"x" * 31).decode(),  # 31 bytes
        base64.urlsafe_b64encode(b"x" * 33).decode(),  # 33 bytes
        base64.b64encode(b"\xfb" * 32).decode(),  # standard alphabet (+ and /), not url-safe
        "clé" * 15,  # non-ASCII
        "",  # an empty entry (two commas)
    ],
)
def test_malformed_key_names_its_position_never_its_value(new_key: str, bad: str) -> None:
    with pytest.raises(SecretKeysError) as raised:
        Keyring.from_env(f"{new_key},{bad}")
    assert str(raised.value) == BAD_KEY_MESSAGE.format(n=2)
    if bad:
        assert bad not in str(raised.value)
    assert new_key not in str(raised.value)


def test_first_entry_position_is_one() -> None:
    with pytest.raises(SecretKeysError) as raised:
        Keyring.from_env("nope")
    assert str(raised.value) == BAD_KEY_MESSAGE.format(n=1)


def test_keys_are_trimmed_and_counted(new_key: str, old_key: str) -> None:
    keyring = Keyring.from_env(f" {new_key} , {old_key}\n")
    assert keyring.key_count == 2
    assert new_key not in repr(keyring)


def test_generate_key_is_a_fernet_key_and_fresh() -> None:
    key = generate_key()
    assert len(base64.urlsafe_b64decode(key)) == 32
    assert Keyring.from_env(key).key_count == 1
    assert generate_key() != key


# Encryption at rest ---------------------------------------------------------------------------


def test_encrypt_round_trips_and_hides_plaintext(new_key: str) -> None:
    keyring = Keyring.from_env(new_key)
    ciphertext = keyring.encrypt("shpat_0123456789abcdef")
    assert "shpat" not in ciphertext
    assert keyring.decrypt(ciphertext) == "shpat_0123456789abcdef"
    assert keyring.encrypt("same") != keyring.encrypt("same")  # random IV


def test_old_key_still_decrypts_and_reencrypt_moves_to_newest(new_key: str, old_key: str) -> None:
    before = Keyring.from_env(old_key)
    ciphertext = before.encrypt("refresh-me")
    rotated_keyring = Keyring.from_env(f"{new_key},{old_key}")
    assert rotated_keyring.decrypt(ciphertext) == "refresh-me"
    rotated = rotated_keyring.reencrypt(ciphertext)
    assert Keyring.from_env(new_key).decrypt(rotated) == "refresh-me"
    with pytest.raises(DecryptionError):
        Keyring.from_env(new_key).decrypt(ciphertext)


def test_decrypt_with_unknown_key_or_garbage_says_what_to_do(new_key: str, old_key: str) -> None:
    ciphertext = Keyring.from_env(old_key).encrypt("secret-value")
    for garbage in (ciphertext, "garbage", "é", ""):
        with pytest.raises(DecryptionError) as raised:
            Keyring.from_env(new_key).decrypt(garbage)
        assert "restore the key" in str(raised.value)
        assert "secret-value" not in str(raised.value)


# Event tokens ---------------------------------------------------------------------------------


def test_event_token_is_versioned_and_url_safe(new_key: str) -> None:
    token = Keyring.from_env(new_key).event_token("acme.gorgias.com")
    assert re.fullmatch(r"v1\.[A-Za-z0-9_-]{43}", token)


def test_event_token_is_deterministic_and_case_insensitive(new_key: str) -> None:
    keyring = Keyring.from_env(new_key)
    token = keyring.event_token("Acme.Gorgias.com")
    assert token == Keyring.from_env(new_key).event_token("acme.gorgias.com")
    assert keyring.verify_event_token("ACME.GORGIAS.COM", token)


def test_event_token_from_old_key_verifies_after_rotation(new_key: str, old_key: str) -> None:
    old_token = Keyring.from_env(old_key).event_token("acme.gorgias.com")
    rotated = Keyring.from_env(f"{new_key},{old_key}")
    assert rotated.verify_event_token("acme.gorgias.com", old_token)
    assert rotated.event_token("acme.gorgias.com") != old_token  # newest key derives
    assert not Keyring.from_env(new_key).verify_event_token("acme.gorgias.com", old_token)


def test_token_for_account_a_fails_for_account_b(new_key: str) -> None:
    keyring = Keyring.from_env(new_key)
    token_a = keyring.event_token("a.gorgias.com")
    assert keyring.verify_event_token("a.gorgias.com", token_a)
    assert not keyring.verify_event_token("b.gorgias.com", token_a)


def test_event_token_is_not_the_key_or_a_plain_hash(new_key: str) -> None:
    keyring = Keyring.from_env(new_key)
    token = keyring.event_token("acme.gorgias.com")
    assert new_key.rstrip("=") not in token
    plain = hashlib.sha256(b"acme.gorgias.com").digest()
    assert base64.urlsafe_b64encode(plain).decode().rstrip("=") not in token


@pytest.mark.parametrize(
    "garbage",
    [
        "",
        "v1.",
        "v1.é",
        "ünïcödé",
        "\x00\ud800",
        "v1." + "A" * 43 + "é",
        "x" * 1_000_000,
        "v2.abc",
        None,
        12345,
        b"v1.bytes",
    ],
)
def test_verify_never_raises_on_garbage(new_key: str, garbage: object) -> None:
    keyring = Keyring.from_env(new_key)
    assert keyring.verify_event_token("acme.gorgias.com", garbage) is False  # type: ignore[arg-type]


def test_verify_with_garbage_domain_is_false(new_key: str) -> None:
    keyring = Keyring.from_env(new_key)
    token = keyring.event_token("acme.gorgias.com")
    assert keyring.verify_event_token("\ud800", token) is False
    assert keyring.verify_event_token(None, token) is False  # type: ignore[arg-type]


# Signed values ----------------------------------------------------------------------------------


def test_sign_round_trips_under_any_listed_key(new_key: str, old_key: str) -> None:
    token = Keyring.from_env(old_key).sign(b"acme|nonce", "oauth-state", now=1000)
    rotated = Keyring.from_env(f"{new_key},{old_key}")
    assert rotated.unsign(token, "oauth-state", now=1000) == b"acme|nonce"
    assert Keyring.from_env(new_key).unsign(token, "oauth-state") is None


def test_unsign_refuses_other_purpose_tampering_expiry_and_garbage(new_key: str) -> None:
    keyring = Keyring.from_env(new_key)
    token = keyring.sign(b"acme", "oauth-state", now=1000)
    assert keyring.unsign(token, "other-purpose") is None
    assert keyring.unsign(token, "oauth-state", max_age_s=600, now=1600) == b"acme"
    assert keyring.unsign(token, "oauth-state", max_age_s=600, now=1601) is None
    version, issued, payload, mac = token.split(".")
    forged_payload = base64.urlsafe_b64encode(b"evil").decode().rstrip("=")
    assert keyring.unsign(f"{version}.{issued}.{forged_payload}.{mac}", "oauth-state") is None
    assert keyring.unsign(f"{version}.{int(issued) + 1}.{payload}.{mac}", "oauth-state") is None
    for garbage in ("", "s1", "s1.x.y.z", "é.é.é.é", "s1.1.!!.??", "x" * 100_000):
        assert keyring.unsign(garbage, "oauth-state") is None


# Fingerprints -------------------------------------------------------------------------------


def test_fingerprint_format() -> None:
    assert fingerprint("secret") == "sha256:" + hashlib.sha256(b"secret").hexdigest()[:8]
    assert re.fullmatch(r"sha256:[0-9a-f]{8}", fingerprint("é\ud800"))
    assert fingerprint("a") != fingerprint("b")
