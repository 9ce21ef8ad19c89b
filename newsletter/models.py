"""Typed SQLAlchemy 2 models. Times are naive UTC throughout (the same on SQLite and PostgreSQL)."""

from __future__ import annotations

import hashlib
import secrets
from datetime import UTC, datetime
from enum import StrEnum

from sqlalchemy import (
    JSON,
    Boolean,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Text,
)
from sqlalchemy import false as sa_false
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


def utcnow() -> datetime:
    """Now, as naive UTC: what every timestamp column holds."""
    return datetime.now(UTC).replace(tzinfo=None)


def email_hash(email: str) -> str:
    """The stable hash kept on suppression and consent rows after the address is erased."""
    return hashlib.sha256(email.strip().lower().encode("utf-8")).hexdigest()


def new_public_id() -> str:
    return secrets.token_urlsafe(16)


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)


# Statuses are StrEnums on plain String columns, not sqlalchemy.Enum: the schema and the
# stored values stay as they were, and a value read back (a plain str) still compares equal
# to its member. Iterating an enum gives all its values (what the old ALL tuples held).


class SubscriberStatus(StrEnum):
    PENDING = "pending"
    CONFIRMED = "confirmed"
    UNSUBSCRIBED = "unsubscribed"
    BOUNCED = "bounced"
    COMPLAINED = "complained"


class ConfirmResult(StrEnum):
    """What confirming a subscriber came to (subscriptions.confirm)."""

    CONFIRMED = "confirmed"
    ALREADY = "already"  # confirmed before: the link was clicked again
    INVALID = "invalid"  # no longer pending (left, bounced, complained) or hard-suppressed


class Subscriber(Base):
    """One address and its preferences. Tokens name it by public_id, never by address or id."""

    __tablename__ = "subscribers"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    public_id: Mapped[str] = mapped_column(String(32), unique=True, default=new_public_id)
    email: Mapped[str] = mapped_column(String(320))
    # Unique on the hash of the lower-cased address: Foo@x.de and foo@x.de are one reader.
    email_hash: Mapped[str] = mapped_column(String(64), unique=True)
    language: Mapped[str] = mapped_column(String(2), default="de")
    keywords: Mapped[str] = mapped_column(String(500), default="")
    location: Mapped[str] = mapped_column(String(200), default="")
    # km around the place in `location`; 0 when no place is given.
    radius: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    remote: Mapped[str] = mapped_column(String(8), default="also", server_default="also")  # no, also, only
    # Comma-separated in listings.criteria order; empty: any type, and listings without one.
    employment_type: Mapped[str] = mapped_column(String(120), default="", server_default="")
    status: Mapped[str] = mapped_column(String(16), default=SubscriberStatus.PENDING)
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    confirmation_sent_at: Mapped[datetime | None] = mapped_column(DateTime)
    confirmed_at: Mapped[datetime | None] = mapped_column(DateTime)
    unsubscribed_at: Mapped[datetime | None] = mapped_column(DateTime)
    manage_link_sent_at: Mapped[datetime | None] = mapped_column(DateTime)
    # The first signup of the current pending period: the purge of unconfirmed signups
    # counts from here, so re-submitting the form does not keep a pending row alive.
    pending_since: Mapped[datetime | None] = mapped_column(DateTime)
    # Named by preferences and data links: a new subscription after an unsubscribe raises
    # it, so links mailed to the former subscription open nothing of this one.
    link_generation: Mapped[int] = mapped_column(Integer, default=0, server_default="0")

    __table_args__ = (Index("ix_subscribers_status_created", "status", "created_at"),)


class ConsentEvent(Base):
    """The append-only consent record (STANDARDS 11). It outlives an erased subscriber, so it
    refers to it by public_id and address hash, not by a foreign key."""

    __tablename__ = "consent_events"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    subscriber_public_id: Mapped[str] = mapped_column(String(32), index=True)
    email_hash: Mapped[str] = mapped_column(String(64), index=True)
    event: Mapped[str] = mapped_column(String(32))
    at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    ip: Mapped[str | None] = mapped_column(String(64))
    user_agent: Mapped[str | None] = mapped_column(String(500))
    form_url: Mapped[str | None] = mapped_column(String(500))
    consent_version: Mapped[str | None] = mapped_column(String(32))
    consent_text: Mapped[str | None] = mapped_column(Text)
    channel: Mapped[str | None] = mapped_column(String(32))
    detail: Mapped[dict[str, object] | None] = mapped_column(JSON)


class SuppressionReason(StrEnum):
    UNSUBSCRIBED = "unsubscribed"
    ERASED = "erased"
    BOUNCED = "bounced"
    COMPLAINED = "complained"


# Never mail again, whatever the address does later (a new signup, a confirmation click):
# the mailbox refused us or its owner called us spam. The subscriber statuses of the same
# names mean the same (their values are equal).
HARD_SUPPRESSIONS = (SuppressionReason.BOUNCED, SuppressionReason.COMPLAINED)


class Suppression(Base):
    """Addresses never to be mailed by accident (erased, bounced, complained, unsubscribed)."""

    __tablename__ = "suppressions"

    email_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    reason: Mapped[str] = mapped_column(String(16))
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)


class OutboxStatus(StrEnum):
    PENDING = "pending"  # waiting to be (re)tried at next_attempt_at
    SENDING = "sending"  # claimed by a worker until lease_until
    SENT = "sent"
    FAILED = "failed"  # given up: temporary failures past the give-up time, or unsendable
    BOUNCED = "bounced"  # the relay refused the recipient permanently
    CANCELLED = "cancelled"  # no longer wanted when its turn came (e.g. already confirmed)


class OutboxKind(StrEnum):
    """Which transactional mail an outbox row is: the lifecycle writes them, the outbox sends."""

    CONFIRM = "confirm"
    WELCOME = "welcome"
    MANAGE = "manage"
    # A fresh, expiring link to a reader's data export and erasure (STANDARDS 14, 26).
    DATA = "data"


class OutboxMessage(Base):
    """One transactional mail (confirmation, welcome, manage link), written in the same
    transaction as the change that causes it, then queued by id."""

    __tablename__ = "outbox"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    kind: Mapped[str] = mapped_column(String(16))
    subscriber_id: Mapped[int] = mapped_column(ForeignKey("subscribers.id", ondelete="CASCADE"), index=True)
    status: Mapped[str] = mapped_column(String(16), default=OutboxStatus.PENDING)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    next_attempt_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    queued_at: Mapped[datetime | None] = mapped_column(DateTime)
    lease_until: Mapped[datetime | None] = mapped_column(DateTime)
    sent_at: Mapped[datetime | None] = mapped_column(DateTime)
    message_id: Mapped[str | None] = mapped_column(String(200))
    last_error: Mapped[str | None] = mapped_column(String(500))
    # A confirmation mail's requested preferences: they apply when its own link is clicked.
    payload: Mapped[dict[str, object] | None] = mapped_column(JSON)

    __table_args__ = (Index("ix_outbox_status_next", "status", "next_attempt_at"),)


class OperatorAlarm(Base):
    """Something an operator must act on (a relay refusing our sender, AUTH failing)."""

    __tablename__ = "operator_alarms"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    kind: Mapped[str] = mapped_column(String(32))
    message: Mapped[str] = mapped_column(String(1000))
    # When an operator marked it seen in the admin (open alarms are those without).
    seen_at: Mapped[datetime | None] = mapped_column(DateTime)


class Listing(Base):
    """A job listing of the board, upserted on the board's own id (`external_id`)."""

    __tablename__ = "listings"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    external_id: Mapped[str] = mapped_column(String(100), unique=True)
    title: Mapped[str] = mapped_column(String(300))
    url: Mapped[str] = mapped_column(String(2000))
    company: Mapped[str] = mapped_column(String(200), default="")
    location: Mapped[str] = mapped_column(String(200), default="")
    category: Mapped[str] = mapped_column(String(200), default="")
    description: Mapped[str] = mapped_column(Text, default="")
    postal_code: Mapped[str] = mapped_column(String(10), default="", server_default="")
    # Given by the feed; without them, the place comes from the gazetteer at planning time.
    latitude: Mapped[float | None] = mapped_column(Float)
    longitude: Mapped[float | None] = mapped_column(Float)
    remote: Mapped[bool] = mapped_column(Boolean, default=False, server_default=sa_false())
    employment_type: Mapped[str] = mapped_column(String(120), default="", server_default="")
    salary_min: Mapped[float | None] = mapped_column(Float)
    salary_max: Mapped[float | None] = mapped_column(Float)
    salary_currency: Mapped[str] = mapped_column(String(3), default="", server_default="")
    salary_unit: Mapped[str] = mapped_column(String(8), default="", server_default="")  # year, month, hour
    published_at: Mapped[datetime] = mapped_column(DateTime)
    valid_through: Mapped[datetime | None] = mapped_column(DateTime)
    withdrawn_at: Mapped[datetime | None] = mapped_column(DateTime)
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)

    __table_args__ = (Index("ix_listings_published", "published_at"),)


class ApiToken(Base):
    """A bearer token for /api/v1/, stored as its SHA-256 only (shown once at creation)."""

    __tablename__ = "api_tokens"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(100))
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    last_used_at: Mapped[datetime | None] = mapped_column(DateTime)
    revoked_at: Mapped[datetime | None] = mapped_column(DateTime)
    # Space-separated: "listings" (import, withdraw), "editions" (create, steer, read).
    scopes: Mapped[str] = mapped_column(String(100), default="listings editions", server_default="listings editions")


class LinkMail(Base):
    """One mail of links sent on someone's request (/manage, the data-link button), by the
    hash of its mailbox as in ConfirmationMail: the daily budget counts these."""

    __tablename__ = "link_mails"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    mailbox_hash: Mapped[str] = mapped_column(String(64))
    sent_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)

    __table_args__ = (Index("ix_link_mails_mailbox", "mailbox_hash", "sent_at"),)


class ConfirmationMail(Base):
    """One confirmation mail asked for, by the hash of its mailbox (the address without its
    +tag, and without dots where the provider ignores them): the budget of STANDARDS 28
    counts these, across every spelling of one inbox and across an erasure."""

    __tablename__ = "confirmation_mails"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    mailbox_hash: Mapped[str] = mapped_column(String(64))
    sent_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)

    __table_args__ = (Index("ix_confirmation_mails_mailbox", "mailbox_hash", "sent_at"),)


class EditionState(StrEnum):
    SENDING = "sending"
    PAUSED = "paused"
    CANCELLED = "cancelled"
    DONE = "done"


class Edition(Base):
    """One digest: its cut-off is the moment it was created; it covers listings published
    after the previous (not cancelled) edition's cut-off. A scheduled edition names its
    period, unique, so two schedulers can never make two for one period."""

    __tablename__ = "editions"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    period: Mapped[datetime | None] = mapped_column(DateTime, unique=True)
    trigger: Mapped[str] = mapped_column(String(16))  # schedule, cli, api, admin
    state: Mapped[str] = mapped_column(String(16), default=EditionState.SENDING)
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    cutoff: Mapped[datetime] = mapped_column(DateTime)
    window_start: Mapped[datetime] = mapped_column(DateTime)
    listing_count: Mapped[int] = mapped_column(Integer, default=0)
    planned: Mapped[int] = mapped_column(Integer, default=0)
    finished_at: Mapped[datetime | None] = mapped_column(DateTime)

    __table_args__ = (Index("ix_editions_cutoff", "cutoff"),)


class EditionVariant(Base):
    """One distinct search (keywords, location, radius, remote, employment type) among the confirmed subscribers of an edition, with
    the listings it gets: selection and rendering happen once per variant, not per reader."""

    __tablename__ = "edition_variants"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    edition_id: Mapped[int] = mapped_column(ForeignKey("editions.id", ondelete="CASCADE"))
    keywords: Mapped[str] = mapped_column(String(500))
    location: Mapped[str] = mapped_column(String(200))
    radius: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    remote: Mapped[str] = mapped_column(String(8), default="also", server_default="also")
    employment_type: Mapped[str] = mapped_column(String(120), default="", server_default="")
    listing_ids: Mapped[list[int]] = mapped_column(JSON)
    total_matches: Mapped[int] = mapped_column(Integer)

    __table_args__ = (
        Index("ix_edition_variants_match", "edition_id", "keywords", "location", "radius", "remote", "employment_type"),
    )


class DeliveryStatus(StrEnum):
    PENDING = "pending"
    SENDING = "sending"
    SENT = "sent"
    FAILED = "failed"
    BOUNCED = "bounced"
    CANCELLED = "cancelled"  # the reader left before their turn, or the edition was cancelled


# Deliveries still to be sent (or being sent): what keeps an edition from being done.
OPEN_DELIVERIES = (DeliveryStatus.PENDING, DeliveryStatus.SENDING)


class Delivery(Base):
    """One digest mail: (edition, subscriber), planned with one INSERT ... SELECT."""

    __tablename__ = "deliveries"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    edition_id: Mapped[int] = mapped_column(ForeignKey("editions.id", ondelete="CASCADE"))
    subscriber_id: Mapped[int] = mapped_column(ForeignKey("subscribers.id", ondelete="CASCADE"))
    variant_id: Mapped[int] = mapped_column(ForeignKey("edition_variants.id", ondelete="CASCADE"))
    status: Mapped[str] = mapped_column(String(16), default=DeliveryStatus.PENDING)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    lease_until: Mapped[datetime | None] = mapped_column(DateTime)
    sent_at: Mapped[datetime | None] = mapped_column(DateTime)
    last_error: Mapped[str | None] = mapped_column(String(500))

    __table_args__ = (
        Index("uq_deliveries_edition_subscriber", "edition_id", "subscriber_id", unique=True),
        Index("ix_deliveries_edition_status", "edition_id", "status", "id"),
        Index("ix_deliveries_subscriber", "subscriber_id"),
    )


class BounceKind(StrEnum):
    """What a returned mail or a refusal said about one reader (bounces/intake.py)."""

    HARD = "hard"  # the address is dead (5.x.x): suppressed at once
    SOFT = "soft"  # 4.x.x or delayed: suppressed after `soft_bounce_limit` editions in a row
    POLICY = "policy"  # the recipient's side refused by policy (5.7.x): after `policy_bounce_limit`
    COMPLAINT = "complaint"  # the reader called it spam (ARF): suppressed at once
    UNSUBSCRIBE = "unsubscribe"  # mail to the reader's List-Unsubscribe mailto: address


class BounceEvent(Base):
    """One bounce, complaint or mailto unsubscribe of a reader, with the edition it was about
    when known: the rules that count editions in a row read these. Deleted with the reader
    (the consent log keeps what must outlive them)."""

    __tablename__ = "bounce_events"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    subscriber_id: Mapped[int] = mapped_column(ForeignKey("subscribers.id", ondelete="CASCADE"))
    edition_id: Mapped[int | None] = mapped_column(ForeignKey("editions.id", ondelete="SET NULL"))
    kind: Mapped[str] = mapped_column(String(16))
    status: Mapped[str] = mapped_column(String(16), default="")
    detail: Mapped[str] = mapped_column(String(300), default="")
    at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)

    __table_args__ = (
        Index("ix_bounce_events_subscriber", "subscriber_id", "kind", "edition_id"),
        Index("ix_bounce_events_edition", "edition_id", "kind"),
    )


class ReturnedMail(Base):
    """A message read from the bounce mailbox, by the SHA-256 of its bytes: a message is
    acted on once, however often a Maildir, an mbox or an IMAP folder hands it over."""

    __tablename__ = "returned_mails"

    digest: Mapped[str] = mapped_column(String(64), primary_key=True)
    verdict: Mapped[str] = mapped_column(String(16))
    at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)


class AdminRole(StrEnum):
    """What an account of the web admin may do: a viewer sees everything and changes
    nothing; an operator may also act (every POST)."""

    VIEWER = "viewer"
    OPERATOR = "operator"


class AdminUser(Base):
    """An account of the web admin (`newsletter admin create-user`). Never deleted, only
    disabled: the audit log names its accounts."""

    __tablename__ = "admin_users"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    email: Mapped[str] = mapped_column(String(320), unique=True)  # lower-cased
    password_hash: Mapped[str] = mapped_column(String(200))
    role: Mapped[str] = mapped_column(String(16), default=AdminRole.OPERATOR)
    created_at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    disabled_at: Mapped[datetime | None] = mapped_column(DateTime)
    last_login_at: Mapped[datetime | None] = mapped_column(DateTime)
    # Raised by a new password or a disable: a session cookie names the generation it was
    # made under, so every older session ends at once.
    session_generation: Mapped[int] = mapped_column(Integer, default=0, server_default="0")


class AuditEvent(Base):
    """The append-only record of what operators did (the database refuses UPDATE and
    DELETE). It names the account by address, not by a foreign key, as the consent log
    names its readers: the record stands on its own."""

    __tablename__ = "audit_events"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    at: Mapped[datetime] = mapped_column(DateTime, default=utcnow)
    actor: Mapped[str] = mapped_column(String(320))
    action: Mapped[str] = mapped_column(String(64))
    edition_id: Mapped[int | None] = mapped_column(Integer)
    ip: Mapped[str | None] = mapped_column(String(64))
    detail: Mapped[dict[str, object] | None] = mapped_column(JSON)

    __table_args__ = (Index("ix_audit_events_at", "at"),)
