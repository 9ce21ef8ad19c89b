"""The parts of a returned mail that reports.py reads, taken from Python's email package
(compat32) without trusting them: the MIME tree walked without recursion and within
limits, report field blocks however the parser left them, the returned original's
headers, header values and addresses as plain text whatever bytes they hold."""

from __future__ import annotations

import re
from collections.abc import Iterator
from email import policy
from email.header import decode_header, make_header
from email.message import Message
from email.parser import HeaderParser
from email.utils import getaddresses

MAX_PARTS = 300  # parts visited in one mail
MAX_DEPTH = 30  # nesting levels visited
MAX_BLOCKS = 500  # field blocks read from one report part

# The returned original (or its headers) next to a report part.
ORIGINAL_TYPES = ("message/rfc822", "message/global", "text/rfc822-headers",
                  "message/rfc822-headers", "text/global-headers", "message/global-headers")
# message/* parts whose payload the parser turned into a message we may look inside.
_ENCLOSING_TYPES = ("message/rfc822", "message/global")
# The type before ";" in DSN fields: "rfc822; a@b", "smtp; 550 ..."
TYPE_PREFIX = re.compile(r"^\s*([A-Za-z0-9][\w.+-]*)\s*;\s*")
# A Message-ID as we write them (RFC 5322 msg-id): printable ASCII, no space or brackets.
# A NUL or another control character in it would fail PostgreSQL's look-up, so a value
# holding one, or non-ASCII, is no Message-ID of ours.
MESSAGE_ID_TEXT = r"<[!-;=?-~]{1,500}>"
_MESSAGE_ID = re.compile(MESSAGE_ID_TEXT)
_XTEXT_CHAR = re.compile(r"\\x\{([0-9A-Fa-f]{2,6})\}")  # RFC 6533 utf-8-addr-xtext


def walk_parts(message: Message) -> Iterator[tuple[Message, list[Message]]]:
    """Every part in document order with the list it sits in, without recursion, at most
    MAX_PARTS parts and MAX_DEPTH levels deep. Enters multiparts and enclosed messages (a
    DSN forwarded as an attachment), not the field blocks of reports."""
    stack: list[tuple[Message, list[Message], int]] = [(message, [message], 0)]
    seen = 0
    while stack and seen < MAX_PARTS:
        part, siblings, depth = stack.pop()
        seen += 1
        yield part, siblings
        if depth >= MAX_DEPTH:
            continue
        payload = _payload(part)
        if not isinstance(payload, list):
            continue
        if part.is_multipart() and part.get_content_maintype() == "multipart":
            children = [p for p in payload if isinstance(p, Message)]
        elif part.get_content_type() in _ENCLOSING_TYPES:
            children = [p for p in payload[:1] if isinstance(p, Message)]
        else:
            continue
        stack.extend((child, children, depth + 1) for child in reversed(children))


def field_blocks(part: Message) -> list[Message]:
    """The header blocks of a report part (DSN per-message and per-recipient fields, ARF
    fields), however the parser left them: as blocks, as one message, or as text."""
    payload = _payload(part)
    if isinstance(payload, list):
        if part.get_content_type() == "message/delivery-status":
            return [b for b in payload[:MAX_BLOCKS] if isinstance(b, Message)]
        # Other message/* types are parsed as one message: its headers are the first
        # block, its body holds the rest.
        first = payload[0] if payload and isinstance(payload[0], Message) else None
        if first is None:
            return []
        rest = _payload(first)
        return [first] + (_parse_blocks(rest) if isinstance(rest, str) else [])
    return _parse_blocks(part_text(part))


def _parse_blocks(text: str) -> list[Message]:
    parser = HeaderParser(policy=policy.compat32)
    chunks = re.split(r"\r?\n[ \t]*\r?\n", text, maxsplit=MAX_BLOCKS)[:MAX_BLOCKS]
    return [parser.parsestr(chunk.strip("\r\n") + "\n") for chunk in chunks if chunk.strip()]


def original_headers(part: Message, siblings: list[Message]) -> Message | None:
    """The headers of the returned original next to a report part (message/rfc822 or
    text/rfc822-headers), or of `part` itself when it is one."""
    candidates = [part] if part.get_content_type() in ORIGINAL_TYPES else []
    index = next((i for i, p in enumerate(siblings) if p is part), -1)
    candidates += siblings[index + 1:] + siblings[:max(index, 0)]
    for candidate in candidates:
        if candidate.get_content_type() not in ORIGINAL_TYPES:
            continue
        payload = _payload(candidate)
        if isinstance(payload, list):
            return payload[0] if payload and isinstance(payload[0], Message) else None
        text = part_text(candidate)
        return HeaderParser(policy=policy.compat32).parsestr(text, headersonly=True)
    return None


def _payload(part: Message) -> object:
    """get_payload(), which decodes 8-bit text with the part's charset parameter and raises
    when that names no codec Python can use with it (a NUL in it, say)."""
    try:
        return part.get_payload()
    except (ValueError, LookupError, UnicodeError):
        return ""


def part_text(part: Message) -> str:
    """A non-multipart part's body, transfer-decoded, as text (bad bytes replaced)."""
    try:
        data = part.get_payload(decode=True)
    except (ValueError, LookupError, UnicodeError):
        data = None
    if not isinstance(data, bytes):
        payload = _payload(part)
        return payload if isinstance(payload, str) else ""
    charset = part.get_content_charset() or "utf-8"
    try:
        return data.decode(charset, errors="replace")
    except (LookupError, UnicodeError):  # an unknown charset, or a codec such as idna
        return data.decode("utf-8", errors="replace")


def as_text(value: object) -> str:
    """A header value or flufl.bounce's bytes as str: undecodable bytes replaced."""
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="replace")
    text = str(value)
    return text.encode("utf-8", errors="surrogateescape").decode("utf-8", errors="replace")


def header_text(message: Message, name: str) -> str:
    value = message.get(name)
    return "" if value is None else as_text(value).strip()


def header_texts(message: Message, name: str) -> list[str]:
    return [as_text(v) for v in message.get_all(name) or []]


# The email package decodes encoded words in time quadratic in their number (70,000 of
# them take seconds): only the start of a header is decoded, and nothing we read from a
# Subject lies past it.
MAX_DECODED = 2_000


def decoded_header(value: str) -> str:
    """An RFC 2047 header value as text, of its first MAX_DECODED characters (cut between
    words where it can be, so that no encoded word is split); the raw value if it will not
    decode."""
    if len(value) > MAX_DECODED:
        head = value[:MAX_DECODED + 1]  # one more: is the cut itself between words?
        space = max(head.rfind(" "), head.rfind("\t"))
        value = head[:space] if space > 0 else head[:MAX_DECODED]
    try:
        return str(make_header(decode_header(value)))[:MAX_DECODED]
    except Exception:  # noqa: BLE001 - bad encoded-words, unknown charsets: keep it raw
        return value


def plain_address(value: str) -> str | None:
    """A plain address from a typed DSN field ("rfc822; <a@b>"), a path ("<a@b>") or an
    address with a display name; None for other address types and non-addresses."""
    value = " ".join(value.split())
    typed = TYPE_PREFIX.match(value)
    if typed:
        if typed.group(1).lower() not in ("rfc822", "utf-8"):
            return None  # x400 and other non-internet names
        value = _XTEXT_CHAR.sub(lambda m: _char(m.group(1)), value[typed.end():])
    if "<" in value:
        value = value[value.index("<") + 1:]
        value = value.split(">", 1)[0]
    candidates = [word for word in value.split() if "@" in word]
    if not candidates:
        return None
    address = candidates[0].strip("<>\"'(),;:")
    local, _, domain = address.rpartition("@")
    if not local or not domain or len(address) > 320 or not address.isprintable():
        return None
    return address


def _char(code: str) -> str:
    """The character an xtext escape names; a control character (so plain_address refuses
    the address) for a surrogate or a number past Unicode, which no address holds."""
    number = int(code, 16)
    return chr(number) if number <= 0x10FFFF and not 0xD800 <= number <= 0xDFFF else "\x00"


def field_addresses(message: Message, name: str) -> list[str]:
    """The plain addresses of every `name` field that holds one (one address a field)."""
    return [a for a in (plain_address(v) for v in header_texts(message, name)) if a]


def address_list(values: list[str]) -> list[str]:
    """The plain addresses in address-list fields ("Anna <a@b>, c@d")."""
    found = []
    for _, address in getaddresses(values):
        normal = plain_address(address) if address else None
        if normal:
            found.append(normal)
    return found


def delivered_to(message: Message) -> tuple[str, ...]:
    """Where this mail was delivered, most specific first, domains lower-cased."""
    found: dict[str, None] = {}
    for name in ("Delivered-To", "X-Original-To", "Envelope-To", "To"):
        for address in address_list(header_texts(message, name)):
            local, _, domain = address.rpartition("@")
            found.setdefault(f"{local}@{domain.lower()}")
    return tuple(found)


def message_id_of(headers: Message | None) -> str | None:
    """The Message-ID, with its angle brackets, of a returned original's headers; None
    when there is none or it holds a control character or non-ASCII (see MESSAGE_ID_TEXT)."""
    if headers is None:
        return None
    found = _MESSAGE_ID.search(header_text(headers, "Message-ID"))
    return found.group(0) if found else None


def return_path_of(headers: Message | None) -> str | None:
    """The envelope sender a returned original's Return-Path names."""
    return None if headers is None else plain_address(header_text(headers, "Return-Path"))
