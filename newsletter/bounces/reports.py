"""Read one mail that came back to the bounce mailbox and say what it is: a bounce (hard,
soft or a policy refusal), a complaint, an auto-reply, or something to ignore.

Pure: no database, no network. The caller matches the report to a reader by the VERP tag in
`addressed_to` (or `original_envelope_from`) and applies its own rules (STANDARDS 24).

This reads mail from anyone, so nothing in it may raise, loop or take seconds: the input is
cut to its first megabyte and to a budget of parser work, the MIME tree is walked without
recursion and with limits, and anything unreadable is OTHER.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from email import message_from_bytes, policy
from email.message import Message
from enum import StrEnum

from flufl.bounce import all_failures

from newsletter.bounces.mail_parts import (
    MESSAGE_ID_TEXT,
    ORIGINAL_TYPES,
    TYPE_PREFIX,
    address_list,
    as_text,
    decoded_header,
    delivered_to,
    field_addresses,
    field_blocks,
    header_text,
    header_texts,
    message_id_of,
    original_headers,
    part_text,
    plain_address,
    return_path_of,
    walk_parts,
)
from newsletter.mail.transport import REDACTED, redact_addresses

_DETECTORS: list[type] | None
try:  # the detectors all_failures runs, in its order (see _failures)
    from flufl.bounce._scan import _DETECTORS as _FLUFL_DETECTORS

    _DETECTORS = list(_FLUFL_DETECTORS)
except ImportError:  # a flufl.bounce other than the pinned 6.0.0
    _DETECTORS = None


class ReportKind(StrEnum):
    """What a returned mail means for the reader it names."""

    HARD = "hard"  # failed for good (5.x.x but 5.7.x), or a non-standard bounce called permanent
    SOFT = "soft"  # 4.x.x or delayed: try again, never suppress for this alone
    POLICY = "policy"  # failed with 5.7.x: refused by policy; the caller counts repeats
    COMPLAINT = "complaint"  # an ARF report (RFC 5965) other than "not-spam"
    AUTO_REPLY = "auto_reply"  # out-of-office, vacation, autoresponders: never counted
    OTHER = "other"  # a person's reply, spam, a delivered/relayed DSN, unreadable mail


@dataclass(frozen=True)
class Report:
    """One returned mail, read. See ReportKind for `kind`; addresses are plain local@domain."""

    kind: ReportKind
    recipients: tuple[str, ...]
    status: str = ""
    detail: str = ""
    original_message_id: str | None = None
    addressed_to: tuple[str, ...] = ()
    original_envelope_from: str | None = None


# Only the first megabyte is read: the machine-readable parts of a DSN or ARF report come
# before the returned original, so a cut-off copy of a big original loses nothing we use.
MAX_BYTES = 1 << 20
# Python's MIME parser costs (lines x nesting depth): 1 MB of one-byte lines ten multiparts
# deep takes about 2 s. Past this budget the input is cut to fewer lines (the reports come
# first). Real bounces stay far below it: 1 MB of base64 is 14,000 lines.
LINE_BUDGET = 1_000_000
_NESTING = re.compile(rb"boundary\s*=|message/", re.IGNORECASE)
MAX_TEXT = 200_000  # characters of body text searched in a non-standard bounce
# flufl.bounce runs some fifty regexes over every body line (1 s for 80,000 lines); the
# private formats it reads put their report first, so it sees only the start of the mail.
FLUFL_LINES = 5_000
FLUFL_BYTES = 256 * 1024
MAX_DETAIL = 300

_DSN_TYPES = ("message/delivery-status", "message/global-delivery-status")
_ARF_TYPE = "message/feedback-report"
_ENHANCED = re.compile(r"(?<![\d.])([245])\.(\d{1,3})\.(\d{1,3})(?!\.?\d)")
_SMTP_CODE = re.compile(r"\s*([245])\d\d(?![\d.])")
_QUOTED_MESSAGE_ID = re.compile(rf"^Message-ID:[ \t]*({MESSAGE_ID_TEXT})",
                                re.IGNORECASE | re.MULTILINE)
_QUOTED_RETURN_PATH = re.compile(r"^Return-Path:[ \t]*<([^<>\s]{1,320})>",
                                 re.IGNORECASE | re.MULTILINE)

_FAILED_ACTIONS = {"failed", "failure", "fail", "error"}
_DELAYED_ACTIONS = {"delayed", "delay"}
_DONE_ACTIONS = {"delivered", "relayed", "expanded"}

# Headers that only autoresponders set. Auto-Submitted is not among them: DSNs and Exim's
# bounces carry "Auto-Submitted: auto-replied" too, so it counts only when nothing else does.
_AUTO_REPLY_HEADERS = ("x-autoreply", "x-autorespond", "x-autoresponder", "x-auto-reply",
                       "x-ms-exchange-inbox-rules-loop")
_AUTO_REPLY_SUBJECT = re.compile(
    r"\b(?:out of (?:the )?office|out-of-office|abwesenheitsnotiz|abwesenheit|"
    r"automatische antwort|automatic reply|auto[- ]?reply|autoreply|auto[- ]?response|"
    r"r[ée]ponse automatique|respuesta autom[áa]tica|urlaub|vacation)\b",
    re.IGNORECASE)
_NOT_COMPLAINTS = {"not-spam", "auth-failure"}


def read_report(raw: bytes) -> Report:
    """What `raw` (one mail as received) is. Never raises: unreadable mail is OTHER."""
    try:
        raw = _bounded(raw)
        message = message_from_bytes(raw, policy=policy.compat32)
    except Exception:  # noqa: BLE001 - hostile MIME breaks the parser (RecursionError, ...)
        return Report(ReportKind.OTHER, (), detail="unreadable mail")
    try:
        addressed_to = delivered_to(message)
    except Exception:  # noqa: BLE001 - headers from anyone: unreadable ones name no one
        addressed_to = ()
    try:
        report = _classify(message, raw)
    except Exception:  # noqa: BLE001 - a part nothing above foresaw: ignore it, not crash
        report = Report(ReportKind.OTHER, (), detail="unreadable mail")
    return Report(report.kind, report.recipients, report.status, report.detail,
                  report.original_message_id, addressed_to, report.original_envelope_from)


def _classify(message: Message, raw: bytes) -> Report:
    # A DSN first: DSNs carry Auto-Submitted: auto-replied, and are never auto-replies.
    parts = list(walk_parts(message))
    for part, siblings in parts:
        if part.get_content_type() in _DSN_TYPES:
            report = _read_dsn(part, siblings)
            if report is not None:
                return report
            break
    for part, siblings in parts:
        if part.get_content_type() == _ARF_TYPE:
            return _read_arf(part, siblings)
    reason = _auto_reply_reason(message)
    if reason:
        return Report(ReportKind.AUTO_REPLY, (), detail=reason)
    report = _read_non_standard(message, parts, raw)
    if report is not None:
        return report
    submitted = header_text(message, "Auto-Submitted").lower()
    if submitted and not submitted.startswith("no"):
        return Report(ReportKind.AUTO_REPLY, (), detail=_detail(f"Auto-Submitted: {submitted}"))
    return Report(ReportKind.OTHER, (), detail="no report")


# -- input limits and walking -------------------------------------------------------------

def _bounded(raw: bytes) -> bytes:
    """`raw` cut to MAX_BYTES, then to as many lines as the parser budget allows."""
    raw = bytes(raw[:MAX_BYTES])
    levels = 1 + len(_NESTING.findall(raw))
    if (raw.count(b"\n") + 1) * levels > LINE_BUDGET:
        keep = max(LINE_BUDGET // levels, 1)
        raw = b"\n".join(raw.split(b"\n", keep)[:keep])
    return raw


# -- RFC 3464 delivery status notifications -----------------------------------------------

@dataclass(frozen=True)
class _Recipient:
    address: str
    kind: ReportKind
    status: str
    detail: str


def _read_dsn(part: Message, siblings: list[Message]) -> Report | None:
    """The report of a delivery-status part; None when it names no recipient we can read
    (then the mail is left to the non-standard readers)."""
    blocks = field_blocks(part)
    recipients = [r for r in (_dsn_recipient(b) for b in blocks) if r is not None]
    if not recipients:
        return None
    original = original_headers(part, siblings)
    message_id = message_id_of(original)
    envelope_from = return_path_of(original)
    if envelope_from is None:
        for block in blocks:  # Postfix names the envelope sender in its per-message fields
            envelope_from = plain_address(header_text(block, "X-Postfix-Sender"))
            if envelope_from:
                break
    for kind in (ReportKind.HARD, ReportKind.POLICY, ReportKind.SOFT):
        chosen = [r for r in recipients if r.kind is kind]
        if chosen:
            addresses = tuple(dict.fromkeys(r.address for r in chosen))
            return Report(kind, addresses, chosen[0].status, chosen[0].detail, message_id,
                          original_envelope_from=envelope_from)
    return Report(ReportKind.OTHER, (), detail="delivery status without a failure",
                  original_message_id=message_id, original_envelope_from=envelope_from)


def _dsn_recipient(block: Message) -> _Recipient | None:
    # Original-Recipient is the address as we sent it (Final-Recipient may be an alias it
    # was forwarded to, or an X.400 name); our readers are stored under the former.
    address = (plain_address(header_text(block, "Original-Recipient"))
               or plain_address(header_text(block, "Final-Recipient")))
    if not address:
        return None
    status_field = header_text(block, "Status")
    diagnostic = header_text(block, "Diagnostic-Code")
    diagnostic_text = TYPE_PREFIX.sub("", diagnostic, count=1)
    status = _status(status_field, diagnostic_text)
    words = header_text(block, "Action").lower().split()
    action = words[0].strip(".,;:()") if words else ""
    if action not in _FAILED_ACTIONS | _DELAYED_ACTIONS | _DONE_ACTIONS:
        action = {"5": "failed", "4": "delayed", "2": "delivered"}.get(status[:1], "")
        if not action:
            return None
    if action in _DONE_ACTIONS:
        kind = ReportKind.OTHER
    elif action in _DELAYED_ACTIONS or status.startswith("4"):
        kind = ReportKind.SOFT
    elif status.startswith("5.7."):
        kind = ReportKind.POLICY
    elif status.startswith("2"):  # "failed" but a success code: contradicts itself
        kind = ReportKind.OTHER
    else:
        kind = ReportKind.HARD
    reason = diagnostic_text or _ENHANCED.sub("", status_field, count=1).strip(" ()")
    return _Recipient(address, kind, status, _detail(reason))


def _status(status_field: str, diagnostic: str) -> str:
    """The enhanced status code: the Status field's, else the one in the diagnostic, else
    the SMTP reply code as X.0.0. A generic X.0.0 (Postfix, Exim) gives way to the
    diagnostic's own code of the same class: "5.0.0" with "550-5.7.1" is a policy refusal."""
    found = _ENHANCED.search(status_field)
    said = _ENHANCED.search(diagnostic)
    if found:
        status = found.group(0)
        if said and status.endswith(".0.0") and said.group(1) == found.group(1):
            return said.group(0)
        return status
    if said and said.group(1) in "45":
        return said.group(0)
    for text in (status_field, diagnostic):
        code = _SMTP_CODE.match(text)
        if code and code.group(1) in "45":
            return f"{code.group(1)}.0.0"
    return ""


# -- RFC 5965 abuse reports ---------------------------------------------------------------

def _read_arf(part: Message, siblings: list[Message]) -> Report:
    fields = field_blocks(part)[:1]
    report = fields[0] if fields else Message()
    feedback_type = header_text(report, "Feedback-Type").lower().strip()
    original = original_headers(part, siblings)
    recipients = field_addresses(report, "Original-Rcpt-To")
    if not recipients and original is not None:
        # Microsoft's JMRP keeps the recipient here when it rewrites the To.
        recipients = field_addresses(original, "X-HmXmrOriginalRecipient")
    if not recipients and original is not None and report.get("Redacted-Address") is None:
        # (RFC 6590: with Redacted-Address the To was rewritten, it names no reader)
        recipients = address_list(header_texts(original, "To"))
    envelope_from = (return_path_of(original)
                     or plain_address(header_text(report, "Original-Mail-From")))
    agent = header_text(report, "User-Agent")
    detail = _detail(f"feedback-type {feedback_type or 'missing'}"
                     + (f" ({agent})" if agent else ""))
    kind = (ReportKind.COMPLAINT if feedback_type and feedback_type not in _NOT_COMPLAINTS
            else ReportKind.OTHER)
    return Report(kind, tuple(dict.fromkeys(recipients)), "", detail, message_id_of(original),
                  original_envelope_from=envelope_from)


# -- auto-replies and non-standard bounces ------------------------------------------------

def _auto_reply_reason(message: Message) -> str:
    for name in _AUTO_REPLY_HEADERS:
        if message.get(name) is not None and header_text(message, name).lower() != "no":
            return _detail(f"{name}: {header_text(message, name)}")
    for name in ("Precedence", "X-Precedence"):
        if header_text(message, name).lower().replace("-", "_") == "auto_reply":
            return f"{name}: auto_reply"
    subject = decoded_header(header_text(message, "Subject"))
    if _AUTO_REPLY_SUBJECT.search(subject):
        return _detail(f"subject: {subject}")
    return ""


def _read_non_standard(message: Message, parts: list[tuple[Message, list[Message]]],
                       raw: bytes) -> Report | None:
    """flufl.bounce's reading of a bounce in one of the many private formats."""
    try:
        scanned = message
        if len(raw) > FLUFL_BYTES or raw.count(b"\n") >= FLUFL_LINES:
            head = b"\n".join(raw[:FLUFL_BYTES].split(b"\n", FLUFL_LINES)[:FLUFL_LINES])
            scanned = message_from_bytes(head, policy=policy.compat32)
        temporary, permanent = _failures(scanned)
    except Exception:  # noqa: BLE001 - its detectors recurse over mail from anyone
        return None
    failed = permanent or temporary
    if not failed:
        return None
    addresses = tuple(sorted({a for a in (plain_address(as_text(b)) for b in failed) if a}))
    if not addresses:
        return None
    body = _body_text(parts)
    status, detail = _status_near(body, addresses, "5" if permanent else "4")
    if permanent:
        kind = ReportKind.POLICY if status.startswith("5.7.") else ReportKind.HARD
    else:
        kind = ReportKind.SOFT
    original = next((original_headers(p, s) for p, s in parts
                     if p.get_content_type() in ORIGINAL_TYPES), None)
    message_id = message_id_of(original)
    envelope_from = return_path_of(original)
    if message_id is None:  # qmail and Exim quote the original inline, after the report
        found = _QUOTED_MESSAGE_ID.search(body)
        message_id = found.group(1) if found else None
    if envelope_from is None:
        found = _QUOTED_RETURN_PATH.search(body)
        envelope_from = plain_address(found.group(1)) if found else None
    return Report(kind, addresses, status, detail, message_id,
                  original_envelope_from=envelope_from)


def _failures(message: Message) -> tuple[set[bytes], set[bytes]]:
    """flufl.bounce's all_failures, except that a detector that raises is skipped instead
    of ending the scan: in 6.0.0 several do on slightly broken mail (Yale, the fifth, on
    every single-part mail without a From), and all_failures then re-raises, so the
    detectors after it never see a bounce they would have read, and logs a traceback."""
    if _DETECTORS is None:
        temporary, permanent = all_failures(message)
        return set(temporary), set(permanent)
    for detector in _DETECTORS:
        try:
            temporary, permanent = detector().process(message)
        except Exception:  # noqa: BLE001, S112 - see the docstring: skip it, try the next
            continue
        if temporary or permanent:
            return set(temporary), set(permanent)
    return set(), set()


def _status_near(body: str, addresses: tuple[str, ...], klass: str) -> tuple[str, str]:
    """The enhanced code of class `klass` written within a few lines after a failed
    address, and the line it is on; else no code and the line after the address."""
    lowered = body.lower()
    fallback = ""
    for address in addresses:
        start = lowered.find(address.lower())
        if start < 0:
            continue
        window = body[start:start + 600]
        quoted = _ORIGINAL_FOLLOWS.search(window)  # nothing from the returned original
        window = window[:quoted.start()] if quoted else window
        for found in _ENHANCED.finditer(window):
            if found.group(1) == klass:
                line_start = window.rfind("\n", 0, found.start()) + 1
                line_end = window.find("\n", found.end())
                line = window[line_start:line_end if line_end >= 0 else None]
                return found.group(0), _detail(line)
        if not fallback:
            reasons = [ln for ln in window.splitlines()[:5] if _looks_like_reason(ln)]
            fallback = _detail(reasons[0]) if reasons else ""
    return "", fallback


_ORIGINAL_FOLLOWS = re.compile(
    r"original message|copy of (?:the|your) message|message follows|below this line|"
    r"header of the original|message text follows", re.IGNORECASE)
_NOT_A_REASON = re.compile(
    r"^\s*(?:[-=*_|#>]|(?:subject|date|from|to|received|message-id):)|transcript",
    re.IGNORECASE)


def _looks_like_reason(line: str) -> bool:
    """A line of prose (a reason), not a separator, a quoted header or an address alone."""
    line = redact_addresses(line).replace(REDACTED, "")
    return sum(c.isalpha() for c in line) >= 12 and not _NOT_A_REASON.search(line)


def _body_text(parts: list[tuple[Message, list[Message]]]) -> str:
    """The text parts of the mail, decoded, up to MAX_TEXT characters."""
    texts: list[str] = []
    size = 0
    for part, _ in parts:
        if part.get_content_maintype() != "text" or part.get_content_type() in ORIGINAL_TYPES:
            continue
        text = part_text(part)
        texts.append(text)
        size += len(text)
        if size >= MAX_TEXT:
            break
    return "\n".join(texts)[:MAX_TEXT]


def _one_line(text: str) -> str:
    return " ".join("".join(c if c.isprintable() else " " for c in text).split())


def _detail(text: str) -> str:
    return _one_line(redact_addresses(_one_line(text)))[:MAX_DETAIL]
