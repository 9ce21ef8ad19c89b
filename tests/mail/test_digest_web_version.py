"""The digest's "view in the browser" link and the page it opens (GET /digest/<token>):
the link is at the top of both parts, the same for every reader of a variant, and holds no
reader's data; the page shows the variant's listings (withdrawn ones left out) with no
reader's token in it, is neither indexable nor frameable, and any other token answers a
readable 404. Editions sent through a real RQ worker to the SMTP sink, on SQLite and
PostgreSQL; previews and test mails carry a placeholder that opens nothing."""

from __future__ import annotations

import json
import re
from datetime import timedelta

import pytest
from itsdangerous.encoding import base64_decode
from sqlalchemy import select

from newsletter.editions import web_version
from newsletter.listings import store
from newsletter.models import Edition, EditionVariant, Listing, Subscriber, utcnow
from newsletter.tokens import tokens_for
from tests.helpers import BASE, add_listing, add_reader, send_now, time_passes

WEB_LINK = re.compile(re.escape(BASE) + r"/digest/[^\s<>\"]+")
TOP = {"de": "Diese E-Mail im Browser ansehen", "en": "View this email in your browser"}


def _web_links(mail) -> tuple[str, str]:
    """The web link of a mail's text and HTML part (each exactly once)."""
    text, html = mail.part("plain"), mail.part("html")
    [in_text], [in_html] = set(WEB_LINK.findall(text)), set(WEB_LINK.findall(html))
    assert text.count(in_text) == 1 and html.count(f'href="{in_html}"') == 1
    return in_text, in_html


def _payload(link: str) -> object:
    """What a web link's token signs, read without its key (anyone can do this)."""
    return json.loads(base64_decode(link.rsplit("/", 1)[1].split(".")[0]))


def _reader_secrets(database, settings) -> list[str]:
    tokens = tokens_for(settings)
    with database.session_scope() as session:
        readers = [(s.public_id, s.link_generation) for s in session.scalars(select(Subscriber))]
    return [value for public_id, generation in readers
            for value in (public_id, tokens.unsubscribe(public_id), tokens.preferences(public_id, generation))]


@pytest.mark.slow
def test_the_web_link_is_one_per_variant_and_opens_the_digest(database, settings, smtp, drain, client):
    with database.session_scope() as session:
        add_listing(session, 1, "Backend-Entwicklerin Python", salary_min=52000, salary_max=68000,
                    salary_currency="EUR", salary_unit="year", employment_type="full_time", remote=True)
        add_listing(session, 2, "Pflegefachkraft Intensivstation", hours_ago=2)
        add_reader(session, "anna@example.org")
        add_reader(session, "bert@example.org")
        add_reader(session, "cleo@example.org", language="en")
    send_now(database, settings, drain)
    mails = {m.rcpt_tos[0]: m for m in smtp.messages}
    assert sorted(mails) == ["anna@example.org", "bert@example.org", "cleo@example.org"]

    links = {}
    for address, mail in mails.items():
        in_text, in_html = _web_links(mail)
        assert in_text == in_html
        links[address] = in_text
        language = "en" if address.startswith("cleo") else "de"
        assert mail.part("plain").replace("\r\n", "\n").startswith(f"{TOP[language]}:\n{in_text}\n\n")
        assert f'href="{in_text}"' in mail.part("html") and TOP[language] in mail.part("html")
    # The same search, the same language: one link for both readers; not for the English one.
    assert links["anna@example.org"] == links["bert@example.org"] != links["cleo@example.org"]
    with database.session_scope() as session:
        [variant_id] = session.scalars(select(EditionVariant.id))
    assert _payload(links["anna@example.org"]) == [variant_id, "de"]
    assert _payload(links["cleo@example.org"]) == [variant_id, "en"]
    secrets = _reader_secrets(database, settings)
    for link in links.values():
        assert not any(secret in link for secret in secrets)

    page = client.get(links["anna@example.org"].removeprefix(BASE))
    assert page.status_code == 200 and page.mimetype == "text/html"
    body = page.get_data(as_text=True)
    assert "Backend-Entwicklerin Python" in body and "Pflegefachkraft Intensivstation" in body
    assert "52.000–68.000 € im Jahr · Vollzeit · Remote" in body
    assert "2 neue Jobs für Sie" in body and "Impressum" in body
    assert not any(secret in body for secret in secrets)
    assert "/preferences/" not in body and "/unsubscribe/" not in body and "/digest/" not in body
    assert body.count(f'href="{BASE}/manage"') == 2  # the mail's two reader links, for nobody in particular
    assert "frame-ancestors 'none'" in page.headers["Content-Security-Policy"]
    assert "script-src" not in page.headers["Content-Security-Policy"]  # default-src 'none' holds for scripts
    assert page.headers["X-Frame-Options"] == "DENY"
    assert page.headers["X-Robots-Tag"] == "noindex"
    assert page.headers["Cache-Control"] == "private, max-age=3600"
    assert page.headers["Referrer-Policy"] == "no-referrer"

    english = client.get(links["cleo@example.org"].removeprefix(BASE)).get_data(as_text=True)
    assert "2 new jobs for you" in english and "€52,000–68,000 per year · Full-time · Remote" in english
    assert "Legal notice" in english

    with database.session_scope() as session:
        store.withdraw(session, "job-2")
    again = client.get(links["bert@example.org"].removeprefix(BASE)).get_data(as_text=True)
    assert "Backend-Entwicklerin Python" in again
    assert "Pflegefachkraft" not in again and "1 neuer Job für Sie" in again


def _hand_made_variant(database, age_days: float = 0) -> int:
    """An edition with one variant and one listing, made without planning."""
    with database.session_scope() as session:
        add_listing(session, 1, "Elektronikerin Betriebstechnik")
        session.flush()
        listing_id = session.scalar(select(Listing.id))
        cutoff = utcnow() - timedelta(days=age_days)
        edition = Edition(trigger="test", cutoff=cutoff, window_start=cutoff - timedelta(days=14), state="done")
        session.add(edition)
        session.flush()
        variant = EditionVariant(edition_id=edition.id, keywords="", location="", listing_ids=[listing_id],
                                 total_matches=1)
        session.add(variant)
        session.flush()
        return variant.id


def test_the_page_of_a_hand_made_variant_and_its_expiry(database, settings, client):
    variant_id = _hand_made_variant(database)
    path = "/digest/" + tokens_for(settings).digest_web(variant_id, "de")
    page = client.get(path)
    assert page.status_code == 200 and "Elektronikerin Betriebstechnik" in page.get_data(as_text=True)
    assert client.head(path).status_code == 200

    time_passes(database, web_version.WEB_VERSION_DAYS + 1)
    gone = client.get(path + "?lang=en")
    assert gone.status_code == 410
    assert f"older than {web_version.WEB_VERSION_DAYS} days" in gone.get_data(as_text=True)
    assert "Elektronikerin" not in gone.get_data(as_text=True)
    assert gone.headers["X-Robots-Tag"] == "noindex" and gone.headers["Cache-Control"] == "no-store"


def test_no_other_token_opens_a_digest(database, settings, client):
    variant_id = _hand_made_variant(database)
    tokens = tokens_for(settings)
    good = tokens.digest_web(variant_id, "de")
    payload, signature = good.split(".")
    flipped = signature[:-2] + ("A" if signature[-2] != "A" else "B") + signature[-1]
    bad = [
        f"{payload}.{flipped}",  # a changed signature
        tokens.digest_web(variant_id + 1, "de"),  # a variant that does not exist (signed by us)
        tokens.unsubscribe("AbCdEfGh12345678"),  # another kind of our tokens
        tokens.preferences("AbCdEfGh12345678"),
        "PREVIEW",  # the placeholder of previews and test mails
        "x" * 5000,  # huge
        good + "=",  # another spelling of a good token
        "%C3%BC" + good,
        "ü" * 40 + "." + signature,
        "WzEsImRlIl0.\u202e\u0000",
        "WzEsImZyIl0." + signature,  # [1, "fr"] with a borrowed signature
        ".",
        "..",
    ]
    for token in bad:
        response = client.get("/digest/" + token)
        assert response.status_code == 404, token
        text = response.get_data(as_text=True)
        assert "Elektronikerin" not in text
        assert response.mimetype == "text/html" and "<h1>" in text  # a readable page, not a bare error
    assert client.get("/digest/" + good).status_code == 200


def test_a_variant_of_a_deleted_edition_is_gone(database, settings, client):
    variant_id = _hand_made_variant(database)
    with database.session_scope() as session:
        session.delete(session.get(EditionVariant, variant_id))
    assert client.get("/digest/" + tokens_for(settings).digest_web(variant_id, "de")).status_code == 404


@pytest.mark.slow
def test_previews_and_test_mails_carry_the_placeholder(database, settings, smtp, client):
    from newsletter.operators import digest_preview

    with database.session_scope() as session:
        add_listing(session, 1, "Data Engineer", salary_min=60000, salary_currency="EUR", salary_unit="year")
        add_reader(session, "reader@example.org")
    with database.session_scope() as session:
        preview = digest_preview.compose(session, settings, digest_preview.preferences("", "", "de"))
        as_reader = digest_preview.compose(session, settings, digest_preview.preferences_of(session, "reader@example.org"))
    placeholder = f"{BASE}/digest/PREVIEW"
    for shown in (preview, as_reader):
        assert set(WEB_LINK.findall(shown.text)) == {placeholder} == set(WEB_LINK.findall(shown.html))
        assert "ab 60.000" in shown.text
    assert client.get("/digest/PREVIEW").status_code == 404

    digest_preview.send_test(settings, preview, "operator@example.org")
    [mail] = smtp.wait_for(1)
    assert set(WEB_LINK.findall(mail.part("plain"))) == {placeholder}
    assert set(WEB_LINK.findall(mail.part("html"))) == {placeholder}
