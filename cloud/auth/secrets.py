"""Bearer secrets (API keys ``fgk_``, console sessions ``fgs_``, device tokens ``fgd_``):
a recognisable prefix + 256 random bits, shown once, stored as SHA-256.

A secret is high-entropy, so a plain SHA-256 is enough (a slow KDF protects guessable
passwords, not random keys). The first :data:`LOOKUP_LENGTH` characters are stored in the
clear as a unique lookup prefix, so checking a secret is one indexed read plus a
constant-time comparison.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets

LOOKUP_LENGTH = 12
"""Characters of the secret (its ``fgX_`` kind included) stored for lookup."""


def generate(kind: str) -> str:
    """A new secret of ``kind`` (``"fgk_"``, ``"fgs_"``, ``"fgd_"``)."""
    return kind + secrets.token_urlsafe(32)


def digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def lookup_prefix(secret: str) -> str:
    return secret[:LOOKUP_LENGTH]


def well_formed(secret: str, kind: str) -> bool:
    return secret.startswith(kind) and LOOKUP_LENGTH < len(secret) <= 128


def matches(secret: str, stored_digest: str) -> bool:
    return hmac.compare_digest(stored_digest, digest(secret))
