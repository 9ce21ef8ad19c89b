"""Editions: schedule, selection, planning and delivery through real RQ workers and a real
SMTP server, on SQLite and PostgreSQL."""

from __future__ import annotations

import threading
from dataclasses import replace
from datetime import datetime, timedelta
from email.utils import parseaddr

import pytest
from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError

from newsletter.editions import planning, schedule, state
from newsletter.listings import matching
from newsletter.db import Database
from newsletter.models import (
    Delivery,
    Edition,
    OperatorAlarm,
    Subscriber,
    Suppression,
    email_hash,
    utcnow,
)
from tests.conftest import make_settings
from tests.helpers import DkimKey, add_listing, add_reader, queue_edition, send_now, one_click_url


# -- the schedule ------------------------------------------------------------------------

BERLIN = make_settings(digest_first="2026-03-17T08:00", digest_interval_days=14)


def utc(text: str) -> datetime:
    return datetime.fromisoformat(text)


def test_slots_stay_at_eight_in_berlin_across_daylight_saving():
    # 17 March is winter time (UTC+1); 31 March, two weeks later, is summer time (UTC+2).
    assert schedule.latest_slot(BERLIN, utc("2026-03-17T06:59")) is None
    assert schedule.latest_slot(BERLIN, utc("2026-03-17T07:00")) == utc("2026-03-17T07:00")
    assert schedule.latest_slot(BERLIN, utc("2026-03-30T23:00")) == utc("2026-03-17T07:00")
    assert schedule.latest_slot(BERLIN, utc("2026-03-31T06:00")) == utc("2026-03-31T06:00")
    assert schedule.latest_slot(BERLIN, utc("2026-10-27T12:00")) == utc("2026-10-27T07:00")  # winter again


def test_a_tick_makes_one_edition_per_period_and_one_catch_up_after_downtime(database, settings):
    own = replace(settings, digest_first="2026-01-06T08:00", digest_interval_days=14)
    with database.session_scope() as session:
        first = schedule.tick(session, own, now=utc("2026-01-06T07:30"))
        again = schedule.tick(session, own, now=utc("2026-01-06T09:00"))
        # Down from before the 20 Jan slot until after the 3 Feb one: one edition, not two.
        caught_up = schedule.tick(session, own, now=utc("2026-02-05T10:00"))
        later = schedule.tick(session, own, now=utc("2026-02-06T10:00"))
    assert first is not None and again is None and later is None
    assert caught_up is not None and caught_up.period == utc("2026-02-03T07:00")
    with database.session_scope() as session:
        assert session.scalar(select(func.count()).select_from(Edition)) == 2


def test_a_due_edition_waits_while_the_last_one_is_paused_then_gets_its_listings(database, settings):
    own = replace(settings, digest_first="2026-01-06T08:00", digest_interval_days=14)
    with database.session_scope() as session:
        add_listing(session, 1, "Tischler/in (m/w/d)", hours_ago=1)
        add_reader(session, "held@example.org")
    with database.session_scope() as session:
        first = planning.create_edition(session, own, "cli")
        state.set_state(session, first.id, "pause")
        assert schedule.tick(session, own) is None  # the slot is due, but the paused one holds it
        state.set_state(session, first.id, "cancel")
        due = schedule.tick(session, own)
        assert due is not None and due.listing_count == 1 and due.planned == 1


def test_two_schedulers_ticking_at_once_make_one_edition(database, settings):
    own = replace(settings, digest_first="2026-01-06T08:00")
    now = utc("2026-01-06T08:00")
    with database.session_scope() as session:  # a reader, so that the edition stays open (sending)
        add_listing(session, 1, "Koch (m/w/d)", hours_ago=(utcnow() - now).total_seconds() / 3600 + 1)
        add_reader(session, "tick@example.org")
    results: list[object] = []
    barrier = threading.Barrier(4)

    def tick() -> None:
        db = Database(own.database_url)
        barrier.wait()
        try:
            with db.session_scope() as session:
                edition = schedule.tick(session, own, now=now)
                results.append(edition.id if edition else None)
        except Exception as exc:  # noqa: BLE001 - a lost race must not be an error either
            results.append(exc)
        finally:
            db.dispose()

    threads = [threading.Thread(target=tick) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sum(1 for r in results if isinstance(r, int)) == 1, results
    assert all(r is None or isinstance(r, int) for r in results), results


# -- selection ---------------------------------------------------------------------------

@pytest.mark.parametrize(
    "keywords, location, text, where, expected",
    [
        ("Python", "", "Senior Python Developer", "Berlin", True),
        ("python", "münchen", "PYTHON dev", "Muenchen", True),
        ("Entwickler", "", "Softwareentwicklerin (m/w/d)", "", True),
        ("Entwicklerin", "", "Entwickler Backend", "", True),
        ("Ingenieure", "", "Ingenieur Elektrotechnik", "", True),
        ("Koeln", "", "Job in Köln", "", True),
        ("Pflege, Python", "", "Pflegefachkraft", "", True),
        ("Machine Learning", "", "Learning about machines", "", True),
        ("Machine Learning", "", "Machine operator", "", False),
        ("Python", "Hamburg", "Python developer", "Berlin", False),
        ("", "Köln", "anything", "Köln-Deutz", True),
        ("Java", "", "JavaScript developer", "", True),
    ],
)
def test_matching_is_case_umlaut_and_inflection_tolerant(keywords, location, text, where, expected):
    query = matching.parse(keywords, location)
    listing = matching.ListingFacts(1, matching.searchable(text, "", "", ""), matching.fold(where), None, False,
                                    frozenset())
    assert matching.matches(query, listing) is expected


def test_selection_window_validity_order_and_limit(database, settings, smtp, drain):
    own = replace(settings, digest_max_listings=3)
    with database.session_scope() as session:
        add_listing(session, 1, "Python Entwickler alt", hours_ago=24 * 20)  # before the window
        add_listing(session, 2, "Python Entwickler abgelaufen", valid_through=utcnow() - timedelta(hours=1))
        add_listing(session, 3, "Python Entwickler zurückgezogen", withdrawn_at=utcnow())
        for n, hours in ((4, 5), (5, 1), (6, 3), (7, 2), (8, 4)):
            add_listing(session, n, f"Python Entwickler {n}", hours_ago=hours)
        add_reader(session, "py@example.org", keywords="Python")
    send_now(database, own, drain)
    [mail] = smtp.messages
    text = mail.part("plain")
    order = [text.index(f"Python Entwickler {n}") for n in (5, 7, 6)]
    assert order == sorted(order)  # newest first
    for absent in ("Entwickler 8", "Entwickler 4", "Entwickler alt", "abgelaufen", "zurückgezogen"):
        assert absent not in text
    assert "jobs.example.org/suche?q=Python" in text  # the rest, on the board


def test_nobody_gets_an_empty_mail_and_the_next_edition_starts_at_the_cut_off(database, settings, smtp, drain):
    with database.session_scope() as session:
        add_listing(session, 1, "Pflegefachkraft (m/w/d)", location="Köln")
        add_reader(session, "pflege@example.org", keywords="Pflege")
        add_reader(session, "koch@example.org", keywords="Koch")
        add_reader(session, "koeln@example.org", location="Koeln")
        add_reader(session, "pending@example.org", status="pending")
        add_reader(session, "left@example.org", status="unsubscribed")
    first = send_now(database, settings, drain)
    assert sorted(m.rcpt_tos[0] for m in smtp.messages) == ["koeln@example.org", "pflege@example.org"]
    smtp.clear()
    second = send_now(database, settings, drain)  # nothing new since the first cut-off
    assert smtp.messages == []
    with database.session_scope() as session:
        assert session.get(Edition, second).state == "done"
        assert session.get(Edition, second).window_start == session.get(Edition, first).cutoff


# -- the mail ----------------------------------------------------------------------------

def test_digest_headers_and_links(database, settings, smtp, drain, client):
    with database.session_scope() as session:
        add_listing(session, 1, "Machine Learning Engineer (m/w/d)", location="München")
        add_reader(session, "leser@example.org", keywords="Machine Learning", language="de")
    send_now(database, settings, drain)
    [mail] = smtp.messages
    msg = mail.message
    for name in ("Date", "From", "Message-ID", "Subject", "To", "MIME-Version", "List-Unsubscribe",
                 "List-Unsubscribe-Post", "List-Id"):
        assert len(msg.get_all(name) or []) == 1, name
    assert msg["Subject"] == "1 neuer Job für Sie" or msg["Subject"].startswith("1 neuer Job für Sie")
    assert msg["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert msg["Auto-Submitted"] == "auto-generated" and msg["Feedback-ID"]
    assert msg["Return-Path"] is None
    assert msg["Message-ID"].endswith("@jobs.example.org>")
    assert parseaddr(mail.mail_from)[1].startswith("bounces+") and mail.mail_from.endswith("@jobs.example.org")
    assert msg.get_content_type() == "multipart/alternative"
    assert [p.get_content_type() for p in msg.iter_parts()] == ["text/plain", "text/html"]
    assert all(len(line) <= 998 for line in mail.data.split(b"\r\n"))
    unsubscribe = one_click_url(msg)
    for part in ("plain", "html"):
        body = mail.part(part)
        assert unsubscribe in body and "/preferences/" in body
        assert "Beispiel Jobs GmbH" in body  # the Impressum
    response = client.post(unsubscribe.replace("http://newsletter.test", ""), data={"List-Unsubscribe": "One-Click"})
    assert response.status_code == 200
    with database.session_scope() as session:
        assert session.scalar(select(Subscriber.status)) == "unsubscribed"


def test_the_readers_data_export_lists_the_digests_sent_to_them(database, settings, drain):
    """STANDARDS 14: all data held, the digest history included."""
    from newsletter.subscribers import subscriptions

    with database.session_scope() as session:
        add_listing(session, 1, "Data Scientist (w/m/d)")
        add_reader(session, "export@example.org")
    edition_id = send_now(database, settings, drain)
    with database.session_scope() as session:
        sub = subscriptions.find_by_email(session, "export@example.org")
        [digest] = subscriptions.export(session, sub)["digests"]
    assert (digest["edition"], digest["status"], digest["error"]) == (edition_id, "sent", None)
    assert digest["sent_at"].endswith("Z") and digest["edition_created_at"] <= digest["sent_at"]


def test_a_non_ascii_list_name_goes_out_encoded_and_the_digest_is_sent(database, settings, smtp, drain):
    with database.session_scope() as session:
        add_listing(session, 1, "Data Scientist (w/m/d)")
        add_reader(session, "umlaut@example.org")
    edition_id = send_now(database, replace(settings, list_name="Stellenbörse Süd"), drain)
    [mail] = smtp.messages
    assert mail.message["List-Id"] == "Stellenbörse Süd <jobs-newsletter.jobs.example.org>"
    assert mail.data.split(b"\r\n\r\n", 1)[0].isascii()
    with database.session_scope() as session:
        assert state.counts(session, edition_id)["sent"] == 1


def test_dkim_signature_covers_and_oversigns_the_list_headers(database, settings, smtp, drain, tmp_path):
    key = DkimKey(tmp_path)
    with database.session_scope() as session:
        add_listing(session, 1, "Data Scientist (w/m/d)")
        add_reader(session, "dkim@example.org")
    send_now(database, key.settings(settings), drain)
    [mail] = smtp.messages
    key.assert_signed_over_list_headers(mail)


# -- delivery outcomes ---------------------------------------------------------------------

def test_a_bounce_suppresses_and_one_readers_policy_refusal_holds_nobody(database, settings, smtp, drain):
    smtp.handler.rcpt_reply = lambda address: (
        "550 5.1.1 unknown user" if address.startswith("gone") else
        "550 5.7.1 recipient rejected" if address.startswith("policy") else None
    )
    with database.session_scope() as session:
        add_listing(session, 1, "Buchhalter/in")
        for address in ("policy@example.org", "fine@example.org", "gone@example.org", "after@example.org"):
            add_reader(session, address)
    edition_id = send_now(database, settings, drain)
    assert [m.rcpt_tos[0] for m in smtp.messages] == ["fine@example.org", "after@example.org"]
    with database.session_scope() as session:
        counts = state.counts(session, edition_id)
        assert counts["bounced"] == 2 and counts["sent"] == 2 and counts["queued"] == 0
        assert session.get(Edition, edition_id).state == "done"
        assert session.scalar(select(Subscriber.status).where(Subscriber.email == "gone@example.org")) == "bounced"
        assert session.get(Suppression, email_hash("gone@example.org")).reason == "bounced"
        # The first reader's refusal waited for the next recipient to say whether it was
        # theirs or ours; it was theirs: recorded, not (yet) suppressed, no alarm.
        assert session.scalar(select(Subscriber.status).where(Subscriber.email == "policy@example.org")) == "confirmed"
        assert state.returned(session, edition_id)["policy_bounced"] == 1
        assert session.scalar(select(func.count()).select_from(OperatorAlarm)) == 0


def test_a_relay_refusing_every_recipient_alarms_and_holds_the_edition(database, settings, smtp, drain):
    smtp.handler.rcpt_reply = lambda address: "550 5.7.1 DMARC policy"
    with database.session_scope() as session:
        add_listing(session, 1, "Buchhalter/in")
        for address in ("one@example.org", "two@example.org", "three@example.org"):
            add_reader(session, address)
    edition_id = send_now(database, settings, drain)
    assert smtp.messages == []
    with database.session_scope() as session:
        assert state.counts(session, edition_id)["queued"] == 3
        assert session.scalar(select(func.count()).select_from(OperatorAlarm)) == 1
        assert session.scalar(select(func.count()).select_from(Subscriber).where(Subscriber.status != "confirmed")) == 0

    smtp.handler.rcpt_reply = lambda address: None  # the operator fixed SPF/DKIM
    import time

    time.sleep(settings.retry_base_seconds + 0.1)
    drain()
    assert sorted(m.rcpt_tos[0] for m in smtp.messages) == ["one@example.org", "three@example.org", "two@example.org"]
    with database.session_scope() as session:
        assert session.get(Edition, edition_id).state == "done"


def test_digests_that_cannot_be_built_wait_for_a_retry_with_one_alarm(database, settings, smtp, drain, tmp_path):
    """A DKIM key file broken while workers run (a real fault, produced for real): no digest
    can be signed. The chunk's readers wait for a retry and the operator gets one alarm,
    instead of a crashed job whose rows only the reconciler hands on, again and again."""
    import time

    key = DkimKey(tmp_path)
    own = key.settings(settings)
    with database.session_scope() as session:
        add_listing(session, 1, "Schreiner/in (m/w/d)")
        for n in range(3):
            add_reader(session, f"r{n}@example.org")
    key.file.write_text("this is no key\n")
    edition_id = send_now(database, own, drain)
    assert smtp.messages == []
    with database.session_scope() as session:
        assert state.counts(session, edition_id)["queued"] == 3
        assert {d.status for d in session.scalars(select(Delivery))} == {"pending"}
        [alarm] = session.scalars(select(OperatorAlarm))
        assert alarm.kind == "mail_build" and f"edition {edition_id}" in alarm.message

    DkimKey(tmp_path)  # the operator puts a key back
    time.sleep(own.retry_base_seconds + 0.1)
    drain()  # its reconcile finds the due readers (the retry job waits in RQ's scheduler)
    assert sorted(m.rcpt_tos[0] for m in smtp.messages) == [f"r{n}@example.org" for n in range(3)]
    with database.session_scope() as session:
        assert session.get(Edition, edition_id).state == "done"


def test_reader_who_left_before_their_turn_gets_nothing(database, settings, smtp, drain):
    with database.session_scope() as session:
        add_listing(session, 1, "Werkstudent*in Marketing")
        add_reader(session, "stays@example.org")
        add_reader(session, "leaves@example.org")
    with database.session_scope() as session:
        edition_id = planning.create_edition(session, settings, "test").id
    with database.session_scope() as session:
        session.scalar(select(Subscriber).where(Subscriber.email == "leaves@example.org")).status = "unsubscribed"
    queue_edition(settings, edition_id)
    drain()
    assert [m.rcpt_tos[0] for m in smtp.messages] == ["stays@example.org"]


def test_pause_resume_and_cancel(database, settings, smtp, drain):
    with database.session_scope() as session:
        add_listing(session, 1, "Projektmanager:in Energiewende")
        for n in range(5):
            add_reader(session, f"r{n}@example.org")
    with database.session_scope() as session:
        edition_id = planning.create_edition(session, settings, "test").id
        state.set_state(session, edition_id, "pause")
    queue_edition(settings, edition_id)
    drain()
    assert smtp.messages == []
    with database.session_scope() as session:
        state.set_state(session, edition_id, "resume")
    queue_edition(settings, edition_id)
    drain()
    assert len(smtp.messages) == 5
    with database.session_scope() as session:
        assert session.get(Edition, edition_id).state == "done"
        with pytest.raises(state.EditionError):
            state.set_state(session, edition_id, "cancel")

    smtp.clear()
    with database.session_scope() as session:
        add_listing(session, 2, "Elektroniker für Betriebstechnik (m/w/d)", hours_ago=0)
    with database.session_scope() as session:
        cancelled = planning.create_edition(session, settings, "test").id
        state.set_state(session, cancelled, "cancel")
    queue_edition(settings, cancelled)
    drain()
    assert smtp.messages == []
    with database.session_scope() as session:
        assert state.counts(session, cancelled)["cancelled"] == 5
        # A cancelled edition's listings go into the next one.
        assert planning.preview(session, settings).listings[0].title.startswith("Elektroniker")


def test_planning_is_one_row_per_reader_even_when_run_twice(database, settings):
    with database.session_scope() as session:
        add_listing(session, 1, "Data Engineer")
        for n in range(250):
            add_reader(session, f"r{n}@example.org", keywords=["Data", "", "Engineer"][n % 3])
    with database.session_scope() as session:
        edition = planning.create_edition(session, settings, "test")
        assert edition.planned == 250
    with pytest.raises(IntegrityError), database.session_scope() as session:
        planning.plan(session, edition.id, utcnow())  # the database refuses a second row per reader
    with database.session_scope() as session:
        assert session.scalar(select(func.count(func.distinct(Delivery.subscriber_id)))) == 250
        chunks = state.open_chunks(session, edition.id, 100)
    assert sum(1 for _ in chunks) == 3 and chunks[0][0] == 1
