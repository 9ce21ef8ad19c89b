"""newsletter.db: the retry every writer of a unique row shares (a signup of a new address,
a new listing id from the API or the CLI)."""

from __future__ import annotations

import pytest
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from newsletter.db import retry_once_on_conflict
from newsletter.models import Suppression


def test_a_concurrent_insert_of_the_same_row_is_run_again_once_and_then_found(database):
    tries: list[str] = []

    def insert_unless_there() -> str:
        tries.append("try")
        if len(tries) == 1:
            # Another writer inserts the same row between our look (none yet) and our insert.
            with database.session_scope() as other:
                other.add(Suppression(email_hash="h1", reason="erased"))
        elif session.get(Suppression, "h1") is not None:
            return "found"
        session.add(Suppression(email_hash="h1", reason="unsubscribed"))
        return "inserted"

    with database.sessionmaker() as session:
        assert retry_once_on_conflict(session, insert_unless_there) == "found"
    assert len(tries) == 2
    with database.session_scope() as session:
        assert session.scalars(select(Suppression.reason)).all() == ["erased"]


def test_a_second_collision_is_rolled_back_and_raised(database):
    with database.session_scope() as session:
        session.add(Suppression(email_hash="h2", reason="erased"))
    tries: list[str] = []

    def always_collide() -> None:
        tries.append("try")
        session.add(Suppression(email_hash="h2", reason="unsubscribed"))

    with database.sessionmaker() as session:
        with pytest.raises(IntegrityError):
            retry_once_on_conflict(session, always_collide)
        assert len(tries) == 2
        assert session.scalar(select(Suppression.reason)) == "erased"  # the session is usable again


def test_the_steps_own_error_is_left_to_the_caller_and_not_retried(database):
    tries: list[str] = []

    def refuse() -> None:
        tries.append("try")
        raise ValueError("a feed that cannot be read")

    with database.sessionmaker() as session, pytest.raises(ValueError):
        retry_once_on_conflict(session, refuse)
    assert tries == ["try"]
