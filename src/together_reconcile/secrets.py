"""Secret keys: encryption at rest, derived event tokens, signed values, fingerprints.

`TOGETHER_SECRET_KEYS` is a comma-separated list of keys, newest first, each the url-safe base64
of 32 random bytes (the Fernet format, what `together-reconcile keygen` prints). The newest key
encrypts, derives and signs; every listed key still decrypts and verifies, so a key rotation is:
add a new key in front, apply and `credentials rotate`, then drop the old key.

Pure: no I/O, and no secret value ever appears in an exception message.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import os
import re
import time
from collections.abc import Sequence

from together_reconcile.errors import TogetherError

# cryptography is imported by Keyring only: `keygen` and the account-file commands never load it.

ENV_VAR = "TOGETHER_SECRET_KEYS"
MISSING_KEYS_MESSAGE = (
    f'{ENV_VAR} is not set: run "together-reconcile keygen" and export {ENV_VAR}=<key>'
)
EVENT_TOKEN_VERSION = "v1"  # noqa: S105 (a format label, not a secret)
_EVENT_TOKEN_KEY_LABEL = b"together-reconcile/event-token-key/v1"
_EVENT_TOKEN_LABEL = b"event-token/v1\x00"
_SIGNING_KEY_LABEL = b"together-reconcile/signing-key/v1\x00"
_SIGNED_VERSION = "s1"
# Anything longer than this cannot be one of our tokens: refuse before any work.
_MAX_TOKEN_CHARS = 4096
_KEY_BYTES = 32
_URLSAFE_B64 = re.compile(r"[A-Za-z0-9_-]+={0,2}")


class SecretKeysError(TogetherError):
    """`TOGETHER_SECRET_KEYS` is missing or malformed; the message says what to fix."""


class DecryptionError(Exception):
    """A ciphertext could not be decrypted with any listed key (or is not ours)."""


def generate_key() -> str:
    """A new random key in the format `TOGETHER_SECRET_KEYS` expects (Fernet's: url-safe base64
    of 32 random bytes, padded)."""
    return base64.urlsafe_b64encode(os.urandom(_KEY_BYTES)).decode("ascii")


def fingerprint(value: str) -> str:
    """A short, non-reversible stand-in for a secret in output: `sha256:` + 8 hex digits."""
    return "sha256:" + hashlib.sha256(value.encode("utf-8", "surrogatepass")).hexdigest()[:8]


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    padded = text + "=" * (-len(text) % 4)
    return base64.b64decode(padded.encode("ascii"), altchars=b"-_", validate=True)


def _decode_key(entry: str, position: int) -> bytes:
    problem = SecretKeysError(
        f"entry {position} of {ENV_VAR} is not a valid key (expected the url-safe base64 of "
        '32 bytes, as printed by "together-reconcile keygen")'
    )
    if not _URLSAFE_B64.fullmatch(entry):
        raise problem
    try:
        raw = base64.urlsafe_b64decode(entry.encode("ascii"))
    except (binascii.Error, ValueError):
        raise problem from None
    if len(raw) != _KEY_BYTES:
        raise problem
    return raw


def _to_ascii_bytes(text: object) -> bytes | None:
    if not isinstance(text, str) or len(text) > _MAX_TOKEN_CHARS:
        return None
    try:
        return text.encode("ascii")
    except UnicodeEncodeError:
        return None


class Keyring:
    """The parsed `TOGETHER_SECRET_KEYS`: newest key first, at least one key."""

    __slots__ = ("_event_keys", "_fernet", "_keys", "_signing_keys")

    def __init__(self, keys: Sequence[bytes]) -> None:
        if not keys:
            raise SecretKeysError(MISSING_KEYS_MESSAGE)
        if any(len(key) != _KEY_BYTES for key in keys):
            raise SecretKeysError(f"every key of {ENV_VAR} must be 32 bytes")
        from cryptography.fernet import Fernet, MultiFernet

        self._keys = tuple(keys)
        self._fernet = MultiFernet([Fernet(base64.urlsafe_b64encode(key)) for key in keys])
        self._event_keys = tuple(
            hmac.new(key, _EVENT_TOKEN_KEY_LABEL, hashlib.sha256).digest() for key in keys
        )
        self._signing_keys = tuple(
            hmac.new(key, _SIGNING_KEY_LABEL, hashlib.sha256).digest() for key in keys
        )

    @classmethod
    def from_env(cls, value: str | None) -> Keyring:
        """Parse the value of `TOGETHER_SECRET_KEYS` (comma-separated, newest first)."""
        if value is None or not value.strip():
            raise SecretKeysError(MISSING_KEYS_MESSAGE)
        entries = [entry.strip() for entry in value.strip().split(",")]
        return cls([_decode_key(entry, position) for position, entry in enumerate(entries, 1)])

    def __repr__(self) -> str:
        return f"Keyring({len(self._keys)} keys)"

    @property
    def key_count(self) -> int:
        return len(self._keys)

    # Encryption at rest ---------------------------------------------------------------------

    def encrypt(self, plaintext: str) -> str:
        """Encrypt under the newest key."""
        return self._fernet.encrypt(plaintext.encode("utf-8")).decode("ascii")

    def decrypt(self, ciphertext: str) -> str:
        """Decrypt with whichever listed key made it; `DecryptionError` if none did."""
        from cryptography.fernet import InvalidToken

        try:
            return self._fernet.decrypt(ciphertext.encode("ascii")).decode("utf-8")
        except (InvalidToken, UnicodeError, ValueError, TypeError):
            raise DecryptionError(
                f"a stored secret cannot be decrypted with any key of {ENV_VAR}: restore the "
                "key it was encrypted with, or store the secret again"
            ) from None

    def reencrypt(self, ciphertext: str) -> str:
        """The same plaintext, encrypted under the newest key."""
        from cryptography.fernet import InvalidToken

        try:
            return self._fernet.rotate(ciphertext.encode("ascii")).decode("ascii")
        except (InvalidToken, UnicodeError, ValueError, TypeError):
            raise DecryptionError(
                f"a stored secret cannot be decrypted with any key of {ENV_VAR}: restore the "
                "key it was encrypted with, or store the secret again"
            ) from None

    # Event tokens (derived per account, never stored) ---------------------------------------

    @staticmethod
    def _event_mac(key: bytes, account_domain: str) -> bytes:
        message = _EVENT_TOKEN_LABEL + account_domain.strip().lower().encode("utf-8")
        return hmac.new(key, message, hashlib.sha256).digest()

    def derived_key(self, label: bytes) -> bytes:
        """A 32-byte key for one purpose (`label`), derived from the newest key: the same on
        every replica and after restarts, unknowable without the key."""
        return hmac.new(self._keys[0], label, hashlib.sha256).digest()

    def event_token(self, account_domain: str) -> str:
        """The `X-Together-Token` Gorgias sends for this account, derived from the newest key."""
        mac = self._event_mac(self._event_keys[0], account_domain)
        return f"{EVENT_TOKEN_VERSION}.{_b64(mac)}"

    def verify_event_token(self, account_domain: str, token: str) -> bool:
        """True if `token` was derived for this account from any listed key. Never raises."""
        presented = _to_ascii_bytes(token)
        if presented is None or not isinstance(account_domain, str):
            return False
        try:
            candidates = [
                f"{EVENT_TOKEN_VERSION}.{_b64(self._event_mac(key, account_domain))}".encode()
                for key in self._event_keys
            ]
        except UnicodeError:
            return False
        matched = False
        for candidate in candidates:  # check every key: time does not depend on which matched
            matched |= hmac.compare_digest(candidate, presented)
        return matched

    # Signed values (e.g. the OAuth `state`) -------------------------------------------------

    def _signature(self, key: bytes, purpose: str, body: str) -> bytes:
        message = purpose.encode("utf-8") + b"\x00" + body.encode("ascii")
        return hmac.new(key, message, hashlib.sha256).digest()

    def sign(self, payload: bytes, purpose: str, *, now: float | None = None) -> str:
        """A url-safe token carrying `payload` and its issue time, signed for `purpose`.

        The payload is readable by whoever holds the token: sign, do not hide, with it.
        """
        issued = int(time.time() if now is None else now)
        body = f"{_SIGNED_VERSION}.{issued}.{_b64(payload)}"
        return f"{body}.{_b64(self._signature(self._signing_keys[0], purpose, body))}"

    def unsign(
        self,
        token: str,
        purpose: str,
        *,
        max_age_s: float | None = None,
        now: float | None = None,
    ) -> bytes | None:
        """The payload of a token `sign` made for `purpose` with any listed key, or None.

        None also when it is older than `max_age_s` or malformed. Never raises.
        """
        raw = _to_ascii_bytes(token)
        if raw is None:
            return None
        parts = token.split(".")
        if len(parts) != 4 or parts[0] != _SIGNED_VERSION or not parts[1].isdigit():
            return None
        body = ".".join(parts[:3])
        try:
            presented = _unb64(parts[3])
            payload = _unb64(parts[2])
        except (binascii.Error, ValueError):
            return None
        matched = False
        for key in self._signing_keys:
            matched |= hmac.compare_digest(self._signature(key, purpose, body), presented)
        if not matched:
            return None
        if max_age_s is not None:
            age = (time.time() if now is None else now) - int(parts[1])
            if age > max_age_s or age < -60:  # a little clock skew between processes
                return None
        return payload
