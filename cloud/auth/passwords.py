"""Password hashing with Argon2id (argon2-cffi, RFC 9106 parameters).

Verification of an unknown login runs against a fixed dummy hash, so the response time
does not tell an attacker which e-mail addresses exist.
"""

from __future__ import annotations

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

MIN_LENGTH = 12
MAX_LENGTH = 1024
"""Bounds on a password's length: long enough to resist guessing, short enough that a
hostile request cannot make the KDF hash megabytes."""

_hasher = PasswordHasher()
_DUMMY = _hasher.hash("fieldgate-dummy-password")


def hash_password(password: str) -> str:
    return _hasher.hash(password)


def verify_password(stored: str | None, password: str) -> bool:
    """True when ``password`` matches ``stored``; ``stored=None`` (no such user) costs the
    same time and is always False."""
    try:
        return _hasher.verify(stored or _DUMMY, password) and stored is not None
    except (VerificationError, InvalidHashError):
        return False


def needs_rehash(stored: str) -> bool:
    """True when ``stored`` was hashed with weaker parameters than today's."""
    return _hasher.check_needs_rehash(stored)
