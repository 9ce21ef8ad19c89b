"""STANDARDS checks that hold across pages and across the transactional mails (confirmation,
welcome, settings link), each shown on all of them: security headers, escaping and no
open redirect on pages (31, 32); no images or tracking, line length and transfer encoding,
non-ASCII display names and the links in both parts of every mail (5, 17, 20, 21)."""

from __future__ import annotations

from email import message_from_bytes, policy

import pytest

from tests.conftest import make_settings
from tests.helpers import data_link, links, only_link, signup, subscribe_confirmed, time_passes

EMAIL = "anna@example.org"
HOSTILE = '<script>alert("x")</script>'


# -- pages ------------------------------------------------------------------------------------------

def _pages(client):
    """One answer of every kind a reader meets: forms, results, errors."""
    return {
        "signup form": client.get("/subscribe"),
        "signup done": signup(client, "page@example.org"),
        "signup refused": client.post("/subscribe", data={"email": "not an address", "keywords": HOSTILE}),
        "manage form": client.get("/manage"),
        "bad confirm link": client.get("/confirm/not-a-token"),
        "bad unsubscribe link": client.get("/unsubscribe/not-a-token"),
        "bad settings link": client.get("/preferences/not-a-token"),
        "bad data link": client.get("/data/not-a-token"),
        "unknown page": client.get("/no-such-page"),
        "wrong method": client.delete("/subscribe"),
    }


def test_every_page_sends_the_security_headers(client):
    for name, answer in _pages(client).items():
        csp = answer.headers.get("Content-Security-Policy", "")
        assert "default-src 'none'" in csp and "frame-ancestors 'none'" in csp, name
        assert "script-src" not in csp, name  # no script allowed at all
        assert answer.headers.get("X-Frame-Options") == "DENY", name
        assert answer.headers.get("Referrer-Policy") == "no-referrer", name  # links carry tokens
        assert answer.headers.get("X-Content-Type-Options") == "nosniff", name


def test_no_page_holds_a_script(client):
    for name, answer in _pages(client).items():
        assert "<script" not in answer.get_data(as_text=True).lower(), name


def test_what_was_typed_comes_back_escaped(client):
    answer = client.post("/subscribe", data={"email": HOSTILE, "keywords": "Python", "location": '"><b>x'})
    html = answer.get_data(as_text=True)
    assert answer.status_code == 400
    assert HOSTILE not in html and "&lt;script&gt;" in html
    assert '"><b>x' not in html


@pytest.mark.parametrize("path", [
    "/", "/subscribe?next=https://evil.example/", "/subscribe?url=//evil.example",
    "//evil.example/", "/\\evil.example", "/manage?next=https://evil.example/",
])
def test_no_redirect_leaves_the_site(client, path):
    answer = client.get(path)
    location = answer.headers.get("Location", "")
    assert "evil.example" not in location
    if 300 <= answer.status_code < 400:
        assert location.startswith("/") and not location.startswith("//") or location.startswith("http://localhost/")


def test_every_page_names_the_operator(client, settings):
    """DDG §5: the Impressum easily reachable from every page, not only in the mails."""
    for name, answer in _pages(client).items():
        html = answer.get_data(as_text=True)
        assert "Impressum" in html and settings.impressum.split(".")[0] in html, name


# -- transactional mails ---------------------------------------------------------------------------------

@pytest.fixture
def transactional(client, smtp, drain, database):
    """The confirmation, welcome, settings-link and data-link mails of one reader."""
    welcome = subscribe_confirmed(client, smtp, drain, EMAIL, keywords="Python")
    assert client.post("/manage", data={"email": EMAIL}).status_code == 200
    drain()
    time_passes(database, 11 / (24 * 60))  # link mails go ten minutes apart
    data_link(client, smtp, drain, only_link(welcome.part("plain"), "/preferences/"), EMAIL)
    mails = smtp.to(EMAIL)
    assert len(mails) == 4
    return dict(zip(("confirm", "welcome", "manage", "data"), mails, strict=True))


def test_no_mail_holds_an_image_a_script_or_a_form(transactional):
    for kind, mail in transactional.items():
        html = mail.part("html").lower()
        for needle in ("<img", "<script", "<form", "url(", "<iframe"):
            assert needle not in html, (kind, needle)


def test_every_link_goes_straight_to_its_target(transactional):
    """No per-recipient redirect: every link in a mail is one of our own pages."""
    import re

    for kind, mail in transactional.items():
        for part in ("plain", "html"):
            for url in re.findall(r"https?://[^\s\"<>]+", mail.part(part)):
                assert url.startswith("http://newsletter.test/") or "example.org" in url, (kind, url)


def test_no_line_over_998_octets_and_bodies_quoted_printable(transactional):
    for kind, mail in transactional.items():
        assert all(len(line) <= 998 for line in mail.data.split(b"\r\n")), kind
        for part in mail.message.walk():
            if part.get_content_maintype() == "text":
                assert part["Content-Transfer-Encoding"] in ("quoted-printable", "base64"), kind
                assert part.get_content_charset() == "utf-8", kind


def test_mime_version_only_in_the_message_header(transactional):
    """A MIME-Version inside a body part is legal but a spam filter's hint of a hand-made
    message (RFC 2045 4: it belongs to the top level)."""
    for kind, mail in transactional.items():
        assert mail.message["MIME-Version"] == "1.0", kind
        parts = list(mail.message.walk())[1:]
        assert len(parts) == 2 and all("MIME-Version" not in part for part in parts), kind


def test_welcome_and_settings_mails_show_both_links_in_both_parts(transactional):
    for kind in ("welcome", "manage"):
        mail = transactional[kind]
        for part in ("plain", "html"):
            body = mail.part(part)
            assert links(body, "/unsubscribe/") and links(body, "/preferences/"), (kind, part)


def test_settings_and_data_mails_carry_the_same_data_link_in_both_parts(transactional):
    for kind in ("manage", "data"):
        mail = transactional[kind]
        text, html = set(links(mail.part("plain"), "/data/")), set(links(mail.part("html"), "/data/"))
        assert len(text) == 1 and text == html, kind


def _welcome_with(settings, smtp, tmp_path, **overrides):  # type: ignore[no-untyped-def]
    """The welcome mail of EMAIL (after its confirmation mail) from an app and a worker
    running with these settings."""
    import re

    from rq import SimpleWorker

    from newsletter import create_app
    from newsletter import job_context, queueing

    own = make_settings(
        database_url=settings.database_url, smtp_port=smtp.port, instance_path=str(tmp_path / "own"), **overrides,
    )
    app, ctx = create_app(own), job_context.configure(own)
    try:
        client = app.test_client()

        def work() -> None:
            SimpleWorker(list(queueing.ALL), connection=ctx.redis).work(burst=True, with_scheduler=False)

        assert signup(client, EMAIL).status_code == 200
        work()
        [confirmation] = smtp.to(EMAIL)
        confirm = re.search(re.escape(own.base_url) + r"(/confirm/[^\s<>\"]+)", confirmation.part("plain")).group(1)
        assert client.post(confirm).status_code == 200
        work()
    finally:
        app.extensions["newsletter_db"].dispose()
        ctx.database.dispose()
    return smtp.to(EMAIL)[1]


def _raw_header(mail, name: str) -> bytes:  # type: ignore[no-untyped-def]
    head = mail.data.split(b"\r\n\r\n", 1)[0].replace(b"\r\n ", b" ")  # unfolded
    [value] = [line.split(b": ", 1)[1] for line in head.split(b"\r\n") if line.lower().startswith(name.lower().encode() + b":")]
    return value


def test_list_headers_go_out_verbatim_however_long_the_link(settings, smtp, tmp_path, redis_conn):
    """Mailbox providers read List-Unsubscribe raw (RFC 8058): a URL longer than a folded
    line must not come out as RFC 2047 encoded-words, which no provider decodes there."""
    import re

    base = "https://newsletter.stellenportal-beispiel-karriere.de"
    welcome = _welcome_with(settings, smtp, tmp_path, base_url=base)
    raw = _raw_header(welcome, "List-Unsubscribe")
    assert re.fullmatch(rb"<" + re.escape(base.encode()) + rb"/unsubscribe/[A-Za-z0-9_.-]+>, <mailto:[^>\s]+>", raw), raw
    assert all(len(line) <= 998 for line in welcome.data.split(b"\r\n"))


@pytest.mark.parametrize("name", [
    "Stellenbörse Süd",
    "Stellenbörse Newsletter für Entwicklerinnen und Entwickler in München und Umgebung",
])
def test_a_non_ascii_list_name_is_encoded_and_the_list_id_stays_raw(settings, smtp, tmp_path, name, redis_conn):
    welcome = _welcome_with(settings, smtp, tmp_path, list_name=name)
    raw = _raw_header(welcome, "List-Id")
    assert raw.isascii() and raw.endswith(b" <jobs-newsletter.jobs.example.org>") and raw.startswith(b"=?utf-8?")
    words = raw.rsplit(b" <", 1)[0].split(b" ")
    assert all(len(word) <= 75 for word in words)  # RFC 2047 2: an encoded-word's limit
    assert welcome.message["List-Id"] == f"{name} <jobs-newsletter.jobs.example.org>"


def test_a_non_ascii_sender_name_is_encoded_and_reads_back(settings, smtp, tmp_path, redis_conn):
    name = "Jobbörse Süd – Newsletter"
    _welcome_with(settings, smtp, tmp_path, mail_from=f"{name} <newsletter@jobs.example.org>")
    for mail in smtp.to(EMAIL):  # the confirmation and the welcome mail
        raw_from = _raw_header(mail, "From")
        assert raw_from.isascii() and b"=?utf-8?" in raw_from.lower()
        parsed = message_from_bytes(mail.data, policy=policy.default)
        assert parsed["From"].addresses[0].display_name == name


def test_a_sender_domain_that_is_not_ascii_goes_out_as_its_a_label(settings, smtp, tmp_path, redis_conn):
    """An IDN in NEWSLETTER_MAIL_FROM: headers and the envelope need its ASCII form
    (RFC 5890), or every mail fails at the relay or at the first header."""
    _welcome_with(settings, smtp, tmp_path, mail_from="Jobbörse <newsletter@jobbörse.de>")
    mails = smtp.to(EMAIL)
    assert len(mails) == 2  # the confirmation and the welcome mail
    for mail in mails:
        assert mail.mail_from.endswith("@xn--jobbrse-d1a.de"), mail.mail_from  # VERP, on our domain
        assert _raw_header(mail, "From").endswith(b" <newsletter@xn--jobbrse-d1a.de>")
        assert _raw_header(mail, "Message-ID").endswith(b"@xn--jobbrse-d1a.de>")
    assert _raw_header(mails[1], "List-Id").endswith(b" <jobs-newsletter.xn--jobbrse-d1a.de>")


def test_a_base_url_on_an_idn_host_gives_ascii_links_and_list_headers(settings, smtp, tmp_path, redis_conn):
    """List-Unsubscribe is read raw by mailbox providers: the link in it must be ASCII."""
    welcome = _welcome_with(settings, smtp, tmp_path, base_url="https://jobbörse.de/stellenmarkt für alle")
    raw = _raw_header(welcome, "List-Unsubscribe")
    assert raw.startswith(b"<https://xn--jobbrse-d1a.de/stellenmarkt%20f%C3%BCr%20alle/unsubscribe/"), raw
    assert "https://xn--jobbrse-d1a.de/stellenmarkt%20f%C3%BCr%20alle/preferences/" in welcome.part("plain")


def test_a_multi_line_impressum_keeps_its_lines_and_the_text_part_stays_short(settings, smtp, tmp_path, redis_conn):
    impressum = ("Stellenwerk GmbH\nHafenstraße 2, 20457 Hamburg\nGeschäftsführung: Erika Mustermann, "
                 "Max Mustermann; Registergericht Amtsgericht Hamburg, HRB 123456; USt-IdNr. DE123456789")
    _welcome_with(settings, smtp, tmp_path, impressum=impressum)
    for mail in smtp.to(EMAIL):  # the confirmation and the welcome mail
        assert "Stellenwerk GmbH<br>Hafenstraße 2, 20457 Hamburg<br>Geschäftsführung" in mail.part("html")
        text = mail.part("plain").replace("\r\n", "\n")
        assert "Stellenwerk GmbH\nHafenstraße 2, 20457 Hamburg\nGeschäftsführung" in text
        long = [line for line in text.splitlines() if len(line) > 78 and "://" not in line]
        assert long == [], long


def test_the_interval_and_list_name_configured_are_what_readers_are_told_and_agree_to(settings, smtp, tmp_path, database, redis_conn):
    """The consent record keeps the wording a reader agreed to (STANDARDS 11): with a weekly
    list it must not say "every 14 days", on the page, in the record or in the mails."""
    from newsletter.subscribers import consent
    from newsletter import create_app
    from newsletter.models import ConsentEvent

    weekly = {"digest_interval_days": 7, "list_name": "Stellenbörse-Newsletter"}
    own = make_settings(database_url=settings.database_url, smtp_port=smtp.port,
                        instance_path=str(tmp_path / "pages"), **weekly)
    app = create_app(own)
    try:
        client = app.test_client()
        page = client.get("/subscribe").get_data(as_text=True)
        assert "Jede Woche. Jederzeit kündbar. Keine Werbung." in page and "14" not in page
        assert "den Stellenbörse-Newsletter jede Woche per E-Mail" in page
        english = client.get("/subscribe?lang=en").get_data(as_text=True)
        assert "Every week. Cancel any time. No advertising." in english
    finally:
        app.extensions["newsletter_db"].dispose()
    welcome = _welcome_with(settings, smtp, tmp_path, **weekly)
    [confirmation, _] = smtp.to(EMAIL)
    assert "neue Stellenangebote jede Woche." in confirmation.part("plain").replace("\r\n", " ")
    assert "Ab jetzt erhalten Sie jede Woche" in welcome.part("html")
    with database.session_scope() as session:
        [event] = session.query(ConsentEvent).filter_by(event="signup").all()
        assert event.consent_version == consent.CURRENT_VERSION
        assert event.consent_text == consent.consent_text("de", list_name="Stellenbörse-Newsletter", interval_days=7)
        assert "jede Woche" in event.consent_text
