"""Users of an org: who may create, change or remove whom.

Rules: nobody creates a user, or gives a role, above their own role; nobody changes or
removes a user whose role is above their own; an org always keeps at least one active
owner. Every change is audited (never the password or its hash).
"""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession

from cloud import audit
from cloud.api.schemas.access import UserCreate, UserPublic, UserUpdate
from cloud.auth.passwords import hash_password, verify_password
from cloud.auth.principal import Principal
from cloud.errors import Conflict, InvalidParameter
from cloud.store.models import Role, User, utcnow
from cloud.store.users import UserRepository


def public(user: User) -> UserPublic:
    return UserPublic.model_validate(user)


async def create_user(
    session: AsyncSession, org_id: int, body: UserCreate, *, actor: Principal | None = None
) -> User:
    """Create a user (committed). ``actor`` None is the CLI/bootstrap (no role check)."""
    if actor is not None:
        actor.require(body.role)
    row = await UserRepository(session, org_id).add(
        email=body.email, name=body.name, password_hash=hash_password(body.password),
        role=body.role.value,
    )
    if actor is not None:
        await audit.record(session, actor, "user.create", "user", row.id, after=public(row))
    await session.commit()
    return row


async def list_users(session: AsyncSession, principal: Principal) -> list[User]:
    return await UserRepository(session, principal.org_id).list()


async def get_user(session: AsyncSession, principal: Principal, user_id: int) -> User:
    return await UserRepository(session, principal.org_id).get(user_id)


async def update_user(
    session: AsyncSession, principal: Principal, user_id: int, body: UserUpdate
) -> User:
    repo = UserRepository(session, principal.org_id)
    row = await repo.get(user_id)
    principal.require(Role(row.role))
    before = public(row)
    if body.role is not None:
        principal.require(body.role)
        row.role = body.role.value
    if body.name is not None:
        row.name = body.name
    if body.password is not None:
        row.password_hash = hash_password(body.password)
    if body.disabled is not None:
        row.disabled_at = (row.disabled_at or utcnow()) if body.disabled else None
    await session.flush()
    await _keep_an_owner(repo, before)
    await audit.record(
        session, principal, "user.update", "user", row.id, before=before, after=public(row)
    )
    await session.commit()
    return row


async def delete_user(session: AsyncSession, principal: Principal, user_id: int) -> None:
    repo = UserRepository(session, principal.org_id)
    row = await repo.get(user_id)
    principal.require(Role(row.role))
    before = public(row)
    await repo.delete(row)
    await _keep_an_owner(repo, before)
    await audit.record(session, principal, "user.delete", "user", user_id, before=before)
    await session.commit()


async def change_own_password(
    session: AsyncSession, principal: Principal, current: str, new: str
) -> None:
    """A signed-in user replaces their password (the current one is required)."""
    if principal.user_id is None:
        raise Conflict("only a signed-in user has a password; API keys do not")
    row = await UserRepository(session, principal.org_id).get(principal.user_id)
    if not verify_password(row.password_hash, current):
        raise InvalidParameter("the current password is wrong", field="current_password")
    row.password_hash = hash_password(new)
    await audit.record(session, principal, "user.password", "user", row.id)
    await session.commit()


async def _keep_an_owner(repo: UserRepository, before: UserPublic) -> None:
    was_active_owner = before.role is Role.OWNER and before.disabled_at is None
    if was_active_owner and await repo.count_active_owners() == 0:
        await repo.session.rollback()
        raise Conflict("the org must keep at least one active owner")
