"""End a refresh cooldown (server/lifecycle/tokens.py) by moving its end into the past instead of waiting it out."""

from __future__ import annotations

from datetime import timedelta

from sqlalchemy import update
from sqlmodel import Session

from server.vault.models import Credential, utcnow


def end_the_cooldown(vault, account_id: str) -> None:
    with Session(vault.engine) as session:
        session.execute(
            update(Credential).where(Credential.account_id == account_id).values(refresh_due_at=utcnow() - timedelta(seconds=1))
        )
        session.commit()
