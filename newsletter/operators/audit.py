"""The audit log of the web admin and its command line: who did what, when, from which
address, to which edition. Append-only: rows are only ever added (the database refuses
UPDATE and DELETE on them, migration 0006), and nothing here changes one.

`detail` holds what the action needs to be understood later (a test mail's recipient
count, a login's outcome), never a secret: no password, no token, no reader's link."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from newsletter.models import AuditEvent, utcnow

MAX_ACTOR = 320
MAX_ACTION = 64
PAGE_SIZE = 100


def record(
    session: Session, actor: str, action: str, *, ip: str | None = None, edition_id: int | None = None,
    detail: dict[str, object] | None = None,
) -> AuditEvent:
    """Add one event; the caller commits it with the change it describes (or alone, for
    something refused, like a failed login)."""
    event = AuditEvent(actor=actor[:MAX_ACTOR], action=action[:MAX_ACTION], ip=(ip or None) and ip[:64],
                       edition_id=edition_id, detail=detail or None, at=utcnow())
    session.add(event)
    session.flush()
    return event


@dataclass(frozen=True)
class Page:
    """One page of the log, newest first."""

    events: list[AuditEvent]
    page: int
    pages: int
    total: int


def page(session: Session, number: int = 1, size: int = PAGE_SIZE, action: str | None = None) -> Page:
    """The `number`th page (from 1) of the log, newest first; only `action` when given."""
    query = select(AuditEvent)
    if action:
        query = query.where(AuditEvent.action == action)
    total = int(session.scalar(select(func.count()).select_from(query.subquery())) or 0)
    pages = max(1, -(-total // size))
    number = min(max(1, number), pages)
    events = list(session.scalars(query.order_by(AuditEvent.id.desc()).offset((number - 1) * size).limit(size)))
    return Page(events, number, pages, total)


def actions(session: Session) -> list[str]:
    """Every action the log holds, for the filter of its page."""
    return list(session.scalars(select(AuditEvent.action).distinct().order_by(AuditEvent.action)))
