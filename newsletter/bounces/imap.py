"""Fetch bounces, complaints and mailto unsubscribes from the IMAP mailbox of
NEWSLETTER_BOUNCE_IMAP_URL, as the scheduler does every NEWSLETTER_BOUNCE_POLL_SECONDS.

Every message left in the folder is unprocessed: each is recorded first (intake commits it)
and only then moved to NEWSLETTER_BOUNCE_IMAP_DONE_FOLDER; nothing is ever deleted unread.
A crash between the two costs one more reading, which changes nothing (intake answers
"already"). A message that can never be read (too large, or intake failed on it) moves
unread to the folder Skipped inside the done folder, for the operator to look at: left in
place it would take up a place of `limit` at every poll, and enough of them would keep every
later bounce from being read. TLS always, with the system's CA store (an operator's private
CA: point the standard SSL_CERT_FILE variable at it); no log line carries the password or the
whole URL.
"""

from __future__ import annotations

import base64
import imaplib
import logging
import re
import ssl
from collections import Counter
from typing import TYPE_CHECKING

from sqlalchemy.exc import SQLAlchemyError

from newsletter.bounces.intake import process_message
from newsletter.config import ImapUrl, mask_url, parse_imap_url

if TYPE_CHECKING:
    from newsletter.config import Settings
    from newsletter.db import Database

log = logging.getLogger(__name__)

# A silent server must not hold a scheduler job for long; each socket operation waits this.
TIMEOUT_SECONDS = 30.0
# No bounce, complaint or unsubscribe is this large: what is, is moved unread to the Skipped
# folder and named in the log rather than read into memory.
MAX_MESSAGE_BYTES = 5 * 1024 * 1024
SKIPPED_FOLDER = "Skipped"  # inside the done folder; the done folder itself on a flat server
SKIPPED = "skipped"  # in poll's counts
_SIZE = re.compile(rb"\bRFC822\.SIZE (\d+)")


class PollError(Exception):
    """An answer that ends the poll; its text names no secret."""


class _Unreadable(Exception):
    """A message that no later poll will read any better; the text says why, never what the
    message holds."""

    def __init__(self, size: int, reason: str) -> None:
        super().__init__(reason)
        self.size = size
        self.reason = reason


def poll(settings: Settings, database: Database, *, limit: int = 500,
         context: ssl.SSLContext | None = None, timeout: float = TIMEOUT_SECONDS) -> Counter[str]:
    """Process up to `limit` messages of the bounce mailbox, oldest first; returns how many
    got each verdict ("skipped": moved unread to the Skipped folder). Nothing configured:
    nothing done. Connection, login and server errors and a database error (which stops the
    poll, the message left for the next one) end in one log line, never an exception.
    `context`: the TLS context (by default the system's CA store, with host name checks)."""
    counts: Counter[str] = Counter()
    if not settings.bounce_imap_url:
        return counts
    target = parse_imap_url(settings.bounce_imap_url)
    where = mask_url(settings.bounce_imap_url)
    try:
        imap = _connect(target, context or ssl.create_default_context(), timeout)
    except (OSError, imaplib.IMAP4.error, PollError) as exc:  # ssl errors and timeouts are OSErrors
        log.error("bounce poll: cannot connect to %s: %s", where, _reason(exc, target))
        return counts
    try:
        capabilities = _login(imap, target)
        done_name = settings.bounce_imap_done_folder
        done = _mailbox(done_name)
        _select(imap, target.folder)
        _ensure_folder(imap, done, done_name)
        skipped: str | None = None  # found or created when the first message needs it
        for uid in _waiting(imap, limit):
            try:
                verdict = _process(imap, uid, settings, database)
            except _Unreadable as unreadable:
                skipped = skipped or _skipped_folder(imap, done_name)
                _move(imap, uid, _mailbox(skipped), capabilities)
                log.warning("bounce poll: message UID %s (%d bytes) %s; moved unread to %r, where it stays "
                            "for you to look at: no later poll would read it", uid, unreadable.size,
                            unreadable.reason, skipped)
                counts[SKIPPED] += 1
                continue
            if verdict is None:
                continue
            _move(imap, uid, done, capabilities)
            counts[verdict] += 1
    except (OSError, imaplib.IMAP4.error, PollError) as exc:
        log.error("bounce poll: %s: %s", where, _reason(exc, target))
    except SQLAlchemyError as exc:
        # The database is down or refusing: every further message would fail the same way.
        log.error("bounce poll: %s: stopped, the database failed (%s); the message stays for the next poll",
                  where, _database_reason(exc))
    finally:
        _logout(imap)
    if counts:
        summary = ", ".join(f"{verdict} {n}" for verdict, n in sorted(counts.items()))
        log.info("bounce poll: %s: %s", where, summary)
    return counts


def _connect(target: ImapUrl, context: ssl.SSLContext, timeout: float) -> imaplib.IMAP4:
    if not target.starttls:
        return imaplib.IMAP4_SSL(target.host, target.port, ssl_context=context, timeout=timeout)
    imap = imaplib.IMAP4(target.host, target.port, timeout=timeout)
    try:
        if "STARTTLS" not in imap.capabilities:
            raise PollError("the server offers no STARTTLS, and the password is never sent without TLS")
        imap.starttls(context)
    except BaseException:
        imap.shutdown()
        raise
    return imap


def _login(imap: imaplib.IMAP4, target: ImapUrl) -> set[str]:
    """Log in; the capabilities the server offers now (MOVE and UIDPLUS often only after
    login)."""
    try:
        imap.login(_quoted(target.user), target.password)  # imaplib quotes the password itself
    except imaplib.IMAP4.error as exc:
        raise PollError(f"login as {target.user!r} refused: {_reason(exc, target)}") from None
    typ, data = imap.capability()
    _check(typ, data, "CAPABILITY")
    return set(b" ".join(d for d in data if isinstance(d, bytes)).decode("ascii", "replace").upper().split())


def _select(imap: imaplib.IMAP4, folder: str) -> None:
    typ, data = imap.select(_mailbox(folder))
    _check(typ, data, f"cannot open the folder {folder!r}")


def _ensure_folder(imap: imaplib.IMAP4, mailbox: str, name: str) -> None:
    typ, data = imap.list('""', mailbox)
    _check(typ, data, f"cannot list the folder {name!r}")
    if any(item for item in data):
        return
    typ, data = imap.create(mailbox)
    _check(typ, data, f"cannot create the folder {name!r}")
    imap.subscribe(mailbox)  # so that mail clients show it; a refusal changes nothing here
    log.info("bounce poll: created the folder %r", name)


def _skipped_folder(imap: imaplib.IMAP4, done_name: str) -> str:
    """The name of the folder Skipped inside the done folder, created if need be; the done
    folder itself on a server without folder hierarchy or one that will not create it (a
    message that cannot be moved would block the mailbox again)."""
    typ, data = imap.list('""', _mailbox(done_name))
    _check(typ, data, f"cannot list the folder {done_name!r}")
    delimiter = next((d for d in map(_delimiter, data) if d), None)
    if delimiter is None:
        return done_name
    name = f"{done_name}{delimiter}{SKIPPED_FOLDER}"
    try:
        _ensure_folder(imap, _mailbox(name), name)
    except (PollError, imaplib.IMAP4.error) as exc:
        reason = _text(exc.args[0]) if exc.args else type(exc).__name__
        log.warning("bounce poll: %s; messages that cannot be read go to %r instead", reason, done_name)
        return done_name
    return name


# A LIST answer: (flags) "delimiter" name, or NIL for a server without hierarchy.
_LIST_DELIMITER = re.compile(rb'^\([^)]*\)\s+"(\\.|[^"\\])"')


def _delimiter(item: object) -> str | None:
    if isinstance(item, tuple):  # a name sent as a literal: the delimiter is in the first part
        item = item[0]
    found = _LIST_DELIMITER.match(item) if isinstance(item, bytes) else None
    return found.group(1)[-1:].decode("ascii", "replace") if found else None


def _waiting(imap: imaplib.IMAP4, limit: int) -> list[str]:
    """The UIDs of the oldest `limit` messages still in the folder. Ones flagged \\Deleted
    are left out: someone meant them gone, or a COPY fallback copied them already."""
    typ, data = imap.uid("SEARCH", "UNDELETED")
    _check(typ, data, "SEARCH")
    uids = sorted(int(uid) for uid in b" ".join(d for d in data if d).split())[:limit]
    return [str(uid) for uid in uids]


def _process(imap: imaplib.IMAP4, uid: str, settings: Settings, database: Database) -> str | None:
    """The message's verdict once it is recorded; None when it is gone meanwhile. Raises
    _Unreadable for a message no poll will read, SQLAlchemyError when the database fails."""
    typ, data = imap.uid("FETCH", uid, "(RFC822.SIZE)")
    _check(typ, data, "FETCH")
    size = next((int(m.group(1)) for d in data if isinstance(d, bytes) and (m := _SIZE.search(d))), None)
    if size is None:  # expunged by someone else meanwhile
        return None
    if size > MAX_MESSAGE_BYTES:
        raise _Unreadable(size, f"is larger than any bounce ({MAX_MESSAGE_BYTES} bytes)")
    # PEEK: reading sets no \Seen flag, so a message moved unread looks untouched.
    typ, data = imap.uid("FETCH", uid, "(BODY.PEEK[])")
    _check(typ, data, "FETCH")
    raw = next((part[1] for part in data if isinstance(part, tuple)), None)
    if raw is None:
        return None
    try:
        return str(process_message(database, settings, raw))
    except SQLAlchemyError:
        raise
    except Exception as exc:  # noqa: BLE001 - a message intake cannot read must not stop the others
        # The type only: an exception's text may quote the message (a reader's address).
        raise _Unreadable(size, f"could not be processed ({type(exc).__name__})") from None


def _move(imap: imaplib.IMAP4, uid: str, mailbox: str, capabilities: set[str]) -> None:
    """Move one recorded message to the done folder: MOVE (RFC 6851) where offered, else
    COPY, flag \\Deleted and expunge: only this message with UIDPLUS (RFC 4315), every
    \\Deleted message of the folder without it."""
    if "MOVE" in capabilities:
        typ, data = imap.uid("MOVE", uid, mailbox)
        _check(typ, data, "MOVE")
        return
    typ, data = imap.uid("COPY", uid, mailbox)
    _check(typ, data, "COPY")
    typ, data = imap.uid("STORE", uid, "+FLAGS.SILENT", r"(\Deleted)")
    _check(typ, data, "STORE")
    typ, data = imap.uid("EXPUNGE", uid) if "UIDPLUS" in capabilities else imap.expunge()
    _check(typ, data, "EXPUNGE")


def _logout(imap: imaplib.IMAP4) -> None:
    try:
        imap.logout()
    except (OSError, imaplib.IMAP4.error):
        pass  # the connection is gone already; nothing is left to release


def _check(typ: str, data: list[object], what: str) -> None:
    if typ != "OK":
        raise PollError(f"{what}: {typ} {_text(data[-1] if data else '')}")


def _text(value: object) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)


def _reason(exc: BaseException, target: ImapUrl) -> str:
    """The error as one line, the password masked should a server ever echo it."""
    if isinstance(exc, PollError | imaplib.IMAP4.error):
        text = _text(exc.args[0]) if exc.args else type(exc).__name__
    else:
        text = f"{type(exc).__name__}: {exc}"
    return " ".join(text.replace(target.password, "***").split())


def _database_reason(exc: SQLAlchemyError) -> str:
    # Only the driver's first line: SQLAlchemy's whole text quotes statement parameters,
    # which may be a reader's address (STANDARDS 33).
    origin = getattr(exc, "orig", None)
    text = str(origin) if origin is not None else type(exc).__name__
    return (text.strip().splitlines() or [type(exc).__name__])[0]


def _mailbox(name: str) -> str:
    """A folder name as an IMAP quoted string, non-ASCII in modified UTF-7 (RFC 3501 5.1.3)."""
    encoded: list[str] = []
    pending = ""
    for char in name + "\0":  # the NUL only flushes the last non-ASCII run
        if " " <= char <= "~" or char == "\0":
            if pending:
                utf7 = base64.b64encode(pending.encode("utf-16-be")).decode("ascii")
                encoded.append("&" + utf7.rstrip("=").replace("/", ",") + "-")
                pending = ""
            encoded.append("&-" if char == "&" else char.strip("\0"))
        else:
            pending += char
    return _quoted("".join(encoded))


def _quoted(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'
