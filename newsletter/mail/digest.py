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
"""

from __future__ import annotations

import binascii
import secrets
from dataclasses import dataclass
from datetime import UTC, date, datetime
from email.header import Header
from email.utils import format_datetime, formataddr, parseaddr
from functools import cached_property
from urllib.parse import quote

from newsletter.config import Settings
from newsletter.mail.dkim import signer_for
from newsletter.mail.compose import Renderer, list_id_header, list_unsubscribe, safe_header
from newsletter.models import Listing

PREFS, UNSUB = 0, 1  # the two reader slots: preferences link, unsubscribe link
_SLOT_LETTERS = "pu"  # a marker is the render's stem and one of these


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
    """What a digest shows of a listing (all of it plain text; templates escape it)."""

    title: str
    url: str
    company: str
    location: str
    category: str
    published: date
    snippet: str


def snippet(description: str, limit: int = 200) -> str:
    text = " ".join(description.split())
    if len(text) <= limit:
        return text
    cut = text[:limit].rsplit(" ", 1)[0]
    return cut.rstrip(",.;:–-") + " …"


def view(listing: Listing, tz: object) -> ListingView:
    published = listing.published_at.replace(tzinfo=UTC).astimezone(tz).date()  # type: ignore[arg-type]
    return ListingView(
        listing.title, listing.url, listing.company, listing.location, listing.category, published,
        snippet(listing.description),
    )


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
    def _prefs_prefix(self) -> str:
        return self.settings.url("/preferences/")

    @cached_property
    def _unsub_prefix(self) -> str:
        return self.settings.url("/unsubscribe/")

    def more_url(self, keywords: str, location: str) -> str:
        return self.settings.board_search_url.format(
            keywords=quote(keywords, safe=""), location=quote(location, safe="")
        )

    def render_variant(
        self, language: str, keywords: str, location: str, listings: list[ListingView], total: int, edition_date: date
    ) -> VariantMail:
        """Render the digest body for every reader of this variant and language."""
        stem = f"zz{secrets.token_hex(16)}"
        prefs, unsub = _Slot(stem + _SLOT_LETTERS[PREFS]), _Slot(stem + _SLOT_LETTERS[UNSUB])
        composed = self.renderer.render(
            "digest", language, listings=listings, count=len(listings), total=total,
            more_url=self.more_url(keywords, location) if total > len(listings) else None,
            keywords=keywords, location=location, edition_date=edition_date, board_url=self.settings.board_url,
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
