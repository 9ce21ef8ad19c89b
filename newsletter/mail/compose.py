"""Compose mail from a templates/email pair and build the MIME bytes. No I/O beyond reading
templates: sending is transport.py's job (DESIGN convention 4)."""

from __future__ import annotations

import re
import textwrap
from dataclasses import dataclass
from datetime import UTC
from email import policy
from email.header import Header
from email.headerregistry import Address
from email.message import EmailMessage
from email.utils import format_datetime, formataddr, make_msgid, parseaddr
from functools import cached_property
from typing import Any

import css_inline
import idna
from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape

from newsletter.subscribers import consent
from newsletter.config import Settings
from newsletter.models import utcnow
from newsletter.paths import email_templates_dir

_SUBJECT_LINE = re.compile(r"\ASubject: (?P<subject>[^\r\n]+)\r?\n\r?\n?")
MAX_LINE = 998  # RFC 5322 2.1.1, without the CRLF
_BAD_HEADER_CHARS = re.compile(r"[\x00-\x1f\x7f]")


class MailBuildError(Exception):
    """A mail could not be built: a template, a header or the DKIM key failed. That is ours
    to fix, not the reader's fault, and may well hit every mail: the mail waits for a retry
    (until the give-up time) and the operator gets an alarm, instead of its job crashing and
    the reconciler handing the same mail on to crash again."""

    ALARM = "mail_build"


class UnsafeHeader(ValueError):
    """A header value would carry a control character (CR/LF injection, STANDARDS 27)."""


@dataclass(frozen=True)
class Composed:
    """A rendered mail before it has headers: subject, plain text and inlined HTML."""

    subject: str
    text: str
    html: str


class Renderer:
    """Renders the .txt/.html pair of a mail in a language; the .txt starts with `Subject: `."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    @cached_property
    def env(self) -> Environment:
        env = Environment(
            loader=FileSystemLoader(str(email_templates_dir())),
            autoescape=select_autoescape(enabled_extensions=("html",), default_for_string=False),
            undefined=StrictUndefined,
            keep_trailing_newline=True,
        )
        return env

    @cached_property
    def inliner(self) -> css_inline.CSSInliner:
        # Remote stylesheets stay off: a mail build must never reach the network.
        return css_inline.CSSInliner(load_remote_stylesheets=False, keep_at_rules=True)

    def warm(self) -> Renderer:
        """Compile every mail template and build the inliner now: a worker does this once
        at start, so its first mail waits for nothing and no job compiles anything."""
        for name in self.env.list_templates(filter_func=lambda n: n.endswith((".txt", ".html"))):
            self.env.get_template(name)
        self.inliner  # noqa: B018 - building it is the point
        return self

    def render(self, name: str, language: str, **context: Any) -> Composed:
        """Render templates/email/<language>/<name>.txt and .html with `context`."""
        lang = language if language in ("de", "en") else "de"
        base = {
            "settings": self.settings,
            "list_name": self.settings.list_name,
            "impressum": self.settings.impressum,
            "sender_address": self.settings.mail_from_address,
            "every": consent.every(lang, self.settings.digest_interval_days),
            "lang": lang,
        }
        base.update(context)
        raw_text = self.env.get_template(f"{lang}/{name}.txt").render(base)
        match = _SUBJECT_LINE.match(raw_text)
        if match is None:
            raise ValueError(f"templates/email/{lang}/{name}.txt must start with a 'Subject: ' line")
        subject = match.group("subject").strip()
        text = wrap_text(raw_text[match.end():])
        html = self.inliner.inline(self.env.get_template(f"{lang}/{name}.html").render(base))
        return Composed(subject=subject, text=text, html=html)


TEXT_WIDTH = 76


def wrap_text(text: str) -> str:
    """Lines of a text part wrapped at 76 columns (RFC 5322 2.1.1 asks for 78 at most), as
    the settings (list name, Impressum) make them longer; a line with a link stays whole,
    or the link would break."""
    if all(len(line) <= TEXT_WIDTH for line in text.splitlines()):
        return text
    out = []
    for line in text.split("\n"):
        if len(line) <= TEXT_WIDTH or "://" in line:
            out.append(line)
        else:
            indent = line[: len(line) - len(line.lstrip())]  # a listing's indented lines stay indented
            out.extend(textwrap.wrap(line.lstrip(), TEXT_WIDTH, initial_indent=indent, subsequent_indent=indent,
                                     break_long_words=False, break_on_hyphens=False) or [""])
    return "\n".join(out)


def ascii_address(address: str) -> str | None:
    """The address with its domain as A-labels, or None when the local part needs SMTPUTF8."""
    local, _, domain = address.rpartition("@")
    if not local.isascii():
        return None
    try:
        ascii_domain = domain if domain.isascii() else idna.encode(domain, uts46=True).decode("ascii")
    except idna.IDNAError:
        return None
    return f"{local}@{ascii_domain}"


def safe_header(value: str) -> str:
    """Refuse control characters in anything that goes into a header."""
    if _BAD_HEADER_CHARS.search(value):
        raise UnsafeHeader(f"control character in header value {value[:40]!r}")
    return value


def build_message(
    settings: Settings,
    composed: Composed,
    *,
    to: str,
    headers: dict[str, str] | None = None,
    utf8: bool = False,
) -> tuple[bytes, str]:
    """The RFC 5322 bytes of a multipart/alternative mail (text first, HTML last) to `to`,
    and its Message-ID. `utf8` lets non-ASCII addresses through (only when the relay has
    SMTPUTF8)."""
    msg = EmailMessage(policy=policy.SMTPUTF8 if utf8 else policy.SMTP)
    display, from_addr = parseaddr(settings.mail_from)
    from_local, _, from_domain = from_addr.rpartition("@")
    msg["From"] = Address(display_name=display, username=from_local, domain=from_domain)
    to_local, _, to_domain = to.rpartition("@")
    msg["To"] = Address(username=to_local, domain=to_domain)
    msg["Subject"] = safe_header(composed.subject)
    msg["Date"] = format_datetime(utcnow().replace(tzinfo=UTC))
    message_id = make_msgid(domain=settings.mail_domain)
    msg["Message-ID"] = message_id
    msg["Auto-Submitted"] = "auto-generated"
    msg["X-Auto-Response-Suppress"] = "OOF, AutoReply"
    verbatim: list[bytes] = []
    for name, value in (headers or {}).items():
        line = f"{name}: {safe_header(value)}"
        if not line.isascii() or len(line) > MAX_LINE:
            raise UnsafeHeader(f"{name}: not ASCII or longer than a line; encode it first")
        verbatim.append(line.encode("ascii"))
    msg.set_content(composed.text, subtype="plain", charset="utf-8", cte="quoted-printable")
    msg.add_alternative(composed.html, subtype="html", charset="utf-8", cte="quoted-printable")
    for part in msg.iter_parts():
        del part["MIME-Version"]  # add_alternative gives the HTML part one; it belongs on top only
    head, blank, body = msg.as_bytes().partition(b"\r\n\r\n")
    # The email package folds at 78 columns, and a header with no place to fold (a long
    # List-Unsubscribe URL) it turns into encoded-words: "=?utf-8?q?=3Chttps=3A//...".
    # Mailbox providers read the raw header, so one-click unsubscribe would be lost
    # (RFC 8058). ASCII headers of ours therefore go in verbatim, up to RFC 5322's 998.
    return b"\r\n".join([head, *verbatim]) + blank + body, message_id


def list_id_header(settings: Settings) -> str:
    """List-Id (RFC 2919): the list's name as a phrase, RFC 2047 encoded when it is not
    ASCII ("Stellenbörse"), and the id itself always raw between angle brackets. One line:
    a long name becomes several encoded-words of at most 75 characters each (RFC 2047 2),
    separated by spaces, which decoders drop between encoded-words."""
    name = safe_header(settings.list_name)
    if name.isascii():
        return formataddr((name, settings.effective_list_id))
    words = Header(name, "utf-8", maxlinelen=75).encode(linesep="\n").split()
    return f"{' '.join(words)} <{settings.effective_list_id}>"


def list_headers(settings: Settings, unsubscribe_url: str, mailto: str | None = None) -> dict[str, str]:
    """The RFC 2369/2919/8058 headers of every mail to a confirmed subscriber; `mailto` is
    the reader's unsubscribe address (mailto_address), offered after the https link for
    the clients that use only a mailto: (RFC 2369)."""
    return {
        "List-Id": list_id_header(settings),
        "List-Unsubscribe": list_unsubscribe(unsubscribe_url, mailto),
        "List-Unsubscribe-Post": "List-Unsubscribe=One-Click",
    }


def list_unsubscribe(unsubscribe_url: str, mailto: str | None) -> str:
    """The https link first (RFC 8058 one-click), then the mailto: when there is one."""
    if mailto is None:
        return f"<{unsubscribe_url}>"
    return f"<{unsubscribe_url}>, <mailto:{mailto}?subject=unsubscribe>"


def verp_sender(settings: Settings, tag: str) -> str:
    """The envelope sender for one recipient: bounces+TAG@domain, so a bounce names its mail."""
    local, _, domain = settings.effective_bounce_address.rpartition("@")
    return f"{local}+{tag}@{domain}"


# RFC 5321 4.5.3.1.1: a local part holds 64 octets at most.
MAX_LOCAL_PART = 64


def mailto_address(settings: Settings, tag: str) -> str | None:
    """The reader's List-Unsubscribe mailto: address, bounces+TAG@domain: it arrives in the
    bounce mailbox, where `newsletter bounces process` reads it. None when the configured
    bounce address leaves no room for the tag in a local part."""
    address = verp_sender(settings, tag)
    return address if len(address.rpartition("@")[0]) <= MAX_LOCAL_PART else None


def tag_of(settings: Settings, address: str) -> str | None:
    """The TAG of an address of ours of the form bounces+TAG@domain (any case), else None."""
    local, _, domain = settings.effective_bounce_address.rpartition("@")
    their_local, at, their_domain = address.strip().strip("<>").rpartition("@")
    if not at or their_domain.lower() != domain.lower():
        return None
    prefix = local + "+"
    if not their_local.lower().startswith(prefix.lower()) or len(their_local) == len(prefix):
        return None
    return their_local[len(prefix):]
