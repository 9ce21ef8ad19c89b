"""The one delivery step every mail takes (newsletter/mail/delivery.py), against a real SMTP
server (the aiosmtpd sink) answering what it is told: one test per outcome, the recipient's
form, the shared alarms, and the back-off schedule that transactional mail and digests
share, each through its own sender on SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import select, update
from sqlalchemy.exc import OperationalError

from newsletter.mail import delivery
from newsletter.mail.delivery import Kind, Outcome
from newsletter.mail.transport import SmtpTransport, Stage
from newsletter.models import (
    Delivery,
    Listing,
    OperatorAlarm,
    OutboxMessage,
    Subscriber,
    email_hash,
    utcnow,
)
from tests.conftest import make_settings
from tests.smtp_sink import SmtpSink, free_port

SENDER = "bounces+tag@jobs.example.org"


class Builder:
    """A build callable that records what it was asked for and makes a tiny message."""

    def __init__(self, fail: Exception | None = None) -> None:
        self.calls: list[tuple[str, bool]] = []
        self.fail = fail

    def __call__(self, recipient: str, utf8: bool) -> tuple[bytes, str]:
        self.calls.append((recipient, utf8))
        if self.fail is not None:
            raise self.fail
        to = recipient.encode("utf-8" if utf8 else "ascii")
        return b"From: newsletter@jobs.example.org\r\nTo: " + to + b"\r\nSubject: hi\r\n\r\nhello\r\n", "<id-1@jobs.example.org>"


def send(sink: SmtpSink, address: str, build: Builder | None = None, **options) -> Outcome:  # type: ignore[no-untyped-def]
    with SmtpTransport(make_settings(smtp_port=sink.port, smtp_timeout_seconds=5)) as transport:
        return delivery.send(transport, SENDER, address, build or Builder(), what="test mail 1", **options)


def test_sent_carries_the_message_id_and_the_mail_arrives(smtp):
    order: list[str] = []
    build = Builder()
    outcome = send(smtp, "reader@example.org", build, pace=lambda: order.append(f"pace after {len(build.calls)} build"))
    assert outcome == Outcome(Kind.SENT, message_id="<id-1@jobs.example.org>")
    assert order == ["pace after 1 build"]  # the send rate waits between building and sending
    [mail] = smtp.messages
    assert mail.mail_from == SENDER and mail.rcpt_tos == ["reader@example.org"]
    assert "SMTPUTF8" not in mail.mail_options


def test_an_idn_domain_goes_as_a_labels_and_only_a_non_ascii_local_part_needs_smtputf8(smtp):
    build = Builder()
    assert send(smtp, "kunde@bücher.de", build).kind is Kind.SENT
    assert send(smtp, "jörg@example.org", build).kind is Kind.SENT
    assert build.calls == [("kunde@xn--bcher-kva.de", False), ("jörg@example.org", True)]
    first, second = smtp.messages
    assert first.rcpt_tos == ["kunde@xn--bcher-kva.de"] and "SMTPUTF8" not in first.mail_options
    assert second.rcpt_tos == ["jörg@example.org"] and "SMTPUTF8" in second.mail_options
    assert delivery.recipient_for("jörg@example.org", smtputf8=False) is None


def test_a_non_ascii_local_part_without_smtputf8_is_unsendable_and_never_built():
    plain = SmtpSink(smtputf8=False).start()
    try:
        build = Builder()
        outcome = send(plain, "jörg@example.org", build)
        assert outcome.kind is Kind.UNSENDABLE and "SMTPUTF8" in outcome.detail
        assert build.calls == [] and plain.messages == []
    finally:
        plain.stop()


def test_a_temporary_refusal_is_a_retry_at_rcpt(smtp):
    smtp.handler.rcpt_reply = lambda address: "451 4.7.1 greylisted, try again later"
    outcome = send(smtp, "reader@example.org")
    assert (outcome.kind, outcome.stage) == (Kind.RETRY, Stage.RCPT) and "451 4.7.1" in outcome.detail
    assert outcome.kind in delivery.RETRIED


def test_an_unreachable_relay_is_a_retry_at_the_connection():
    build = Builder()
    with SmtpTransport(make_settings(smtp_port=free_port(), smtp_timeout_seconds=2)) as transport:
        outcome = delivery.send(transport, SENDER, "reader@example.org", build, what="test mail 1")
    assert (outcome.kind, outcome.stage) == (Kind.RETRY, Stage.CONNECT) and "cannot reach" in outcome.detail
    assert build.calls == []


def test_a_dead_mailbox_bounces_and_the_reply_keeps_no_address(smtp):
    smtp.handler.rcpt_reply = lambda address: f"550 5.1.1 <{address}>: Recipient address rejected: User unknown"
    outcome = send(smtp, "gone@example.org")
    assert (outcome.kind, outcome.stage) == (Kind.BOUNCED, Stage.RCPT)
    assert "5.1.1 <address>: Recipient address rejected" in outcome.detail and "gone" not in outcome.detail


@pytest.mark.parametrize(
    "where, reply, stage",
    [
        ("rcpt", "550 5.7.1 <{address}>: Recipient address rejected: Access denied", Stage.RCPT),
        ("data", "554 5.7.26 unauthenticated sender", Stage.DATA),
    ],
)
def test_a_policy_refusal_is_the_operators_and_says_where_it_happened(smtp, where, reply, stage):
    if where == "rcpt":
        smtp.handler.rcpt_reply = lambda address: reply.format(address=address)
    else:
        smtp.handler.data_reply = lambda envelope: reply
    outcome = send(smtp, "refused@example.org")
    assert (outcome.kind, outcome.stage) == (Kind.POLICY, stage)
    assert "5.7." in outcome.detail and "refused@" not in outcome.detail
    assert smtp.messages == []


def test_a_relay_that_lacks_what_the_settings_ask_for_is_a_policy_refusal_at_the_connection(smtp):
    settings = make_settings(smtp_port=smtp.port, smtp_security="starttls", smtp_timeout_seconds=5)
    with SmtpTransport(settings) as transport:
        outcome = delivery.send(transport, SENDER, "reader@example.org", Builder(), what="test mail 1")
    assert (outcome.kind, outcome.stage) == (Kind.POLICY, Stage.CONNECT) and "STARTTLS" in outcome.detail


def test_a_mail_that_cannot_be_built_is_named_by_what_and_not_sent(smtp):
    paced: list[bool] = []
    build = Builder(fail=ValueError("no key for reader@example.org"))
    outcome = send(smtp, "reader@example.org", build, pace=lambda: paced.append(True))
    assert outcome.kind is Kind.BUILD and outcome.stage is Stage.NONE
    assert outcome.detail == "test mail 1: ValueError: no key for reader@example.org"
    assert isinstance(outcome.error, Exception) and isinstance(outcome.error.__cause__, ValueError)
    assert paced == [] and smtp.messages == []


def test_a_database_error_while_building_is_no_mail_fault_and_passes_through(smtp):
    with pytest.raises(OperationalError):
        send(smtp, "reader@example.org", Builder(fail=OperationalError("SELECT 1", {}, Exception("gone"))))
    assert smtp.messages == []


def test_the_back_off_doubles_from_the_base_and_gives_up_at_the_give_up_time():
    settings = make_settings(retry_base_seconds=60, retry_give_up_seconds=450)
    start = utcnow()
    assert [delivery.retry_delay(settings, attempts, start, start) for attempts in (0, 1, 2, 3, 4)] == [
        60, 60, 120, 240, None]
    # Counted from when the mail was first queued, not from its last try.
    assert delivery.retry_delay(settings, 3, start, start + timedelta(seconds=211)) is None
    assert delivery.retry_delay(settings, 3, start, start + timedelta(seconds=210)) == 240


# -- the alarms ----------------------------------------------------------------------------

def alarms(database) -> list[tuple[str, str]]:
    with database.session_scope() as session:
        return [(a.kind, a.message) for a in session.scalars(select(OperatorAlarm).order_by(OperatorAlarm.id))]


def test_alarms_name_the_mail_never_the_reader_and_build_alarms_keep_quiet(database):
    build = Outcome(Kind.BUILD, "welcome mail 7: ValueError: no key for reader@example.org")
    policy = Outcome(Kind.POLICY, "550 5.7.1 <address>: Access denied", Stage.RCPT)
    with database.engine.connect() as conn:
        delivery.policy_alarm(conn, "outbox 7 (welcome mail)", policy)
        assert delivery.build_alarm(conn, build, quiet=timedelta(minutes=10))
        assert not delivery.build_alarm(conn, build, quiet=timedelta(minutes=10))  # one for a burst
        assert delivery.build_alarm(conn, build, where="delivery 9")  # the chunk sender's once per chunk
        conn.commit()
    assert alarms(database) == [
        ("smtp_policy", "outbox 7 (welcome mail): 550 5.7.1 <address>: Access denied"),
        ("mail_build", "welcome mail 7: ValueError: no key for <address>"),
        ("mail_build", "delivery 9: welcome mail 7: ValueError: no key for <address>"),
    ]


# -- one schedule for both kinds of mail ---------------------------------------------------

def test_a_transactional_mail_and_a_digest_back_off_on_the_same_schedule(database, settings, smtp):
    """Both senders, each with its own bookkeeping, against a relay that greylists every
    try: the delays between tries and the try that gives up are the same."""
    from newsletter.editions import planning
    from newsletter.editions.sending import ChunkSender
    from newsletter.mail import outbox
    from newsletter.subscribers import subscriptions
    from newsletter.subscribers.subscriptions import Origin
    from newsletter.validation import Preferences

    own = make_settings(database_url=settings.database_url, smtp_port=smtp.port,
                        retry_base_seconds=60, retry_give_up_seconds=450)
    smtp.handler.rcpt_reply = lambda address: "451 4.7.1 greylisted, try again later"
    with database.session_scope() as session:
        [message_id] = subscriptions.signup(session, "waiting@example.org", Preferences("", "", "de"),
                                            Origin(channel="test"))
        session.add(Subscriber(email="reader@example.org", email_hash=email_hash("reader@example.org"),
                               status="confirmed", confirmed_at=utcnow()))
        session.add(Listing(external_id="job-1", title="Buchhalter/in", url="https://jobs.example.org/stellen/1",
                            location="Berlin", published_at=utcnow() - timedelta(hours=1)))
    with database.session_scope() as session:
        edition_id = planning.create_edition(session, own, "test").id

    transactional: list[float | str] = []
    digest: list[float | str] = []
    for _ in range(4):
        result = outbox.deliver(database, own, message_id)
        with database.session_scope() as session:
            row = session.get(OutboxMessage, message_id)
            transactional.append(result.retry_in if result.retry_in is not None else row.last_error.split(":")[0])
            session.execute(update(OutboxMessage).values(next_attempt_at=utcnow()))  # due again at once

        before = utcnow()
        ChunkSender(database, own).run(edition_id, 0, 10**9)
        after = utcnow()
        with database.session_scope() as session:
            row = session.scalar(select(Delivery))
            if row.status == "pending":
                # The chunk sender keeps no "tried at": the delay lies between the two clocks.
                low, high = (row.next_attempt_at - after).total_seconds(), (row.next_attempt_at - before).total_seconds()
                expected = transactional[-1]
                assert not isinstance(expected, str) and low <= expected <= high, (low, expected, high)
                digest.append(expected)
            else:
                digest.append(row.last_error.split(":")[0])
            session.execute(update(Delivery).values(next_attempt_at=utcnow()))
        if row.status != "pending":
            break

    assert transactional == digest == [60, 120, 240, "gave up after 4 tries"]
    assert smtp.messages == []
