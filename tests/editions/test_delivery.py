"""Delivery of transactional mail through the outbox: real workers, a real SMTP server that
answers what it is told, a Redis that goes away and comes back."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import pytest
from sqlalchemy import select

from newsletter import create_app
from newsletter.models import OperatorAlarm, OutboxMessage, Subscriber, Suppression
from tests.conftest import env_for
from tests.processes import kill_tree, start, stop
from tests.helpers import signup, time_passes
from tests.redis_server import RedisServer
from tests.smtp_sink import SmtpSink, free_port

NEWSLETTER = str(Path(sys.executable).parent / "newsletter")


def outbox_rows(database) -> list[OutboxMessage]:
    with database.session_scope() as session:
        return list(session.scalars(select(OutboxMessage).order_by(OutboxMessage.id)))


def subscriber(database, email: str) -> Subscriber | None:
    with database.session_scope() as session:
        return session.scalar(select(Subscriber).where(Subscriber.email == email))








def test_signup_with_redis_down_answers_and_mail_arrives_when_it_is_back(settings, smtp, database, tmp_path):
    server = RedisServer(tmp_path / "redis").start()
    own = replace(settings, redis_url=server.url)
    client = create_app(own).test_client()
    server.stop()

    response = signup(client, "while-down@example.org")
    assert response.status_code == 200
    assert "Fast geschafft".encode() in response.data  # the usual answer, not an error page
    [row] = outbox_rows(database)
    assert row.status == "pending" and row.queued_at is None  # left to the reconciler

    server.start()
    try:
        worker = subprocess.run(
            [NEWSLETTER, "worker", "--burst"], env=env_for(own), capture_output=True, timeout=120
        )
        assert worker.returncode == 0, worker.stderr.decode()
    finally:
        server.stop()
    [mail] = smtp.wait_for(1)
    assert mail.rcpt_tos == ["while-down@example.org"]
    assert outbox_rows(database)[0].status == "sent"


def test_relay_answering_451_for_a_while_delivers_once_afterwards(settings, smtp, database, client):
    refusals = {"left": 3}

    def rcpt(address: str) -> str | None:
        if refusals["left"] > 0:
            refusals["left"] -= 1
            return "451 4.3.0 Greylisted, try again later"
        return None

    smtp.handler.rcpt_reply = rcpt
    signup(client, "patient@example.org")
    worker = start(settings, "worker")  # a real worker with RQ's scheduler runs the retries
    try:
        smtp.wait_for(1, timeout=60)
        time.sleep(1)
    finally:
        stop(worker)
    assert len(smtp.messages) == 1
    [row] = outbox_rows(database)
    assert row.status == "sent" and row.attempts == 4


def test_permanent_refusal_bounces_and_suppresses(settings, smtp, database, client, drain):
    smtp.handler.rcpt_reply = lambda address: "550 5.1.1 <gone@example.org>: no such user"
    signup(client, "gone@example.org")
    drain()
    assert smtp.messages == []
    [row] = outbox_rows(database)
    assert row.status == "bounced" and "5.1.1" in (row.last_error or "")
    sub = subscriber(database, "gone@example.org")
    assert sub is not None and sub.status == "bounced"
    with database.session_scope() as session:
        assert session.get(Suppression, sub.email_hash).reason == "bounced"

    smtp.handler.rcpt_reply = lambda address: None
    signup(client, "gone@example.org")
    drain()
    assert smtp.messages == [] and len(outbox_rows(database)) == 1


def test_policy_rejection_alarms_the_operator_instead_of_bouncing_the_reader(settings, smtp, database, client, drain):
    smtp.handler.rcpt_reply = lambda address: "550 5.7.1 Sender not authorised (SPF fail)"
    signup(client, "reader@example.org")
    drain()
    [row] = outbox_rows(database)
    assert row.status == "pending" and row.attempts == 1  # retried later, not given up
    assert subscriber(database, "reader@example.org").status == "pending"
    with database.session_scope() as session:
        alarms = list(session.scalars(select(OperatorAlarm)))
        assert session.scalar(select(Suppression)) is None
    assert len(alarms) == 1 and "5.7.1" in alarms[0].message


def test_a_mail_that_cannot_be_built_is_retried_with_an_alarm_not_crashed_on(settings, smtp, database, tmp_path, redis_conn):
    """The DKIM key file gone while workers run (a real fault, produced for real): each mail
    fails before it is sent. It waits for a retry with an alarm for the operator, instead of
    crashing its job and leaving the row taken until the reconciler hands it on, again and
    again; once the key is back the mail goes out."""
    from rq import SimpleWorker

    from tests.helpers import DkimKey
    from newsletter import job_context, queueing

    key = DkimKey(tmp_path)
    own = key.settings(settings)
    app, ctx = create_app(own), job_context.configure(own)
    try:
        def work() -> None:
            SimpleWorker(list(queueing.ALL), connection=ctx.redis).work(burst=True, with_scheduler=False)

        key.file.unlink()
        for address in ("reader@example.org", "second@example.org"):
            assert signup(app.test_client(), address).status_code == 200
        work()
        assert smtp.messages == []
        rows = outbox_rows(database)
        assert [r.status for r in rows] == ["pending", "pending"] and all("dkim.key" in (r.last_error or "") for r in rows)
        with database.session_scope() as session:
            [alarm] = session.scalars(select(OperatorAlarm))  # one for the burst, not one per mail
            assert alarm.kind == "mail_build" and "dkim.key" in alarm.message

        DkimKey(tmp_path)  # the operator puts a key back
        deadline = time.monotonic() + 30
        while not smtp.messages and time.monotonic() < deadline:
            time.sleep(0.5)  # the retry waits in RQ's scheduler, run by a burst worker at its start
            SimpleWorker(list(queueing.ALL), connection=ctx.redis).work(burst=True, with_scheduler=True)
        deadline = time.monotonic() + 30
        while len(smtp.messages) < 2 and time.monotonic() < deadline:
            time.sleep(0.5)
            SimpleWorker(list(queueing.ALL), connection=ctx.redis).work(burst=True, with_scheduler=True)
        assert sorted(m.rcpt_tos[0] for m in smtp.messages) == ["reader@example.org", "second@example.org"]
    finally:
        app.extensions["newsletter_db"].dispose()
        ctx.database.dispose()


def test_relay_without_smtputf8_fails_cleanly_for_a_non_ascii_local_part(settings, database, tmp_path, redis_conn):
    plain = SmtpSink(smtputf8=False).start()
    try:
        own = replace(settings, smtp_port=plain.port)
        client = create_app(own).test_client()
        signup(client, "jörg@example.org")
        signup(client, "kunde@bücher.de")
        from rq import SimpleWorker

        from newsletter import job_context, queueing
        from worker import jobs

        ctx = job_context.configure(own)
        jobs.reconcile()
        SimpleWorker(list(queueing.ALL), connection=ctx.redis).work(burst=True)
        ctx.database.dispose()
        rows = outbox_rows(database)
        assert [r.status for r in rows] == ["failed", "sent"]
        assert "SMTPUTF8" in (rows[0].last_error or "")
        [mail] = plain.messages
        assert mail.rcpt_tos == ["kunde@xn--bcher-kva.de"]  # IDN domain as A-labels
        assert mail.message["To"].addresses[0].domain == "xn--bcher-kva.de"
        assert "SMTPUTF8" not in mail.mail_options
    finally:
        plain.stop()


def test_unreachable_relay_is_retried_then_given_up(settings, database, client, drain):
    # The give-up time is passed by moving the stored times back, not by waiting: a loaded
    # machine took longer than a short give-up time for the first try alone (CI, once).
    closed = replace(settings, smtp_port=free_port(), retry_give_up_seconds=3600)
    from newsletter import job_context, queueing

    job_context.configure(closed)
    signup(client, "nobody-home@example.org")
    queueing.send_outbox(outbox_rows(database)[0].id)
    [row] = outbox_rows(database)
    assert row.status == "pending" and "cannot reach" in (row.last_error or "")
    time_passes(database, 1)
    queueing.send_outbox(row.id)
    [row] = outbox_rows(database)
    assert row.status == "failed" and row.last_error.startswith("gave up after 2 tries")


def test_worker_killed_mid_send_loses_nothing(settings, smtp, database, client):
    """SIGKILL a real worker while the relay holds its DATA: after the lease the next worker
    sends the mail, exactly once."""
    hold = {"on": True}
    original = smtp.handler.handle_DATA

    async def slow_data(server, session, envelope):  # type: ignore[no-untyped-def]
        if not hold["on"]:
            return await original(server, session, envelope)
        while hold["on"]:
            await asyncio.sleep(0.05)
        # The client died before our 250: this relay never accepted that message.
        return "421 4.4.2 connection lost"

    smtp.handler.handle_DATA = slow_data  # type: ignore[method-assign]
    own = replace(settings, send_lease_seconds=5)
    signup(client, "survivor@example.org")
    worker = start(own, "worker")
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and outbox_rows(database)[0].status != "sending":
        time.sleep(0.1)
    assert outbox_rows(database)[0].status == "sending"
    kill_tree(worker)
    hold["on"] = False
    assert smtp.messages == []  # the killed connection never finished its DATA

    lease_until = outbox_rows(database)[0].lease_until
    from newsletter.models import utcnow

    time.sleep(max(0.0, (lease_until - utcnow()).total_seconds()) + 0.5)
    second = start(own, "worker", "--burst")
    try:
        second.wait(timeout=120)
    finally:
        stop(second)
    [mail] = smtp.wait_for(1)
    assert mail.rcpt_tos == ["survivor@example.org"]
    [row] = outbox_rows(database)
    assert row.status == "sent" and row.attempts == 2


@pytest.mark.parametrize("kind", ["confirm"])
def test_a_mail_no_longer_wanted_is_cancelled_not_sent(settings, smtp, database, client, drain, kind):
    from newsletter.subscribers import subscriptions
    from newsletter.subscribers.subscriptions import Origin

    signup(client, "changed-mind@example.org")
    with database.session_scope() as session:
        sub = session.scalar(select(Subscriber))
        subscriptions.unsubscribe(session, sub, Origin(channel="test"))
    drain()
    assert smtp.messages == []
    assert outbox_rows(database)[0].status == "cancelled"
