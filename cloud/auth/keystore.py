"""Protection of CA private keys at rest.

A generated CA's private key is stored as encrypted PKCS#8 PEM
(``CertificateAuthority.encrypted_key``). The password is the node's secret key:

* ``FIELDGATE_CLOUD_SECRET_KEY`` (:attr:`CloudSettings.secret_key`) when set: every node
  of a cluster needs the same value;
* otherwise, on SQLite, a key file ``cloud.secret`` next to the database (created on
  first start, mode 0600, 32 random bytes URL-safe): the database and its key travel
  together, and a copy of the database alone does not reveal the CA keys;
* otherwise (PostgreSQL without a secret) none: generating a CA or signing with one is
  refused with :class:`SecretKeyMissing` until the operator sets the variable.

:func:`resolve_secret` runs once in the app's lifespan; the result is ``app.state.ca_secret``.
"""

from __future__ import annotations

import logging
import os
import secrets
import stat
from pathlib import Path

from sqlalchemy.engine import make_url

from cloud.auth import x509
from cloud.errors import Conflict
from cloud.settings import CloudSettings

log = logging.getLogger(__name__)

SECRET_FILE_NAME = "cloud.secret"
SECRET_ENV = "FIELDGATE_CLOUD_SECRET_KEY"


class SecretKeyMissing(Conflict):
    """No secret key to encrypt or decrypt CA private keys with."""

    slug, title = "secret-key-missing", "The cloud node has no secret key for CA private keys"


class CaKeyUnreadable(Conflict):
    """A stored CA key does not decrypt with this node's secret key."""

    slug, title = "ca-key-unreadable", "The CA private key cannot be decrypted"


def secret_file_for(db_url: str) -> Path | None:
    """Where the key file of a SQLite database lives (``<db dir>/cloud.secret``); None for
    PostgreSQL and in-memory SQLite."""
    url = make_url(db_url)
    if url.get_backend_name() != "sqlite":
        return None
    database = url.database or ""
    if database.startswith("file:"):
        database = database[len("file:"):].split("?", 1)[0]
    if not database or database == ":memory:" or "mode=memory" in db_url:
        return None
    return Path(database).expanduser().resolve().parent / SECRET_FILE_NAME


def resolve_secret(settings: CloudSettings) -> bytes | None:
    """The password of CA private keys for this node, or None (PostgreSQL without
    ``secret_key``). May create the SQLite key file; call once at start-up."""
    if settings.secret_key is not None and settings.secret_key.get_secret_value():
        return settings.secret_key.get_secret_value().encode()
    url = make_url(settings.db_url)
    if url.get_backend_name() != "sqlite":
        log.warning(
            "%s is not set: generating or using CAs that sign device certificates is "
            "refused until it is (the same value on every node)", SECRET_ENV,
        )
        return None
    path = secret_file_for(settings.db_url)
    if path is None:
        # An in-memory database dies with the process, and so may its key.
        return secrets.token_urlsafe(32).encode()
    return read_or_create_secret_file(path)


def read_or_create_secret_file(path: Path) -> bytes:
    """The secret in ``path``, creating the file (0600, exclusive) when it is absent.
    Raises ``OSError`` when it cannot be read or created, ``ValueError`` when empty."""
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        pass  # an earlier start (or a concurrent node on the same file) made it
    else:
        with os.fdopen(fd, "w", encoding="ascii") as out:
            out.write(secrets.token_urlsafe(32) + "\n")
        log.info("created the CA key-encryption secret %s (keep it with the database)", path)
    mode = stat.S_IMODE(path.stat().st_mode)
    if mode & 0o077:
        log.warning("%s is readable by others (mode %o); chmod 600 it", path, mode)
    value = path.read_text(encoding="ascii").strip()
    if not value:
        raise ValueError(f"{path} is empty; delete it only if no CA was generated yet")
    return value.encode()


def require_secret(secret: bytes | None) -> bytes:
    if secret is None:
        raise SecretKeyMissing(
            f"CA private keys are stored encrypted with the cloud's secret key, and this "
            f"node has none: set {SECRET_ENV} (the same value on every node) and restart"
        )
    return secret


def encrypt_key(key: x509.PrivateKey, secret: bytes | None) -> str:
    """Encrypted PKCS#8 PEM of ``key``; :class:`SecretKeyMissing` without a secret."""
    return x509.key_to_pem(key, require_secret(secret))


def decrypt_key(encrypted_pem: str, secret: bytes | None) -> x509.PrivateKey:
    """The CA key of ``encrypted_pem``; :class:`SecretKeyMissing` without a secret,
    :class:`CaKeyUnreadable` when the secret is not the one it was encrypted with."""
    try:
        return x509.load_private_key(encrypted_pem, require_secret(secret))
    except x509.CertificateError as exc:
        raise CaKeyUnreadable(
            f"the CA private key does not decrypt with this node's secret key ({SECRET_ENV} "
            f"or {SECRET_FILE_NAME} changed since the CA was generated?)"
        ) from exc
