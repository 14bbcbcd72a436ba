"""Certificate authority and device certificate rows.

The repositories serve API callers and scope every query by their org. The module-level
functions are for device authentication (a presented certificate says nothing about its
org until its issuer is found) and for global uniqueness checks; they are never used to
answer an API caller with another org's data.
"""

from __future__ import annotations

import builtins
from datetime import datetime
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from cloud.errors import NotFound
from cloud.store.models import CertificateAuthority, DeviceCertificate, utcnow


async def fingerprint_registered(session: AsyncSession, fingerprint: str) -> bool:
    """Whether any org registered a CA with this fingerprint."""
    stmt = select(CertificateAuthority.id).where(CertificateAuthority.fingerprint == fingerprint)
    return (await session.execute(stmt)).first() is not None


async def enabled_cas(session: AsyncSession) -> list[CertificateAuthority]:
    """Every enabled CA of every org (the broker's trust store)."""
    stmt = (
        select(CertificateAuthority)
        .where(CertificateAuthority.disabled_at.is_(None))
        .order_by(CertificateAuthority.id)
    )
    return list((await session.execute(stmt)).scalars())


async def cas_with_subject(session: AsyncSession, subject: str) -> list[CertificateAuthority]:
    """CAs of any org, enabled or not, whose subject is ``subject`` (candidates for the
    issuer of a presented certificate; the signature decides)."""
    stmt = (
        select(CertificateAuthority)
        .where(CertificateAuthority.subject == subject)
        .order_by(CertificateAuthority.id)
    )
    return list((await session.execute(stmt)).scalars())


async def find_certificate(session: AsyncSession, fingerprint: str) -> DeviceCertificate | None:
    """The device certificate row with this fingerprint, any org (authentication)."""
    stmt = select(DeviceCertificate).where(DeviceCertificate.fingerprint == fingerprint)
    return (await session.execute(stmt)).scalar_one_or_none()


class CertificateAuthorityRepository:
    """CAs of one org."""

    def __init__(self, session: AsyncSession, org_id: int) -> None:
        self.session = session
        self.org_id = org_id

    async def add(self, **fields: Any) -> CertificateAuthority:
        row = CertificateAuthority(org_id=self.org_id, **fields)
        self.session.add(row)
        await self.session.flush()
        return row

    async def list(self) -> list[CertificateAuthority]:
        stmt = (
            select(CertificateAuthority)
            .where(CertificateAuthority.org_id == self.org_id)
            .order_by(CertificateAuthority.id)
        )
        return list((await self.session.execute(stmt)).scalars())

    async def get(self, ca_id: int) -> CertificateAuthority:
        """The CA; :class:`NotFound` when absent or another org's."""
        stmt = select(CertificateAuthority).where(
            CertificateAuthority.org_id == self.org_id, CertificateAuthority.id == ca_id
        )
        row = (await self.session.execute(stmt)).scalar_one_or_none()
        if row is None:
            raise NotFound(f"certificate authority {ca_id} not found")
        return row

    async def name_taken(self, name: str, *, other_than: int | None = None) -> bool:
        stmt = select(CertificateAuthority.id).where(
            CertificateAuthority.org_id == self.org_id, CertificateAuthority.name == name
        )
        if other_than is not None:
            stmt = stmt.where(CertificateAuthority.id != other_than)
        return (await self.session.execute(stmt)).first() is not None

    async def newest_signing(self) -> CertificateAuthority | None:
        """The newest enabled, unexpired CA that holds a private key."""
        stmt = (
            select(CertificateAuthority)
            .where(
                CertificateAuthority.org_id == self.org_id,
                CertificateAuthority.disabled_at.is_(None),
                CertificateAuthority.encrypted_key.is_not(None),
                CertificateAuthority.not_after > utcnow(),
            )
            .order_by(CertificateAuthority.created_at.desc(), CertificateAuthority.id.desc())
            .limit(1)
        )
        return (await self.session.execute(stmt)).scalar_one_or_none()


class DeviceCertificateRepository:
    """Device certificates of one org."""

    def __init__(self, session: AsyncSession, org_id: int) -> None:
        self.session = session
        self.org_id = org_id

    async def add(self, **fields: Any) -> DeviceCertificate:
        row = DeviceCertificate(org_id=self.org_id, **fields)
        self.session.add(row)
        await self.session.flush()
        return row

    async def list(self, device_id: int) -> list[DeviceCertificate]:
        stmt = (
            select(DeviceCertificate)
            .where(
                DeviceCertificate.org_id == self.org_id,
                DeviceCertificate.device_id == device_id,
            )
            .order_by(DeviceCertificate.id)
        )
        return list((await self.session.execute(stmt)).scalars())

    async def get(self, device_id: int, cert_id: int) -> DeviceCertificate:
        """The certificate; :class:`NotFound` when absent, another device's or another
        org's."""
        stmt = select(DeviceCertificate).where(
            DeviceCertificate.org_id == self.org_id,
            DeviceCertificate.device_id == device_id,
            DeviceCertificate.id == cert_id,
        )
        row = (await self.session.execute(stmt)).scalar_one_or_none()
        if row is None:
            raise NotFound(f"device certificate {cert_id} not found")
        return row

    async def revoke_all(self, device_id: int, when: datetime) -> int:
        """Revoke every live certificate of the device; returns how many."""
        result = await self.session.execute(
            update(DeviceCertificate)
            .where(
                DeviceCertificate.org_id == self.org_id,
                DeviceCertificate.device_id == device_id,
                DeviceCertificate.revoked_at.is_(None),
            )
            .values(revoked_at=when)
        )
        return int(getattr(result, "rowcount", 0) or 0)

    async def revoked_by_ca(self, ca_id: int) -> builtins.list[tuple[str, datetime]]:
        """(serial hex, revocation time) of the revoked certificates the CA issued."""
        stmt = (
            select(DeviceCertificate.serial, DeviceCertificate.revoked_at)
            .where(
                DeviceCertificate.org_id == self.org_id,
                DeviceCertificate.ca_id == ca_id,
                DeviceCertificate.revoked_at.is_not(None),
            )
            .order_by(DeviceCertificate.id)
        )
        return [
            (serial, revoked_at)
            for serial, revoked_at in (await self.session.execute(stmt)).all()
            if revoked_at is not None
        ]
