"""The one way the vault opens a database transaction, and runs the UPDATE/DELETE statements its compare-and-sets are.

Every vault module goes through here, so every session behaves the same: rows read stay readable after the commit
(callers get plain detached objects), and a statement's answer is the number of rows it changed.
"""

from __future__ import annotations

from typing import Any, cast

from sqlalchemy import CursorResult, Delete, Engine, Update
from sqlmodel import Session


def open_session(engine: Engine) -> Session:
    """`with open_session(engine) as session: …; session.commit()`: one transaction, committed by the caller."""
    return Session(engine, expire_on_commit=False)


def rows_changed(session: Session, statement: Update | Delete) -> int:
    """Run `statement` in the session's transaction and say how many rows it changed: for a compare-and-set,
    1 means this caller won and 0 that the condition no longer held."""
    # An UPDATE or DELETE always answers with a cursor result; Session.execute is annotated with the generic Result.
    return cast(CursorResult[Any], session.execute(statement)).rowcount


def change(engine: Engine, statement: Update | Delete) -> int:
    """Run one UPDATE or DELETE in a transaction of its own and commit it; returns how many rows it changed."""
    with open_session(engine) as session:
        changed = rows_changed(session, statement)
        session.commit()
        return changed
