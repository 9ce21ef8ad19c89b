"""The digest mail templates (templates/email/<lang>/digest.{txt,html}) through the real
Renderer and build_message: subjects, escaping of listing text, the same links in both
parts, the per-recipient placeholders, size and line limits. No database, no Redis."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date
from email import message_from_bytes, policy
from html.parser import HTMLParser
from typing import Any

import pytest

from newsletter.mail.compose import Composed, Renderer, build_message, list_headers
from tests.conftest import make_settings

PREFS = "http://newsletter.test/__PREFS__"
UNSUB = "http://newsletter.test/__UNSUB__"
BOARD = "https://jobs.example.org/"
MORE = "https://jobs.example.org/suche?q=python&ort=berlin"
LANGS = ("de", "en")
URL_IN_TEXT = re.compile(r"https?://\S+")
ENTITY = re.compile(r"&(#\d+|#x[0-9a-fA-F]+|[A-Za-z][A-Za-z0-9]*);")
# What the digest HTML may contain; anything else (script, img, form, iframe, link,
# object, input, ...) fails.
ALLOWED_TAGS = {
    "html", "head", "meta", "title", "style", "body", "div", "table", "tbody", "tr", "td",
    "a", "p", "h1", "br", "span",
}


@dataclass(frozen=True)
class Listing:
    title: str
    url: str
    company: str = ""
    location: str = ""
    category: str = ""
    published: date = date(2026, 11, 20)
    snippet: str = ""


def listing(i: int, **overrides: Any) -> Listing:
    fields: dict[str, Any] = {
        "title": f"Python-Entwicklerin (m/w/d) Nummer {i}",
        "url": f"https://jobs.example.org/stelle/{i}?ref=liste&seite=1",
        "company": "Müller & Söhne GmbH",
        "location": "Berlin",
        "category": "Softwareentwicklung",
        "published": date(2026, 11, 1 + i % 28),
        "snippet": "Wir entwickeln Webanwendungen mit Python und Flask. Remote möglich.",
    }
    fields.update(overrides)
    return Listing(**fields)


def context(count: int = 12, total: int | None = None, **overrides: Any) -> dict[str, Any]:
    ctx: dict[str, Any] = {
        "listings": [listing(i) for i in range(1, count + 1)],
        "count": count,
        "total": count if total is None else total,
        "more_url": MORE,
        "keywords": "Python",
        "location": "Berlin",
        "edition_date": date(2026, 11, 27),
        "board_url": BOARD,
        "preferences_url": PREFS,
        "unsubscribe_url": UNSUB,
        # newsletter/mail/digest.py passes the link's base here and a slot for the reader's token
        "preferences_token": "",
        "unsubscribe_token": "",
    }
    ctx.update(overrides)
    return ctx


class _Tags(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[tuple[str, dict[str, str | None]]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append((tag, dict(attrs)))

    handle_startendtag = handle_starttag


def tags(html: str) -> list[tuple[str, dict[str, str | None]]]:
    parser = _Tags()
    parser.feed(html)
    parser.close()
    return parser.tags


def hrefs(html: str) -> set[str]:
    return {attrs["href"] or "" for tag, attrs in tags(html) if tag == "a" and "href" in attrs}


def text_links(text: str) -> set[str]:
    return set(URL_IN_TEXT.findall(text))


@pytest.fixture(scope="module")
def settings():
    return make_settings()


@pytest.fixture(scope="module")
def renderer(settings) -> Renderer:
    return Renderer(settings)


def render(renderer: Renderer, lang: str, **ctx: Any) -> Composed:
    return renderer.render("digest", lang, **context(**ctx))


# -- subject ---------------------------------------------------------------------------

@pytest.mark.parametrize(
    ("lang", "count", "subject"),
    [
        ("de", 12, "12 neue Jobs für Sie"),
        ("de", 1, "1 neuer Job für Sie"),
        ("de", 20, "20 neue Jobs für Sie"),
        ("en", 12, "12 new jobs for you"),
        ("en", 1, "1 new job for you"),
    ],
)
def test_subject_counts_singular_and_plural(renderer, lang, count, subject):
    composed = render(renderer, lang, count=count, total=count + 5)
    assert composed.subject == subject
    assert subject in composed.html  # the <title> and the heading say the same


@pytest.mark.parametrize("lang", LANGS)
def test_subject_is_one_clean_line_and_keeps_reader_text_out(renderer, lang):
    composed = render(
        renderer, lang, keywords="Python\r\nBcc: x@evil.test", location="=?utf-8?q?x?="
    )
    assert "\n" not in composed.subject and "\r" not in composed.subject
    assert composed.subject == composed.subject.strip()
    assert "evil" not in composed.subject and "=?" not in composed.subject
    assert not composed.text.startswith(("\n", "Subject:"))


# -- escaping and what the HTML may contain --------------------------------------------

HOSTILE = [
    listing(1, title="<script>alert(1)</script>", company="Smith & Wesson <b>GmbH</b>"),
    listing(2, title='"><img src=x onerror=alert(1)>', location="<iframe src=//evil.test>"),
    listing(3, snippet="</div><form action=https://evil.test><input name=pw></form>",
            category='<a href="https://evil.test">x</a>'),
    listing(4, url="javascript:alert(document.cookie)"),
    listing(5, url=" JavaScript:alert(1)"),
    listing(6, url='https://jobs.example.org/x?a="><script>alert(1)</script>'),
]


@pytest.mark.parametrize("lang", LANGS)
def test_hostile_listing_text_is_escaped(renderer, lang):
    composed = render(renderer, lang, listings=HOSTILE, count=len(HOSTILE), total=len(HOSTILE),
                      keywords="<b>Python</b>")
    html = composed.html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert "&gt;&lt;img src=x onerror=alert(1)&gt;" in html
    assert "Smith &amp; Wesson &lt;b&gt;GmbH&lt;/b&gt;" in html
    assert "&lt;b&gt;Python&lt;/b&gt;" in html
    lowered = html.lower()
    for markup in ("<script", "<img", "<iframe", "<form", "<input", "<b>", "<link", "<object"):
        assert markup not in lowered
    found = tags(html)
    assert {tag for tag, _ in found} <= ALLOWED_TAGS
    for tag, attrs in found:
        assert not any(name.startswith("on") for name in attrs), (tag, attrs)
        if tag == "a":
            assert (attrs["href"] or "").startswith(("https://", "http://")), attrs
    assert "https://evil.test" not in hrefs(html)
    # listings with a javascript: or a malformed link are still shown, just not linked
    for number in (4, 5, 6):
        assert html.count(f"Python-Entwicklerin (m/w/d) Nummer {number}") == 1
    linked = {PREFS, UNSUB, BOARD} | {item.url for item in HOSTILE[:3]}
    assert hrefs(html) == linked
    # (the text part also shows the URLs typed into the hostile snippet, as text, as the
    # HTML does; a listing's own link is printed only where the HTML links it)
    assert linked <= text_links(composed.text)
    assert not any(item.url in composed.text for item in HOSTILE[3:])
    for part in (composed.html, composed.text):
        assert "javascript:" not in part.lower()
    # the text part shows the listing text as it is (plain text needs no escaping)
    assert " 1. <script>alert(1)</script>" in composed.text.splitlines()
    assert "Smith & Wesson <b>GmbH</b>" in composed.text
    assert not ENTITY.search(composed.text)


@pytest.mark.parametrize("lang", LANGS)
def test_html_is_self_contained_and_responsive(renderer, lang):
    html = render(renderer, lang, total=30).html
    lowered = html.lower()
    for banned in ("<script", "<form", "<img", "<link", "@import", "url(", "<iframe", "<svg",
                   "background-image", "http-equiv"):
        assert banned not in lowered
    assert "@media" in html and "!important" in html
    assert "max-width: 600px" in html
    assert '<table class="card"' in html and 'role="presentation"' in html
    assert f'<html lang="{lang}">' in html


# -- links -------------------------------------------------------------------------------

@pytest.mark.parametrize("lang", LANGS)
@pytest.mark.parametrize("total", [12, 40])
def test_text_and_html_have_the_same_links(renderer, lang, total):
    items = [*context()["listings"][:11], HOSTILE[3]]  # the last one has a javascript: link
    composed = render(renderer, lang, total=total, listings=items)
    in_html = hrefs(composed.html)
    assert in_html == text_links(composed.text)
    expected = {PREFS, UNSUB, BOARD} | {listing(i).url for i in range(1, 12)}
    if total > 12:
        expected.add(MORE)
    assert in_html == expected


@pytest.mark.parametrize("lang", LANGS)
def test_reader_links_appear_in_both_parts(renderer, lang):
    composed = render(renderer, lang)
    for part in (composed.text, composed.html):
        assert PREFS in part and UNSUB in part
    assert f'href="{PREFS}"' in composed.html and f'href="{UNSUB}"' in composed.html


@pytest.mark.parametrize(
    ("lang", "total", "more_url", "phrase"),
    [
        ("de", 34, MORE, "22 weitere passende Stellen auf jobs.example.org"),
        ("de", 13, MORE, "1 weitere passende Stelle auf jobs.example.org"),
        ("de", 12, MORE, None),
        ("de", 34, None, None),
        ("en", 34, MORE, "22 more matching jobs on jobs.example.org"),
        ("en", 13, MORE, "1 more matching job on jobs.example.org"),
        ("en", 12, MORE, None),
        ("en", 34, None, None),
    ],
)
def test_more_link_only_when_more_matched_and_url_given(renderer, lang, total, more_url, phrase):
    composed = render(renderer, lang, total=total, more_url=more_url)
    for part in (composed.text, composed.html):
        if phrase:
            assert phrase in part
            assert "suche?q=python" in part
        else:
            assert "suche?q=python" not in part
            assert "weitere passende" not in part and "more matching" not in part


def test_thousands_in_total(renderer):
    assert "von 1.234 neuen Stellenangeboten" in render(renderer, "de", total=1234).text
    assert "of 1,234 new job listings" in render(renderer, "en", total=1234).text


# -- content ---------------------------------------------------------------------------

@pytest.mark.parametrize(
    ("lang", "edition", "published"),
    [("de", "27.11.2026", "05.01.2026"), ("en", "27 November 2026", "5 January 2026")],
)
def test_dates_and_listing_fields(renderer, lang, edition, published):
    item = listing(1, published=date(2026, 1, 5), category="IT & Software")
    composed = render(renderer, lang, listings=[item], count=1, total=1)
    for part in (composed.text, composed.html):
        assert edition in part and published in part
        assert "Berlin" in part
    assert "Müller & Söhne GmbH · Berlin" in composed.text
    assert "Müller &amp; Söhne GmbH · Berlin" in composed.html
    assert "IT & Software" in composed.text and "IT &amp; Software" in composed.html
    assert item.snippet in composed.text.replace("\n    ", " ")
    assert item.snippet in composed.html


@pytest.mark.parametrize(
    ("lang", "keywords", "location", "shown"),
    [
        ("de", "Python", "Berlin", "Ihre Suche: Python · Berlin"),
        ("de", "", "", "Ihre Suche: alle Stellen · alle Orte"),
        ("de", "Pflege", "", "Ihre Suche: Pflege · alle Orte"),
        ("en", "Python", "Berlin", "Your search: Python · Berlin"),
        ("en", "", "", "Your search: all jobs · anywhere"),
    ],
)
def test_search_shown_in_intro_and_footer(renderer, lang, keywords, location, shown):
    composed = render(renderer, lang, keywords=keywords, location=location)
    for part in (composed.text, composed.html):
        assert " ".join(part.split()).count(shown) >= 2
    why = ("weil Sie den Jobs-Newsletter bestellt und bestätigt haben" if lang == "de"
           else "because you subscribed to the Jobs-Newsletter and confirmed it")
    assert why in composed.html and why in " ".join(composed.text.split())


@pytest.mark.parametrize("lang", LANGS)
def test_empty_optional_fields_leave_no_debris(renderer, lang):
    bare = listing(1, company="", location="", category="", snippet="")
    composed = render(renderer, lang, listings=[bare], count=1, total=1, keywords="", location="")
    for part in (composed.text, composed.html):
        assert "None" not in part
    assert "·  " not in composed.text and " · \n" not in composed.text
    assert 'class="meta"' not in composed.html and 'class="cat"' not in composed.html
    assert 'class="snippet"' not in composed.html
    assert bare.title in composed.text and bare.url in composed.text


@pytest.mark.parametrize("lang", LANGS)
def test_impressum_in_both_parts(renderer, settings, lang):
    composed = render(renderer, lang)
    flat_text = " ".join(composed.text.split())
    assert settings.impressum in flat_text
    assert settings.impressum.replace("&", "&amp;") in composed.html


@pytest.mark.parametrize("lang", LANGS)
def test_text_part_is_readable(renderer, lang):
    long_title = "Senior Entwicklerin für verteilte Systeme und Datenplattformen (m/w/d) " * 2
    items = [listing(i, title=long_title + str(i), snippet="Lorem ipsum dolor sit amet " * 8)
             for i in range(1, 21)]
    text = render(renderer, lang, listings=items, count=20, total=50).text
    assert not ENTITY.search(text)
    assert "<" not in text  # no markup leaks into the plain text
    for line in text.splitlines():
        assert line == line.rstrip(), repr(line)
        if len(line) > 78:
            assert URL_IN_TEXT.fullmatch(line.strip()), repr(line)


# -- size and the whole message ----------------------------------------------------------

def heavy_context() -> dict[str, Any]:
    title = ("Senior Full-Stack-Entwickler:in Python/Django & React für unsere "
             "Plattform zur Vermittlung von Pflegekräften – Vollzeit oder Teilzeit (m/w/d)")
    snippet = ("Ihre Aufgaben: Sie entwickeln & betreiben unsere Plattform, prüfen Änderungen "
               "<im Team> und sorgen für Qualität. Wir bieten: 30 Tage Urlaub, Homeoffice, "
               "Weiterbildung & ein faires Gehalt. Bewerbung ")[:200]
    items = [
        listing(i, title=f"{title} {i}", snippet=snippet, category="Softwareentwicklung & IT",
                company="Großunternehmen für Gesundheitsdienstleistungen & Pflege GmbH & Co. KG",
                location="Frankfurt am Main / Offenbach / Remote",
                url=f"https://jobs.example.org/stellenangebote/{i}/senior-full-stack-entwickler"
                    f"-python-django-react?utm_none=1&id={i}")
        for i in range(1, 21)
    ]
    return {"listings": items, "count": 20, "total": 999}


@pytest.mark.parametrize("lang", LANGS)
def test_html_under_100_kb_with_20_heavy_listings(renderer, settings, lang):
    composed = render(renderer, lang, **heavy_context())
    assert len(composed.html.encode("utf-8")) < 100_000
    raw, _ = build_message(settings, composed, to="leser@example.org")
    assert len(raw) < 100_000  # the whole message, quoted-printable and both parts


@pytest.mark.parametrize("lang", LANGS)
def test_built_message(renderer, settings, lang):
    composed = render(renderer, lang, **heavy_context())
    raw, message_id = build_message(
        settings, composed, to="leser@example.org", headers=list_headers(settings, UNSUB)
    )
    assert raw.isascii()
    for line in raw.split(b"\r\n"):
        assert len(line) <= 998
    msg = message_from_bytes(raw, policy=policy.default)
    assert msg["Subject"] == composed.subject
    assert msg["Message-ID"] == message_id
    assert msg.get_content_type() == "multipart/alternative"
    text_part, html_part = msg.iter_parts()
    assert text_part.get_content_type() == "text/plain"
    assert html_part.get_content_type() == "text/html"
    text = text_part.get_content().replace("\r\n", "\n")
    html = html_part.get_content().replace("\r\n", "\n")
    assert text == composed.text.replace("\r\n", "\n")
    assert html.rstrip("\n") == composed.html.replace("\r\n", "\n").rstrip("\n")
    for part in (text, html):
        assert PREFS in part and UNSUB in part
    assert hrefs(html) == text_links(text)


def test_german_subject_survives_the_wire(renderer, settings):
    composed = render(renderer, "de")
    raw, _ = build_message(settings, composed, to="leser@example.org")
    subject_header = raw.split(b"\r\n\r\n", 1)[0]
    assert b"=?utf-8?" in subject_header.lower()  # RFC 2047 encoded-word
    assert b"f\xc3\xbcr" not in subject_header
    msg = message_from_bytes(raw, policy=policy.default)
    assert msg["Subject"] == "12 neue Jobs für Sie"


def test_wrapping_a_long_indented_line_keeps_its_indent():
    """A digest's listing lines are indented; wrapped, they must stay in their block."""
    from newsletter.mail.compose import wrap_text

    line = "    " + "Softwareentwickler:in " * 4 + "(Berlin)"
    wrapped = wrap_text(f"{line}\nhttps://jobs.example.org/{'x' * 90}")
    lines = wrapped.split("\n")
    assert all(part.startswith("    ") and len(part) <= 76 for part in lines[:-1])
    assert " ".join(part.strip() for part in lines[:-1]) == line.strip()
    assert lines[-1].startswith("https://")  # a link is never broken


@pytest.mark.parametrize("lang", LANGS)
@pytest.mark.parametrize("name", ["confirm", "welcome", "manage", "data", "digest"])
def test_every_mail_puts_its_impressum_under_a_heading_in_both_parts(settings, lang, name):
    heading = {"de": "Impressum", "en": "Legal notice"}[lang]
    context = {"confirm_url": "https://example.org/c", "preferences_url": "https://example.org/p",
               "unsubscribe_url": "https://example.org/u", "data_url": "https://example.org/d",
               "max_age_hours": 48, "max_age_minutes": 60, "subscribed": True}
    composed = (render(Renderer(settings), lang) if name == "digest"
                else Renderer(settings).render(name, lang, **context))
    lines = composed.text.splitlines()
    first = settings.impressum.splitlines()[0]
    at = next(i for i, line in enumerate(lines) if line.startswith(first[:30]))
    assert lines[at - 1] == heading, lines[at - 3:at + 1]
    assert heading in composed.html
