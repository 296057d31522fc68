"""Encryption at rest of sensitive parameter values (Fernet / MultiFernet from ``cryptography``).

Keys come from ``settings.PARAMETER_ENCRYPTION_KEYS`` (the ``PARAMETER_ENCRYPTION_KEYS``
environment variable: comma-separated Fernet keys, newest first). New values are encrypted with
the newest key; any listed key decrypts. To rotate: put a new key first, run
``python manage.py rotate_parameter_keys``, then drop the old key.

With no key configured (the embedded default), one key is generated on first use and kept in
``settings.PARAMETER_KEY_FILE`` (``var/parameter_encryption.key``, mode 0600), with a logged
warning. Setting ``PARAMETER_KEY_FILE`` to an empty string turns that fallback off: a missing key
is then an error.

Settings are read at call time, so a changed key list takes effect without reimporting anything.
No key, plaintext or token is ever logged.
"""

from __future__ import annotations

import functools
import logging
import os
import tempfile
from pathlib import Path

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from django.conf import settings

from parameters.exceptions import (
    ParameterDecryptionFailed,
    ParameterEncryptionKeyInvalid,
    ParameterEncryptionKeyMissing,
)

logger = logging.getLogger(__name__)

_warned_key_files: set[str] = set()


def configured_keys() -> list[str]:
    """The keys, newest first: from the setting, else the embedded default's key file."""
    raw = getattr(settings, "PARAMETER_ENCRYPTION_KEYS", None) or []
    if isinstance(raw, str):
        raw = raw.split(",")
    keys = [key.strip() for key in raw if key and key.strip()]
    if keys:
        return keys
    key_file = getattr(settings, "PARAMETER_KEY_FILE", "")
    if not key_file:
        raise ParameterEncryptionKeyMissing()
    return [_embedded_key(Path(key_file))]


def _embedded_key(path: Path) -> str:
    if str(path) not in _warned_key_files:
        _warned_key_files.add(str(path))
        logger.warning(
            "PARAMETER_ENCRYPTION_KEYS is not set: sensitive parameters are encrypted with a generated key "
            "kept in %s. Back that file up, or set PARAMETER_ENCRYPTION_KEYS (newest first) in production.",
            path,
        )
    if not path.exists():
        _create_key_file(path)
    key = path.read_text(encoding="ascii").strip()
    if not key:
        raise ParameterEncryptionKeyMissing(f"The parameter key file {path} is empty.")
    return key


def _create_key_file(path: Path) -> None:
    """Write a new key atomically; if another process won the race, its key is kept."""
    path.parent.mkdir(parents=True, exist_ok=True)
    descriptor, temporary = tempfile.mkstemp(dir=path.parent, prefix=".parameter-key-")
    try:
        os.chmod(temporary, 0o600)
        with os.fdopen(descriptor, "w", encoding="ascii") as handle:
            handle.write(Fernet.generate_key().decode("ascii") + "\n")
        try:
            os.link(temporary, path)  # fails if the file exists: first writer wins
            logger.warning("generated a new parameter encryption key in %s", path)
        except FileExistsError:
            # Another process created the key file first: use its key (read below), not ours.
            logger.debug("parameter key file created concurrently; using the existing one")
    finally:
        os.unlink(temporary)


@functools.lru_cache(maxsize=8)
def _multi_fernet(keys: tuple[str, ...]) -> MultiFernet:
    fernets = []
    for position, key in enumerate(keys, start=1):
        try:
            fernets.append(Fernet(key))
        except (ValueError, TypeError):
            # The position only: a key, even a broken one, is never logged.
            logger.error(
                "parameter encryption key number %d (newest first) is not a valid Fernet key", position
            )
            raise ParameterEncryptionKeyInvalid(
                f"Parameter encryption key number {position} (newest first) is not a valid Fernet key "
                "(32 url-safe base64-encoded bytes)."
            )
    return MultiFernet(fernets)


def key_ring() -> MultiFernet:
    return _multi_fernet(tuple(configured_keys()))


def encrypt(plaintext: str) -> str:
    """A Fernet token (ASCII) of ``plaintext`` under the newest key."""
    return key_ring().encrypt(plaintext.encode("utf-8")).decode("ascii")


def decrypt(token: str) -> str:
    """The plaintext of ``token``; raises ``ParameterDecryptionFailed`` if no configured key opens it."""
    try:
        return key_ring().decrypt(token.encode("ascii")).decode("utf-8")
    except (InvalidToken, UnicodeError):
        raise ParameterDecryptionFailed()


def rotate(token: str) -> str:
    """Re-encrypt ``token`` under the newest key (``MultiFernet.rotate``)."""
    try:
        return key_ring().rotate(token.encode("ascii")).decode("ascii")
    except (InvalidToken, UnicodeError):
        raise ParameterDecryptionFailed()


def generate_key() -> str:
    return Fernet.generate_key().decode("ascii")
