"""The listings as the admin pages through them: the newest first (by publication, as a
reader of the board sees them). Importing and withdrawing are listings/store.py's, the same
path as `newsletter listings import` and the API."""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from newsletter.models import Listing

PAGE_SIZE = 50


@dataclass(frozen=True)
class Page:
    listings: list[Listing]
    page: int
    pages: int
    total: int


def page(session: Session, number: int = 1, size: int = PAGE_SIZE) -> Page:
    """The `number`th page (from 1) of every listing, withdrawn ones too, newest first."""
    total = int(session.scalar(select(func.count()).select_from(Listing)) or 0)
    pages = max(1, -(-total // size))
    number = min(max(1, number), pages)
    rows = list(session.scalars(
        select(Listing).order_by(Listing.published_at.desc(), Listing.id.desc()).offset((number - 1) * size).limit(size)))
    return Page(rows, number, pages, total)


def get(session: Session, external_id: str) -> Listing | None:
    """The listing of the board's id, or None."""
    if "\x00" in external_id:  # none holds one, and PostgreSQL refuses it as a parameter
        return None
    return session.scalar(select(Listing).where(Listing.external_id == external_id))
