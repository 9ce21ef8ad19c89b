"""A relay's reply names the address it refused (STANDARDS 33): that text must reach no
other reader's records, no alarm and no log line. A real relay (the aiosmtpd sink) answers
as Postfix does, a real RQ worker sends, on SQLite and PostgreSQL."""

from __future__ import annotations

import json
import logging
from datetime import timedelta

import pytest
from sqlalchemy import select

from newsletter.editions import planning
from newsletter.subscribers import subscriptions
from newsletter.models import (
    ConsentEvent,
    Delivery,
    Listing,
    OperatorAlarm,
    OutboxMessage,
    Subscriber,
    email_hash,
    utcnow,
)
from newsletter.mail.transport import BounceError, PolicyError, SmtpTransport, classify
from tests.conftest import make_settings
from tests.helpers import queue_edition, signup

REFUSED = "refused@example.org"  # the relay's policy refuses this one recipient (5.7.1)
GONE = "gone@example.org"  # and this one does not exist (5.1.1)
OTHERS = ["erste@example.org", "danach@example.org", "zuletzt@example.org"]


def postfix_like(address: str) -> str | None:
    if address == REFUSED:
        return f"550 5.7.1 <{address}>: Recipient address rejected: Access denied"
    if address == GONE:
        return f"550 5.1.1 <{address}>: Recipient address rejected: User unknown in virtual mailbox table"
    return None


def our_log(caplog) -> str:
    """What the service logged (the sink's own log, the relay's, names every address)."""
    ours = [r for r in caplog.records if r.name.split(".")[0] in ("newsletter", "worker", "rq")]
    assert ours, "nothing logged: is the check looking at the right loggers?"
    return "\n".join(r.getMessage() for r in ours)


def send_edition(database, settings, drain) -> int:
    with database.session_scope() as session:
        session.add(Listing(external_id="job-1", title="Buchhalter/in (m/w/d)", url="https://jobs.example.org/stellen/1",
                            location="Berlin", published_at=utcnow() - timedelta(hours=1)))
        for address in [OTHERS[0], GONE, REFUSED, *OTHERS[1:]]:
            session.add(Subscriber(email=address, email_hash=email_hash(address), status="confirmed",
                                   confirmed_at=utcnow()))
    with database.session_scope() as session:
        edition_id = planning.create_edition(session, settings, "test").id
    queue_edition(settings, edition_id)
    drain()
    return edition_id


def test_a_refused_address_reaches_no_other_readers_records_nor_alarms_nor_logs(
    database, settings, smtp, drain, caplog
):
    caplog.set_level(logging.INFO)
    smtp.handler.rcpt_reply = postfix_like
    edition_id = send_edition(database, settings, drain)

    with database.session_scope() as session:
        # The bounce is the reader's; so is the policy refusal of one recipient while the
        # relay takes the others (STANDARDS 24): the rest of the chunk goes on.
        assert session.scalar(select(Subscriber.status).where(Subscriber.email == GONE)) == "bounced"
        assert session.scalar(select(Subscriber.status).where(Subscriber.email == REFUSED)) == "confirmed"
        errors = {email: error for email, error in session.execute(
            select(Subscriber.email, Delivery.last_error).join(Delivery, Delivery.subscriber_id == Subscriber.id))}
        exports = {sub.email: json.dumps(subscriptions.export(session, sub), default=str)
                   for sub in session.scalars(select(Subscriber))}
        replies = [e.detail for e in session.scalars(
            select(ConsentEvent).where(ConsentEvent.event.in_(("bounced", "policy_bounce"))).order_by(ConsentEvent.id))]
        alarms = [a.message for a in session.scalars(select(OperatorAlarm))]

    for email in OTHERS:  # the leak itself: another reader's delivery and data export
        assert REFUSED not in (errors[email] or "") and REFUSED not in exports[email], (email, errors[email])
        assert GONE not in exports[email], exports[email]
    assert GONE not in exports[REFUSED] and REFUSED not in exports[GONE]
    assert "5.7.1" in errors[REFUSED] and "5.1.1" in errors[GONE]  # the reply is kept, minus the address
    for email, error in errors.items():
        assert "@" not in (error or ""), (email, error)
    assert len(replies) == 2 and "5.1.1" in json.dumps(replies[0]) and "5.7.1" in json.dumps(replies[1])
    assert "@" not in json.dumps(replies)
    assert alarms == []
    assert REFUSED not in our_log(caplog) and GONE not in our_log(caplog)


def test_a_relay_refusing_every_recipient_alarms_naming_the_delivery_not_the_reader(
    database, settings, smtp, drain, caplog
):
    caplog.set_level(logging.INFO)
    smtp.handler.rcpt_reply = lambda address: f"550 5.7.1 <{address}>: Recipient address rejected: Access denied"
    edition_id = send_edition(database, settings, drain)
    with database.session_scope() as session:
        first = session.scalar(select(Delivery.id).order_by(Delivery.id).limit(1))
        [alarm] = [a.message for a in session.scalars(select(OperatorAlarm))]
        errors = [e for e in session.scalars(select(Delivery.last_error))]
    assert f"edition {edition_id}" in alarm and f"delivery {first}" in alarm and "@" not in alarm
    assert all("5.7.1" in e and "@" not in e for e in errors)
    assert f"delivery {first}: relay refuses our mail" in our_log(caplog)
    assert not any(address in our_log(caplog) for address in [REFUSED, GONE, *OTHERS])


def test_an_outbox_policy_refusal_alarms_with_the_message_id_not_the_address(client, database, smtp, drain, caplog):
    caplog.set_level(logging.INFO)
    smtp.handler.rcpt_reply = lambda address: f"550 5.7.1 <{address}>: Recipient address rejected: Access denied"
    assert signup(client, REFUSED).status_code == 200
    drain()
    with database.session_scope() as session:
        [message] = session.scalars(select(OutboxMessage))
        [alarm] = session.scalars(select(OperatorAlarm))
        message_id, status, last_error, text = message.id, message.status, message.last_error, alarm.message
    assert status == "pending" and "5.7.1" in (last_error or "") and "@" not in last_error
    assert f"outbox {message_id}" in text and "5.7.1" in text and "@" not in text
    assert REFUSED not in our_log(caplog)


def test_the_transport_redacts_every_address_a_relay_names(smtp):
    smtp.handler.rcpt_reply = postfix_like
    with SmtpTransport(make_settings(smtp_port=smtp.port)) as transport:
        for recipient, expected in ((REFUSED, PolicyError), (GONE, BounceError)):
            with pytest.raises(expected) as caught:
                transport.send("bounces+tag@jobs.example.org", recipient, b"Subject: x\r\n\r\nx\r\n")
            text = str(caught.value)
            assert caught.value.code == 550 and "@" not in text and "<address>: Recipient address rejected" in text
    # A refused sender: the relay quotes our VERP address, which carries the reader's id.
    error = classify(553, b"5.7.1 <bounces+AbC@jobs.example.org>: Sender rejected", sender_side=True)
    assert type(error) is PolicyError and "@" not in str(error) and "AbC" not in str(error)
