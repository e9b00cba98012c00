"""API keys: how an HTTP caller proves who it is. A key is shown once and stored only as its hash."""

from __future__ import annotations

from sqlalchemy import Engine, or_
from sqlmodel import col, select

from server.vault.crypto import hash_token
from server.vault.models import ApiKey, utcnow
from server.vault.sessions import open_session


class ApiKeys:
    """`vault.api_keys`: create, look up, list and revoke keys."""

    def __init__(self, engine: Engine):
        self.engine = engine

    def create(self, *, key: str, prefix: str, org: str, user: str, description: str | None, admin: bool = False) -> ApiKey:
        row = ApiKey(key_hash=hash_token(key), prefix=prefix, org=org, user=user, description=description, admin=admin)
        with open_session(self.engine) as session:
            session.add(row)
            session.commit()
        return row

    def find(self, key: str) -> ApiKey | None:
        """The live (unrevoked) key with this value, looked up by hash."""
        with open_session(self.engine) as session:
            return session.exec(
                select(ApiKey).where(col(ApiKey.key_hash) == hash_token(key), col(ApiKey.revoked_at).is_(None))
            ).first()

    def all(self, org: str | None = None, user: str | None = None) -> list[ApiKey]:
        """Every key (of `org`, of `user`), revoked ones included, ordered by org, user and creation."""
        with open_session(self.engine) as session:
            statement = select(ApiKey).order_by(col(ApiKey.org), col(ApiKey.user), col(ApiKey.created_at))
            if org is not None:
                statement = statement.where(col(ApiKey.org) == org)
            if user is not None:
                statement = statement.where(col(ApiKey.user) == user)
            return list(session.exec(statement))

    def revoke(self, key_id_or_prefix: str) -> list[ApiKey]:
        """Revoke the live key with this id or printed prefix; returns what was revoked (empty: none matched).
        A prefix that matches several keys revokes none of them and returns them all, unrevoked."""
        with open_session(self.engine) as session:
            matches = list(
                session.exec(
                    select(ApiKey).where(
                        or_(col(ApiKey.id) == key_id_or_prefix, col(ApiKey.prefix) == key_id_or_prefix),
                        col(ApiKey.revoked_at).is_(None),
                    )
                )
            )
            if len(matches) != 1:
                return matches
            matches[0].revoked_at = utcnow()
            session.add(matches[0])
            session.commit()
            return matches
