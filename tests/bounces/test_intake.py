"""`newsletter bounces process`: what comes back to the bounce address acts on its reader,
once. Digests really go out through a real worker to the SMTP sink; the DSNs, feedback
reports and mails that come back are addressed to the envelope senders those mails had."""

from __future__ import annotations

import mailbox
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from sqlalchemy import select

from newsletter.bounces import intake
from newsletter.models import ConsentEvent, Delivery, Suppression, email_hash
from tests.bounces import returned
from tests.conftest import env_for
from tests.helpers import (
    add_listing,
    add_reader,
    find_subscriber,
    one_click_url,
    send_now,
    subscribe_confirmed,
    time_passes,
    unsubscribe_mailto,
)

NEWSLETTER = str(Path(sys.executable).parent / "newsletter")
DEAD, ALIVE = "leser@dead.example", "anna@example.org"


def run(settings, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([NEWSLETTER, *args], env=env_for(settings), capture_output=True, text=True, timeout=120)


def counts(result: subprocess.CompletedProcess[str]) -> dict[str, int]:
    assert result.returncode == 0, result.stderr
    return {k: int(v) for k, v in (line.split(": ", 1) for line in result.stdout.splitlines())}


def events(database, address: str) -> list[ConsentEvent]:
    with database.session_scope() as session:
        found = session.scalars(select(ConsentEvent).where(ConsentEvent.email_hash == email_hash(address))
                                .order_by(ConsentEvent.id)).all()
        session.expunge_all()
        return list(found)


def edition_with(database, settings, drain, smtp, n: int) -> int:
    """One more edition with one new listing, sent by a real worker; the sink is emptied first."""
    smtp.clear()
    with database.session_scope() as session:
        add_listing(session, n, f"Data Engineer {n} (m/w/d)")
    return send_now(database, settings, drain)


@pytest.fixture
def readers(database):
    with database.session_scope() as session:
        add_reader(session, DEAD)
        add_reader(session, ALIVE)


def digest_to(smtp, address: str):
    [mail] = smtp.to(address)
    return mail


def test_a_dsn_for_a_digest_bounces_its_reader_once_and_the_next_edition_skips_them(
        settings, database, drain, smtp, readers, tmp_path):
    first = edition_with(database, settings, drain, smtp, 1)
    sent = digest_to(smtp, DEAD)
    assert sent.mail_from.startswith("bounces+") and f".{first}." in sent.mail_from  # public id, edition, HMAC
    box = returned.maildir(tmp_path / "Maildir", returned.dsn(to=sent.mail_from, recipient=DEAD),
                           returned.plain(to="bounces@jobs.example.org", subject="Re: Neue Jobs", body="Danke!"))

    assert counts(run(settings, "bounces", "process", str(box))).items() >= {
        "bounced": 1, "complained": 0, "unsubscribed": 0, "ignored": 1}.items()
    assert find_subscriber(database, DEAD).status == "bounced"
    assert find_subscriber(database, ALIVE).status == "confirmed"
    with database.session_scope() as session:
        assert session.get(Suppression, email_hash(DEAD)).reason == "bounced"
        statuses = dict(session.execute(select(Delivery.subscriber_id, Delivery.status)
                                        .where(Delivery.edition_id == first)).all())
        assert sorted(statuses.values()) == ["bounced", "sent"]
    [bounced] = [e for e in events(database, DEAD) if e.event == "bounced"]
    assert bounced.channel == "dsn" and bounced.detail["edition"] == first and "5.1.1" in bounced.detail["reply"]
    assert DEAD not in bounced.detail["reply"]  # the diagnostic's address is redacted
    # Processed messages move to cur/ as Seen; none is deleted.
    assert not list((box / "new").iterdir())
    assert sorted(name.rsplit(":2,", 1)[1] for name in (d.name for d in (box / "cur").iterdir())) == ["S", "S"]
    status = dict(line.split(": ", 1) for line in run(settings, "digest", "status", str(first)).stdout.splitlines())
    assert status["bounced"] == "1" and status["sent"] == "1"

    again = counts(run(settings, "bounces", "process", str(box)))
    assert again["bounced"] == again["ignored"] == again["already_processed"] == 0
    # The same message handed over once more (copied back by a mail client, say): no change.
    for seen in (box / "cur").iterdir():
        shutil.copy(seen, box / "new" / seen.name.split(":")[0])
    assert counts(run(settings, "bounces", "process", str(box)))["already_processed"] == 2
    assert len([e for e in events(database, DEAD) if e.event == "bounced"]) == 1

    time_passes(database, 15)
    edition_with(database, settings, drain, smtp, 2)
    assert smtp.to(DEAD) == [] and len(smtp.to(ALIVE)) == 1


def test_soft_bounces_suppress_only_on_three_editions_in_a_row(settings, database, drain, smtp, readers):
    for n in (1, 2, 3):
        edition = edition_with(database, settings, drain, smtp, n)
        sent = digest_to(smtp, DEAD)
        verdict = intake.process_message(database, settings, returned.dsn(
            to=sent.mail_from, recipient=DEAD, status="4.2.2", diagnostic="smtp; 452 4.2.2 Mailbox full"))
        assert verdict == "soft_bounced"
        assert find_subscriber(database, DEAD).status == ("bounced" if n == 3 else "confirmed"), n
        status = dict(line.split(": ", 1) for line in run(settings, "digest", "status", str(edition)).stdout.splitlines())
        assert status["soft_bounced"] == "1"
        time_passes(database, 15)
    assert [e.event for e in events(database, DEAD)][-2:] == ["soft_bounce", "bounced"]


def test_a_soft_bounce_between_good_editions_starts_the_count_again(settings, database, drain, smtp, readers):
    for n, bounces in ((1, True), (2, True), (3, False), (4, True), (5, True)):
        sent = digest_to(smtp, DEAD) if edition_with(database, settings, drain, smtp, n) else None
        if bounces:
            intake.process_message(database, settings, returned.dsn(
                to=sent.mail_from, recipient=DEAD, action="delayed", status="4.4.7", diagnostic="smtp; 421 try later"))
        time_passes(database, 15)
    assert find_subscriber(database, DEAD).status == "confirmed"


def test_an_arf_complaint_suppresses_at_once_and_the_consent_log_says_so(settings, database, drain, smtp, readers):
    edition = edition_with(database, settings, drain, smtp, 1)
    original = digest_to(smtp, ALIVE).message
    original["Return-Path"] = digest_to(smtp, ALIVE).mail_from
    report = returned.arf(to="fbl@jobs.example.org", original=original)
    assert intake.process_message(database, settings, report) == "complained"
    assert find_subscriber(database, ALIVE).status == "complained"
    with database.session_scope() as session:
        assert session.get(Suppression, email_hash(ALIVE)).reason == "complained"
    [complained] = [e for e in events(database, ALIVE) if e.event == "complained"]
    assert complained.channel == "feedback_loop" and complained.detail == {"edition": edition}
    status = dict(line.split(": ", 1) for line in run(settings, "digest", "status", str(edition)).stdout.splitlines())
    assert status["complained"] == "1"
    time_passes(database, 15)
    edition_with(database, settings, drain, smtp, 2)
    assert smtp.to(ALIVE) == []


def test_a_not_spam_report_and_an_out_of_office_answer_change_nothing(settings, database, drain, smtp, readers):
    edition_with(database, settings, drain, smtp, 1)
    sent = digest_to(smtp, ALIVE)
    original = sent.message
    original["Return-Path"] = sent.mail_from
    assert intake.process_message(database, settings, returned.arf(
        to="fbl@jobs.example.org", original=original, feedback_type="not-spam")) == "ignored"
    assert intake.process_message(database, settings, returned.plain(
        to=sent.mail_from, subject="Abwesenheitsnotiz: Neue Jobs", sender=ALIVE,
        extra={"Auto-Submitted": "auto-replied"}, body="Ich bin bis zum 4. Januar nicht im Büro.")) == "ignored"
    assert find_subscriber(database, ALIVE).status == "confirmed"
    assert [e.event for e in events(database, ALIVE)] == []


def test_mail_to_the_list_unsubscribe_mailto_address_unsubscribes_its_reader(settings, database, client, smtp, drain):
    welcome = subscribe_confirmed(client, smtp, drain, ALIVE)
    address = unsubscribe_mailto(welcome.message)
    assert address.startswith("bounces+u.") and address.endswith("@jobs.example.org")
    assert one_click_url(welcome.message).startswith("http://newsletter.test/unsubscribe/")

    forged = address.replace("+u.", "+u.x", 1)
    tampered = address[:-len("@jobs.example.org") - 1] + ("0" if address[-18] != "0" else "1") + "@jobs.example.org"
    for bad in (forged, tampered):
        assert intake.process_message(database, settings, returned.plain(to=bad)) == "ignored"
    assert find_subscriber(database, ALIVE).status == "confirmed"

    # Some hops lower-case the local part: the tag still names its reader.
    assert intake.process_message(database, settings, returned.plain(to=address.lower())) == "unsubscribed"
    assert find_subscriber(database, ALIVE).status == "unsubscribed"
    [left] = [e for e in events(database, ALIVE) if e.event == "unsubscribed"]
    assert left.channel == "email" and left.detail == {"reason": "mailto"}


def test_a_digest_offers_its_readers_own_mailto_address(settings, database, drain, smtp, readers):
    edition_with(database, settings, drain, smtp, 1)
    dead, alive = unsubscribe_mailto(digest_to(smtp, DEAD).message), unsubscribe_mailto(digest_to(smtp, ALIVE).message)
    assert dead != alive
    assert intake.process_message(database, settings, returned.plain(to=dead, sender=DEAD)) == "unsubscribed"
    assert find_subscriber(database, DEAD).status == "unsubscribed"
    assert find_subscriber(database, ALIVE).status == "confirmed"


def test_without_a_verp_tag_the_reader_is_found_by_message_id_or_by_the_failed_address(
        settings, database, client, smtp, drain):
    welcome = subscribe_confirmed(client, smtp, drain, ALIVE)
    # The welcome mail's Message-ID, returned in the DSN's headers, names its reader: only
    # their mail had it, so it counts as a VERP tag does.
    original = welcome.message
    original.replace_header("To", "someone-else@example.org")
    report = returned.dsn(to="bounces@jobs.example.org", recipient="forwarded@elsewhere.example", original=original)
    assert intake.process_message(database, settings, report) == "bounced"
    assert find_subscriber(database, ALIVE).status == "bounced"


def test_a_report_naming_a_reader_only_by_address_stops_their_mail_but_suppresses_nobody(
        settings, database, client, smtp, drain):
    """Anyone can write a DSN or a feedback report naming someone's address: it unsubscribes
    (the reader can sign up again), it never suppresses for good."""
    with database.session_scope() as session:
        add_reader(session, DEAD)
        add_reader(session, ALIVE)
    forged = returned.dsn(to="bounces@jobs.example.org", recipient=DEAD, return_path="somebody@example.net")
    assert intake.process_message(database, settings, forged) == "unsubscribed"
    original = returned.plain(to=ALIVE, sender="newsletter@jobs.example.org", subject="Neue Jobs")
    from email import message_from_bytes, policy

    complaint = returned.arf(to="fbl@jobs.example.org", original=message_from_bytes(original, policy=policy.default))
    assert intake.process_message(database, settings, complaint) == "unsubscribed"
    for address, reason in ((DEAD, "unverified_hard"), (ALIVE, "unverified_complaint")):
        assert find_subscriber(database, address).status == "unsubscribed"
        [left] = [e for e in events(database, address) if e.event == "unsubscribed"]
        assert left.detail == {"reason": reason}
        with database.session_scope() as session:
            assert session.get(Suppression, email_hash(address)).reason == "unsubscribed"
    smtp.clear()
    subscribe_confirmed(client, smtp, drain, DEAD)  # a new signup works: nothing was suppressed for good


def test_a_verp_tag_that_is_not_ours_matches_nobody(settings, database, drain, smtp, readers):
    edition_id = edition_with(database, settings, drain, smtp, 1)
    sent = digest_to(smtp, DEAD)
    tag = sent.mail_from.split("+", 1)[1].split("@")[0]
    public_id = tag.split(".")[0]
    for forged in (f"{public_id}.{edition_id}.000000000000", f"{public_id}.{edition_id + 1}.{tag.split('.')[-1]}",
                   f"{public_id}.\u00b2.{tag.split('.')[-1]}", f"{public_id.lower()}.{edition_id}.abcdefabcdef"):
        report = returned.dsn(to=f"bounces+{forged}@jobs.example.org", recipient="not-the-reader@example.net")
        assert intake.process_message(database, settings, report) == "ignored", forged
    assert find_subscriber(database, DEAD).status == "confirmed"
    # The genuine tag, even lower-cased on its way, does name its reader.
    report = returned.dsn(to=sent.mail_from.lower(), recipient="not-the-reader@example.net")
    assert intake.process_message(database, settings, report) == "bounced"


def test_a_receiver_refusing_our_authentication_alarms_and_bounces_nobody(settings, database, drain, smtp, readers):
    for n in (1, 2):
        edition_with(database, settings, drain, smtp, n)
        for address in (DEAD, ALIVE):
            report = returned.dsn(to=digest_to(smtp, address).mail_from, recipient=address, status="5.7.26",
                                  diagnostic="smtp; 550 5.7.26 Unauthenticated email from jobs.example.org is not "
                                             "accepted due to domain's DMARC policy")
            assert intake.process_message(database, settings, report) == "ignored"
        time_passes(database, 15)
    assert find_subscriber(database, DEAD).status == find_subscriber(database, ALIVE).status == "confirmed"
    with database.session_scope() as session:
        from newsletter.models import OperatorAlarm

        messages = session.scalars(select(OperatorAlarm.message)).all()
    assert len(messages) == 4 and all("5.7.26" in m and "@" not in m for m in messages)


def test_a_dsn_for_nobody_of_ours_is_ignored(settings, database):
    report = returned.dsn(to="bounces+NoSuchReader0000000@jobs.example.org", recipient="stranger@example.net")
    assert intake.process_message(database, settings, report) == "ignored"


def test_an_mbox_and_eml_files_are_read_and_a_second_run_changes_nothing(settings, database, drain, smtp, readers,
                                                                        tmp_path):
    edition_with(database, settings, drain, smtp, 1)
    sent = digest_to(smtp, DEAD)
    box = mailbox.mbox(tmp_path / "bounces.mbox")
    box.add(returned.dsn(to=sent.mail_from, recipient=DEAD))
    box.add(returned.plain(to=sent.mail_from, subject="Out of Office", extra={"Auto-Submitted": "auto-replied"}))
    box.close()
    eml = tmp_path / "one.eml"
    eml.write_bytes(returned.plain(to=unsubscribe_mailto(digest_to(smtp, ALIVE).message)))
    first = counts(run(settings, "bounces", "process", str(tmp_path / "bounces.mbox"), str(eml)))
    assert first.items() >= {"bounced": 1, "unsubscribed": 1, "ignored": 1, "already_processed": 0}.items()
    second = counts(run(settings, "bounces", "process", str(tmp_path / "bounces.mbox"), str(eml)))
    assert second.items() >= {"bounced": 0, "unsubscribed": 0, "ignored": 0, "already_processed": 3}.items()


def test_a_path_that_is_no_mailbox_is_one_error_line_and_nothing_is_read(settings, database, readers, tmp_path):
    (tmp_path / "plain-dir").mkdir()
    good = tmp_path / "one.eml"
    good.write_bytes(returned.dsn(to="bounces@jobs.example.org", recipient=DEAD))
    for bad in (tmp_path / "missing", tmp_path / "plain-dir"):
        result = run(settings, "bounces", "process", str(good), str(bad))
        assert result.returncode == 2 and result.stdout == ""
        assert result.stderr.count("\n") == 1 and str(bad) in result.stderr, result.stderr
    assert find_subscriber(database, DEAD).status == "confirmed"


def test_links_and_fifos_in_a_maildir_are_left_alone_and_do_not_block(settings, database, readers, tmp_path):
    """A Maildir is written by others: a link to a file elsewhere is not read through, and a
    FIFO (whose read would wait forever) is not opened for reading."""
    import os

    secret = tmp_path / "secret.eml"
    secret.write_bytes(returned.dsn(to="bounces@jobs.example.org", recipient=DEAD))
    box = returned.maildir(tmp_path / "Maildir")
    os.symlink(secret, box / "new" / "1.link")
    os.mkfifo(box / "new" / "2.fifo")
    result = counts(run(settings, "bounces", "process", str(box)))
    assert result["skipped"] == 2 and result["bounced"] == 0
    assert sorted(p.name for p in (box / "new").iterdir()) == ["1.link", "2.fifo"]
    assert find_subscriber(database, DEAD).status == "confirmed"


def test_a_message_id_with_a_nul_stops_nothing(settings, database, drain, smtp, readers, tmp_path):
    """A returned original's Message-ID holding a NUL (Postfix delivers it as it is) must not
    reach the database (PostgreSQL refuses NUL in text) and hold every later message."""
    edition_with(database, settings, drain, smtp, 1)
    poison = returned.dsn(to="bounces@jobs.example.org", recipient="stranger@example.net").replace(
        b"Message-ID: <", b"Message-ID: <\x00", 2)
    box = returned.maildir(tmp_path / "Maildir", poison)
    later = box / "new" / "9999999999.later.host"
    later.write_bytes(returned.dsn(to=digest_to(smtp, DEAD).mail_from, recipient=DEAD))
    result = counts(run(settings, "bounces", "process", str(box)))
    assert result["bounced"] == 1 and result["ignored"] == 1
    assert find_subscriber(database, DEAD).status == "bounced"
