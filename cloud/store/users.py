"""User and console-session rows. Scoped by org, except the two lookups that start a
request's authentication (:func:`find_user_by_email`, :func:`find_session_by_prefix`)."""

from __future__ import annotations

from typing import Any

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from cloud.errors import AlreadyExists, NotFound
from cloud.store.models import User, UserSession


async def find_user_by_email(session: AsyncSession, email: str) -> User | None:
    """The user with this login e-mail, any org (sign-in only)."""
    stmt = select(User).where(User.email == email.strip().lower())
    return (await session.execute(stmt)).scalar_one_or_none()


async def find_session_by_prefix(
    session: AsyncSession, prefix: str
) -> tuple[UserSession, User] | None:
    """The console session with this lookup prefix and its user, any org (authentication)."""
    stmt = (
        select(UserSession, User)
        .join(User, User.id == UserSession.user_id)
        .where(UserSession.prefix == prefix)
    )
    row = (await session.execute(stmt)).first()
    return None if row is None else (row[0], row[1])


class UserRepository:
    """Users of one org."""

    def __init__(self, session: AsyncSession, org_id: int) -> None:
        self.session = session
        self.org_id = org_id

    async def add(self, *, email: str, **fields: Any) -> User:
        email = email.strip().lower()
        if await find_user_by_email(self.session, email) is not None:
            raise AlreadyExists(f"a user with e-mail {email!r} already exists", field="email")
        row = User(org_id=self.org_id, email=email, **fields)
        self.session.add(row)
        try:
            await self.session.flush()
        except IntegrityError as exc:  # a concurrent sign-up won the race
            raise AlreadyExists(
                f"a user with e-mail {email!r} already exists", field="email"
            ) from exc
        return row

    async def list(self) -> list[User]:
        stmt = select(User).where(User.org_id == self.org_id).order_by(User.id)
        return list((await self.session.execute(stmt)).scalars())

    async def get(self, user_id: int) -> User:
        stmt = select(User).where(User.org_id == self.org_id, User.id == user_id)
        row = (await self.session.execute(stmt)).scalar_one_or_none()
        if row is None:
            raise NotFound(f"user {user_id} not found")
        return row

    async def count_active_owners(self) -> int:
        stmt = select(func.count()).select_from(User).where(
            User.org_id == self.org_id, User.role == "owner", User.disabled_at.is_(None)
        )
        return int((await self.session.execute(stmt)).scalar_one())

    async def delete(self, row: User) -> None:
        await self.session.delete(row)
        await self.session.flush()

    async def add_session(self, row: UserSession) -> UserSession:
        self.session.add(row)
        await self.session.flush()
        return row
