"""Signed-in browser sessions, server-side: the cookie carries a random session id, the database only its SHA-256.
A session ends at its absolute lifetime, after an idle lifetime without requests, at /logout, or when an operator
revokes it (`grantkeeper sessions revoke`). Blocking database calls: run them in a thread."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy import ColumnElement, update
from sqlmodel import Session, col, select

from server.identity.models import BrowserSession
from server.identity.people import Person
from server.settings import Settings
from server.vault import Vault
from server.vault.crypto import hash_token, new_secret_token
from server.vault.models import utcnow

SESSION_COOKIE = "gk_session"
# `last_seen_at` is written at most this often: the idle lifetime needs minutes, not every request.
TOUCH_EVERY = timedelta(seconds=60)


@dataclass(frozen=True)
class SignedIn:
    person: Person
    session_id: str  # the row id, for listings and form-token scopes; never the cookie value


def cookie_name(settings: Settings) -> str:
    # The __Host- prefix makes browsers refuse the cookie unless Secure, host-only and Path=/.
    return "__Host-" + SESSION_COOKIE if settings.public_url.startswith("https://") else SESSION_COOKIE


class SessionStore:
    def __init__(self, vault: Vault, settings: Settings):
        self.engine = vault.engine
        self.settings = settings

    def create(self, person: Person) -> str:
        """A new session for `person`; returns the cookie value (the only copy)."""
        value = new_secret_token()
        now = utcnow()
        row = BrowserSession(
            session_hash=hash_token(value),
            org=person.org,
            user=person.user,
            subject=person.subject,
            email=person.email,
            is_admin=person.is_admin,
            created_at=now,
            last_seen_at=now,
            expires_at=now + timedelta(seconds=self.settings.session_absolute_seconds),
        )
        with Session(self.engine) as session:
            session.add(row)
            session.commit()
        return value

    def resolve(self, value: str | None) -> SignedIn | None:
        if not value or len(value) > 128:
            return None
        now = utcnow()
        with Session(self.engine, expire_on_commit=False) as session:
            row = session.exec(select(BrowserSession).where(BrowserSession.session_hash == hash_token(value))).first()
            if row is None or row.revoked_at is not None or row.expires_at <= now:
                return None
            if now - row.last_seen_at > timedelta(seconds=self.settings.session_idle_seconds):
                return None
            if now - row.last_seen_at > TOUCH_EVERY:
                session.exec(update(BrowserSession).where(col(BrowserSession.id) == row.id).values(last_seen_at=now))
                session.commit()
        person = Person(org=row.org, user=row.user, subject=row.subject, email=row.email, is_admin=row.is_admin)
        return SignedIn(person, row.id)

    def end(self, value: str) -> bool:
        with Session(self.engine) as session:
            result = session.exec(
                update(BrowserSession)
                .where(col(BrowserSession.session_hash) == hash_token(value), col(BrowserSession.revoked_at).is_(None))
                .values(revoked_at=utcnow())
            )
            session.commit()
            return result.rowcount > 0

    def listing(self, *, include_ended: bool = False) -> list[BrowserSession]:
        now = utcnow()
        with Session(self.engine, expire_on_commit=False) as session:
            rows = list(session.exec(select(BrowserSession).order_by(col(BrowserSession.created_at))))
        if include_ended:
            return rows
        return [row for row in rows if row.revoked_at is None and row.expires_at > now]

    def revoke(self, *, session_id: str | None = None, org: str | None = None, user: str | None = None) -> int:
        """Revoke one session by id, or every live session of org (and user)."""
        conditions: list[ColumnElement[bool]] = [col(BrowserSession.revoked_at).is_(None)]
        if session_id:
            conditions.append(col(BrowserSession.id) == session_id)
        if org:
            conditions.append(col(BrowserSession.org) == org)
        if user:
            conditions.append(col(BrowserSession.user) == user)
        if len(conditions) == 1:
            raise ValueError("name a session id, or an org (and user)")
        with Session(self.engine) as session:
            result = session.exec(update(BrowserSession).where(*conditions).values(revoked_at=utcnow()))
            session.commit()
            return result.rowcount
