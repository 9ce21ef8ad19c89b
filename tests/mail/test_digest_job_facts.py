"""A listing's job facts in the digest: salary, job types and "Remote" under the company
and place line, in the reader's language, in both parts; a listing without them looks as
it always did. The wording through the real DigestComposer, and a whole edition through a
real RQ worker to the SMTP sink, on SQLite and PostgreSQL."""

from __future__ import annotations

import html as html_module
import re
from email import message_from_bytes, policy

import pytest

from newsletter.mail.digest import DigestComposer, salary_text, view
from newsletter.models import Listing, utcnow
from tests.helpers import add_listing, add_reader, send_now


def _s(text: str) -> str:
    """Text as a reader sees it (entities read)."""
    return html_module.unescape(text)


@pytest.mark.parametrize(
    ("low", "high", "currency", "unit", "language", "shown"),
    [
        (52000, 68000, "EUR", "year", "de", "52.000–68.000 € im Jahr"),
        (52000, None, "EUR", "year", "de", "ab 52.000 € im Jahr"),
        (None, 68000, "EUR", "year", "de", "bis 68.000 € im Jahr"),
        (17.5, None, "EUR", "hour", "de", "ab 17,50 € pro Stunde"),
        (17.5, 17.5, "EUR", "hour", "de", "17,50 € pro Stunde"),
        (18, 18, "EUR", "hour", "de", "18 € pro Stunde"),
        (4200, 4200, "EUR", "month", "de", "4.200 € im Monat"),
        (4200.4, 4200.4, "EUR", "month", "de", "4.200 € im Monat"),  # whole amounts, not cents
        (52000, 68000, "EUR", "year", "en", "€52,000–68,000 per year"),
        (17.5, 17.5, "EUR", "hour", "en", "€17.50 per hour"),
        (17.5, 21, "EUR", "hour", "en", "€17.50–21.00 per hour"),
        (52000, None, "EUR", "year", "en", "from €52,000 per year"),
        (None, 68000, "EUR", "year", "en", "up to €68,000 per year"),
        (90000, 110000, "CHF", "year", "de", "90.000–110.000 CHF im Jahr"),
        (90000, 110000, "CHF", "year", "en", "CHF90,000–110,000 per year"),
        (60000, None, "USD", "year", "de", "ab 60.000 $ im Jahr"),
        (60000, None, "usd", "year", "en", "from US$60,000 per year"),
        (52000, None, "", "year", "de", "ab 52.000 € im Jahr"),  # no currency given: euros
        (68000, 52000, "EUR", "year", "de", "52.000–68.000 € im Jahr"),  # a feed's swapped range
        (52000, None, "EUR", "", "de", "ab 52.000 €"),  # no unit given: no unit shown
    ],
)
def test_salary_wording(low, high, currency, unit, language, shown):
    assert salary_text(low, high, currency, unit, language) == shown


@pytest.mark.parametrize(
    ("low", "high", "currency"),
    [(None, None, "EUR"), (0, 0, "EUR"), (-5, None, "EUR"), (float("nan"), None, "EUR"),
     (float("inf"), None, "EUR"), (1e300, None, "EUR"), (52000, None, "<b>"), (52000, None, "EURO")],
)
def test_no_salary_line_for_missing_or_nonsense_figures(low, high, currency):
    assert salary_text(low, high, currency, "year", "de") == ""


def _listing(n: int, **facts) -> Listing:
    return Listing(external_id=f"job-{n}", title=f"Stelle {n}", url=f"https://jobs.example.org/stellen/{n}",
                   company="Beispiel GmbH", location="Berlin", category="IT", description="Wir suchen Verstärkung.",
                   published_at=utcnow(), **facts)


FACTS = {"salary_min": 52000, "salary_max": 68000, "salary_currency": "EUR", "salary_unit": "year",
         "employment_type": "part_time,full_time", "remote": True}
WORDED = {"de": "52.000–68.000 € im Jahr · Vollzeit, Teilzeit · Remote",
          "en": "€52,000–68,000 per year · Full-time, Part-time · Remote"}


def _parts(settings, language: str, listings: list[Listing]) -> tuple[str, str]:
    composer = DigestComposer(settings)
    views = [view(item, settings.tz, language) for item in listings]
    variant = composer.render_variant(language, "", "", views, len(views), utcnow().date(), variant_id=1)
    data, _ = composer.build(variant, "leser@example.org", "P", "U", "test")
    message = message_from_bytes(data, policy=policy.default)
    return tuple(message.get_body((kind,)).get_content().replace("\r\n", "\n") for kind in ("plain", "html"))


@pytest.mark.parametrize("language", ["de", "en"])
def test_facts_under_the_company_line_in_both_parts(language):
    from tests.conftest import make_settings

    settings = make_settings()
    text, html = _parts(settings, language, [_listing(1, **FACTS)])
    lines = [_s(line) for line in text.splitlines()]
    at = lines.index("    Beispiel GmbH · Berlin")
    assert lines[at + 1] == "    " + WORDED[language]
    block = re.search(r'<div class="meta"[^>]*>Beispiel GmbH · Berlin</div>\s*<div class="facts"[^>]*>([^<]*)</div>', html)
    assert block and _s(block.group(1)) == WORDED[language]


@pytest.mark.parametrize("language", ["de", "en"])
def test_each_fact_alone_and_none(language):
    from tests.conftest import make_settings

    settings = make_settings()
    listings = [
        _listing(1, salary_min=17.5, salary_currency="EUR", salary_unit="hour"),
        _listing(2, employment_type="student"),
        _listing(3, remote=True),
        _listing(4),
    ]
    text, html = _parts(settings, language, listings)
    expected = {"de": ["ab 17,50 € pro Stunde", "Werkstudent/in", "Remote"],
                "en": ["from €17.50 per hour", "Working student", "Remote"]}[language]
    facts = [_s(found) for found in re.findall(r'<div class="facts"[^>]*>([^<]*)</div>', html)]
    assert facts == expected  # listing 4 has no facts line at all
    blocks = _s(text).split("\n\n")
    listing_four = next(block for block in blocks if "Stelle 4" in block).splitlines()
    # title, company line, then straight the category line: no facts line in between
    assert listing_four[1] == "    Beispiel GmbH · Berlin"
    assert listing_four[2].startswith("    IT · ")
    assert not any("Remote" in line for line in listing_four)


@pytest.mark.parametrize("language", ["de", "en"])
def test_a_listing_without_facts_looks_as_before(language):
    """No facts line, not even an empty one: the company line is followed by the snippet
    in the HTML part and by the category line in the text part, as before job facts."""
    from tests.conftest import make_settings

    text, html = _parts(make_settings(), language, [_listing(1)])
    assert re.search(r'>Beispiel GmbH · Berlin</div>\n<div class="snippet"', html)
    assert "facts" not in html.split('<td class="col main"', 1)[1]
    lines = text.splitlines()
    at = lines.index("    Beispiel GmbH · Berlin")
    assert lines[at + 1].startswith("    IT · ") and lines[at - 1] == " 1. Stelle 1"


@pytest.mark.slow
def test_an_edition_shows_salaries_types_and_remote_in_each_readers_language(database, settings, smtp, drain):
    with database.session_scope() as session:
        add_listing(session, 1, "Backend-Entwicklerin", **FACTS)
        add_listing(session, 2, "Pflegefachkraft", salary_min=4200, salary_max=4200, salary_currency="EUR",
                    salary_unit="month", employment_type="full_time")
        add_listing(session, 3, "Aushilfe Café", salary_min=14.25, salary_currency="EUR", salary_unit="hour")
        add_listing(session, 4, "Entwickler Zürich", salary_min=90000, salary_max=110000, salary_currency="CHF",
                    salary_unit="year", employment_type="freelance")
        add_listing(session, 5, "Ohne Angaben")
        add_reader(session, "de@example.org", language="de")
        add_reader(session, "en@example.org", language="en")
    send_now(database, settings, drain)
    expected = {
        "de@example.org": ["52.000–68.000 € im Jahr · Vollzeit, Teilzeit · Remote", "4.200 € im Monat · Vollzeit",
                           "ab 14,25 € pro Stunde", "90.000–110.000 CHF im Jahr · Freiberuflich"],
        "en@example.org": ["€52,000–68,000 per year · Full-time, Part-time · Remote", "€4,200 per month · Full-time",
                           "from €14.25 per hour", "CHF90,000–110,000 per year · Freelance"],
    }
    assert sorted(m.rcpt_tos[0] for m in smtp.messages) == sorted(expected)
    for mail in smtp.messages:
        text, html = (_s(mail.part(kind)).replace("\r\n", "\n") for kind in ("plain", "html"))
        html_facts = re.findall(r'<div class="facts"[^>]*>([^<]*)</div>', html)
        assert sorted(html_facts) == sorted(expected[mail.rcpt_tos[0]])
        for line in expected[mail.rcpt_tos[0]]:
            assert f"\n    {line}\n" in text
        plain = next(block for block in text.split("\n\n") if "Ohne Angaben" in block)
        assert not any(word in plain for word in ("€", "Remote", "Vollzeit", "Full-time"))


def test_the_digest_names_the_readers_whole_search(database, settings, smtp, drain):
    with database.session_scope() as session:
        add_listing(session, 1, "Python-Entwicklerin (m/w/d)", location="Berlin", remote=True,
                    employment_type="part_time")
        add_reader(session, "de@example.org", "Python", "Berlin", radius=25, remote="only",
                   employment_type="full_time,part_time")
        add_reader(session, "en@example.org", "Python", "Berlin", language="en", radius=50)
    send_now(database, settings, drain)
    searches = {
        "de@example.org": "Ihre Suche: Python · Berlin (25 km) · nur remote · Vollzeit, Teilzeit",
        "en@example.org": "Your search: Python · Berlin (50 km)",
    }
    for mail in smtp.messages:
        text, html = (_s(mail.part(kind)).replace("\r\n", "\n") for kind in ("plain", "html"))
        wanted = searches[mail.rcpt_tos[0]]
        assert f"\n{wanted}\n" in text, text[:600]
        assert wanted in html_module.unescape(html)
