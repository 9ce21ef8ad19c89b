"""Readers in the admin, through its pages, a real SMTP sink and a real worker: finding a
reader by address whatever its capitals, their consent log, digests and bounces after a
real edition; unsubscribe, erase and export (each confirmed first, each audited by hash
and never by address); the CSV import with the CLI's rules; and the suppression list,
where a complaint is never lifted and a bounce only with the operator's explicit word."""

from __future__ import annotations

import html
import io
import json
import re

import pytest

from newsletter.models import AuditEvent, ConsentEvent, Subscriber, Suppression, email_hash
from newsletter.subscribers import subscriptions
from tests.helpers import add_listing, add_reader, all_rows, data_link, find_subscriber, only_link, send_now, \
    subscribe_confirmed, time_passes
from tests.web.admin.conftest import csrf, logged_in, post

ANNA = "Anna.Leserin@example.net"  # as the form stores it: the domain lower-cased
EN = {"HTTP_ACCEPT_LANGUAGE": "en"}


@pytest.fixture
def en(client):
    """The client as an English-speaking browser: the pages' words are asserted in English."""
    client.environ_base.update(EN)
    return client


def _reader_path(response) -> str:
    assert response.status_code == 303, response.status_code
    location = response.headers["Location"]
    assert re.fullmatch(r"/admin/subscribers/reader\?id=\d+", location), location
    return location


def _audit(database, prefix: str) -> list[AuditEvent]:
    return [e for e in all_rows(database, AuditEvent) if e.action.startswith(prefix)]


def _no_address_in_the_audit_log(database, *addresses: str) -> None:
    dumped = json.dumps([(e.actor, e.action, e.detail) for e in all_rows(database, AuditEvent)]).lower()
    for address in addresses:
        assert address.lower() not in dumped


def test_a_reader_found_by_address_shows_consent_log_digests_and_bounces(en, database, settings, smtp, drain, operator):
    subscribe_confirmed(en, smtp, drain, ANNA, keywords="python")
    with database.session_scope() as session:
        add_listing(session, 1, "Python-Entwicklerin")
        add_reader(session, "refused@example.net")
    # The relay takes Anna and refuses the other reader by policy: their bounce, not ours.
    smtp.handler.rcpt_reply = lambda address: "550 5.7.1 recipient rejected by policy" if address.startswith("refused") else None
    edition_id = send_now(database, settings, drain)

    logged_in(en, operator)
    path = _reader_path(en.get("/admin/subscribers", query_string={"q": "anna.leserin@EXAMPLE.NET"}))
    page = en.get(path).get_data(as_text=True)
    assert ANNA in page and 'data-field="status">confirmed<' in page and 'data-field="keywords">python<' in page
    log = page.split('id="consent-log"')[1].split("</table>")[0]
    assert [e for e in ("signup", "confirmation_sent", "confirmed") if f'<th scope="row">{e}</th>' in log] == \
        ["signup", "confirmation_sent", "confirmed"]
    assert f'data-delivery="{edition_id}">sent<' in page
    assert "None." in page.split('id="bounces"')[1]  # no bounce of hers

    refused = _reader_path(en.get("/admin/subscribers", query_string={"q": "refused@example.net"}))
    page = en.get(refused).get_data(as_text=True)
    assert f'data-delivery="{edition_id}">bounced<' in page
    bounces = page.split('id="bounces"')[1].split("</table>")[0]
    assert '<th scope="row">policy</th>' in bounces and "5.7.1" in bounces and f"#{edition_id}" in bounces

    listing = en.get("/admin/subscribers").get_data(as_text=True)
    assert '<dd data-state="confirmed">2</dd>' in listing and ANNA in listing
    response = en.get("/admin/subscribers", query_string={"q": "nobody@example.net"})
    assert response.status_code == 404 and "No reader has this address." in response.get_data(as_text=True)
    assert en.get("/admin/subscribers/reader?id=999").status_code == 404


def test_unsubscribe_is_confirmed_first_then_done_from_the_admin_channel_and_audited_by_hash(en, database, smtp, drain, operator):
    subscribe_confirmed(en, smtp, drain, ANNA)
    logged_in(en, operator)
    sub_id = find_subscriber(database, ANNA).id
    asked = post(en, "/admin/subscribers/unsubscribe", {"id": str(sub_id)})
    assert asked.status_code == 200 and f"Unsubscribe {ANNA}?" in asked.get_data(as_text=True)
    assert find_subscriber(database, ANNA).status == "confirmed"  # asking changed nothing

    done = post(en, "/admin/subscribers/unsubscribe", {"id": str(sub_id), "confirm": "yes"})
    assert done.headers["Location"] == f"/admin/subscribers/reader?id={sub_id}"
    assert find_subscriber(database, ANNA).status == "unsubscribed"
    [event] = [e for e in all_rows(database, ConsentEvent) if e.event == "unsubscribed"]
    assert event.channel == "admin"
    page = en.get(done.headers["Location"]).get_data(as_text=True)
    assert "The reader is unsubscribed." in page and "/admin/subscribers/unsubscribe" not in page
    [audit] = _audit(database, "subscriber.")
    assert (audit.actor, audit.action, audit.detail) == (operator, "subscriber.unsubscribe",
                                                         {"subscriber_hash": email_hash(ANNA)})
    _no_address_in_the_audit_log(database, ANNA)
    drain()
    assert len(smtp.to(ANNA)) == 2  # confirmation and welcome: nothing more after leaving


def test_export_is_the_json_the_reader_gets_and_erase_leaves_only_hash_and_proof(en, database, smtp, drain, operator):
    welcome = subscribe_confirmed(en, smtp, drain, ANNA)
    prefs = only_link(welcome.part("plain"), "/preferences/")
    own = en.get(data_link(en, smtp, drain, prefs, ANNA) + "/data.json")
    logged_in(en, operator)
    sub_id = find_subscriber(database, ANNA).id

    export = post(en, "/admin/subscribers/export", {"id": str(sub_id)})
    assert export.status_code == 200 and export.mimetype == "application/json"
    assert export.headers["Content-Disposition"].startswith("attachment;")
    assert export.get_json() == own.get_json()
    assert export.get_json()["subscriber"]["email"] == ANNA

    asked = post(en, "/admin/subscribers/erase", {"id": str(sub_id)})
    assert asked.status_code == 200 and "cannot be undone" in asked.get_data(as_text=True)
    assert find_subscriber(database, ANNA) is not None
    erased = post(en, "/admin/subscribers/erase", {"id": str(sub_id), "confirm": "yes"})
    assert erased.headers["Location"] == "/admin/subscribers"
    assert find_subscriber(database, ANNA) is None
    assert [s.reason for s in all_rows(database, Suppression)] == ["erased"]
    proof = {e.event for e in all_rows(database, ConsentEvent)}
    assert {"signup", "confirmed", "erased"} <= proof and "data_link_requested" not in proof
    assert en.get(f"/admin/subscribers/reader?id={sub_id}").status_code == 404

    assert [(e.action, e.detail) for e in _audit(database, "subscriber.")] == [
        ("subscriber.export", {"subscriber_hash": email_hash(ANNA)}),
        ("subscriber.erase", {"subscriber_hash": email_hash(ANNA)}),
    ]
    _no_address_in_the_audit_log(database, ANNA)


# -- the CSV import ----------------------------------------------------------------------------

def _upload(client, path: str, raw: bytes, name: str):
    token = csrf(client, "/admin/")
    return client.post(path, data={"csrf_token": token, "file": (io.BytesIO(raw), name)},
                       content_type="multipart/form-data")


CSV = (
    "email,language,keywords,confirmed_at,consent_ip,consent_text\n"
    "alt@example.net,de,python,2024-03-01T10:00:00Z,192.0.2.1,Ja ich will den Newsletter\n"
    "neu@example.net,en,,,,\n"
    "kein-at-zeichen,de,,,,\n"
    "ohne-beweis@example.net,de,,2024-03-01T10:00:00Z,,\n"
)


def test_the_csv_import_takes_the_good_rows_names_each_bad_one_and_mails_the_pending(en, database, smtp, drain, operator):
    logged_in(en, operator)
    response = _upload(en, "/admin/subscribers/import", CSV.encode(), "liste.csv")
    page = response.get_data(as_text=True)
    assert response.status_code == 200
    for count, value in (("confirmed", 1), ("pending", 1), ("skipped", 0), ("rejected", 2)):
        assert f'data-count="{count}">{value}<' in page
    rejected = re.findall(r"<li>(line \d+: [^<]*)</li>", page.split('id="rejected"')[1])
    assert [line.split(":")[0] for line in rejected] == ["line 4", "line 5"]
    assert "line 5: consent_ip" in rejected[1]
    assert find_subscriber(database, "alt@example.net").status == "confirmed"
    assert find_subscriber(database, "neu@example.net").status == "pending"
    assert find_subscriber(database, "ohne-beweis@example.net") is None
    drain()
    assert [m.rcpt_tos for m in smtp.messages] == [["neu@example.net"]]  # the double opt-in, and only that
    [audit] = _audit(database, "subscribers.import")
    assert audit.detail == {"file": "liste.csv", "confirmed": 1, "pending": 1, "skipped": 0, "rejected": 2}
    _no_address_in_the_audit_log(database, "alt@example.net", "neu@example.net")

    again = _upload(en, "/admin/subscribers/import", CSV.encode(), "liste.csv").get_data(as_text=True)
    assert 'data-count="skipped">2<' in again and "already a subscriber" in again  # as the CLI: left as they are


@pytest.mark.parametrize("raw, reason", [
    (b"email,confirmd_at\nx@example.net,2024-01-01\n", "line 1: unknown column(s) 'confirmd_at'"),
    (b"email\nx@example.net\n\xff\xfe\n", "not UTF-8 text"),
])
def test_a_file_the_cli_would_take_nothing_of_writes_nothing(en, database, operator, raw, reason):
    logged_in(en, operator)
    response = _upload(en, "/admin/subscribers/import", raw, "kaputt.csv")
    assert reason in html.unescape(response.get_data(as_text=True))
    assert all_rows(database, Subscriber) == []


def test_an_upload_over_four_megabytes_is_refused_before_anything_is_read(en, database, operator):
    logged_in(en, operator)
    raw = b"email\n" + b"".join(b"r%07d@example.net\n" % n for n in range(4 * 1024 * 1024 // 20 + 10))
    assert len(raw) > 4 * 1024 * 1024
    assert _upload(en, "/admin/subscribers/import", raw, "gross.csv").status_code == 413
    assert all_rows(database, Subscriber) == []
    # Under the limit and over the public forms' 64 KB: taken.
    small = b"email\n" + b"".join(b"r%07d@example.net\n" % n for n in range(5000))
    response = _upload(en, "/admin/subscribers/import", small, "mittel.csv")
    assert response.status_code == 200 and 'data-count="pending">5000<' in response.get_data(as_text=True)


# -- the suppression list ------------------------------------------------------------------------

GONE, SPAM = "Gone@Example.net", "spam.melder@example.net"


@pytest.fixture
def suppressed(database, settings, smtp, drain):
    """A reader whose digest hard-bounced (for real, at RCPT), and one who complained."""
    with database.session_scope() as session:
        add_listing(session, 1, "Gärtnerin")
        add_reader(session, GONE)
        add_reader(session, SPAM)
    smtp.handler.rcpt_reply = lambda address: "550 5.1.1 no such user" if address == GONE else None
    send_now(database, settings, drain)
    smtp.handler.rcpt_reply = lambda address: None
    with database.session_scope() as session:
        # The ARF intake's own step (bounces/intake.py calls it with the report's reader).
        subscriptions.mark_complained(session, subscriptions.find_by_email(session, SPAM))
    assert find_subscriber(database, GONE).status == "bounced"


def _lift(client, hashed: str, **fields: str):
    return post(client, "/admin/suppressions/lift", {"hash": hashed, **fields}, page="/admin/suppressions")


def test_the_list_shows_hashes_and_reasons_and_is_searched_by_address(en, suppressed, operator):
    logged_in(en, operator)
    page = en.get("/admin/suppressions").get_data(as_text=True)
    assert email_hash(GONE)[:12] in page and email_hash(SPAM)[:12] in page
    assert GONE not in page and SPAM not in page  # hashes only
    found = en.get("/admin/suppressions", query_string={"q": "GONE@example.NET"}).get_data(as_text=True)
    assert email_hash(GONE)[:12] in found and email_hash(SPAM)[:12] not in found
    assert 'data-reason="bounced"' in found
    by_prefix = en.get("/admin/suppressions", query_string={"q": email_hash(SPAM)[:8]}).get_data(as_text=True)
    assert 'data-reason="complained"' in by_prefix and email_hash(GONE)[:12] not in by_prefix


def test_a_complaint_is_never_lifted_and_nothing_changes(en, database, suppressed, operator):
    logged_in(en, operator)
    before = [(s.email_hash, s.reason) for s in all_rows(database, Suppression)]
    for fields in ({}, {"confirm": "yes"}, {"confirm": "yes", "bounce_ok": "yes"}):
        response = _lift(en, email_hash(SPAM), **fields)
        assert response.status_code == 303
        assert "never lifted" in en.get(response.headers["Location"]).get_data(as_text=True)
    assert [(s.email_hash, s.reason) for s in all_rows(database, Suppression)] == before
    assert find_subscriber(database, SPAM).status == "complained"
    assert _audit(database, "suppression.") == []


def test_a_bounce_is_lifted_only_with_the_explicit_confirmation_and_the_reader_gets_mail_again(
        en, database, settings, smtp, drain, suppressed, operator):
    logged_in(en, operator)
    hashed = email_hash(GONE)
    asked = _lift(en, hashed)
    assert asked.status_code == 200 and 'name="bounce_ok"' in asked.get_data(as_text=True)
    unticked = _lift(en, hashed, confirm="yes")
    assert unticked.status_code == 400 and "Tick the box" in unticked.get_data(as_text=True)
    assert find_subscriber(database, GONE).status == "bounced"

    done = _lift(en, hashed, confirm="yes", bounce_ok="yes")
    assert done.status_code == 303
    assert "the reader is confirmed again" in en.get(done.headers["Location"]).get_data(as_text=True)
    assert hashed not in [s.email_hash for s in all_rows(database, Suppression)]
    assert find_subscriber(database, GONE).status == "confirmed"
    [event] = [e for e in all_rows(database, ConsentEvent) if e.event == "suppression_lifted"]
    assert event.channel == "admin" and event.detail == {"reason": "bounced", "status": "confirmed"}
    [audit] = _audit(database, "suppression.")
    assert (audit.actor, audit.detail) == (operator, {"hash": hashed, "reason": "bounced", "restored": "confirmed"})
    _no_address_in_the_audit_log(database, GONE)

    smtp.clear()
    time_passes(database, 1)  # the next edition covers what was published since the last
    with database.session_scope() as session:
        add_listing(session, 2, "Gärtner im Stadtpark")
    send_now(database, settings, drain)
    assert GONE in {address for m in smtp.messages for address in m.rcpt_tos}


def test_an_unsubscribe_entry_lifts_after_the_plain_confirmation_and_changes_no_reader(en, database, smtp, drain, operator):
    subscribe_confirmed(en, smtp, drain, ANNA)
    sub = find_subscriber(database, ANNA)
    with database.session_scope() as session:
        subscriptions.unsubscribe(session, session.get(Subscriber, sub.id), subscriptions.Origin())
    logged_in(en, operator)
    assert "checkbox" not in _lift(en, sub.email_hash).get_data(as_text=True)
    assert _lift(en, sub.email_hash, confirm="yes").status_code == 303
    assert all_rows(database, Suppression) == [] and find_subscriber(database, ANNA).status == "unsubscribed"


def test_a_viewer_sees_the_readers_pages_without_their_buttons(client, database, suppressed, viewer):
    logged_in(client, viewer)
    gone = find_subscriber(database, GONE)
    page = client.get(f"/admin/subscribers/reader?id={gone.id}").get_data(as_text=True)
    assert GONE in page and "/admin/subscribers/erase" not in page and "/admin/subscribers/export" not in page
    assert "/admin/suppressions/lift" not in client.get("/admin/suppressions").get_data(as_text=True)
    assert 'type="file"' not in client.get("/admin/subscribers/import").get_data(as_text=True)
    assert _lift(client, gone.email_hash, confirm="yes", bounce_ok="yes").status_code == 403
    assert post(client, "/admin/subscribers/erase", {"id": str(gone.id), "confirm": "yes"}).status_code == 403
    assert find_subscriber(database, GONE).status == "bounced"
