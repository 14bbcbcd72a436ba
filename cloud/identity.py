"""Device identity: org certificate authorities, device certificates, device tokens,
revocation, and :class:`StoreDeviceAuthority` (how the broker and the device API learn
which device is talking).

Every mutation records an audit entry in its own transaction and commits; every lookup
is scoped by the caller's org, so another org's CA, device, certificate or token is
``NotFound``. Credentials (certificates, tokens) are issued to gateways only: field
devices reach the cloud through their gateway.
"""

from __future__ import annotations

import logging
import re
from datetime import datetime
from typing import Any

from cryptography.x509 import Certificate
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from cloud import audit
from cloud.api.schemas.identity import (
    CaPublic,
    CaUpdate,
    CertificateSource,
    DeviceCertificateIssued,
    DeviceCertificatePublic,
    DeviceRevocation,
    DeviceTokenCreated,
    DeviceTokenPublic,
)
from cloud.auth import keystore, x509
from cloud.auth.device_identity import DeviceIdentity
from cloud.auth.device_tokens import authenticate_token, issue_token
from cloud.auth.principal import Actor, AuditActor
from cloud.errors import (
    AlreadyExists,
    Conflict,
    InvalidParameter,
    NotAGateway,
    NotFound,
    Unauthorized,
)
from cloud.store.db import Store
from cloud.store.device_tokens import DeviceTokenRepository
from cloud.store.devices import DeviceRepository
from cloud.store.identity import (
    CertificateAuthorityRepository,
    DeviceCertificateRepository,
    cas_with_subject,
    enabled_cas,
    find_certificate,
    fingerprint_registered,
)
from cloud.store.models import (
    CertificateAuthority,
    Device,
    DeviceCertificate,
    DeviceKind,
    DeviceToken,
    utcnow,
)
from cloud.store.orgs import get_org
from gateway.config_types import NAME_PATTERN

log = logging.getLogger(__name__)

SOURCE_ISSUED: CertificateSource = "issued"
SOURCE_JIT: CertificateSource = "jit"
JIT_ACTOR = "jit-registration"
DEFAULT_CA_DAYS = 3650
MAX_SUBJECT_LENGTH = 512  # CertificateAuthority.subject
_GATEWAY_NAME = re.compile(NAME_PATTERN)


# -- public views (also the audit snapshots: never keys, hashes or tokens) ----------------


def ca_public(row: CertificateAuthority) -> CaPublic:
    return CaPublic(
        id=row.id,
        name=row.name,
        subject=row.subject,
        fingerprint=row.fingerprint,
        not_after=row.not_after,
        jit_registration=row.jit_registration,
        can_sign=row.encrypted_key is not None,
        disabled=row.disabled_at is not None,
        disabled_at=row.disabled_at,
        created_at=row.created_at,
        certificate=row.certificate_pem,
    )


def _ca_snapshot(row: CertificateAuthority) -> dict[str, Any]:
    return ca_public(row).model_dump(mode="json", exclude={"certificate"})


def certificate_public(row: DeviceCertificate, device: str) -> DeviceCertificatePublic:
    return DeviceCertificatePublic(
        id=row.id,
        device=device,
        ca_id=row.ca_id,
        serial=row.serial,
        fingerprint=row.fingerprint,
        common_name=row.common_name,
        not_before=row.not_before,
        not_after=row.not_after,
        source=SOURCE_JIT if row.source == SOURCE_JIT else SOURCE_ISSUED,
        created_at=row.created_at,
        revoked_at=row.revoked_at,
    )


def token_public(row: DeviceToken, device: str) -> DeviceTokenPublic:
    return DeviceTokenPublic(
        id=row.id,
        device=device,
        name=row.name,
        prefix=row.prefix,
        created_at=row.created_at,
        expires_at=row.expires_at,
        last_used_at=row.last_used_at,
        revoked_at=row.revoked_at,
    )


def _device_snapshot(device: Device) -> dict[str, Any]:
    return {"name": device.name, "kind": device.kind, "revoked_at": device.revoked_at}


# -- lookups --------------------------------------------------------------------------------


async def _device(session: AsyncSession, org_id: int, name: str) -> Device:
    device, _parent = await DeviceRepository(session, org_id).get(name)
    return device


async def _gateway(session: AsyncSession, org_id: int, name: str) -> Device:
    """The org's gateway ``name``: ``NotFound``, or ``NotAGateway`` for a field device."""
    device, parent = await DeviceRepository(session, org_id).get(name)
    if device.kind != DeviceKind.GATEWAY.value:
        raise NotAGateway(
            f"device {name!r} is a field device behind gateway {parent!r}; only gateways "
            "hold certificates and tokens"
        )
    return device


def _invalid(field: str, exc: x509.CertificateError) -> InvalidParameter:
    return InvalidParameter(f"{field}: {exc}", field=field)


def _check_not_revoked(device: Device) -> None:
    if device.revoked_at is not None:
        raise Conflict(
            f"device {device.name!r} is revoked; restore it (POST "
            f"/api/v1/devices/{device.name}/restore) before issuing credentials"
        )


# -- certificate authorities ----------------------------------------------------------------


async def list_cas(session: AsyncSession, org_id: int) -> list[CaPublic]:
    return [ca_public(row) for row in await CertificateAuthorityRepository(session, org_id).list()]


async def get_ca(session: AsyncSession, org_id: int, ca_id: int) -> CaPublic:
    return ca_public(await CertificateAuthorityRepository(session, org_id).get(ca_id))


async def create_ca(
    session: AsyncSession,
    actor: AuditActor,
    *,
    name: str,
    certificate: str | None,
    jit_registration: bool,
    days: int | None,
    secret: bytes | None,
) -> CaPublic:
    """Generate a CA (``certificate`` None; needs the node's secret) or register an
    existing CA certificate (verifies and JIT-registers devices, signs nothing). Commits.

    Raises ``InvalidParameter`` (unusable certificate), ``AlreadyExists`` (name taken in
    the org, or the certificate registered by any org), ``SecretKeyMissing``.
    """
    repo = CertificateAuthorityRepository(session, actor.org_id)
    if await repo.name_taken(name):
        raise AlreadyExists(f"a certificate authority named {name!r} already exists")
    encrypted_key: str | None = None
    if certificate is None:
        secret = keystore.require_secret(secret)
        org = await get_org(session, actor.org_id)
        pair = x509.generate_ca(name, organization=org.name, days=days or DEFAULT_CA_DAYS)
        cert = x509.load_certificate(pair.certificate_pem)
        encrypted_key = keystore.encrypt_key(x509.load_private_key(pair.key_pem), secret)
    else:
        if "PRIVATE KEY-----" in certificate:
            raise InvalidParameter(
                "certificate: the PEM contains a private key; send the CA certificate only "
                "(and keep its key to yourself)",
                field="certificate",
            )
        try:
            cert = x509.load_ca_certificate(certificate)
        except x509.CertificateError as exc:
            raise _invalid("certificate", exc) from exc
    fingerprint = x509.fingerprint(cert)
    if await fingerprint_registered(session, fingerprint):
        # Which org registered it is none of the caller's business.
        raise AlreadyExists("this CA certificate is already registered")
    try:
        row = await repo.add(
            name=name,
            certificate_pem=x509.to_pem(cert),
            encrypted_key=encrypted_key,
            fingerprint=fingerprint,
            subject=x509.name_string(cert.subject)[:MAX_SUBJECT_LENGTH],
            not_after=cert.not_valid_after_utc,
            jit_registration=jit_registration,
            created_at=utcnow(),
        )
    except IntegrityError as exc:  # a concurrent request won
        raise AlreadyExists(
            f"a certificate authority named {name!r} or with this certificate already exists"
        ) from exc
    action = "certificate_authority.create" if certificate is None else (
        "certificate_authority.register"
    )
    await audit.record(
        session, actor, action, "certificate_authority", row.id, after=_ca_snapshot(row)
    )
    await session.commit()
    return ca_public(row)


async def update_ca(
    session: AsyncSession, actor: AuditActor, ca_id: int, changes: CaUpdate
) -> CaPublic:
    """Rename, switch JIT registration, disable or re-enable a CA; commits (only when
    something changed)."""
    repo = CertificateAuthorityRepository(session, actor.org_id)
    row = await repo.get(ca_id)
    before = _ca_snapshot(row)
    if changes.name is not None and changes.name != row.name:
        if await repo.name_taken(changes.name, other_than=row.id):
            raise AlreadyExists(f"a certificate authority named {changes.name!r} already exists")
        row.name = changes.name
    if changes.jit_registration is not None:
        row.jit_registration = changes.jit_registration
    if changes.disabled is True and row.disabled_at is None:
        row.disabled_at = utcnow()
    elif changes.disabled is False:
        row.disabled_at = None
    after = _ca_snapshot(row)
    if after != before:
        try:
            await session.flush()
        except IntegrityError as exc:
            raise AlreadyExists(
                f"a certificate authority named {changes.name!r} already exists"
            ) from exc
        action = "certificate_authority.update"
        if row.disabled_at is not None and before["disabled_at"] is None:
            action = "certificate_authority.disable"
        await audit.record(
            session, actor, action, "certificate_authority", row.id, before=before, after=after
        )
        await session.commit()
    return ca_public(row)


async def disable_ca(session: AsyncSession, actor: AuditActor, ca_id: int) -> CaPublic:
    """Disable a CA (idempotent): it signs nothing more and the devices it issued are
    refused. The row stays (certificates refer to it; re-enable with PATCH)."""
    return await update_ca(session, actor, ca_id, CaUpdate(disabled=True))


async def ca_crl(session: AsyncSession, org_id: int, ca_id: int, secret: bytes | None) -> bytes:
    """PEM CRL of the revoked certificates ``ca_id`` issued, signed by the CA (Mosquitto's
    ``crlfile``). ``Conflict`` for a CA registered without its key."""
    ca = await CertificateAuthorityRepository(session, org_id).get(ca_id)
    if ca.encrypted_key is None:
        raise Conflict(
            f"certificate authority {ca.name!r} was registered without its private key, so "
            "the cloud cannot sign its CRL; publish the CRL with the CA's own tooling"
        )
    key = keystore.decrypt_key(ca.encrypted_key, secret)
    revoked = await DeviceCertificateRepository(session, org_id).revoked_by_ca(ca.id)
    return x509.build_crl(
        x509.load_certificate(ca.certificate_pem), key,
        [(int(serial, 16), when) for serial, when in revoked],
    )


# -- device certificates --------------------------------------------------------------------


async def _signing_ca(
    repo: CertificateAuthorityRepository, ca_id: int | None
) -> CertificateAuthority:
    if ca_id is None:
        ca = await repo.newest_signing()
        if ca is None:
            raise Conflict(
                "the org has no enabled, unexpired certificate authority that can sign: "
                "generate one with POST /api/v1/cas"
            )
        return ca
    ca = await repo.get(ca_id)
    if ca.disabled_at is not None:
        raise Conflict(f"certificate authority {ca.name!r} is disabled")
    if ca.encrypted_key is None:
        raise Conflict(
            f"certificate authority {ca.name!r} was registered without its private key: it "
            "verifies device certificates but cannot sign CSRs"
        )
    if ca.not_after <= utcnow():
        raise Conflict(f"certificate authority {ca.name!r} expired on {ca.not_after:%Y-%m-%d}")
    return ca


async def sign_certificate(
    session: AsyncSession,
    actor: AuditActor,
    device_name: str,
    csr: str,
    *,
    ca_id: int | None = None,
    days: int = 365,
    secret: bytes | None,
) -> DeviceCertificateIssued:
    """Sign ``csr`` for the gateway ``device_name`` of the actor's org with ``ca_id`` (or
    the newest CA that can sign); subject ``CN=<device_name>``. Commits.

    Raises ``NotFound``, ``NotAGateway``, ``Conflict`` (device revoked, CA unusable),
    ``InvalidParameter`` (field ``csr``), ``SecretKeyMissing``/``CaKeyUnreadable``.
    """
    device = await _gateway(session, actor.org_id, device_name)
    _check_not_revoked(device)
    ca = await _signing_ca(CertificateAuthorityRepository(session, actor.org_id), ca_id)
    try:
        request = x509.load_csr(csr)
    except x509.CertificateError as exc:
        raise _invalid("csr", exc) from exc
    assert ca.encrypted_key is not None  # _signing_ca
    key = keystore.decrypt_key(ca.encrypted_key, secret)
    ca_cert = x509.load_certificate(ca.certificate_pem)
    cert = x509.sign_csr(request, ca_cert, key, common_name_=device.name, days=days)
    row = await DeviceCertificateRepository(session, actor.org_id).add(
        device_id=device.id,
        ca_id=ca.id,
        serial=x509.serial_hex(cert),
        fingerprint=x509.fingerprint(cert),
        common_name=device.name,
        not_before=cert.not_valid_before_utc,
        not_after=cert.not_valid_after_utc,
        source=SOURCE_ISSUED,
        created_at=utcnow(),
    )
    public = certificate_public(row, device.name)
    await audit.record(
        session, actor, "device_certificate.create", "device_certificate", row.id, after=public
    )
    await session.commit()
    return DeviceCertificateIssued(
        **public.model_dump(), certificate=x509.to_pem(cert), ca_chain=ca.certificate_pem
    )


async def list_certificates(
    session: AsyncSession, org_id: int, device_name: str
) -> list[DeviceCertificatePublic]:
    device = await _device(session, org_id, device_name)
    rows = await DeviceCertificateRepository(session, org_id).list(device.id)
    return [certificate_public(row, device.name) for row in rows]


async def get_certificate(
    session: AsyncSession, org_id: int, device_name: str, cert_id: int
) -> DeviceCertificatePublic:
    device = await _device(session, org_id, device_name)
    row = await DeviceCertificateRepository(session, org_id).get(device.id, cert_id)
    return certificate_public(row, device.name)


async def revoke_certificate(
    session: AsyncSession, actor: AuditActor, device_name: str, cert_id: int
) -> DeviceCertificatePublic:
    """Revoke one certificate (idempotent); the broker refuses it from then on and it
    appears in its CA's CRL. Commits."""
    device = await _device(session, actor.org_id, device_name)
    row = await DeviceCertificateRepository(session, actor.org_id).get(device.id, cert_id)
    if row.revoked_at is None:
        before = certificate_public(row, device.name)
        row.revoked_at = utcnow()
        await session.flush()
        after = certificate_public(row, device.name)
        await audit.record(
            session, actor, "device_certificate.revoke", "device_certificate", row.id,
            before=before, after=after,
        )
        await session.commit()
    return certificate_public(row, device.name)


# -- device tokens ----------------------------------------------------------------------------


async def list_tokens(
    session: AsyncSession, org_id: int, device_name: str
) -> list[DeviceTokenPublic]:
    device = await _device(session, org_id, device_name)
    rows = await DeviceTokenRepository(session, org_id).list(device.id)
    return [token_public(row, device.name) for row in rows]


async def create_token(
    session: AsyncSession,
    actor: AuditActor,
    device_name: str,
    *,
    name: str,
    expires_at: datetime | None = None,
) -> DeviceTokenCreated:
    """A new token for the gateway; the response is the only time it is shown. Commits."""
    device = await _gateway(session, actor.org_id, device_name)
    _check_not_revoked(device)
    issued = await issue_token(session, device, name=name, expires_at=expires_at)
    public = token_public(issued.row, device.name)
    await audit.record(
        session, actor, "device_token.create", "device_token", issued.row.id, after=public
    )
    await session.commit()
    return DeviceTokenCreated(**public.model_dump(), token=issued.secret)


async def revoke_token(
    session: AsyncSession, actor: AuditActor, device_name: str, token_id: int
) -> DeviceTokenPublic:
    """Revoke one token (idempotent); it is refused from then on. Commits."""
    device = await _device(session, actor.org_id, device_name)
    row = await DeviceTokenRepository(session, actor.org_id).get(device.id, token_id)
    if row.revoked_at is None:
        before = token_public(row, device.name)
        row.revoked_at = utcnow()
        await session.flush()
        await audit.record(
            session, actor, "device_token.revoke", "device_token", row.id,
            before=before, after=token_public(row, device.name),
        )
        await session.commit()
    return token_public(row, device.name)


# -- device revocation ------------------------------------------------------------------------


async def revoke_device(
    session: AsyncSession, actor: AuditActor, device_name: str
) -> DeviceRevocation:
    """Revoke the device and every certificate and token it holds (idempotent: a second
    call revokes whatever was issued meanwhile and keeps the first ``revoked_at``).
    Commits; every credential is refused from the next authentication on."""
    device = await _device(session, actor.org_id, device_name)
    before = _device_snapshot(device)
    now = utcnow()
    if device.revoked_at is None:
        device.revoked_at = now
    certificates = await DeviceCertificateRepository(session, actor.org_id).revoke_all(
        device.id, now
    )
    tokens = await DeviceTokenRepository(session, actor.org_id).revoke_all(device.id)
    await session.flush()
    result = DeviceRevocation(
        device=device.name, revoked_at=device.revoked_at,
        certificates_revoked=certificates, tokens_revoked=tokens,
    )
    if before["revoked_at"] is None or certificates or tokens:
        await audit.record(
            session, actor, "device.revoke", "device", device.name,
            before=before, after={**_device_snapshot(device),
                                  "certificates_revoked": certificates,
                                  "tokens_revoked": tokens},
        )
        await session.commit()
    log.info("device %s revoked (%d certificate(s), %d token(s))", device.name,
             certificates, tokens)
    return result


async def restore_device(
    session: AsyncSession, actor: AuditActor, device_name: str
) -> DeviceRevocation:
    """Lift the device's revocation (idempotent). Its revoked certificates and tokens
    stay revoked: issue new ones. Commits."""
    device = await _device(session, actor.org_id, device_name)
    if device.revoked_at is not None:
        before = _device_snapshot(device)
        device.revoked_at = None
        await session.flush()
        await audit.record(
            session, actor, "device.restore", "device", device.name,
            before=before, after=_device_snapshot(device),
        )
        await session.commit()
    return DeviceRevocation(
        device=device.name, revoked_at=None, certificates_revoked=0, tokens_revoked=0
    )


# -- the broker's view ------------------------------------------------------------------------


class _Refused(Exception):
    """A presented credential is not accepted; the message is the logged reason."""


class _Retry(Exception):
    """A concurrent just-in-time registration of the same device: look again."""


class StoreDeviceAuthority:
    """:class:`cloud.auth.device_identity.DeviceAuthority` backed by the store.

    Stateless apart from parsed CA certificates (immutable per CA id), so a revocation,
    a disabled CA or a switched-off JIT flag takes effect at the next authentication,
    in every node. A refusal is logged with its reason and returns None; nothing is
    raised to the broker.
    """

    def __init__(self, store: Store) -> None:
        self._store = store
        self._ca_certs: dict[int, Certificate] = {}

    async def trusted_cas(self) -> list[str]:
        async with self._store.sessions() as session:
            return [row.certificate_pem for row in await enabled_cas(session)]

    async def by_token(self, username: str, password: str) -> DeviceIdentity | None:
        try:
            async with self._store.sessions() as session:
                identity = await authenticate_token(session, password, device_name=username)
                await session.commit()  # last_used_at
        except Unauthorized as exc:
            log.warning("device login as %r refused: %s", username, exc.detail)
            return None
        except Exception:
            log.exception("device login as %r refused: the token check failed", username)
            return None
        if not _GATEWAY_NAME.match(identity.name):
            log.warning("device login as %r refused: not a gateway", username)
            return None
        return identity

    async def by_certificate(self, der: bytes) -> DeviceIdentity | None:
        try:
            cert = x509.load_certificate(der)
        except x509.CertificateError as exc:
            log.warning("device certificate refused: %s", exc)
            return None
        what = (
            f"device certificate CN={x509.common_name(cert.subject)!r} "
            f"issuer={x509.name_string(cert.issuer)!r} serial={x509.serial_hex(cert)}"
        )
        for attempt in (1, 2):
            try:
                async with self._store.sessions() as session:
                    return await self._identify(session, cert, last_attempt=attempt == 2)
            except _Refused as exc:
                log.warning("%s refused: %s", what, exc)
                return None
            except _Retry:
                continue
            except Exception:
                log.exception("%s refused: the check failed", what)
                return None
        log.warning("%s refused: concurrent registrations did not settle", what)
        return None

    def _ca_cert(self, ca: CertificateAuthority) -> Certificate:
        cert = self._ca_certs.get(ca.id)
        if cert is None:
            cert = self._ca_certs[ca.id] = x509.load_certificate(ca.certificate_pem)
        return cert

    async def _identify(
        self, session: AsyncSession, cert: Certificate, *, last_attempt: bool
    ) -> DeviceIdentity:
        issuer = x509.name_string(cert.issuer)[:MAX_SUBJECT_LENGTH]
        candidates = await cas_with_subject(session, issuer)
        ca = next((c for c in candidates if x509.issued_by(cert, self._ca_cert(c))), None)
        if ca is None:
            raise _Refused("no registered certificate authority issued it")
        if ca.disabled_at is not None:
            raise _Refused(f"its certificate authority {ca.id} ({ca.name!r}) is disabled")
        if ca.not_after <= utcnow():
            raise _Refused(f"its certificate authority {ca.id} ({ca.name!r}) has expired")
        problem = x509.validity_problem(cert) or x509.client_certificate_problem(cert)
        if problem is not None:
            raise _Refused(problem)
        name = x509.common_name(cert.subject)
        if name is None or not _GATEWAY_NAME.match(name):
            raise _Refused(f"its common name is not a gateway name ({NAME_PATTERN})")
        fingerprint = x509.fingerprint(cert)
        known = await find_certificate(session, fingerprint)
        if known is not None and known.revoked_at is not None:
            raise _Refused(f"the certificate was revoked at {known.revoked_at.isoformat()}")
        if known is not None and known.org_id != ca.org_id:
            raise _Refused("the certificate is recorded for another org than its CA's")
        try:
            device: Device | None = await _device(session, ca.org_id, name)
        except NotFound:
            device = None
        system = Actor.system(ca.org_id, JIT_ACTOR)
        if device is not None:
            if device.kind != DeviceKind.GATEWAY.value:
                raise _Refused(f"{name!r} is not a gateway")
            if device.revoked_at is not None:
                raise _Refused(f"device {name!r} is revoked")
            if known is not None and known.device_id != device.id:
                raise _Refused("the certificate is recorded for another device")
            if known is None:  # signed outside the cloud: learn it, so it can be revoked
                await self._learn(session, system, ca, device, cert, fingerprint, last_attempt)
                await session.commit()
            return DeviceIdentity(org_id=device.org_id, device_id=device.id, name=device.name)
        if not ca.jit_registration:
            raise _Refused(
                f"no gateway {name!r} in the CA's org and CA {ca.id} ({ca.name!r}) does not "
                "allow just-in-time registration"
            )
        try:
            device = await DeviceRepository(session, ca.org_id).create_gateway(name)
        except AlreadyExists as exc:
            if last_attempt:
                raise _Refused(f"a gateway named {name!r} already exists in another org") from exc
            raise _Retry from exc
        await audit.record(
            session, system, "device.create", "device", device.name,
            after=_device_snapshot(device),
        )
        await self._learn(session, system, ca, device, cert, fingerprint, last_attempt)
        await session.commit()
        log.info("gateway %s registered just in time by CA %s (org %s)", name, ca.id, ca.org_id)
        return DeviceIdentity(org_id=device.org_id, device_id=device.id, name=device.name)

    async def _learn(
        self,
        session: AsyncSession,
        actor: AuditActor,
        ca: CertificateAuthority,
        device: Device,
        cert: Certificate,
        fingerprint: str,
        last_attempt: bool,
    ) -> None:
        try:
            row = await DeviceCertificateRepository(session, ca.org_id).add(
                device_id=device.id,
                ca_id=ca.id,
                serial=x509.serial_hex(cert),
                fingerprint=fingerprint,
                common_name=device.name,
                not_before=cert.not_valid_before_utc,
                not_after=cert.not_valid_after_utc,
                source=SOURCE_JIT,
                created_at=utcnow(),
            )
        except IntegrityError as exc:  # the same certificate, learnt concurrently
            if last_attempt:
                raise _Refused("the certificate is being registered concurrently") from exc
            raise _Retry from exc
        await audit.record(
            session, actor, "device_certificate.create", "device_certificate", row.id,
            after=certificate_public(row, device.name),
        )

