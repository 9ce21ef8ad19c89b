"""No text in our mails is coloured like its background. SpamAssassin scores that
(HTML_FONT_LOW_CONTRAST, 0.7 on the digest's preheader once), and a reader cannot read it.

The check reads the HTML as sent (css-inline put every style inline): each text's colour is
the nearest `color` (style, or a <font color>) around it, its background the nearest
`background`/`background-color` (style) or `bgcolor`; their WCAG contrast ratio must be at
least 4.5:1. Hidden text counts as well: hiding a preheader by painting it in the
background colour is exactly what the filter looks for. SpamAssassin itself is asked too
where it is installed; the check above does not need it.
"""

from __future__ import annotations

import re
import os
import shutil
import subprocess
from datetime import date
from html.parser import HTMLParser

import pytest

from newsletter.mail.compose import Renderer
from newsletter.mail.digest import DigestComposer, ListingView
from tests.conftest import make_settings

MIN_RATIO = 4.5
VOID = {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "source", "track", "wbr"}
NAMED = {"white": "#ffffff", "black": "#000000", "red": "#ff0000", "blue": "#0000ff", "gray": "#808080",
         "grey": "#808080", "silver": "#c0c0c0"}
_HEX = re.compile(r"#([0-9a-f]{6}|[0-9a-f]{3})\b")
_RGB = re.compile(r"rgba?\(\s*(\d+)\s*,\s*(\d+)\s*,\s*(\d+)")


def _colour(value: str | None) -> tuple[int, int, int] | None:
    """The first colour in a CSS value or attribute (hex, rgb(), a few names), or None."""
    if not value:
        return None
    value = value.lower()
    hex_match = _HEX.search(value)
    if hex_match:
        digits = hex_match.group(1)
        digits = "".join(c * 2 for c in digits) if len(digits) == 3 else digits
        return int(digits[0:2], 16), int(digits[2:4], 16), int(digits[4:6], 16)
    rgb = _RGB.search(value)
    if rgb:
        return int(rgb.group(1)), int(rgb.group(2)), int(rgb.group(3))
    for name, code in NAMED.items():
        if re.search(rf"\b{name}\b", value):
            return _colour(code)
    return None


def _styles(style: str | None) -> dict[str, str]:
    found = {}
    for declaration in (style or "").split(";"):
        name, _, value = declaration.partition(":")
        if value:
            found[name.strip().lower()] = value.replace("!important", "").strip()
    return found


def _luminance(rgb: tuple[int, int, int]) -> float:
    def channel(c: int) -> float:
        s = c / 255
        return s / 12.92 if s <= 0.03928 else ((s + 0.055) / 1.055) ** 2.4

    r, g, b = (channel(c) for c in rgb)
    return 0.2126 * r + 0.7152 * g + 0.0722 * b


def contrast(one: tuple[int, int, int], two: tuple[int, int, int]) -> float:
    """WCAG 2 contrast ratio, 1 (same) to 21 (black on white)."""
    light, dark = sorted((_luminance(one), _luminance(two)), reverse=True)
    return (light + 0.05) / (dark + 0.05)


class _Texts(HTMLParser):
    """Every piece of visible-by-markup text with the colour and background it gets."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        # (tag, colour, background) per open element; the page starts black on white
        self.stack: list[tuple[str, tuple[int, int, int], tuple[int, int, int]]] = [("", (0, 0, 0), (255, 255, 255))]
        self.skip = 0  # inside <head>: <title> and <style> are no text on the page
        self.found: list[tuple[str, tuple[int, int, int], tuple[int, int, int]]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "head":
            self.skip += 1
        if tag in VOID:
            return
        attributes = dict(attrs)
        style = _styles(attributes.get("style"))
        _, colour, background = self.stack[-1]
        colour = _colour(style.get("color")) or (_colour(attributes.get("color")) if tag == "font" else None) or colour
        background = (_colour(style.get("background-color")) or _colour(style.get("background"))
                      or _colour(attributes.get("bgcolor")) or background)
        self.stack.append((tag, colour, background))

    def handle_endtag(self, tag: str) -> None:
        if tag == "head":
            self.skip -= 1
        for depth in range(len(self.stack) - 1, 0, -1):
            if self.stack[depth][0] == tag:
                del self.stack[depth:]
                return

    def handle_data(self, data: str) -> None:
        if data.strip() and not self.skip:
            _, colour, background = self.stack[-1]
            self.found.append((" ".join(data.split()), colour, background))


def low_contrast(html: str) -> list[str]:
    """Each text whose colour is too close to its background, with both colours."""
    parser = _Texts()
    parser.feed(html)
    parser.close()
    assert parser.found, "no text found: the checker read nothing"
    return [f"{text[:40]!r}: {fg} on {bg} ({contrast(fg, bg):.2f}:1)" for text, fg, bg in parser.found
            if contrast(fg, bg) < MIN_RATIO]


def test_the_checker_sees_text_painted_in_its_background():
    hidden = '<body style="background: #f3f5f8"><div style="display:none;color:#f3f5f8">Vorschau</div><p>Text</p></body>'
    assert low_contrast(hidden) == ["'Vorschau': (243, 245, 248) on (243, 245, 248) (1.00:1)"]
    grey = '<table bgcolor="#ffffff"><tr><td><font color="#cccccc">leise</font></td></tr></table>'
    assert len(low_contrast(grey)) == 1
    assert low_contrast('<td style="background-color: #0b4f8a"><a style="color: #ffffff">Mehr</a></td>') == []


def _digest(language: str) -> bytes:
    settings = make_settings()
    composer = DigestComposer(settings)
    listings = [
        ListingView(f"Entwickler/in {n}", f"https://jobs.example.org/stellen/{n}", "Beispiel GmbH", "Berlin", "IT",
                    date(2026, 11, 3), "Wir suchen Verstärkung für unser Team.",
                    salary="52.000–68.000 € im Jahr", types=("Vollzeit",), remote=n % 2 == 0)
        for n in range(5)
    ]
    variant = composer.render_variant(language, "Python", "Berlin", listings, 40, date(2026, 11, 4), variant_id=3)
    data, _ = composer.build(variant, "leser@example.org", "PREFS", "UNSUB", "digest:newsletter")
    return data


def _html(data: bytes) -> str:
    from email import message_from_bytes, policy

    return message_from_bytes(data, policy=policy.default).get_body(("html",)).get_content()


@pytest.mark.parametrize("language", ["de", "en"])
def test_digest_text_stands_out_from_its_background(language):
    assert low_contrast(_html(_digest(language))) == []


@pytest.mark.parametrize("language", ["de", "en"])
def test_transactional_mail_text_stands_out_from_its_background(language):
    composed = Renderer(make_settings()).render("welcome", language, preferences_url="http://newsletter.test/p/X",
                                                unsubscribe_url="http://newsletter.test/u/X")
    assert low_contrast(composed.html) == []


# CI installs SpamAssassin (.ci/install-spamassassin) and sets this to "require": there a
# missing one fails the check instead of skipping it.
SPAMASSASSIN_MODE = os.environ.get("NEWSLETTER_TEST_SPAMASSASSIN", "auto")


@pytest.mark.parametrize("language", ["de", "en"])
def test_spamassassin_finds_no_low_contrast_text(language, tmp_path):
    if shutil.which("spamassassin") is None:
        if SPAMASSASSIN_MODE == "require":
            pytest.fail("spamassassin is not installed; NEWSLETTER_TEST_SPAMASSASSIN=require")
        pytest.skip("spamassassin is not installed here (.ci/install-spamassassin installs it)")
    report = subprocess.run(["spamassassin", "-L", "-t"], input=_digest(language), capture_output=True,
                            timeout=120, check=True).stdout.decode("utf-8", "replace")
    assert "Content analysis details" in report
    assert "HTML_FONT_LOW_CONTRAST" not in report
