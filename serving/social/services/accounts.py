"""Users, sessions and the social graph: registration, login with bearer tokens (stored as
SHA-256 hashes only), follows and blocks. Graph changes reach the fanout worker through the
outbox (stream ``graph``)."""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from serving.social.cachekeys import graph_key
from serving.social.context import Context
from serving.social.domain import (
    BadRequest,
    Conflict,
    Event,
    NotFound,
    Unauthorized,
    Unavailable,
    User,
)
from serving.social.services.shared import existing_user
from serving.social.storage.interfaces import MetadataTx

USERNAME = re.compile(r"^[a-z0-9_]{3,30}$")
_SCRYPT_N, _SCRYPT_R, _SCRYPT_P = 2**14, 8, 1


def hash_password(password: str, *, salt: bytes | None = None) -> str:
    """``scrypt$N$r$p$salt$hash`` with a random 16-byte salt (stdlib scrypt, 64 MiB-safe)."""
    salt = salt if salt is not None else secrets.token_bytes(16)
    digest = hashlib.scrypt(
        password.encode(), salt=salt, n=_SCRYPT_N, r=_SCRYPT_R, p=_SCRYPT_P, dklen=32
    )
    b64 = base64.b64encode
    return f"scrypt${_SCRYPT_N}${_SCRYPT_R}${_SCRYPT_P}${b64(salt).decode()}${b64(digest).decode()}"


def verify_password(password: str, stored: str) -> bool:
    try:
        scheme, n, r, p, salt, digest = stored.split("$")
    except ValueError:
        return False
    if scheme != "scrypt":
        return False
    got = hashlib.scrypt(
        password.encode(),
        salt=base64.b64decode(salt),
        n=int(n),
        r=int(r),
        p=int(p),
        dklen=32,
    )
    return hmac.compare_digest(got, base64.b64decode(digest))


def token_hash(token: str) -> str:
    """What the store keeps of a bearer token: a leaked table gives no usable tokens."""
    return hashlib.sha256(token.encode()).hexdigest()


# A fixed hash to verify against when the username is unknown, so a login takes as long for a
# missing user as for a wrong password (no user enumeration by timing).
_DUMMY_HASH = hash_password("not-a-password", salt=b"\0" * 16)


@dataclass(frozen=True)
class Session:
    user: User
    token: str
    expires_at: float


class AccountService:
    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx

    # --- sessions -----------------------------------------------------------------------------

    def register(
        self, username: str, password: str, *, country: str = "", age_bucket: str = ""
    ) -> Session:
        if not USERNAME.match(username):
            raise BadRequest("username must be 3-30 characters of a-z, 0-9 and _", field="username")
        minimum = self.ctx.settings.auth.password_min_length
        if len(password) < minimum:
            raise BadRequest(f"password must have at least {minimum} characters", field="password")
        if len(country) > 8 or len(age_bucket) > 16:
            raise BadRequest("country or age_bucket too long", field="country")
        stored = hash_password(password)
        now = self.ctx.clock.now()
        with self.ctx.storage.metadata.transaction() as tx:
            user = tx.create_user(username, stored, now, country=country, age_bucket=age_bucket)
            token, expires = self._new_token(tx, user.id, now)
        return Session(user, token, expires)

    def login(self, username: str, password: str) -> Session:
        with self.ctx.storage.metadata.transaction() as tx:
            found = tx.user_credentials(username)
        if found is None:
            verify_password(password, _DUMMY_HASH)
            raise Unauthorized("wrong username or password")
        user, stored = found
        if not verify_password(password, stored):
            raise Unauthorized("wrong username or password")
        now = self.ctx.clock.now()
        with self.ctx.storage.metadata.transaction() as tx:
            token, expires = self._new_token(tx, user.id, now)
            tx.touch_user(user.id, now)
        return Session(user, token, expires)

    def _new_token(self, tx: MetadataTx, user_id: int, now: float) -> tuple[str, float]:
        token = secrets.token_urlsafe(32)
        expires = now + self.ctx.settings.auth.token_ttl_days * 86_400
        tx.add_token(user_id, token_hash(token), now, expires)
        return token, expires

    def authenticate(self, token: str) -> int:
        """The user id of a valid bearer token; :class:`Unauthorized` otherwise."""
        if not token:
            raise Unauthorized("missing bearer token")
        with self.ctx.storage.metadata.transaction() as tx:
            user_id = tx.user_for_token(token_hash(token), self.ctx.clock.now())
        if user_id is None:
            raise Unauthorized("invalid or expired token")
        return user_id

    def logout(self, token: str) -> None:
        with self.ctx.storage.metadata.transaction() as tx:
            tx.revoke_token(token_hash(token))

    def purge_idempotency_keys(self) -> int:
        """Deletes idempotency keys older than ``server.idempotency_ttl_s`` (a retry after that
        is a new write); returns how many. Run by the cleanup job."""
        before = self.ctx.clock.now() - self.ctx.settings.server.idempotency_ttl_s
        with self.ctx.storage.metadata.transaction() as tx:
            return tx.purge_idempotency_keys(before)

    # --- profiles -----------------------------------------------------------------------------

    def profile(self, viewer_id: int, user_id: int) -> dict[str, object]:
        """``user_id``'s profile as ``viewer_id`` sees it: 404 (as if missing) when either
        blocked the other."""
        with self.ctx.storage.metadata.reading() as tx:
            user = existing_user(tx, user_id)
            if user_id != viewer_id and user_id in tx.blocked_either_way(viewer_id):
                raise NotFound(f"user {user_id} not found", field="user_id")
            return {
                "id": user.id,
                "username": user.username,
                "created_at": user.created_at,
                "followers": tx.follower_count(user_id),
                "following": tx.followee_count(user_id),
            }

    # --- graph --------------------------------------------------------------------------------

    def _emit(self, tx: MetadataTx, changed: bool, kind: str, **payload: int) -> None:
        """Puts the graph event ``kind`` in the outbox when the graph ``changed``."""
        if changed:
            event = Event(stream="graph", kind=kind, payload=payload, ts=self.ctx.clock.now())
            tx.add_outbox(event)

    @staticmethod
    def _other_user(tx: MetadataTx, user_id: int, other_id: int, verb: str) -> None:
        """Checks that ``user_id`` may ``verb`` ``other_id``: not themselves (400), and a user
        that exists (404)."""
        if user_id == other_id:
            raise BadRequest(f"cannot {verb} yourself", field="user_id")
        existing_user(tx, other_id)

    @contextmanager
    def _graph_transaction(self, *user_ids: int) -> Iterator[MetadataTx]:
        """A transaction that changes the graph of ``user_ids``: once it commits, the feed's
        cached follow graph of these users is dropped."""
        with self.ctx.storage.metadata.transaction() as tx:
            yield tx
        try:
            for user_id in user_ids:
                self.ctx.storage.cache.delete(graph_key(user_id))
        except Unavailable:
            # Committed. A Redis that lost its data lost the entry too; one that kept it keeps
            # a stale graph for at most GRAPH_TTL_S (the feed filters on it meanwhile).
            pass

    def follow(self, follower_id: int, followee_id: int) -> bool:
        """True if the follow is new. Backfill happens in the fanout worker."""
        with self._graph_transaction(follower_id) as tx:
            self._other_user(tx, follower_id, followee_id, "follow")
            if followee_id in tx.blocked_either_way(follower_id):
                raise Conflict("cannot follow: one of you blocked the other", field="user_id")
            created = tx.add_follow(follower_id, followee_id, self.ctx.clock.now())
            self._emit(tx, created, "follow.created", follower=follower_id, followee=followee_id)
        return created

    def unfollow(self, follower_id: int, followee_id: int) -> bool:
        with self._graph_transaction(follower_id) as tx:
            removed = tx.remove_follow(follower_id, followee_id, self.ctx.clock.now())
            self._emit(tx, removed, "follow.removed", follower=follower_id, followee=followee_id)
        return removed

    def block(self, blocker_id: int, blocked_id: int) -> bool:
        """Blocks and removes the follows in both directions (their posts leave both feeds)."""
        with self._graph_transaction(blocker_id, blocked_id) as tx:
            self._other_user(tx, blocker_id, blocked_id, "block")
            now = self.ctx.clock.now()
            created = tx.add_block(blocker_id, blocked_id, now)
            tx.remove_follow(blocker_id, blocked_id, now)
            tx.remove_follow(blocked_id, blocker_id, now)
            self._emit(tx, created, "block.created", blocker=blocker_id, blocked=blocked_id)
        return created

    def unblock(self, blocker_id: int, blocked_id: int) -> bool:
        with self._graph_transaction(blocker_id, blocked_id) as tx:
            return tx.remove_block(blocker_id, blocked_id)
