"""A reader's links are their keys (STANDARDS 26): in a digest they appear only in our own
footer links and List-Unsubscribe header, never inside listing text, whatever that text
holds. Sent through a real RQ worker to the SMTP sink, on SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import timedelta

import pytest

from newsletter.editions import planning
from newsletter.mail.digest import DigestComposer, SlotMismatch
from newsletter.models import Listing, Subscriber, email_hash, utcnow
from newsletter.tokens import tokens_for
from tests.helpers import one_click_url, queue_edition

# What a listing could carry to catch a reader's link: the markers this service once used,
# template syntax, and the merge tags of other mailers.
SPELLINGS = [
    "zzNEWSLETTERPREFSzz", "zzNEWSLETTERUNSUBzz", "{{ preferences_url }}", "{{ unsubscribe_url }}",
    "{{ preferences_token }}", "{% raw %}x", "*|UNSUB|*", "%(unsubscribe_url)s", "$unsubscribe_url",
    "${preferences_url}", "[[UNSUB]]", "%%unsubscribe%%",
]


def _hostile_listings(session) -> None:
    now = utcnow()
    for n, spelling in enumerate(SPELLINGS):
        session.add(Listing(
            external_id=f"evil-{n}", title=f"Data Engineer {spelling}",
            url=f"https://attacker.example/apply?ref={spelling.replace(' ', '')}",
            company=f"Evil {spelling} GmbH", location="Berlin", category=spelling,
            description=f"Bewerben Sie sich: {spelling} und {spelling}", published_at=now - timedelta(hours=1),
        ))


def _reader(session, address: str) -> None:
    session.add(Subscriber(email=address, email_hash=email_hash(address), status="confirmed",
                           language="de" if address.startswith("de") else "en", confirmed_at=utcnow()))


@pytest.mark.slow
def test_listing_text_never_receives_a_readers_tokens(database, settings, smtp, drain):
    with database.session_scope() as session:
        _hostile_listings(session)
        _reader(session, "de-reader@example.org")
        _reader(session, "en-reader@example.org")
    with database.session_scope() as session:
        edition_id = planning.create_edition(session, settings, "test").id
        readers = {s.email: s.public_id for s in session.query(Subscriber)}
    queue_edition(settings, edition_id)
    drain()

    tokens = tokens_for(settings)
    keys = {email: (tokens.preferences(pid), tokens.unsubscribe(pid)) for email, pid in readers.items()}
    assert sorted(m.rcpt_tos[0] for m in smtp.messages) == sorted(readers)
    for mail in smtp.messages:
        own = mail.rcpt_tos[0]
        prefs, unsub = keys[own]
        text, html = mail.part("plain"), mail.part("html")
        for spelling in SPELLINGS[:4] + ["*|UNSUB|*", "%(unsubscribe_url)s", "$unsubscribe_url"]:
            assert f"Data Engineer {spelling}" in text  # shown literally, like any other text
        # Our footer holds each link once per part; nothing else in the mail holds a token.
        assert text.count(prefs) == html.count(prefs) == 1
        assert text.count(unsub) == html.count(unsub) == 1
        assert f"{settings.base_url}/preferences/{prefs}" in text
        assert f'href="{settings.base_url}/unsubscribe/{unsub}"' in html
        assert one_click_url(mail.message) == f"{settings.base_url}/unsubscribe/{unsub}"
        raw = mail.data.decode("ascii", "replace").replace("=\r\n", "")
        assert raw.count(prefs) == 2 and raw.count(unsub) == 3  # two parts; and the header
        others = [t for email, pair in keys.items() if email != own for t in pair]
        assert not any(t in raw or t in text or t in html for t in others)
        assert "attacker.example/apply?ref=zzNEWSLETTERPREFSzz\"" in html  # the link as the employer gave it


def test_a_render_holding_more_slots_than_the_template_placed_is_refused(settings):
    # The nonce makes this unreachable from listing text, so the fault is made by hand (a
    # renderer that appends a marker behind the template's back): should it ever happen,
    # the digest is refused, not sent with a reader's token in the wrong place.
    composer = DigestComposer(settings)

    class Doubling(type(composer.renderer)):
        def render(self, name, language, **context):
            composed = super().render(name, language, **context)
            marker = context["preferences_token"].marker
            return type(composed)(composed.subject, composed.text + marker, composed.html)

    composer.renderer = Doubling(settings)
    with pytest.raises(SlotMismatch):
        composer.render_variant("de", "", "", [], 0, utcnow().date())
