"""Endpoint signing secrets: generated in the Standard Webhooks format, encrypted at rest.

A webhook secret has to be *used* (it is the HMAC key of every delivery), so unlike client
secrets it cannot be stored hashed. It is encrypted with Fernet (AES-128-CBC + HMAC-SHA256)
under a key derived from ``settings.SECRET_KEY`` with HKDF-SHA256 and a purpose string, so the
key is not the SECRET_KEY itself and no other use of SECRET_KEY can produce it.

Rotation: put the old SECRET_KEY in ``SECRET_KEY_FALLBACKS`` (Django's own rotation setting),
set the new SECRET_KEY, run ``manage.py rotate_notification_secrets`` to re-encrypt every secret
under the new key, then drop the fallback.
"""

from __future__ import annotations

import base64
import secrets

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from django.conf import settings

SECRET_PREFIX = "whsec_"
# Standard Webhooks: a random symmetric secret of 24 to 64 bytes. 32 bytes = the HMAC-SHA256 block-size sweet spot.
SECRET_BYTES = 32
_PURPOSE = b"usage-metering notifications endpoint-secret v1"


class SecretUnreadable(Exception):
    """The stored secret cannot be decrypted with SECRET_KEY or any of SECRET_KEY_FALLBACKS."""


def secret_generate() -> str:
    """A new signing secret, ``whsec_`` + base64 of 32 random bytes (as the spec serialises it)."""
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(SECRET_BYTES)).decode("ascii")


def secret_key_bytes(secret: str) -> bytes:
    """The HMAC key of a ``whsec_…`` secret: the base64-decoded bytes after the prefix."""
    return base64.b64decode(secret.removeprefix(SECRET_PREFIX), validate=True)


def _fernet_for(master_key: str) -> Fernet:
    derived = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=_PURPOSE).derive(master_key.encode())
    return Fernet(base64.urlsafe_b64encode(derived))


def _cipher() -> MultiFernet:
    # Read settings on every call (never at import time), so tests and rotations see the current keys.
    keys = [settings.SECRET_KEY, *getattr(settings, "SECRET_KEY_FALLBACKS", [])]
    return MultiFernet([_fernet_for(key) for key in keys])


def secret_encrypt(secret: str) -> str:
    return _cipher().encrypt(secret.encode()).decode("ascii")


def secret_decrypt(token: str) -> str:
    try:
        return _cipher().decrypt(token.encode("ascii")).decode()
    except InvalidToken:
        raise SecretUnreadable("The endpoint secret cannot be decrypted with SECRET_KEY or its fallbacks.")


def secret_reencrypt(token: str) -> str:
    """Re-encrypt under the current SECRET_KEY (``MultiFernet.rotate``)."""
    try:
        return _cipher().rotate(token.encode("ascii")).decode("ascii")
    except InvalidToken:
        raise SecretUnreadable("The endpoint secret cannot be decrypted with SECRET_KEY or its fallbacks.")
