"""Sending one chunk of an edition's deliveries: claim with a lease, compose, send over one
SMTP connection, record each outcome as it happens. Each mail goes through the delivery
step every mail takes (mail/delivery.py); this module keeps the chunk's own bookkeeping
(claim, send rate, pause checks, the deliveries' rows) and builds each digest cheaply
(mail/digest.py).

The progress marker (a delivery's status) moves to `sent` only after the relay accepted
the message, in its own commit. A worker killed mid-chunk leaves its claimed rows in
`sending` until the lease runs out; the reconciler then queues the chunk again, and at
most the message that was in flight is sent twice.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field, replace
from datetime import UTC, timedelta
from functools import partial
from typing import Any

from sqlalchemy import Connection, and_, bindparam, func, or_, select, update

from newsletter.config import Settings
from newsletter.db import Database
from newsletter.mail import delivery
from newsletter.mail.delivery import Kind
from newsletter.mail.digest import DigestComposer, SearchExtras, VariantMail, view
from newsletter.mail.compose import Renderer, mailto_address, verp_sender
from newsletter.models import (
    BounceEvent,
    BounceKind,
    Delivery,
    DeliveryStatus,
    Edition,
    EditionState,
    EditionVariant,
    Listing,
    Subscriber,
    SubscriberStatus,
    Suppression,
    utcnow,
)
from newsletter.mail.send_rate import SendRate
from newsletter.subscribers import subscriptions
from newsletter.tokens import Tokens, tokens_for
from newsletter.mail.transport import SmtpTransport, Stage

log = logging.getLogger(__name__)

STATE_CHECK_SECONDS = 1.0
# A policy refusal (5.7.x) at these stages names one recipient; at MAIL FROM, AUTH or
# connecting it names us.
READER_STAGES = (Stage.RCPT, Stage.DATA)
# Refusals in a row, with no recipient accepted, that say the relay refuses us rather than
# each reader (STANDARDS 24: "every recipient of a connection"), without knocking on a
# refusing relay's door for a whole chunk.
POLICY_PROBE = 10


@dataclass
class ChunkResult:
    sent: int = 0
    retry: int = 0
    failed: int = 0
    bounced: int = 0
    cancelled: int = 0
    retry_in: float | None = None
    stopped: str | None = None
    counts: dict[str, int] = field(default_factory=dict)


@dataclass(frozen=True)
class Claimed:
    id: int
    subscriber_id: int
    variant_id: int
    attempts: int


# Built once: _finish runs once per message, and building the statement each time cost
# about three times as much as executing it (SQLite).
_FINISH = (
    update(Delivery)
    .where(Delivery.id == bindparam("delivery_id"))
    .values(status=bindparam("new_status"), lease_until=None, last_error=bindparam("error"))
)
_FINISH_SENT = _FINISH.values(sent_at=bindparam("sent_at"))


def claim(conn: Connection, edition_id: int, lo: int, hi: int, lease_seconds: float, limit: int) -> list[Claimed]:
    """Take the due deliveries of ids lo..hi. On PostgreSQL rows another worker holds are
    skipped (FOR UPDATE SKIP LOCKED); SQLite serialises writers anyway."""
    now = utcnow()
    due = (
        select(Delivery.id)
        .where(
            Delivery.edition_id == edition_id,
            Delivery.id.between(lo, hi),
            or_(
                and_(Delivery.status == DeliveryStatus.PENDING, Delivery.next_attempt_at <= now),
                and_(Delivery.status == DeliveryStatus.SENDING, Delivery.lease_until < now),
            ),
        )
        .order_by(Delivery.id)
        .limit(limit)
    )
    if conn.dialect.name == "postgresql":
        due = due.with_for_update(skip_locked=True)
    rows = conn.execute(
        update(Delivery)
        .where(Delivery.id.in_(due.scalar_subquery()))
        .values(
            status=DeliveryStatus.SENDING,
            lease_until=now + timedelta(seconds=lease_seconds),
            attempts=Delivery.attempts + 1,
        )
        .returning(Delivery.id, Delivery.subscriber_id, Delivery.variant_id, Delivery.attempts)
    ).all()
    conn.commit()
    return sorted((Claimed(*row) for row in rows), key=lambda c: c.id)


# RQ keeps scheduled times in whole seconds (it truncates), so a delayed job can start up
# to a second before the time asked for; a job that starts too early finds nothing due.
SCHEDULE_MARGIN_SECONDS = 1.0


def _next_due_in(conn: Connection, edition_id: int, lo: int, hi: int) -> float | None:
    """Seconds until the chunk's next retry is due (with RQ's margin), or None if none waits."""
    earliest = conn.scalar(
        select(func.min(Delivery.next_attempt_at)).where(
            Delivery.edition_id == edition_id, Delivery.id.between(lo, hi),
            Delivery.status == DeliveryStatus.PENDING,
        )
    )
    conn.rollback()
    if earliest is None:
        return None
    return max(0.0, (earliest - utcnow()).total_seconds()) + SCHEDULE_MARGIN_SECONDS


class ChunkSender:
    """Everything one send job needs, reused across its messages."""

    def __init__(
        self, database: Database, settings: Settings, redis: object | None = None, renderer: Renderer | None = None
    ) -> None:
        self.database = database
        self.settings = settings
        self.tokens: Tokens = tokens_for(settings)
        self.composer = DigestComposer(settings, renderer)
        self.rate = SendRate(redis, settings.send_rate) if redis is not None else None
        self._variants: dict[tuple[int, str], VariantMail] = {}
        self._accepted = False  # the relay accepted one of our mails during this run

    def run(self, edition_id: int, lo: int, hi: int, transport: SmtpTransport | None = None) -> ChunkResult:
        result = ChunkResult()
        self._accepted = False
        with self.database.engine.connect() as conn:
            if conn.dialect.name == "postgresql":
                # Every statement of a chunk stands alone (the claim is one UPDATE, each
                # outcome another), so autocommit: one round trip per outcome instead of
                # BEGIN, UPDATE and COMMIT. A worker crash never loses a commit; a database
                # crash could lose the last few hundred milliseconds of them, which would
                # resend those mails: worth not waiting for an fsync per message.
                conn.execution_options(isolation_level="AUTOCOMMIT")
                conn.exec_driver_sql("SET synchronous_commit TO OFF")
                conn.commit()
            try:
                edition = conn.execute(select(Edition.state, Edition.cutoff, Edition.created_at).where(Edition.id == edition_id)).one_or_none()
                if edition is None or edition.state != EditionState.SENDING:
                    result.stopped = edition.state if edition else "gone"
                    return result
                limit = self._claim_limit()
                own = transport is None
                try:
                    while True:
                        claimed = claim(conn, edition_id, lo, hi, self.settings.send_lease_seconds, limit)
                        if not claimed:
                            break
                        transport = transport or SmtpTransport(self.settings)
                        self._send_all(conn, edition_id, edition.cutoff, edition.created_at, claimed, transport, result)
                        if len(claimed) < limit or result.stopped:
                            break
                finally:
                    if own and transport is not None:
                        transport.close()
                result.retry_in = _next_due_in(conn, edition_id, lo, hi)
            finally:
                if conn.dialect.name == "postgresql":
                    conn.rollback()
                    conn.exec_driver_sql("RESET synchronous_commit")
                    conn.commit()
        with self.database.session_scope() as session:
            from newsletter.editions.state import finish_if_done

            finish_if_done(session, edition_id)
        return result

    def _claim_limit(self) -> int:
        """How many deliveries to claim at once: a chunk, but under a send rate no more than
        half a lease's worth, so that no claim outlives its lease while still sending (another
        worker would then take it over and send it twice)."""
        limit = self.settings.send_chunk_size
        if self.settings.send_rate > 0:
            limit = min(limit, max(1, int(self.settings.send_lease_seconds * self.settings.send_rate / 2)))
        return limit

    # -- the loop -------------------------------------------------------------------------

    def _send_all(self, conn: Connection, edition_id: int, cutoff, created_at, claimed: list[Claimed],
                  transport: SmtpTransport, result: ChunkResult) -> None:  # type: ignore[no-untyped-def]
        readers = {
            row.id: row
            for row in conn.execute(
                select(Subscriber.id, Subscriber.email, Subscriber.email_hash, Subscriber.language,
                       Subscriber.public_id, Subscriber.status, Subscriber.link_generation)
                .where(Subscriber.id.in_([c.subscriber_id for c in claimed]))
            )
        }
        suppressed = set(
            conn.scalars(select(Suppression.email_hash).where(
                Suppression.email_hash.in_([r.email_hash for r in readers.values()])))
        )
        feedback_id = f"{edition_id}:digest:newsletter:{self.settings.mail_domain}"
        what = f"edition {edition_id}"  # names a mail that cannot be built (never its reader)
        pace = self.rate.wait if self.rate is not None else None
        last_check = time.monotonic()
        alarmed = False
        undecided: list[tuple[Claimed, Any, delivery.Outcome]] = []
        for index, item in enumerate(claimed):
            if time.monotonic() - last_check > STATE_CHECK_SECONDS:
                last_check = time.monotonic()
                state = conn.scalar(select(Edition.state).where(Edition.id == edition_id))
                if state != EditionState.SENDING:
                    self._release(conn, claimed[index:], state or "gone")
                    result.stopped = state
                    return
            reader = readers.get(item.subscriber_id)
            if reader is None or reader.status != SubscriberStatus.CONFIRMED or reader.email_hash in suppressed:
                self._finish(conn, item.id, DeliveryStatus.CANCELLED, "reader left before the send")
                result.cancelled += 1
                continue
            outcome = delivery.send(
                transport, verp_sender(self.settings, self.tokens.verp_tag(reader.public_id, edition_id)), reader.email,
                partial(self._build, conn, item.variant_id, reader, cutoff, feedback_id), what=what, pace=pace,
            )
            kind = outcome.kind
            if kind is Kind.SENT:
                self._finish(conn, item.id, DeliveryStatus.SENT, None)
                result.sent += 1
                self._accepted = True
                for held, held_reader, refusal in undecided:  # someone after them was taken
                    self._policy_bounce(conn, edition_id, held, held_reader, refusal, result)
                undecided.clear()
            elif kind is Kind.POLICY and outcome.stage in READER_STAGES:
                # A refusal of this recipient (RCPT) or of this message for them (DATA): the
                # reader's policy bounce once the relay takes a recipient after it; a run of
                # refusals means the relay refuses us.
                undecided.append((item, reader, outcome))
                if len(undecided) >= POLICY_PROBE:
                    self._refused_us(conn, edition_id, [u[0] for u in undecided], claimed[index + 1:],
                                     created_at, outcome, result)
                    return
            elif kind is Kind.POLICY:
                # The relay refuses our sender (MAIL FROM, AUTH, the connection): alarm once and
                # put the chunk back. The alarm names the delivery, never the reader.
                self._refused_us(conn, edition_id, [u[0] for u in undecided] + [item], claimed[index + 1:],
                                 created_at, outcome, result)
                return
            elif kind is Kind.BUILD:
                if not alarmed:  # once per chunk: it may well be every mail
                    alarmed = True
                    log.error("could not build a digest (operator action needed)", exc_info=outcome.error)
                    delivery.build_alarm(conn, outcome, where=f"delivery {item.id}")
                self._retry(conn, [item], created_at, outcome.detail, result)
            elif kind is Kind.RETRY:
                self._retry(conn, [item], created_at, outcome.detail, result)
            elif kind is Kind.BOUNCED:
                self._finish(conn, item.id, DeliveryStatus.BOUNCED, outcome.detail)
                with self.database.session_scope() as session:  # several statements: one transaction
                    subscriptions.mark_bounced(session, reader.public_id, outcome.detail)
                result.bounced += 1
            else:  # Kind.UNSENDABLE
                self._finish(conn, item.id, DeliveryStatus.FAILED, outcome.detail)
                result.failed += 1
        if undecided:
            if self._accepted:
                # A few refusals after the relay took others in this run: theirs (fewer than
                # POLICY_PROBE in a row; a relay turning on us shows in the next chunk).
                for held, held_reader, refusal in undecided:
                    self._policy_bounce(conn, edition_id, held, held_reader, refusal, result)
            else:
                # Everyone this run tried was refused: nothing says it is the readers'.
                self._refused_us(conn, edition_id, [u[0] for u in undecided], [], created_at, undecided[-1][2], result)

    def _refused_us(self, conn: Connection, edition_id: int, tried: list[Claimed], untried: list[Claimed],
                    created_at: Any, outcome: delivery.Outcome, result: ChunkResult) -> None:
        """The relay refuses us, not a reader: the operator's alarm, and the chunk waits.
        The claimed rows never tried get their try back (as a pause gives it back)."""
        delivery.policy_alarm(conn, f"edition {edition_id}, delivery {tried[0].id}", outcome)
        self._retry(conn, tried, created_at, outcome.detail, result)
        if untried:
            conn.execute(update(Delivery).where(Delivery.id.in_([i.id for i in untried])).values(
                attempts=Delivery.attempts - 1))
            self._retry(conn, [replace(i, attempts=i.attempts - 1) for i in untried], created_at, outcome.detail, result)

    def _policy_bounce(self, conn: Connection, edition_id: int, item: Claimed, reader: Any,
                       outcome: delivery.Outcome, result: ChunkResult) -> None:
        """One reader's policy refusal: this mail is over; the address is suppressed once
        it was refused on `policy_bounce_limit` editions in a row."""
        self._finish(conn, item.id, DeliveryStatus.BOUNCED, outcome.detail)
        with self.database.session_scope() as session:
            sub = session.get(Subscriber, reader.id)
            if sub is not None:
                status = delivery.enhanced_status(outcome.detail)
                session.add(BounceEvent(subscriber_id=sub.id, edition_id=edition_id, kind=BounceKind.POLICY,
                                        status=status, detail=outcome.detail[:300]))
                session.flush()
                subscriptions.record_repeated_bounce(session, sub, BounceKind.POLICY, edition_id,
                                                     self.settings.policy_bounce_limit, status, outcome.detail)
        result.bounced += 1

    def _build(self, conn: Connection, variant_id: int, reader: Any, cutoff: Any, feedback_id: str,
               recipient: str, utf8: bool) -> tuple[bytes, str]:
        """One reader's digest, signed: the variant's body rendered once, their links filled in."""
        variant = self._variant(conn, variant_id, reader.language, cutoff)
        return self.composer.build(
            variant, recipient, self.tokens.preferences(reader.public_id, reader.link_generation),
            self.tokens.unsubscribe(reader.public_id), feedback_id, utf8=utf8,
            mailto=mailto_address(self.settings, self.tokens.mailto_unsubscribe(reader.public_id)),
        )

    def _variant(self, conn: Connection, variant_id: int, language: str, cutoff) -> VariantMail:  # type: ignore[no-untyped-def]
        key = (variant_id, language)
        cached = self._variants.get(key)
        if cached is not None:
            return cached
        # Core rows (not ORM objects): this connection is the job's own, outside any Session.
        variant = conn.execute(select(EditionVariant.__table__).where(EditionVariant.id == variant_id)).one()
        ids = list(variant.listing_ids)
        by_id = {row.id: row for row in conn.execute(select(Listing.__table__).where(Listing.id.in_(ids)))}
        tz = self.settings.tz
        listings = [view(by_id[i], tz, language) for i in ids if i in by_id]  # type: ignore[arg-type]
        edition_date = cutoff.replace(tzinfo=UTC).astimezone(tz).date()
        mail = self.composer.render_variant(
            language, variant.keywords, variant.location, listings, variant.total_matches, edition_date,
            variant_id=variant_id, search=SearchExtras(variant.radius, variant.remote, variant.employment_type))
        self._variants[key] = mail
        return mail

    def _finish(self, conn: Connection, delivery_id: int, status: str, error: str | None) -> None:
        params: dict[str, object] = {"delivery_id": delivery_id, "new_status": status, "error": error and error[:500]}
        if status == DeliveryStatus.SENT:
            params["sent_at"] = utcnow()
            conn.execute(_FINISH_SENT, params)
        else:
            conn.execute(_FINISH, params)
        conn.commit()

    def _retry(self, conn: Connection, items: list[Claimed], created_at, error: str, result: ChunkResult) -> None:  # type: ignore[no-untyped-def]
        now = utcnow()
        for item in items:
            delay = delivery.retry_delay(self.settings, item.attempts, created_at, now)
            if delay is None:
                self._finish(conn, item.id, DeliveryStatus.FAILED, f"gave up after {item.attempts} tries: {error}")
                result.failed += 1
                continue
            conn.execute(
                update(Delivery).where(Delivery.id == item.id).values(
                    status=DeliveryStatus.PENDING, lease_until=None, last_error=error[:500],
                    next_attempt_at=now + timedelta(seconds=delay),
                )
            )
            result.retry += 1
        conn.commit()

    def _release(self, conn: Connection, items: list[Claimed], state: str) -> None:
        """Give claimed, unsent rows back: pending when paused, cancelled when cancelled."""
        status = DeliveryStatus.CANCELLED if state == EditionState.CANCELLED else DeliveryStatus.PENDING
        conn.execute(
            update(Delivery)
            .where(Delivery.id.in_([i.id for i in items]), Delivery.status == DeliveryStatus.SENDING)
            .values(status=status, lease_until=None, attempts=Delivery.attempts - 1)
        )
        conn.commit()
