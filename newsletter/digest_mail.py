"""Composing digest mail cheaply: the body of each (variant, language) is rendered once with
placeholder links; each reader's mail only fills in their two links, quoted-printable
encodes and puts the MIME parts together (DESIGN convention 10).
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

from .config import Settings
from .dkim_signing import signer_for
from .mail import Renderer, list_id_header, safe_header
from .models import Listing

PREFS_PLACEHOLDER = "zzNEWSLETTERPREFSzz"
UNSUB_PLACEHOLDER = "zzNEWSLETTERUNSUBzz"


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
    """The rendered body of one (variant, language): placeholders where reader links go."""

    subject_header: str  # already RFC 2047 encoded
    text: str
    html: str

    @cached_property
    def text_parts(self) -> tuple[bytes | str, ...]:
        return _qp_parts(self.text)

    @cached_property
    def html_parts(self) -> tuple[bytes | str, ...]:
        return _qp_parts(self.html)


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
    def _prefs_url(self) -> str:
        return self.settings.url(f"/preferences/{PREFS_PLACEHOLDER}")

    @cached_property
    def _unsub_url(self) -> str:
        return self.settings.url(f"/unsubscribe/{UNSUB_PLACEHOLDER}")

    def more_url(self, keywords: str, location: str) -> str:
        return self.settings.board_search_url.format(
            keywords=quote(keywords, safe=""), location=quote(location, safe="")
        )

    def render_variant(
        self, language: str, keywords: str, location: str, listings: list[ListingView], total: int, edition_date: date
    ) -> VariantMail:
        """Render the digest body for every reader of this variant and language."""
        composed = self.renderer.render(
            "digest", language, listings=listings, count=len(listings), total=total,
            more_url=self.more_url(keywords, location) if total > len(listings) else None,
            keywords=keywords, location=location, edition_date=edition_date, board_url=self.settings.board_url,
            preferences_url=self._prefs_url, unsubscribe_url=self._unsub_url,
        )
        subject = Header(safe_header(composed.subject), "utf-8", header_name="Subject").encode(linesep="\r\n")
        return VariantMail(subject, composed.text, composed.html)

    def build(
        self, variant: VariantMail, to: str, prefs_token: str, unsub_token: str, feedback_id: str, utf8: bool = False
    ) -> tuple[bytes, str]:
        """One reader's message: their links filled in; returns (bytes, Message-ID)."""
        # Quoted-printable encoding was most of a message's cost; only the lines with a
        # reader's link are encoded per reader, the rest once per variant.
        text = _fill(variant.text_parts, prefs_token, unsub_token)
        html = _fill(variant.html_parts, prefs_token, unsub_token)
        unsubscribe_url = self._unsub_url.replace(UNSUB_PLACEHOLDER, unsub_token)
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
            f"List-Unsubscribe: <{unsubscribe_url}>\r\n"
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


def _qp_parts(text: str) -> tuple[bytes | str, ...]:
    """`text` as runs of whole lines: runs without a placeholder already quoted-printable
    (bytes), lines with one left as text for `_fill`. b2a_qp encodes line by line (its line
    length restarts at every line break), so the encoded runs joined are the bytes `_qp`
    makes of the whole. A CR next to a line break would switch b2a_qp's line ends for the
    whole text: text with any CR left stays in one piece."""
    plain = text.replace("\r\n", "\n")
    if "\r" in plain:
        return (text,)
    parts: list[bytes | str] = []
    run: list[str] = []
    lines = plain.split("\n")
    for index, line in enumerate(lines):
        piece = line + "\n" if index < len(lines) - 1 else line
        if PREFS_PLACEHOLDER in piece or UNSUB_PLACEHOLDER in piece:
            if run:
                parts.append(_qp("".join(run)))
                run = []
            parts.append(piece)
        else:
            run.append(piece)
    if run:
        parts.append(_qp("".join(run)))
    return tuple(parts)


def _fill(parts: tuple[bytes | str, ...], prefs_token: str, unsub_token: str) -> bytes:
    """The quoted-printable body of one reader: their links put into the pending lines."""
    return b"".join(
        part if isinstance(part, bytes)
        else _qp(part.replace(PREFS_PLACEHOLDER, prefs_token).replace(UNSUB_PLACEHOLDER, unsub_token))
        for part in parts
    )
