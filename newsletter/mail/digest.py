"""Composing digest mail cheaply: the body of each (variant, language) is rendered once; each
reader's mail only fills in their two links, quoted-printable encodes the lines that hold
them and puts the MIME parts together (DESIGN convention 10).

Where a reader's links go is decided by our templates alone, never by searching the
rendered text: the two link slots render as markers made of a fresh random nonce, drawn
after the listings were read, and the body is cut at those markers into literal pieces and
slots. Text from outside (listings, the reader's search) is only ever a literal piece, so
whatever it contains (an old marker, `{{ … }}`, `*|UNSUB|*`) is shown as it is and never
receives a reader's token (STANDARDS 26). A render whose markers do not appear exactly as
often as the template placed them is refused rather than sent.

The "view in the browser" link at the top is no slot: it names the variant and language
only (tokens.digest_web), is the same for every reader of the variant, and is rendered
into the body once like any other text of ours. Previews get a placeholder instead. The
web version itself (`render_web_page`) is the same render with the two reader links
pointing at the /manage page instead of slots: no reader's token on a page anyone with
the link can open.

A listing's job facts (salary, job types, remote) are worded here, in the digest's
language, with Babel's number and currency formats.
"""

from __future__ import annotations

import binascii
import math
import re
import secrets
from dataclasses import dataclass
from datetime import UTC, date, datetime
from email.header import Header
from email.utils import format_datetime, formataddr, parseaddr
from functools import cached_property
from typing import Any
from urllib.parse import quote

from babel import Locale
from babel.numbers import format_currency, format_decimal

from newsletter.config import Settings
from newsletter.listings import criteria
from newsletter.mail.compose import Renderer, list_id_header, list_unsubscribe, safe_header
from newsletter.mail.dkim import signer_for
from newsletter.models import Listing
from newsletter.tokens import Tokens, tokens_for

PREFS, UNSUB = 0, 1  # the two reader slots: preferences link, unsubscribe link
_SLOT_LETTERS = "pu"  # a marker is the render's stem and one of these
WEB_PATH = "/digest/"
# The web link of a digest that belongs to no edition's variant (admin preview, test mail,
# doctor): it opens nothing (GET answers 404), as the preview's reader links do.
WEB_PLACEHOLDER = "PREVIEW"


class SlotMismatch(ValueError):
    """A rendered digest holds a slot marker where the template put none."""


class _Slot:
    """What a template prints for a reader's link: the render's marker, counted, so that
    the cut afterwards can prove every marker came from the template."""

    def __init__(self, marker: str) -> None:
        self.marker = marker
        self.printed = 0

    def __str__(self) -> str:
        self.printed += 1
        return self.marker

    def __html__(self) -> str:  # autoescape asks for this: the marker is already safe
        return str(self)


# A line of a body: quoted-printable bytes (no reader link in it), or pieces to join per
# reader: literal text and slot numbers.
Piece = str | int
Part = bytes | tuple[Piece, ...]


@dataclass(frozen=True)
class ListingView:
    """What a digest shows of a listing (all of it plain text; templates escape it). The
    job facts are already worded in the digest's language; empty when the feed gave none."""

    title: str
    url: str
    company: str
    location: str
    category: str
    published: date
    snippet: str
    salary: str = ""
    types: tuple[str, ...] = ()
    remote: bool = False

    @property
    def facts(self) -> list[str]:
        """The job facts line's items: salary, job types, "Remote"."""
        return [item for item in (self.salary, ", ".join(self.types), "Remote" if self.remote else "") if item]


# -- job facts in words ----------------------------------------------------------------------

_LOCALES = {"de": "de_DE", "en": "en_GB"}
TYPE_LABELS = {
    "de": {"full_time": "Vollzeit", "part_time": "Teilzeit", "student": "Werkstudent/in",
           "internship": "Praktikum", "apprenticeship": "Ausbildung", "freelance": "Freiberuflich"},
    "en": {"full_time": "Full-time", "part_time": "Part-time", "student": "Working student",
           "internship": "Internship", "apprenticeship": "Apprenticeship", "freelance": "Freelance"},
}
_UNITS = {
    "de": {"year": "im Jahr", "month": "im Monat", "hour": "pro Stunde"},
    "en": {"year": "per year", "month": "per month", "hour": "per hour"},
}
_FROM, _UP_TO = {"de": "ab", "en": "from"}, {"de": "bis", "en": "up to"}
_CURRENCY = re.compile(r"[A-Z]{3}")
# Above this a figure is a feed's mistake (cents, a typo), not a salary worth printing.
_MAX_AMOUNT = 10_000_000


def _amount(value: object) -> float | None:
    """A salary figure worth showing, or None (missing, zero, negative, not finite, absurd)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value) if math.isfinite(value) and 0 < value < _MAX_AMOUNT else None


def salary_text(low: object, high: object, currency: str | None, unit: str | None, language: str) -> str:
    """A listing's salary as the digest prints it ("52.000–68.000 € im Jahr", "€17.50 per
    hour", "ab 52.000 € im Jahr"), or "" without one. Whole amounts without decimals; an
    hourly amount that is not whole with two. The currency is an ISO code (EUR when the feed
    gave none); Babel writes its symbol or code where the language puts it."""
    lang = language if language in _LOCALES else "de"
    lo, hi = _amount(low), _amount(high)
    if lo is None and hi is None:
        return ""
    code = (currency or "EUR").strip().upper()
    if not _CURRENCY.fullmatch(code):
        return ""
    if lo is not None and hi is not None and lo > hi:
        lo, hi = hi, lo
    locale = _LOCALES[lang]
    cents = unit == "hour" and any(v is not None and v != round(v) for v in (lo, hi))
    pattern = Locale.parse(locale).currency_formats["standard"].pattern  # "#,##0.00 ¤" / "¤#,##0.00"
    if not cents:
        pattern = pattern.replace(".00", "")
        lo, hi = (None if v is None else float(round(v)) for v in (lo, hi))
    number = "#,##0.00" if cents else "#,##0"

    def money(value: float) -> str:
        return format_currency(value, code, format=pattern, locale=locale, currency_digits=False)

    def plain(value: float) -> str:
        return format_decimal(value, format=number, locale=locale)

    if lo is not None and hi is not None and lo != hi:
        # The currency once, where the language writes it: "52.000–68.000 €", "€52,000–68,000".
        text = f"{money(lo)}–{plain(hi)}" if pattern.startswith("¤") else f"{plain(lo)}–{money(hi)}"
    elif lo is not None and hi is not None:
        text = money(lo)
    elif lo is not None:
        text = f"{_FROM[lang]} {money(lo)}"
    else:
        text = f"{_UP_TO[lang]} {money(hi)}"  # type: ignore[arg-type]
    per = _UNITS[lang].get(unit or "")
    # Babel joins amount and symbol with a no-break space; a plain one reads, copies and
    # searches as readers expect ("52.000 €") in a text part and in every mail program.
    text = text.replace("\u00a0", " ").replace("\u202f", " ")
    return f"{text} {per}" if per else text


def type_labels(stored: str | None, language: str) -> tuple[str, ...]:
    """A listing's job types (criteria's stored form) as words, in criteria's order."""
    labels = TYPE_LABELS.get(language, TYPE_LABELS["de"])
    chosen = criteria.split_types(stored or "")
    return tuple(labels[kind] for kind in criteria.EMPLOYMENT_TYPES if kind in chosen)


def snippet(description: str, limit: int = 200) -> str:
    text = " ".join(description.split())
    if len(text) <= limit:
        return text
    cut = text[:limit].rsplit(" ", 1)[0]
    return cut.rstrip(",.;:–-") + " …"


def view(listing: Listing, tz: object, language: str = "de") -> ListingView:
    """What a digest in `language` shows of `listing` (an ORM object or a Core row)."""
    published = listing.published_at.replace(tzinfo=UTC).astimezone(tz).date()  # type: ignore[arg-type]
    return ListingView(
        listing.title, listing.url, listing.company, listing.location, listing.category, published,
        snippet(listing.description),
        salary=salary_text(listing.salary_min, listing.salary_max, listing.salary_currency, listing.salary_unit,
                           language),
        types=type_labels(listing.employment_type, language),
        remote=bool(listing.remote),
    )


_ON_SITE = {"de": {"no": "nur vor Ort", "only": "nur remote"}, "en": {"no": "on site only", "only": "remote only"}}


@dataclass(frozen=True)
class SearchExtras:
    """What a reader's search holds besides keywords and place (a variant's columns)."""

    radius: int = 0
    remote: str = criteria.DEFAULT_REMOTE
    employment_type: str = ""

    def notes(self, language: str) -> list[str]:
        """The search's remote wish and job types in words, for "Your search: …"."""
        lang = language if language in _ON_SITE else "de"
        return [note for note in (_ON_SITE[lang].get(self.remote, ""),
                                  ", ".join(type_labels(self.employment_type, lang))) if note]


def _context(settings: Settings, keywords: str, location: str, listings: list[ListingView], total: int,
             edition_date: date, web_url: str | None, search: SearchExtras, language: str) -> dict[str, Any]:
    """What the digest templates get besides the reader links."""
    more = settings.board_search_url.format(keywords=quote(keywords, safe=""), location=quote(location, safe=""))
    return {
        "listings": listings, "count": len(listings), "total": total,
        "more_url": more if total > len(listings) else None,
        "keywords": keywords, "location": location, "edition_date": edition_date, "board_url": settings.board_url,
        "web_url": web_url, "radius": search.radius if location else 0, "search_notes": search.notes(language),
    }


def render_web_page(renderer: Renderer, language: str, keywords: str, location: str, listings: list[ListingView],
                    total: int, edition_date: date, search: SearchExtras | None = None) -> str:
    """The digest's HTML as the web version shows it: no "view in the browser" link (this
    is the browser), and the reader links lead to /manage, where a reader asks for their
    own link by mail; no token of anyone's on a page whoever holds the link may open."""
    settings = renderer.settings
    manage = settings.url("/manage")
    composed = renderer.render(
        "digest", language,
        **_context(settings, keywords, location, listings, total, edition_date, None, search or SearchExtras(), language),
        preferences_token="", unsubscribe_token="", preferences_url=manage, unsubscribe_url=manage,
    )
    return composed.html


@dataclass(frozen=True)
class VariantMail:
    """The rendered body of one (variant, language), cut into literal text and reader slots."""

    subject_header: str  # already RFC 2047 encoded
    text_parts: tuple[Part, ...]
    html_parts: tuple[Part, ...]


class DigestComposer:
    """Renders variants and builds each reader's message bytes."""

    def __init__(self, settings: Settings, renderer: Renderer | None = None) -> None:
        self.settings = settings
        self.renderer = renderer or Renderer(settings)
        self.signer = signer_for(settings)
        display, address = parseaddr(settings.mail_from)
        self.from_header = formataddr((display, address), charset="utf-8")
        self.list_id = list_id_header(settings)

    @cached_property
    def _tokens(self) -> Tokens:
        return tokens_for(self.settings)

    @cached_property
    def _prefs_prefix(self) -> str:
        return self.settings.url("/preferences/")

    @cached_property
    def _unsub_prefix(self) -> str:
        return self.settings.url("/unsubscribe/")

    def web_url(self, variant_id: int | None, language: str) -> str:
        """The "view in the browser" link of a variant's digest in `language`; for None (a
        digest of no edition: a preview) the placeholder link, which opens nothing."""
        token = WEB_PLACEHOLDER if variant_id is None else self._tokens.digest_web(variant_id, language)
        return self.settings.url(WEB_PATH) + token

    def render_variant(
        self, language: str, keywords: str, location: str, listings: list[ListingView], total: int,
        edition_date: date, variant_id: int | None = None, search: SearchExtras | None = None,
    ) -> VariantMail:
        """Render the digest body for every reader of this variant and language.
        `variant_id`: the edition variant whose web version the mail links to; None for a
        digest of no edition (preview, test mail), which links to the placeholder."""
        lang = language if language in _LOCALES else "de"  # as the Renderer falls back
        stem = f"zz{secrets.token_hex(16)}"
        prefs, unsub = _Slot(stem + _SLOT_LETTERS[PREFS]), _Slot(stem + _SLOT_LETTERS[UNSUB])
        composed = self.renderer.render(
            "digest", language,
            **_context(self.settings, keywords, location, listings, total, edition_date, self.web_url(variant_id, lang),
                       search or SearchExtras(), lang),
            preferences_token=prefs, unsubscribe_token=unsub,
            preferences_url=self._prefs_prefix, unsubscribe_url=self._unsub_prefix,
        )
        subject = Header(safe_header(composed.subject), "utf-8", header_name="Subject").encode(linesep="\r\n")
        found = composed.text.count(stem) + composed.html.count(stem)
        if found != prefs.printed + unsub.printed:
            raise SlotMismatch(f"{found} link slots in the rendered digest, {prefs.printed + unsub.printed} placed")
        return VariantMail(subject, _qp_parts(composed.text, stem), _qp_parts(composed.html, stem))

    def build(
        self, variant: VariantMail, to: str, prefs_token: str, unsub_token: str, feedback_id: str, utf8: bool = False,
        mailto: str | None = None,
    ) -> tuple[bytes, str]:
        """One reader's message: their links filled in (`mailto`: their List-Unsubscribe
        mailto: address, if any); returns (bytes, Message-ID)."""
        # Quoted-printable encoding was most of a message's cost; only the lines with a
        # reader's link are encoded per reader, the rest once per variant.
        text = _fill(variant.text_parts, prefs_token, unsub_token)
        html = _fill(variant.html_parts, prefs_token, unsub_token)
        unsubscribe_url = self._unsub_prefix + unsub_token
        boundary = "=_" + secrets.token_hex(12)
        message_id = f"<{secrets.token_hex(16)}@{self.settings.mail_domain}>"
        now = datetime.now(UTC)
        headers = (
            f"From: {self.from_header}\r\n"
            f"To: {to}\r\n"
            f"Subject: {variant.subject_header}\r\n"
            f"Date: {format_datetime(now)}\r\n"
            f"Message-ID: {message_id}\r\n"
            f"List-Id: {self.list_id}\r\n"
            f"List-Unsubscribe: {list_unsubscribe(unsubscribe_url, mailto)}\r\n"
            "List-Unsubscribe-Post: List-Unsubscribe=One-Click\r\n"
            f"Feedback-ID: {feedback_id}\r\n"
            "Auto-Submitted: auto-generated\r\n"
            "X-Auto-Response-Suppress: OOF, AutoReply\r\n"
            "MIME-Version: 1.0\r\n"
            f'Content-Type: multipart/alternative; boundary="{boundary}"\r\n'
            "\r\n"
        )
        body = b"".join(
            (
                f"--{boundary}\r\nContent-Type: text/plain; charset=\"utf-8\"\r\n"
                "Content-Transfer-Encoding: quoted-printable\r\n\r\n".encode(),
                text,
                f"\r\n--{boundary}\r\nContent-Type: text/html; charset=\"utf-8\"\r\n"
                "Content-Transfer-Encoding: quoted-printable\r\n\r\n".encode(),
                html,
                f"\r\n--{boundary}--\r\n".encode(),
            )
        )
        message = headers.encode("utf-8" if utf8 else "ascii") + body
        if self.signer is not None:
            message = self.signer.sign(message)
        return message, message_id


def _qp(text: str) -> bytes:
    """Quoted-printable with CRLF line ends (binascii: C speed, lines ≤ 76)."""
    encoded = binascii.b2a_qp(text.replace("\r\n", "\n").encode("utf-8"), quotetabs=False, istext=True)
    return encoded.replace(b"\n", b"\r\n")


def _qp_parts(text: str, stem: str) -> tuple[Part, ...]:
    """`text` as runs of whole lines: runs without a slot already quoted-printable (bytes),
    each line with a slot as its pieces for `_fill`. b2a_qp encodes line by line (its line
    length restarts at every line break), so the encoded runs joined are the bytes `_qp`
    makes of the whole. A CR next to a line break would switch b2a_qp's line ends for the
    whole text: text with any CR left stays one line of pieces."""
    plain = text.replace("\r\n", "\n")
    lines = [text] if "\r" in plain else plain.split("\n")
    parts: list[Part] = []
    run: list[str] = []
    for index, line in enumerate(lines):
        piece = line + "\n" if index < len(lines) - 1 else line
        if stem not in piece:
            run.append(piece)
            continue
        if run:
            parts.append(_qp("".join(run)))
            run = []
        parts.append(_pieces(piece, stem))
    if run:
        parts.append(_qp("".join(run)))
    return tuple(parts)


def _pieces(line: str, stem: str) -> tuple[Piece, ...]:
    """A line cut at the stem: each cut is followed by its slot letter (the count in
    render_variant proved every stem is a marker the template printed)."""
    head, *rest = line.split(stem)
    pieces: list[Piece] = [head] if head else []
    for chunk in rest:
        pieces.append(_SLOT_LETTERS.index(chunk[0]))
        if chunk[1:]:
            pieces.append(chunk[1:])
    return tuple(pieces)


def _fill(parts: tuple[Part, ...], prefs_token: str, unsub_token: str) -> bytes:
    """The quoted-printable body of one reader: their tokens put into the slots, and only there."""
    tokens = (prefs_token, unsub_token)
    return b"".join(
        part if isinstance(part, bytes)
        else _qp("".join(tokens[p] if isinstance(p, int) else p for p in part))
        for part in parts
    )
