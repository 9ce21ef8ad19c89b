"""Former readers (unsubscribed, bounced, complained) lose address, search and place after
NEWSLETTER_FORMER_READER_RETENTION_DAYS; only the hashed suppression entry and the consent
proof remain, the proof until the end of the year its retention ends in (STANDARDS 34, 15;
§199 BGB)."""

from __future__ import annotations

import json
from datetime import datetime, timedelta

import pytest
from sqlalchemy import DateTime, delete, select

from newsletter.subscribers import subscriptions
from newsletter.cli.commands import cli
from newsletter.models import (
    ConsentEvent,
    Delivery,
    Edition,
    EditionVariant,
    OutboxMessage,
    Subscriber,
    Suppression,
    email_hash,
    utcnow,
)
from tests.helpers import all_rows, find_subscriber, form_action, only_link, path_of, signup, subscribe_confirmed, one_click_url

EMAIL = "anna@example.org"
PROOF = ["signup", "confirmation_sent", "confirmed"]


def _all_happened_earlier(database, days: float) -> None:
    """Move every stored time `days` back, the consent log's too (it refuses UPDATE: by
    delete and insert): the clock itself cannot be waited for."""
    shift = timedelta(days=days)
    with database.session_scope() as session:
        for model in (Subscriber, Suppression, OutboxMessage, Edition, Delivery):
            stamps = [c.key for c in model.__table__.columns if isinstance(c.type, DateTime)]
            for row in session.scalars(select(model)):
                for name in stamps:
                    if getattr(row, name) is not None:
                        setattr(row, name, getattr(row, name) - shift)
        _shift_table(session, "confirmation_mails", shift)
        events = list(session.scalars(select(ConsentEvent).order_by(ConsentEvent.id)))
        session.execute(delete(ConsentEvent))
        for e in events:
            session.add(ConsentEvent(
                id=e.id, subscriber_public_id=e.subscriber_public_id, email_hash=e.email_hash, event=e.event,
                at=e.at - shift, ip=e.ip, user_agent=e.user_agent, form_url=e.form_url, channel=e.channel,
                consent_version=e.consent_version, consent_text=e.consent_text, detail=e.detail))


def _shift_table(session, name: str, shift: timedelta) -> None:
    from newsletter.models import Base

    table = Base.metadata.tables.get(name)
    if table is None:
        return
    for column in (c for c in table.columns if isinstance(c.type, DateTime)):
        for key, value in session.execute(select(table.c.id, column)).all():
            if value is not None:
                session.execute(table.update().where(table.c.id == key).values({column.name: value - shift}))


def _a_digest_was_sent_to(database, email: str) -> None:
    with database.session_scope() as session:
        sub = session.scalar(select(Subscriber).where(Subscriber.email_hash == email_hash(email)))
        now = utcnow()
        edition = Edition(trigger="cli", state="done", cutoff=now, window_start=now - timedelta(days=14))
        session.add(edition)
        session.flush()
        variant = EditionVariant(edition_id=edition.id, keywords=sub.keywords, location=sub.location,
                                 listing_ids=[], total_matches=0)
        session.add(variant)
        session.flush()
        session.add(Delivery(edition_id=edition.id, subscriber_id=sub.id, variant_id=variant.id, status="sent",
                             sent_at=now))


def _leave(client, smtp, drain, how: str) -> str:
    """A reader who searched for something personal and left `how`; returns its settings link."""
    welcome = subscribe_confirmed(client, smtp, drain, EMAIL, keywords="Gynäkologie", location="Quedlinburg")
    prefs = only_link(welcome.part("plain"), "/preferences/")
    client.post(prefs, data={"keywords": "Gynäkologie Teilzeit", "location": "Quedlinburg", "language": "de"})
    if how == "unsubscribed":
        unsubscribe = path_of(one_click_url(welcome.message))
        assert client.post(unsubscribe, data={"List-Unsubscribe": "One-Click"}).status_code == 200
    elif how == "bounced":
        smtp.handler.rcpt_reply = lambda address: "550 5.1.1 <anna@example.org>: no such user"
        client.post("/manage", data={"email": EMAIL})
        drain()
        smtp.handler.rcpt_reply = lambda address: None
    assert find_subscriber(database_of(client), EMAIL).status == how
    return prefs


def database_of(client):
    return client.application.extensions["newsletter_db"]


def _purge(app) -> str:
    result = app.test_cli_runner().invoke(cli, ["subscribers", "purge"])
    assert result.exit_code == 0, result.output
    return result.output


def _events(database) -> list[ConsentEvent]:
    return all_rows(database, ConsentEvent, email_hash=email_hash(EMAIL))


@pytest.mark.parametrize("how", ["unsubscribed", "bounced"])
def test_a_reader_gone_31_days_keeps_only_the_suppression_entry_and_the_consent_proof(
    app, client, smtp, drain, database, how
):
    prefs = _leave(client, smtp, drain, how)
    _a_digest_was_sent_to(database, EMAIL)
    _all_happened_earlier(database, days=31)
    assert "former_readers: 1" in _purge(app)
    assert all_rows(database, Subscriber) == []
    assert all_rows(database, Delivery) == [] and all_rows(database, OutboxMessage) == []  # by foreign key
    [entry] = all_rows(database, Suppression)
    assert (entry.email_hash, entry.reason) == (email_hash(EMAIL), how)
    proof = PROOF + (["unsubscribed"] if how == "unsubscribed" else [])
    assert [e.event for e in _events(database)] == proof
    kept = json.dumps([[e.detail, e.form_url, e.consent_text, e.user_agent] for e in _events(database)],
                      ensure_ascii=False)
    assert "Quedlinburg" not in kept and "Gynäkologie" not in kept and "anna" not in kept
    assert client.get(prefs).status_code == 404


@pytest.mark.parametrize("how", ["unsubscribed", "bounced"])
def test_a_reader_gone_29_days_keeps_everything(app, client, smtp, drain, database, how):
    _leave(client, smtp, drain, how)
    _all_happened_earlier(database, days=29)
    assert "former_readers: 0" in _purge(app)
    sub = find_subscriber(database, EMAIL)
    assert (sub.email, sub.keywords, sub.location) == (EMAIL, "Gynäkologie Teilzeit", "Quedlinburg")
    assert "preferences_changed" in [e.event for e in _events(database)]


def test_a_reader_still_subscribed_is_never_purged(app, client, smtp, drain, database):
    subscribe_confirmed(client, smtp, drain, EMAIL, keywords="Python")
    _all_happened_earlier(database, days=400)
    assert "former_readers: 0" in _purge(app)
    assert find_subscriber(database, EMAIL).status == "confirmed"


def test_an_address_purged_can_sign_up_again(app, client, smtp, drain, database):
    _leave(client, smtp, drain, "unsubscribed")
    _all_happened_earlier(database, days=31)
    _purge(app)
    smtp.clear()
    assert signup(client, EMAIL, keywords="Rust").status_code == 200
    drain()
    [confirmation] = smtp.to(EMAIL)
    page = client.get(only_link(confirmation.part("plain"), "/confirm/"))
    assert client.post(form_action(page.get_data(as_text=True))).status_code == 200
    drain()
    assert find_subscriber(database, EMAIL).status == "confirmed"
    assert len(smtp.to(EMAIL)) == 2  # the confirmation and the welcome mail


def test_the_purge_job_purges_former_readers_and_reports_how_many(client, smtp, drain, database):
    from worker import jobs

    _leave(client, smtp, drain, "unsubscribed")
    _all_happened_earlier(database, days=31)
    counts = jobs.purge()  # the drain fixture configured the worker's context
    assert counts["former_readers"] == 1
    assert all_rows(database, Subscriber) == []


# -- the consent proof: kept to the end of the year its retention ends in ----------------------

def test_consent_proof_is_kept_to_the_end_of_the_year_its_retention_ends_in(database):
    retention = 3 * 365
    ends = datetime(2027, 3, 15)  # the retention of this proof ends in March
    with database.session_scope() as session:
        session.add(ConsentEvent(subscriber_public_id="gone-reader-0001", email_hash="h" * 64,
                                 event="unsubscribed", at=ends - timedelta(days=retention)))
    for now in (datetime(2027, 3, 16), datetime(2027, 11, 20), datetime(2027, 12, 31, 23, 59)):
        with database.session_scope() as session:
            assert subscriptions.purge_consent_records(session, retention, now=now) == 0, now
    assert len(all_rows(database, ConsentEvent)) == 1
    with database.session_scope() as session:
        assert subscriptions.purge_consent_records(session, retention, now=datetime(2028, 1, 2)) == 1
    assert all_rows(database, ConsentEvent) == []


# -- signups never confirmed: nothing is proof, whatever became of their mail --------------------

def _purge_at(database, days: float, unconfirmed_days: int = 14, former_days: int = 30) -> dict[str, int]:
    """The three purges as the job runs them, `days` from now."""
    now = utcnow() + timedelta(days=days)
    with database.session_scope() as session:
        return {"unconfirmed": subscriptions.purge_unconfirmed(session, unconfirmed_days, now=now),
                "former_readers": subscriptions.purge_former_readers(session, former_days, now=now),
                "consent_records": subscriptions.purge_consent_records(session, 3 * 365, now=now)}


def _signup_bounced(client, smtp, drain) -> None:
    """A signup from a board page whose confirmation mail the relay refused."""
    smtp.handler.rcpt_reply = lambda address: "550 5.1.1 user unknown"
    answer = client.post(
        "/subscribe", data={"email": EMAIL, "keywords": "Gynäkologie", "location": "Quedlinburg"},
        headers={"User-Agent": "Browser/1.0", "Referer": "https://jobs.example.org/jobs"},
    )
    assert answer.status_code == 200
    drain()
    smtp.handler.rcpt_reply = lambda address: None
    assert smtp.to(EMAIL) == []
    assert find_subscriber(database_of(client), EMAIL).status == "bounced"
    assert [e.event for e in _events(database_of(client))] == ["signup", "bounced"]


def test_a_signup_whose_confirmation_mail_bounced_goes_like_an_unconfirmed_one(client, smtp, drain, database):
    _signup_bounced(client, smtp, drain)
    assert _purge_at(database, 13)["unconfirmed"] == 0
    assert find_subscriber(database, EMAIL) is not None
    assert _purge_at(database, 15)["unconfirmed"] == 1
    assert all_rows(database, Subscriber) == [] and all_rows(database, OutboxMessage) == []
    assert _events(database) == []  # no IP, browser or form page kept as "proof" of a consent never given
    [entry] = all_rows(database, Suppression)
    assert (entry.email_hash, entry.reason) == (email_hash(EMAIL), "bounced")
    assert _purge_at(database, 31) == {"unconfirmed": 0, "former_readers": 0, "consent_records": 0}
    assert _events(database) == [] and len(all_rows(database, Suppression)) == 1
    # Still never mailed again: the suppression entry holds.
    assert signup(client, EMAIL).status_code == 200
    drain()
    assert smtp.to(EMAIL) == [] and find_subscriber(database, EMAIL) is None


def test_the_former_reader_purge_keeps_no_proof_of_a_signup_never_confirmed(client, smtp, drain, database):
    """Should the unconfirmed signups be kept longer than former readers, the former-reader
    purge takes the bounced signup first: it keeps nothing of it either."""
    _signup_bounced(client, smtp, drain)
    assert _purge_at(database, 31, unconfirmed_days=60) == {"unconfirmed": 0, "former_readers": 1, "consent_records": 0}
    assert all_rows(database, Subscriber) == []
    assert _events(database) == []
    assert [(e.email_hash, e.reason) for e in all_rows(database, Suppression)] == [(email_hash(EMAIL), "bounced")]


def test_a_former_reader_who_signs_up_again_and_never_confirms_leaves_only_the_former_proof(
    client, smtp, drain, database
):
    """The new signup proves nothing (it was never confirmed): it goes with the row, and so
    does what the log held about the person rather than the consent."""
    _leave(client, smtp, drain, "unsubscribed")
    _all_happened_earlier(database, days=1.01)  # out of the confirmation mail's daily limit
    assert signup(client, EMAIL, keywords="Rust").status_code == 200
    drain()
    assert find_subscriber(database, EMAIL).status == "pending"
    assert _purge_at(database, 15)["unconfirmed"] == 1
    assert all_rows(database, Subscriber) == []
    assert [e.event for e in _events(database)] == PROOF + ["unsubscribed"]
    [entry] = all_rows(database, Suppression)
    assert (entry.email_hash, entry.reason) == (email_hash(EMAIL), "unsubscribed")
