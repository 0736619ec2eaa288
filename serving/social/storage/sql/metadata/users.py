"""Users and their bearer tokens (tables ``users`` and ``tokens``)."""

from __future__ import annotations

import time
from collections.abc import Sequence

import sqlalchemy as sa

from serving.social.domain import Conflict, User
from serving.social.storage.sql import schema as s
from serving.social.storage.sql.metadata.base import TxBase, record


class UsersTx(TxBase):
    """The users-and-tokens methods of :class:`~serving.social.storage.interfaces.MetadataTx`."""

    def create_user(
        self, username: str, password_hash: str, now: float, country: str = "", age_bucket: str = ""
    ) -> User:
        """A new user; :class:`Conflict` (field ``username``) if the name is taken."""
        statement = (
            self._insert(s.users)
            .values(
                username=username,
                password_hash=password_hash,
                created_at=now,
                last_active_at=now,
                country=country,
                age_bucket=age_bucket,
            )
            .on_conflict_do_nothing(index_elements=["username"])
            .returning(s.users)
        )
        row = self._run(statement).first()
        if row is None:
            raise Conflict(f"username {username!r} is taken", field="username")
        return record(User, row)

    def get_user(self, user_id: int) -> User | None:
        """The user, or None."""
        return self._one(User, sa.select(s.users).where(s.users.c.id == user_id))

    def get_users(self, user_ids: Sequence[int]) -> dict[int, User]:
        """The existing users among ``user_ids`` by id."""
        return self._records_by_id(User, "users", s.users, user_ids)

    def user_credentials(self, username: str) -> tuple[User, str] | None:
        """The user and their stored password hash."""
        row = self._run(sa.select(s.users).where(s.users.c.username == username)).first()
        return (record(User, row), row.password_hash) if row is not None else None

    def touch_user(self, user_id: int, now: float) -> None:
        """Sets ``last_active_at``."""
        self._run(sa.update(s.users).where(s.users.c.id == user_id).values(last_active_at=now))

    def add_token(
        self, user_id: int, token_hash: str, created_at: float, expires_at: float
    ) -> None:
        """Stores a token hash."""
        self._run(
            sa.insert(s.tokens).values(
                token_hash=token_hash,
                user_id=user_id,
                created_at=created_at,
                expires_at=expires_at,
            )
        )

    def user_for_token(self, token_hash: str, now: float) -> int | None:
        """The user id of an unexpired, unrevoked token hash."""
        t = s.tokens.c
        statement = sa.select(t.user_id).where(
            t.token_hash == token_hash, t.revoked_at.is_(None), t.expires_at > now
        )
        return self._run(statement).scalar()

    def revoke_token(self, token_hash: str) -> bool:
        """Revokes the token (``revoked_at`` is the wall clock); False if unknown or revoked."""
        t = s.tokens.c
        result = self._run(
            sa.update(s.tokens)
            .where(t.token_hash == token_hash, t.revoked_at.is_(None))
            .values(revoked_at=time.time())
        )
        return result.rowcount > 0
