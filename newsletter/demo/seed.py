"""What `make demo` loads: the sample feed (dates moved so that it is fresh today), a few
confirmed demo readers with different searches, so an edition has something to show, and
an operator account of the web admin to look at it all with."""

from __future__ import annotations

import json
import secrets
from datetime import UTC, datetime, timedelta
from pathlib import Path

from sqlalchemy import select
from sqlalchemy.orm import Session

from newsletter.listings.criteria import DEFAULT_RADIUS
from newsletter.listings.formats import records_from_json
from newsletter.listings.store import ImportResult, import_records
from newsletter.models import AdminRole, ConsentEvent, Subscriber, SubscriberStatus, email_hash, utcnow
from newsletter.operators import accounts, audit
from newsletter.paths import REPO_ROOT

SAMPLE_FEED = REPO_ROOT / "data" / "listings-sample.json"
DEMO_OPERATOR = "demo@jobs.example.org"

DEMO_READERS = (
    # address, language, keywords, location
    ("anna@example.org", "de", "Python, Machine Learning", ""),
    ("ben@example.org", "de", "Pflege", ""),
    ("clara@example.org", "en", "Data", ""),
    ("dieter@example.org", "de", "", "München"),
)


def _shifted(items: list[dict[str, object]], now: datetime) -> list[dict[str, object]]:
    """Move every date by the same amount so that the newest listing is an hour old."""
    published = [datetime.fromisoformat(str(item["published_at"])) for item in items]
    newest = max(p if p.tzinfo else p.replace(tzinfo=UTC) for p in published)
    shift = now.replace(tzinfo=UTC) - newest - timedelta(hours=1)
    moved = []
    for item in items:
        copy = dict(item)
        for key in ("published_at", "valid_through"):
            value = copy.get(key)
            if value:
                parsed = datetime.fromisoformat(str(value))
                copy[key] = (parsed + shift).isoformat()
        moved.append(copy)
    return moved


def load_sample_listings(session: Session, feed: Path = SAMPLE_FEED) -> ImportResult:
    """Import the sample feed with fresh dates (the caller commits)."""
    items = json.loads(feed.read_text(encoding="utf-8"))
    return import_records(session, records_from_json(_shifted(items, utcnow())))


def add_demo_readers(session: Session) -> int:
    """Confirmed demo readers (only those not there yet); returns how many were added."""
    added = 0
    for address, language, keywords, location in DEMO_READERS:
        hashed = email_hash(address)
        if session.scalar(select(Subscriber.id).where(Subscriber.email_hash == hashed)) is not None:
            continue
        now = utcnow()
        # A place comes with the default radius, as from the signup form.
        reader = Subscriber(email=address, email_hash=hashed, language=language, keywords=keywords,
                            location=location, radius=DEFAULT_RADIUS if location else 0,
                            status=SubscriberStatus.CONFIRMED, confirmed_at=now)
        session.add(reader)
        session.flush()
        session.add(ConsentEvent(subscriber_public_id=reader.public_id, email_hash=hashed, event="imported",
                                 channel="demo", consent_version="demo", consent_text="demo reader"))
        added += 1
    return added


def demo_operator(session: Session) -> tuple[str, str]:
    """The demo's operator account with a new random password (a fixed one would be the
    same on every machine that ever ran the demo); returns (address, password). An
    account left from an earlier run gets the new password, which ends its old sessions.
    The caller commits."""
    password = secrets.token_urlsafe(12)
    if accounts.find(session, DEMO_OPERATOR) is None:
        accounts.create(session, DEMO_OPERATOR, password, AdminRole.OPERATOR)
        audit.record(session, "demo", "account.create", detail={"account": DEMO_OPERATOR, "role": AdminRole.OPERATOR})
    else:
        accounts.set_password(session, DEMO_OPERATOR, password)
        audit.record(session, "demo", "account.set_password", detail={"account": DEMO_OPERATOR})
    return DEMO_OPERATOR, password
