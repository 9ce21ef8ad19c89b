"""What a stranger can make us mail to one inbox, counted per mailbox (the address without
its +tag, any case) however the requests are spelt, timed or run side by side (STANDARDS
9, 14, 28, 29): one confirmation mail a day; link mails (/manage, the data-link button on
the preferences page) three a day in all, one per ten minutes, and from /manage one a day."""

from __future__ import annotations

import threading
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import delete

from newsletter.models import ConsentEvent, LinkMail
from tests.helpers import all_rows, only_link, path_of, signup, subscribe_confirmed, time_passes, one_click_url

EMAIL = "anna@example.org"
PARALLEL = 12


def _mails_to(smtp, addresses) -> int:
    wanted = {address.lower() for address in addresses}
    return sum(1 for mail in smtp.messages if {r.lower() for r in mail.rcpt_tos} & wanted)


def _in_parallel(app, count: int, request) -> list[Any]:
    """`request(client, n)` for n in range(count), each in a thread of its own with its own
    test client, released together: requests as a script sends them, side by side."""
    barrier = threading.Barrier(count)
    answers: list[Any] = [None] * count
    errors: list[BaseException] = []

    def run(n: int) -> None:
        client = app.test_client()
        try:
            barrier.wait(timeout=30)
            answers[n] = request(client, n)
        except BaseException as exc:  # noqa: BLE001 - reported below, in the test's thread
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(n,)) for n in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert not errors, errors
    return answers


def _same_answer(answers) -> None:
    assert len({(a.status_code, a.get_data()) for a in answers}) == 1
    assert answers[0].status_code == 200


def _minutes_pass(database, minutes: float) -> None:
    """The clock moves on `minutes` for every record: the tables (time_passes) and the
    consent log (which refuses UPDATE: delete and insert)."""
    time_passes(database, minutes / (24 * 60))
    shift = timedelta(minutes=minutes)
    with database.session_scope() as session:
        events = session.query(ConsentEvent).all()
        session.execute(delete(ConsentEvent))
        for e in events:
            session.add(ConsentEvent(subscriber_public_id=e.subscriber_public_id, email_hash=e.email_hash,
                                     event=e.event, at=e.at - shift, ip=e.ip, user_agent=e.user_agent,
                                     form_url=e.form_url, channel=e.channel, consent_version=e.consent_version,
                                     consent_text=e.consent_text, detail=e.detail))


# -- confirmation mails: the budget holds for requests side by side -----------------------------

def test_parallel_signups_of_many_spellings_of_one_mailbox_get_one_confirmation_mail(app, smtp, drain, database):
    spellings = [f"anna+{n}@example.org" for n in range(PARALLEL)]
    answers = _in_parallel(app, PARALLEL, lambda client, n: signup(client, spellings[n]))
    _same_answer(answers)
    drain()
    assert _mails_to(smtp, spellings) == 1
    assert len(all_rows(database, ConsentEvent, event="signup")) == PARALLEL


def test_parallel_signups_of_a_pending_address_get_one_confirmation_mail(app, client, smtp, drain, database):
    assert signup(client, EMAIL).status_code == 200
    drain()
    time_passes(database, 1.01)  # its next confirmation mail is due
    answers = _in_parallel(app, PARALLEL, lambda c, _n: signup(c, EMAIL))
    _same_answer(answers)
    drain()
    assert len(smtp.to(EMAIL)) == 2


# -- /manage: one link mail per mailbox a day, whatever the spelling ------------------------------

def test_manage_mails_one_inbox_once_a_day_whatever_the_spelling(client, smtp, drain, database):
    spellings = ["anna@example.org", "anna+0@example.org", "ANNA+x@example.org", "Anna+jobs@example.org"]
    for address in spellings:
        assert signup(client, address).status_code == 200  # a pending row each, one confirmation mail
    drain()
    assert _mails_to(smtp, spellings) == 1
    unknown = client.post("/manage", data={"email": "nobody@example.net"})
    answers = [client.post("/manage", data={"email": address}) for address in spellings * 2]
    _same_answer([unknown, *answers])
    drain()
    assert _mails_to(smtp, spellings) == 2  # the confirmation and one data link
    time_passes(database, 1.01)
    for address in reversed(spellings):
        client.post("/manage", data={"email": address})
    drain()
    assert _mails_to(smtp, spellings) == 3


def test_parallel_manage_requests_for_a_pending_address_get_one_data_mail(app, client, smtp, drain):
    assert signup(client, EMAIL).status_code == 200
    drain()
    answers = _in_parallel(app, PARALLEL, lambda c, _n: c.post("/manage", data={"email": EMAIL}))
    _same_answer(answers)
    drain()
    [_confirmation, mail] = smtp.to(EMAIL)
    assert mail.message["Subject"].startswith("Ihr Link zu Ihren Daten")


def test_a_confirmed_spelling_and_a_pending_one_share_the_manage_budget(client, smtp, drain):
    subscribe_confirmed(client, smtp, drain, EMAIL)
    assert signup(client, "anna+news@example.org").status_code == 200  # pending, no mail (budget)
    for address in ("anna+news@example.org", EMAIL):
        assert client.post("/manage", data={"email": address}).status_code == 200
    drain()
    assert _mails_to(smtp, [EMAIL, "anna+news@example.org"]) == 3  # confirmation, welcome, one data link
    [data_mail] = smtp.to("anna+news@example.org")
    assert data_mail.message["Subject"].startswith("Ihr Link zu Ihren Daten")


# -- the data-link button: the same budget, three a day -----------------------------------------

@pytest.fixture(params=["confirmed", "unsubscribed"])
def leaked_prefs(request, client, smtp, drain) -> str:
    """The preferences link of a reader (or a former one), in a stranger's hands."""
    welcome = subscribe_confirmed(client, smtp, drain, EMAIL)
    if request.param == "unsubscribed":
        unsubscribe = path_of(one_click_url(welcome.message))
        assert client.post(unsubscribe, data={"List-Unsubscribe": "One-Click"}).status_code == 200
    return only_link(welcome.part("plain"), "/preferences/")


def _press(client, drain, prefs_path: str):
    answer = client.post(prefs_path + "/data-link")
    drain()
    return answer


def test_a_leaked_preferences_link_brings_at_most_three_data_mails_a_day(client, smtp, drain, database, leaked_prefs):
    before = len(smtp.to(EMAIL))
    answers = [_press(client, drain, leaked_prefs), _press(client, drain, leaked_prefs)]
    assert len(smtp.to(EMAIL)) == before + 1  # one per ten minutes
    for _ in range(4):
        _minutes_pass(database, 11)
        answers.append(_press(client, drain, leaked_prefs))
    assert len({(a.status_code, a.get_data()) for a in answers}) == 1
    assert len(smtp.to(EMAIL)) == before + 3  # three a day in all
    client.post("/manage", data={"email": EMAIL})
    drain()
    assert len(smtp.to(EMAIL)) == before + 3
    _minutes_pass(database, 24 * 60 - 30)  # a day after the first, which no longer counts
    _press(client, drain, leaked_prefs)
    assert len(smtp.to(EMAIL)) == before + 4


def test_manage_and_the_data_button_share_one_budget(client, smtp, drain, database):
    welcome = subscribe_confirmed(client, smtp, drain, EMAIL)
    prefs_path = only_link(welcome.part("plain"), "/preferences/")
    assert client.post("/manage", data={"email": EMAIL}).status_code == 200
    _press(client, drain, prefs_path)
    assert len(smtp.to(EMAIL)) == 3  # confirmation, welcome, the manage mail: the button waits ten minutes
    for _ in range(3):
        _minutes_pass(database, 11)
        _press(client, drain, prefs_path)
    assert len(smtp.to(EMAIL)) == 5  # three link mails a day, /manage's included
    _minutes_pass(database, 24 * 60)
    _press(client, drain, prefs_path)
    assert len(smtp.to(EMAIL)) == 6
    _minutes_pass(database, 11)
    client.post("/manage", data={"email": EMAIL})  # not into a day with a link mail already
    drain()
    assert len(smtp.to(EMAIL)) == 6


# -- the purge drops the link-mail records after a day ------------------------------------------

def test_the_purge_drops_link_mail_records_older_than_a_day(app, client, smtp, drain, database):
    from newsletter.cli.commands import cli
    from worker import jobs

    assert signup(client, EMAIL).status_code == 200
    client.post("/manage", data={"email": EMAIL})
    time_passes(database, 1.01)
    client.post("/manage", data={"email": EMAIL})
    drain()
    assert len(smtp.to(EMAIL)) == 3
    result = app.test_cli_runner().invoke(cli, ["subscribers", "purge"])
    assert result.exit_code == 0, result.output
    assert "link_mails: 1\n" in result.output
    assert len(all_rows(database, LinkMail)) == 1
    time_passes(database, 1.01)
    counts = jobs.purge()  # the drain fixture configured the worker's context
    assert counts["link_mails"] == 1
    assert all_rows(database, LinkMail) == []
