"""Console sign-in: e-mail + password (Argon2id) → a session token ``fgs_…`` with expiry,
used as a bearer credential like an API key but acting as the user (and their role)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy.ext.asyncio import AsyncSession

from cloud.auth import secrets
from cloud.auth.passwords import hash_password, needs_rehash, verify_password
from cloud.auth.principal import ActorType, Principal
from cloud.errors import Unauthorized
from cloud.store.models import Role, User, UserSession, utcnow
from cloud.store.users import UserRepository, find_session_by_prefix, find_user_by_email

SESSION_PREFIX = "fgs_"


@dataclass(frozen=True, slots=True)
class SignedIn:
    user: User
    session: UserSession
    token: str
    """The session token in clear: returned once, at sign-in."""


def principal_of(user: User) -> Principal:
    return Principal(
        org_id=user.org_id,
        role=Role(user.role),
        actor_type=ActorType.USER,
        actor_id=str(user.id),
        actor_name=user.email,
    )


async def sign_in(
    session: AsyncSession, email: str, password: str, *, lifetime: timedelta
) -> SignedIn:
    """Check the password and open a session (committed). One message for every failure
    (unknown e-mail, wrong password, disabled user), so nothing is revealed."""
    user = await find_user_by_email(session, email)
    ok = verify_password(user.password_hash if user else None, password)
    if user is None or not ok or user.disabled_at is not None:
        raise Unauthorized("wrong e-mail or password")
    if needs_rehash(user.password_hash):
        user.password_hash = hash_password(password)
    token = secrets.generate(SESSION_PREFIX)
    now = utcnow()
    row = await UserRepository(session, user.org_id).add_session(
        UserSession(
            org_id=user.org_id,
            user_id=user.id,
            prefix=secrets.lookup_prefix(token),
            token_hash=secrets.digest(token),
            created_at=now,
            expires_at=now + lifetime,
        )
    )
    user.last_login_at = now
    await session.commit()
    return SignedIn(user=user, session=row, token=token)


async def authenticate(session: AsyncSession, token: str) -> Principal:
    """The principal of a session token; :class:`Unauthorized` when unknown, expired,
    signed out, or the user is disabled."""
    if not secrets.well_formed(token, SESSION_PREFIX):
        raise Unauthorized("malformed session token: expected 'fgs_' followed by the secret")
    found = await find_session_by_prefix(session, secrets.lookup_prefix(token))
    if found is None or not secrets.matches(token, found[0].token_hash):
        raise Unauthorized("invalid session token")
    row, user = found
    if row.revoked_at is not None:
        raise Unauthorized("the session was signed out")
    if row.expires_at <= utcnow():
        raise Unauthorized("the session has expired; sign in again")
    if user.disabled_at is not None:
        raise Unauthorized("the user is disabled")
    return principal_of(user)


async def sign_out(session: AsyncSession, token: str) -> None:
    """End the session of ``token`` (idempotent) and commit."""
    found = await find_session_by_prefix(session, secrets.lookup_prefix(token))
    if found is not None and secrets.matches(token, found[0].token_hash):
        if found[0].revoked_at is None:
            found[0].revoked_at = utcnow()
        await session.commit()
