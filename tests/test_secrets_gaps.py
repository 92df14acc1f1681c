"""`secrets` edges the first tests left open (found by mutation testing, issue 16).

The derivations themselves are pinned by tests/test_known_answers.py; this file pins the
decoding, the clock-skew and length bounds, and the exact refusals.
"""

from __future__ import annotations

import base64
import hashlib
import json
from pathlib import Path

import pytest

from together_reconcile.secrets import (
    DecryptionError,
    Keyring,
    SecretKeysError,
    fingerprint,
)

VECTORS = json.loads((Path(__file__).parent / "known_answers" / "vectors.json").read_text())
KEY, OLD_KEY = VECTORS["keys"]
NOW = 1_700_000_000
DECRYPT_MESSAGE = (
    "a stored secret cannot be decrypted with any key of TOGETHER_SECRET_KEYS: restore the "
    "key it was encrypted with, or store the secret again"
)


@pytest.fixture
def keyring() -> Keyring:
    return Keyring.from_env(f"{KEY},{OLD_KEY}")


def test_a_signature_with_junk_appended_is_refused(keyring: Keyring) -> None:
    token = keyring.sign(b"acme", "oauth-state", now=NOW)
    assert keyring.unsign(token, "oauth-state", now=NOW) == b"acme"
    # a lenient base64 decoder would drop the '!' and accept these
    for junk in ("!=", "*=", "\n=", " ="):
        assert keyring.unsign(token + junk, "oauth-state", now=NOW) is None, repr(junk)
    version, issued, payload, mac = token.split(".")
    assert keyring.unsign(f"{version}.{issued}.{payload}!=.{mac}", "oauth-state") is None
    assert keyring.unsign(f"{version}.{issued}.{payload}.{mac[:20]}!{mac[20:]}", "x") is None


def test_clock_skew_allows_sixty_seconds_into_the_future_and_no_more(keyring: Keyring) -> None:
    token = keyring.sign(b"acme", "oauth-state", now=NOW)
    assert keyring.unsign(token, "oauth-state", max_age_s=600, now=NOW - 60) == b"acme"
    assert keyring.unsign(token, "oauth-state", max_age_s=600, now=NOW - 60.5) is None
    assert keyring.unsign(token, "oauth-state", max_age_s=600, now=NOW - 61) is None
    # without max_age_s there is no time check at all
    assert keyring.unsign(token, "oauth-state", now=NOW - 10_000) == b"acme"
    assert keyring.unsign(token, "oauth-state", now=NOW + 10**9) == b"acme"


def test_max_age_is_inclusive(keyring: Keyring) -> None:
    token = keyring.sign(b"acme", "oauth-state", now=NOW)
    assert keyring.unsign(token, "oauth-state", max_age_s=0, now=NOW) == b"acme"
    assert keyring.unsign(token, "oauth-state", max_age_s=0, now=NOW + 0.5) is None
    assert keyring.unsign(token, "oauth-state", max_age_s=600, now=NOW + 600) == b"acme"


def test_sign_uses_the_clock_when_no_time_is_given(
    keyring: Keyring, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("together_reconcile.secrets.time.time", lambda: NOW + 0.9)
    token = keyring.sign(b"acme", "oauth-state")
    assert token.split(".")[1] == str(NOW)
    assert keyring.unsign(token, "oauth-state", max_age_s=600) == b"acme"
    monkeypatch.setattr("together_reconcile.secrets.time.time", lambda: NOW + 601)
    assert keyring.unsign(token, "oauth-state", max_age_s=600) is None


def test_tokens_longer_than_4096_characters_are_refused(keyring: Keyring) -> None:
    def token_of_length(length: int) -> str:
        # "s1." + 10 digits + "." + unpadded base64 payload + "." + 43-character signature
        payload_chars = length - (3 + 10 + 1 + 1 + 43)
        payload_bytes = payload_chars * 3 // 4
        token = keyring.sign(b"x" * payload_bytes, "p", now=NOW)
        assert len(token) == length
        return token

    assert keyring.unsign(token_of_length(4096), "p", now=NOW) is not None
    assert keyring.unsign(token_of_length(4097), "p", now=NOW) is None
    event_token = keyring.event_token("acme.gorgias.com")
    assert not keyring.verify_event_token("acme.gorgias.com", event_token + " " * 5000)


@pytest.mark.parametrize(
    "token",
    [
        "s1.1700000000.YWNtZQ",  # three parts
        "s1.1700000000.YWNtZQ.sig.extra",  # five parts
        "s2.1700000000.YWNtZQ.c2ln",  # other version
        "s1.-5.YWNtZQ.c2ln",  # not a plain number
        "s1.1e9.YWNtZQ.c2ln",
        "s1..YWNtZQ.c2ln",
    ],
)
def test_malformed_signed_tokens_are_none(keyring: Keyring, token: str) -> None:
    assert keyring.unsign(token, "oauth-state") is None


def test_a_negative_issue_time_never_verifies(keyring: Keyring) -> None:
    assert keyring.unsign(keyring.sign(b"acme", "p", now=-5), "p") is None


def test_keyring_refuses_no_keys_and_keys_of_the_wrong_size() -> None:
    with pytest.raises(SecretKeysError) as raised:
        Keyring([])
    assert str(raised.value).startswith("TOGETHER_SECRET_KEYS is not set")
    for size in (31, 33):
        with pytest.raises(SecretKeysError) as raised:
            Keyring([bytes(32), bytes(size)])
        assert str(raised.value) == "every key of TOGETHER_SECRET_KEYS must be 32 bytes"


def test_keys_without_padding_or_with_spaces_around_commas() -> None:
    unpadded = KEY.rstrip("=")
    with pytest.raises(SecretKeysError) as raised:
        Keyring.from_env(unpadded)
    assert str(raised.value).startswith("entry 1 of TOGETHER_SECRET_KEYS is not a valid key")
    keyring = Keyring.from_env(f"\t{KEY} ,\n {OLD_KEY}  ")
    assert (keyring.key_count, repr(keyring)) == (2, "Keyring(2 keys)")
    assert keyring.event_token("acme.gorgias.com") == VECTORS["event_tokens"]["acme.gorgias.com"]


def test_decrypt_and_reencrypt_refusals_say_exactly_what_to_do(keyring: Keyring) -> None:
    other = Keyring([bytes(32)]).encrypt("secret-value")
    for call in (keyring.decrypt, keyring.reencrypt):
        for bad in (other, "garbage", "é"):
            with pytest.raises(DecryptionError) as raised:
                call(bad)
            assert str(raised.value) == DECRYPT_MESSAGE
            assert raised.value.__cause__ is None
            assert raised.value.__suppress_context__


def test_reencrypt_from_the_older_key_moves_to_the_newest() -> None:
    ciphertext = Keyring.from_env(OLD_KEY).encrypt("refresh-me")
    moved = Keyring.from_env(f"{KEY},{OLD_KEY}").reencrypt(ciphertext)
    assert Keyring.from_env(KEY).decrypt(moved) == "refresh-me"
    assert Keyring.from_env(KEY).decrypt(Keyring.from_env(KEY).encrypt("é ü")) == "é ü"


def test_fingerprint_of_a_lone_surrogate_is_stable() -> None:
    expected = "sha256:" + hashlib.sha256(b"\xed\xa0\x80").hexdigest()[:8]
    assert fingerprint("\ud800") == expected
    assert fingerprint("é") == "sha256:" + hashlib.sha256("é".encode()).hexdigest()[:8]


def test_event_token_for_a_non_ascii_domain_verifies_only_itself(keyring: Keyring) -> None:
    token = keyring.event_token("bücher.gorgias.com")
    assert keyring.verify_event_token("BÜCHER.gorgias.com", token)
    assert not keyring.verify_event_token("bucher.gorgias.com", token)
    mac = hashlib.sha256(b"").digest()
    assert not keyring.verify_event_token(
        "acme.gorgias.com", "v1." + base64.urlsafe_b64encode(mac).decode().rstrip("=")
    )


@pytest.mark.parametrize(
    "payload",
    [b"", b"a", b"ab", b"abc", b"\x00\x00\x17", b"\x00\x17", b"\xff\xfe\xfd\xfc", b"X", b"XX"],
)
def test_any_payload_round_trips_whatever_its_base64_ends_with(
    keyring: Keyring, payload: bytes
) -> None:
    # b"\x00\x00\x17" encodes to "AAAX": only '=' may be stripped from the end, never a letter
    token = keyring.sign(payload, "p", now=NOW)
    assert "=" not in token
    assert keyring.unsign(token, "p", now=NOW) == payload
