"""`newsletter subscribers import`: moving an existing list in, consent record included.

Rows with `confirmed_at` become confirmed subscribers whose consent event carries the old
system's proof (time, IP, wording); rows without it get the double-opt-in mail. Every bad
row is named with its line and reason and changes nothing; suppressed addresses are never
re-added. The search columns radius, remote and employment_type are optional (a file of
an older export lacks them) and checked as the signup form checks them.
"""

from __future__ import annotations

import csv
import io
import ipaddress
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime

from sqlalchemy.orm import Session

from newsletter.subscribers.mailbox import mailbox_hash
from newsletter.subscribers.subscriptions import add_outbox_message
from newsletter.models import (
    ConfirmationMail,
    ConsentEvent,
    OutboxKind,
    Subscriber,
    SubscriberStatus,
    Suppression,
    email_hash,
    utcnow,
)
from newsletter.validation import (
    MAX_KEYWORDS,
    MAX_LOCATION,
    InvalidInput,
    clean_email,
    clean_employment_type,
    clean_language,
    clean_radius,
    clean_remote,
    clean_text,
)

REQUIRED_COLUMNS = ("email",)
KNOWN_COLUMNS = ("email", "language", "keywords", "location", "confirmed_at", "consent_ip", "consent_text",
                 "radius", "remote", "employment_type")


@dataclass
class ImportReport:
    confirmed: int = 0
    pending: int = 0
    skipped: list[str] = field(default_factory=list)
    rejected: list[str] = field(default_factory=list)
    outbox_ids: list[int] = field(default_factory=list)


def _parse_time(value: str) -> datetime:
    try:
        parsed = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
    except ValueError:
        raise InvalidInput("confirmed_at", f"confirmed_at: not an ISO 8601 time: {value[:40]!r}") from None
    if parsed.tzinfo is not None:
        parsed = parsed.astimezone(UTC).replace(tzinfo=None)
    if parsed > utcnow():
        raise InvalidInput("confirmed_at", "confirmed_at: lies in the future")
    return parsed


def _parse_ip(value: str) -> str | None:
    value = value.strip()
    if not value:
        return None
    try:
        return str(ipaddress.ip_address(value))
    except ValueError:
        raise InvalidInput("consent_ip", f"consent_ip: not an IP address: {value[:40]!r}") from None


class CsvError(ValueError):
    """The file is no CSV this import can read; nothing of it is taken."""


def _next(reader, line: int) -> list[str] | None:  # type: ignore[no-untyped-def]
    try:
        return next(reader, None)
    except csv.Error as exc:
        raise CsvError(f"line {line}: not valid CSV: {exc}") from None


@dataclass(frozen=True)
class ImportRow:
    """One row that passed validation, before anything is saved."""

    line: int
    email: str
    hashed: str
    language: str
    keywords: str
    location: str
    radius: int
    remote: str
    employment_type: str
    confirmed_at: datetime | None
    ip: str | None
    wording: str


def import_csv(
    session: Session, text: str, source: str = "import", progress: Callable[[int], None] | None = None
) -> ImportReport:
    """Import the CSV `text`; the caller commits and then queues report.outbox_ids.
    `progress(n)` after each record: n more of the text's lines are done (a command's
    progress bar; a quoted value may span lines)."""
    report = ImportReport()
    if not text.strip():
        raise CsvError("the file is empty")
    reader = csv.reader(io.StringIO(text))
    columns = [c.strip() for c in _next(reader, 1) or []]
    problem = _header_problem(columns)
    if problem:
        report.rejected.append(f"line 1: {problem}")
        return report
    seen: set[str] = set()
    while True:
        # The line a record starts on: a quoted value may run over several lines, and
        # line_num afterwards is the record's last line.
        line = reader.line_num + 1
        values = _next(reader, line)
        if progress is not None:
            progress(reader.line_num - line + 1)
        if values is None:
            break
        if not values:  # a blank line, skipped as csv.DictReader does
            continue
        try:
            item = _clean_row(line, dict(zip(columns, values)), seen)  # extra values ignored, missing ones empty
        except InvalidInput as exc:
            report.rejected.append(f"line {line}: {exc}")
            continue
        _save(session, item, report, source)
    return report


def _header_problem(columns: list[str]) -> str | None:
    missing = [c for c in REQUIRED_COLUMNS if c not in columns]
    if missing:
        return f"missing column(s) {', '.join(missing)}"
    # A misspelt "confirmd_at" would quietly turn a confirmed list into thousands of
    # confirmation mails: a header we do not know stops the file.
    unknown = [c for c in columns if c not in KNOWN_COLUMNS]
    if unknown:
        return f"unknown column(s) {', '.join(map(repr, unknown))}; known: {', '.join(KNOWN_COLUMNS)}"
    twice = sorted({c for c in columns if columns.count(c) > 1})
    if twice:
        return f"column(s) {', '.join(twice)} given twice"
    return None


def _clean_row(line: int, row: dict[str, str], seen: set[str]) -> ImportRow:
    """The row's values checked, or InvalidInput naming the first bad one."""
    email = clean_email(row.get("email"))
    hashed = email_hash(email)
    if hashed in seen:
        raise InvalidInput("email", "email: appears twice in this file")
    seen.add(hashed)
    confirmed_raw = row.get("confirmed_at", "").strip()
    location = clean_text("location", row.get("location"), MAX_LOCATION)
    radius = row.get("radius", "").strip()
    item = ImportRow(
        line=line, email=email, hashed=hashed,
        language=clean_language(row.get("language", "").strip() or None),
        keywords=clean_text("keywords", row.get("keywords"), MAX_KEYWORDS),
        location=location,
        radius=clean_radius(radius, location),
        remote=clean_remote(row.get("remote", "").strip()),
        employment_type=clean_employment_type(row.get("employment_type", "").strip()),
        confirmed_at=_parse_time(confirmed_raw) if confirmed_raw else None,
        ip=_parse_ip(row.get("consent_ip", "")),
        wording=clean_text("consent_text", row.get("consent_text"), 2000),
    )
    if item.confirmed_at is not None:
        # The consent record is time, IP and wording together (README); a row without all
        # three cannot prove an opt-in, so it is not taken as one.
        absent = [name for name, value in (("consent_ip", item.ip), ("consent_text", item.wording)) if not value]
        if absent:
            raise InvalidInput(absent[0], f"{', '.join(absent)}: required with confirmed_at (the proof of consent)")
    return item


def _save(session: Session, item: ImportRow, report: ImportReport, source: str) -> None:
    """Add the row as a subscriber with its consent event, unless the address is suppressed
    or already here (then it is named in the report and nothing changes)."""
    if session.get(Suppression, item.hashed) is not None:
        report.rejected.append(f"line {item.line}: email: suppressed (bounced, complained, unsubscribed or erased)")
        return
    existing = session.query(Subscriber.status).filter(Subscriber.email_hash == item.hashed).first()
    if existing is not None:
        report.skipped.append(f"line {item.line}: skipped: already a subscriber ({existing.status}), left as it is")
        return
    confirmed_at, now = item.confirmed_at, utcnow()
    sub = Subscriber(
        email=item.email, email_hash=item.hashed, language=item.language, keywords=item.keywords,
        location=item.location, radius=item.radius, remote=item.remote, employment_type=item.employment_type,
        status=SubscriberStatus.CONFIRMED if confirmed_at else SubscriberStatus.PENDING,
        created_at=confirmed_at or now, confirmed_at=confirmed_at,
        confirmation_sent_at=None if confirmed_at else now, pending_since=None if confirmed_at else now,
    )
    session.add(sub)
    session.flush()
    if confirmed_at is not None:
        session.add(ConsentEvent(
            subscriber_public_id=sub.public_id, email_hash=item.hashed, event="imported", at=confirmed_at,
            ip=item.ip, consent_text=item.wording, channel="import", consent_version="imported",
            detail={"source": source, "imported_at": now.isoformat() + "Z"},
        ))
        report.confirmed += 1
        return
    session.add(ConsentEvent(
        subscriber_public_id=sub.public_id, email_hash=item.hashed, event="signup", at=now,
        ip=item.ip, consent_text=item.wording or None, channel="import", detail={"source": source},
    ))
    # Counted in the mailbox's budget, so that the form cannot mail it again today.
    session.add(ConfirmationMail(mailbox_hash=mailbox_hash(item.email), sent_at=now))
    report.outbox_ids.append(add_outbox_message(session, sub, OutboxKind.CONFIRM).id)
    report.pending += 1
