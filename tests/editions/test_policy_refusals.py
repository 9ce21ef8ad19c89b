"""One reader's refusal must not hold the others (STANDARDS 24): a 5.7.x for one recipient
while the relay accepts others is that reader's policy bounce, suppressed once it repeats
on `policy_bounce_limit` editions in a row; a relay refusing every recipient is the
operator's alarm. The aiosmtpd sink answers per recipient, as Postfix's access maps do."""

from __future__ import annotations

from sqlalchemy import func, select

from newsletter.editions import state
from newsletter.editions.sending import POLICY_PROBE
from newsletter.models import ConsentEvent, Delivery, OperatorAlarm, Suppression, email_hash
from tests.helpers import add_listing, add_reader, find_subscriber, send_now, time_passes

BLOCKED = "blocked@example.org"
REFUSAL = "550 5.7.1 <{address}>: Recipient address rejected: Access denied"


def edition(database, settings, drain, smtp, n: int) -> int:
    smtp.clear()
    with database.session_scope() as session:
        add_listing(session, n, f"Lagerlogistik {n} (m/w/d)")
    return send_now(database, settings, drain)


def alarms(database) -> int:
    with database.session_scope() as session:
        return session.scalar(select(func.count()).select_from(OperatorAlarm)) or 0


def test_a_readers_policy_refusal_on_two_editions_in_a_row_suppresses_them(settings, database, smtp, drain):
    smtp.handler.rcpt_reply = lambda address: REFUSAL.format(address=address) if address == BLOCKED else None
    with database.session_scope() as session:
        add_reader(session, BLOCKED)
        add_reader(session, "frei@example.org")

    first = edition(database, settings, drain, smtp, 1)
    assert [m.rcpt_tos for m in smtp.messages] == [["frei@example.org"]]
    assert find_subscriber(database, BLOCKED).status == "confirmed"
    with database.session_scope() as session:
        assert state.returned(session, first)["policy_bounced"] == 1
        assert state.counts(session, first)["queued"] == 0

    time_passes(database, 15)
    edition(database, settings, drain, smtp, 2)
    assert find_subscriber(database, BLOCKED).status == "bounced"
    with database.session_scope() as session:
        assert session.get(Suppression, email_hash(BLOCKED)).reason == "bounced"
        events = [e.event for e in session.scalars(
            select(ConsentEvent).where(ConsentEvent.email_hash == email_hash(BLOCKED)).order_by(ConsentEvent.id))]
    assert events == ["policy_bounce", "policy_bounce", "bounced"]
    assert alarms(database) == 0

    time_passes(database, 15)
    edition(database, settings, drain, smtp, 3)
    assert [m.rcpt_tos for m in smtp.messages] == [["frei@example.org"]]


def test_a_relay_refusing_everyone_is_asked_about_a_few_readers_only(settings, database, smtp, drain):
    asked: list[str] = []

    def refuse_all(address: str) -> str:
        asked.append(address)
        return REFUSAL.format(address=address)

    smtp.handler.rcpt_reply = refuse_all
    with database.session_scope() as session:
        for n in range(POLICY_PROBE + 5):
            add_reader(session, f"r{n:02d}@example.org")
    edition_id = edition(database, settings, drain, smtp, 1)
    assert len(asked) == POLICY_PROBE  # then it stopped knocking: the relay refuses us
    assert alarms(database) == 1
    with database.session_scope() as session:
        assert state.counts(session, edition_id)["queued"] == POLICY_PROBE + 5
        assert state.returned(session, edition_id)["policy_bounced"] == 0


def test_a_refusal_after_the_relay_took_others_is_the_last_readers_own(settings, database, smtp, drain):
    smtp.handler.rcpt_reply = lambda address: REFUSAL.format(address=address) if address == "zz@example.org" else None
    with database.session_scope() as session:
        for address in ("aa@example.org", "bb@example.org", "zz@example.org"):
            add_reader(session, address)
    edition_id = edition(database, settings, drain, smtp, 1)
    assert sorted(m.rcpt_tos[0] for m in smtp.messages) == ["aa@example.org", "bb@example.org"]
    with database.session_scope() as session:
        assert state.returned(session, edition_id)["policy_bounced"] == 1
        assert state.counts(session, edition_id)["queued"] == 0
    assert alarms(database) == 0


def test_a_relay_that_turns_on_us_mid_chunk_is_an_alarm_not_everyones_bounce(settings, database, smtp, drain):
    """It took three mails, then refuses our sender at RCPT for everyone (Postfix's sender
    restrictions answer there): nobody after that is the reader's bounce, and those never
    tried keep their try."""
    taken: list[str] = []

    def flip(address: str) -> str | None:
        if len(taken) < 3:
            taken.append(address)
            return None
        return "554 5.7.1 <bounces@jobs.example.org>: Sender address rejected: Access denied"

    smtp.handler.rcpt_reply = flip
    with database.session_scope() as session:
        for n in range(POLICY_PROBE + 10):
            add_reader(session, f"r{n:02d}@example.org")
    edition_id = edition(database, settings, drain, smtp, 1)
    assert len(smtp.messages) == 3
    assert alarms(database) == 1
    with database.session_scope() as session:
        assert state.returned(session, edition_id)["policy_bounced"] == 0
        assert state.counts(session, edition_id)["queued"] == POLICY_PROBE + 7
        never_tried = session.scalars(select(Delivery.attempts).where(
            Delivery.edition_id == edition_id, Delivery.status == "pending").order_by(Delivery.id)).all()
    assert never_tried == [1] * POLICY_PROBE + [0] * 7
    assert all(find_subscriber(database, f"r{n:02d}@example.org").status == "confirmed" for n in range(POLICY_PROBE + 10))
