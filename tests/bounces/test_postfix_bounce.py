"""A bounce the way production gets one: the relay accepts the digest, cannot deliver it
later, and mails its own DSN back to the VERP envelope sender. A private Postfix (Debian's
package, tests/postfix_relay.py) is that relay; `newsletter bounces process` reads the DSN
from its Maildir, and the next edition leaves the dead address out.

Without /usr/sbin/postfix (.ci/install-postfix installs it) the test is skipped, unless
NEWSLETTER_TEST_POSTFIX=require (what .ci/run sets) makes that a failure."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import replace
from email import message_from_bytes, policy
from email.message import EmailMessage
from pathlib import Path

import pytest
from sqlalchemy import select

from newsletter.models import Base, Delivery, Subscriber, Suppression, email_hash
from tests.conftest import env_for
from tests.helpers import add_listing, add_reader, find_subscriber, send_now, time_passes
from tests.postfix_relay import DEAD_DOMAIN, DOMAIN, PostfixRelay, postfix_installed

NEWSLETTER = str(Path(sys.executable).parent / "newsletter")
DEAD = f"leser@{DEAD_DOMAIN}"
ALIVE = f"ok@{DOMAIN}"  # delivered by the same Postfix into a Maildir of its own


@pytest.fixture
def postfix() -> Iterator[PostfixRelay]:
    problem = None
    if not postfix_installed():
        problem = "Postfix is not installed (.ci/install-postfix installs it)"
    elif os.geteuid() != 0:
        problem = "a private Postfix instance has to be started as root"
    if problem:
        if os.environ.get("NEWSLETTER_TEST_POSTFIX") == "require":
            pytest.fail(f"{problem} (NEWSLETTER_TEST_POSTFIX=require)")
        pytest.skip(problem)
    relay = PostfixRelay().start()
    yield relay
    relay.stop()


def read_mail(path: Path) -> EmailMessage:
    return message_from_bytes(path.read_bytes(), policy=policy.default)  # type: ignore[return-value]


def bounces_process(settings, maildir: Path) -> dict[str, int]:
    result = subprocess.run(
        [NEWSLETTER, "bounces", "process", str(maildir)],
        env=env_for(settings), capture_output=True, text=True, timeout=120,
    )
    assert result.returncode == 0, result.stderr
    counts = dict(line.split(": ", 1) for line in result.stdout.splitlines() if ": " in line)
    return {key: int(value) for key, value in counts.items()}


def digest_status(settings, edition_id: int) -> dict[str, str]:
    result = subprocess.run(
        [NEWSLETTER, "digest", "status", str(edition_id)],
        env=env_for(settings), capture_output=True, text=True, timeout=120,
    )
    assert result.returncode == 0, result.stderr
    return dict(line.split(": ", 1) for line in result.stdout.splitlines() if ": " in line)


def mails_in(maildir: Path) -> int:
    """Messages in a Maildir whether or not a reader has moved them from new/ to cur/."""
    return sum(1 for sub in ("new", "cur") if (maildir / sub).is_dir() for _ in (maildir / sub).iterdir())


def every_row(database) -> dict[str, list[str]]:
    """The whole database as text, to show that a second run wrote nothing at all."""
    with database.session_scope() as session:
        return {
            table.name: sorted(repr(tuple(row)) for row in session.execute(select(table)).all())
            for table in Base.metadata.sorted_tables
        }


def assert_postfix_dsn_for_dead_reader(dsn: EmailMessage, public_id: str) -> None:
    """Postfix's RFC 3464 report: sent to the VERP address of the reader's digest (the tag
    is the reader's public id, the edition and an HMAC of both), naming the reader's
    address as the failed recipient with 5.1.1, our digest attached."""
    assert dsn["Subject"] == "Undelivered Mail Returned to Sender"
    assert dsn.get_content_type() == "multipart/report"
    assert dsn.get_param("report-type") == "delivery-status"
    assert dsn["Return-Path"] == "<>"  # a DSN has the null sender: it never bounces back
    verp = dsn["Delivered-To"]
    assert re.fullmatch(rf"bounces\+{re.escape(public_id)}\.[0-9]+\.[0-9a-f]{{12}}@{re.escape(DOMAIN)}", verp), verp
    assert dsn["To"] == verp
    [status] = [part for part in dsn.walk() if part.get_content_type() == "message/delivery-status"]
    recipient = status.get_payload()[1]  # the per-message block, then one per recipient
    assert recipient["Final-Recipient"] == f"rfc822; {DEAD}"
    assert recipient["Action"] == "failed" and recipient["Status"] == "5.1.1"
    [returned] = [part for part in dsn.walk() if part.get_content_type() == "message/rfc822"]
    original = returned.get_payload()[0]
    assert original["Return-Path"] == f"<{verp}>" and original["To"].addresses[0].addr_spec == DEAD
    assert original["List-Id"] and original["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"


def test_postfix_dsn_for_a_dead_address_bounces_the_reader_and_the_next_edition_skips_them(
    database, settings, smtp, drain, postfix
):
    own = replace(settings, smtp_host="127.0.0.1", smtp_port=postfix.port, bounce_address=f"bounces@{DOMAIN}")
    with database.session_scope() as session:
        add_listing(session, 1, "Lagerist (m/w/d)")
        add_reader(session, DEAD)
        add_reader(session, ALIVE)
    leser = find_subscriber(database, DEAD)

    first = send_now(database, own, drain)
    assert smtp.messages == []  # everything went through Postfix, not the test's sink
    with database.session_scope() as session:
        # Postfix took both at SMTP time: the bounce only comes afterwards, as mail.
        sent = dict(session.execute(
            select(Subscriber.email, Delivery.status).join(Delivery, Delivery.subscriber_id == Subscriber.id)
            .where(Delivery.edition_id == first)
        ).all())
    assert sent == {DEAD: "sent", ALIVE: "sent"}
    [digest] = postfix.wait_for_mail("ok")
    assert "Lagerist" in read_mail(digest).get_body(("plain",)).get_content()

    bounces = postfix.maildir("bounces")
    [dsn_file] = postfix.wait_for_mail("bounces", timeout=30)
    assert_postfix_dsn_for_dead_reader(read_mail(dsn_file), leser.public_id)
    dsn_bytes = dsn_file.read_bytes()

    counts = bounces_process(own, bounces)
    assert counts["bounced"] == 1, counts
    assert counts.get("complained", 0) == 0 and counts.get("unsubscribed", 0) == 0
    assert find_subscriber(database, DEAD).status == "bounced"
    assert find_subscriber(database, ALIVE).status == "confirmed"
    with database.session_scope() as session:
        assert session.get(Suppression, email_hash(DEAD)).reason == "bounced"
        assert session.get(Suppression, email_hash(ALIVE)) is None

    assert digest_status(own, first)["bounced"] == "1"  # the operator sees it on the edition

    before = every_row(database)
    again = bounces_process(own, bounces)
    assert again["bounced"] == 0, again
    assert every_row(database) == before
    # The same DSN once more as a new message (a relay that delivered it twice, a copy
    # restored from a backup): recognised, still nothing changes.
    (bounces / "new" / "1.redelivered.test").write_bytes(dsn_bytes)
    once_more = bounces_process(own, bounces)
    assert once_more["bounced"] == 0, once_more
    assert every_row(database) == before

    time_passes(database, days=14)
    with database.session_scope() as session:
        add_listing(session, 2, "Staplerfahrer (m/w/d)")
    second = send_now(database, own, drain, trigger="next")
    with database.session_scope() as session:
        planned = session.execute(
            select(Subscriber.email, Delivery.status).join(Delivery, Delivery.subscriber_id == Subscriber.id)
            .where(Delivery.edition_id == second)
        ).all()
    assert planned == [(ALIVE, "sent")]
    newest = postfix.wait_for_mail("ok", count=2)[-1]
    assert "Staplerfahrer" in read_mail(newest).get_body(("plain",)).get_content()
    postfix.wait_until_idle()
    # The DSN and its copy, and no new one: nothing went to the dead address.
    assert mails_in(bounces) == 2, postfix.log()
