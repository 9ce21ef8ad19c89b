"""Small helpers shared by the tests: finding links in mails and forms in pages."""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Any
from urllib.parse import urlsplit

from newsletter.models import Listing, Subscriber, email_hash, utcnow

BASE = "http://newsletter.test"

# The environment of an operator who set everything production asks for.
PRODUCTION = {
    "NEWSLETTER_ENV": "production", "NEWSLETTER_SECRET_KEY": "k" * 40,
    "NEWSLETTER_BASE_URL": "https://newsletter.stellenwerk.de",
    "NEWSLETTER_IMPRESSUM": "Stellenwerk GmbH, Hafenstraße 2, 20457 Hamburg. HRB 123456.",
    "NEWSLETTER_MAIL_FROM": "Stellenwerk <newsletter@stellenwerk.de>",
    "NEWSLETTER_PRIVACY_URL": "https://stellenwerk.de/datenschutz",
    "NEWSLETTER_BOARD_URL": "https://stellenwerk.de",
    "NEWSLETTER_BOARD_SEARCH_URL": "https://stellenwerk.de/jobs?q={keywords}&ort={location}",
}


def links(text: str, prefix: str) -> list[str]:
    """Every absolute link under BASE_URL + prefix in a text part."""
    return re.findall(re.escape(BASE + prefix) + r"[^\s<>\"]+", text)


def path_of(url: str) -> str:
    return urlsplit(url).path


def form_action(html: str) -> str:
    match = re.search(r'<form method="post" action="([^"]+)"', html)
    assert match, "no POST form on the page"
    return match.group(1)


def signup(client, email: str, **fields: str):
    data = {"email": email, **fields}
    return client.post("/subscribe", data=data, headers={"User-Agent": "pytest-browser"})


# -- reader lifecycle: database look-ups and the mailed links ------------------------------

def status_counts(database) -> dict[str, int]:
    """Subscribers per state, as `newsletter subscribers stats` prints them."""
    from newsletter.subscribers import subscriptions

    with database.session_scope() as session:
        return subscriptions.stats(session)


def find_subscriber(database, email: str):
    """The Subscriber row of `email` (detached, attributes loaded), or None."""
    from newsletter.subscribers import subscriptions

    with database.session_scope() as session:
        return subscriptions.find_by_email(session, email)


def all_rows(database, model, **where) -> list:
    """Every row of `model` matching the `where` column values, oldest first."""
    from sqlalchemy import select

    with database.session_scope() as session:
        query = select(model).filter_by(**where)
        primary = list(model.__table__.primary_key.columns)
        return list(session.scalars(query.order_by(*primary)))


def only_link(text: str, prefix: str) -> str:
    """The path of the one distinct link under BASE_URL + prefix in `text`."""
    found = set(links(text, prefix))
    assert len(found) == 1, f"expected one {prefix} link, found {sorted(found)}"
    return path_of(found.pop())


def subscribe_confirmed(client, smtp, drain, email: str, **fields: str):
    """Sign `email` up, confirm it through the mailed link and return the welcome mail."""
    assert signup(client, email, **fields).status_code == 200
    drain()
    [confirmation] = smtp.to(email)
    page = client.get(only_link(confirmation.part("plain"), "/confirm/"))
    assert client.post(form_action(page.get_data(as_text=True))).status_code == 200
    drain()
    mails = smtp.to(email)
    assert len(mails) == 2, f"expected confirmation and welcome mail, got {len(mails)}"
    return mails[1]


def data_link(client, smtp, drain, prefs_path: str, email: str) -> str:
    """Press "email me a link to my data" on the preferences page and return the path of
    the /data/ link the mail it brings holds."""
    before = len(smtp.to(email))
    page = client.get(prefs_path).get_data(as_text=True)
    match = re.search(r'<form method="post" action="([^"]+/data-link)"', page)
    assert match, "no data-link button on the preferences page"
    assert client.post(match.group(1)).status_code == 200
    drain()
    [mail] = smtp.to(email)[before:]
    return only_link(mail.part("plain"), "/data/")


def time_passes(database, days: float) -> None:
    """Move every stored time `days` back: the clock itself cannot be waited for. The
    consent log and the audit log are left as they are: the database refuses UPDATE there."""
    from datetime import timedelta

    from sqlalchemy import DateTime, and_, select

    from newsletter.models import Base

    shift = timedelta(days=days)
    with database.session_scope() as session:
        for table in Base.metadata.sorted_tables:
            stamps = [column for column in table.columns if isinstance(column.type, DateTime)]
            if table.name in ("consent_events", "audit_events") or not stamps:
                continue
            keys = list(table.primary_key.columns)
            for row in session.execute(select(*keys, *stamps)).all():
                values = {c.name: row._mapping[c] - shift for c in stamps if row._mapping[c] is not None}
                if values:
                    session.execute(table.update().where(and_(*(k == row._mapping[k] for k in keys))).values(values))


def queue_edition(settings, edition_id: int) -> int:  # type: ignore[no-untyped-def]
    """Queue an edition's send jobs as `newsletter digest send` does after its commit: a
    session and a Redis client of these settings, given to queueing.queue_edition."""
    from newsletter import queueing
    from newsletter.db import Database
    from newsletter.job_context import redis_from_settings

    database = Database(settings.database_url)
    try:
        with database.session_scope() as session, redis_from_settings(settings) as redis:
            return queueing.queue_edition(session, redis, edition_id, settings.send_chunk_size)
    finally:
        database.dispose()


# -- DKIM: a key of the test's own, and the check of STANDARDS 7 ----------------------------

class DkimKey:
    """An Ed25519 key in a file, as NEWSLETTER_DKIM_KEY_FILE takes it, and its DNS record."""

    SELECTOR, DOMAIN = "news", "jobs.example.org"

    def __init__(self, directory) -> None:  # type: ignore[no-untyped-def]
        import nacl.encoding
        import nacl.signing

        key = nacl.signing.SigningKey.generate()
        self.file = directory / "dkim.key"
        self.file.write_bytes(key.encode(encoder=nacl.encoding.Base64Encoder))
        self.public = key.verify_key.encode(encoder=nacl.encoding.Base64Encoder).decode()

    def settings(self, settings):  # type: ignore[no-untyped-def]
        from dataclasses import replace

        return replace(settings, dkim_selector=self.SELECTOR, dkim_domain=self.DOMAIN, dkim_key_file=str(self.file))

    def assert_signed_over_list_headers(self, mail) -> list[str]:  # type: ignore[no-untyped-def]
        """The mail verifies against this key, and its List-Unsubscribe headers are signed
        and oversigned; returns the signed header names."""
        import dkim

        signature = mail.message["DKIM-Signature"]
        signed = [h.strip().lower() for h in signature.split("h=")[1].split(";")[0].replace("\r\n", "").split(":")]
        assert signed.count("list-unsubscribe") == 2 and signed.count("list-unsubscribe-post") == 2
        dns = {f"{self.SELECTOR}._domainkey.{self.DOMAIN}.".encode(): f"v=DKIM1; k=ed25519; p={self.public}".encode()}
        assert dkim.verify(mail.data, dnsfunc=lambda name, timeout=5: dns.get(name))
        return signed


# -- digest fixtures: listings, readers, an edition sent now ------------------------------

def add_listing(session, n: int, title: str, *, location: str = "Berlin", hours_ago: float = 1,
                description: str = "", company: str = "Beispiel GmbH", **extra) -> None:
    session.add(Listing(
        external_id=f"job-{n}", title=title, url=f"https://jobs.example.org/stellen/{n}", company=company,
        location=location, category=extra.pop("category", "IT"), description=description,
        published_at=utcnow() - timedelta(hours=hours_ago), **extra,
    ))


def add_reader(session, address: str, keywords: str = "", location: str = "", language: str = "de",
               status: str = "confirmed", **search) -> None:
    """A reader; `search` may give radius, remote and employment_type."""
    session.add(Subscriber(email=address, email_hash=email_hash(address), keywords=keywords,
                           location=location, language=language, status=status, confirmed_at=utcnow(), **search))


def send_now(database, settings, drain, trigger: str = "test") -> int:
    """Create an edition now, queue it and let a real worker send it; its id."""
    from newsletter import job_context
    from newsletter.editions import planning

    with database.session_scope() as session:
        edition_id = planning.create_edition(session, settings, trigger).id
    job_context.configure(settings)  # the jobs drain() runs send with these settings
    queue_edition(settings, edition_id)
    drain()
    return edition_id


def one_click_url(message: Any) -> str:
    """The https URI of a mail's List-Unsubscribe header (RFC 8058's one-click link; a
    mailto: may follow it, RFC 2369)."""
    header = str(message["List-Unsubscribe"])
    return header.split(",")[0].strip().strip("<>")


def unsubscribe_mailto(message: Any) -> str:
    """The mailto: address of a mail's List-Unsubscribe header, without its ?subject."""
    [mailto] = [part.strip().strip("<>") for part in str(message["List-Unsubscribe"]).split(",")
                if part.strip().startswith("<mailto:")]
    return mailto.removeprefix("mailto:").split("?")[0]
