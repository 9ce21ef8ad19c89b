"""The demo's built-in inbox: an aiosmtpd server that keeps every mail in a Maildir under
instance/, read back by /dev/inbox. Demo mode only (refused in production by config)."""

from __future__ import annotations

import mailbox
from dataclasses import dataclass
from datetime import datetime
from email import message_from_bytes, policy
from email.message import EmailMessage
from email.utils import parsedate_to_datetime
from pathlib import Path
from typing import Any

from aiosmtpd.controller import Controller


def inbox_path(instance_path: str) -> Path:
    return Path(instance_path).resolve() / "demo-inbox"


class _MaildirHandler:
    def __init__(self, path: Path) -> None:
        self.box = mailbox.Maildir(str(path), create=True)

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        data: bytes = envelope.original_content or envelope.content
        header = f"X-Demo-Envelope-From: {envelope.mail_from}\r\nX-Demo-Envelope-To: {', '.join(envelope.rcpt_tos)}\r\n"
        self.box.add(header.encode("utf-8") + data)
        return "250 Message accepted for delivery"


def start_server(instance_path: str, port: int) -> Controller:
    """Start the inbox's SMTP server on 127.0.0.1:`port` (SMTPUTF8 on, like a modern relay)."""
    controller = Controller(
        _MaildirHandler(inbox_path(instance_path)), hostname="127.0.0.1", port=port, enable_SMTPUTF8=True
    )
    controller.start()
    return controller


@dataclass(frozen=True)
class InboxEntry:
    key: str
    date: datetime | None
    to: str
    subject: str
    message: EmailMessage

    def body(self, subtype: str) -> str | None:
        part = self.message.get_body(preferencelist=(subtype,))
        if part is None:
            return None
        content = part.get_content()
        return content if isinstance(content, str) else None


def _entry(key: str, raw: bytes) -> InboxEntry:
    msg = message_from_bytes(raw, policy=policy.default)
    assert isinstance(msg, EmailMessage)
    try:
        date = parsedate_to_datetime(str(msg["Date"])) if msg["Date"] else None
    except (TypeError, ValueError):
        date = None
    return InboxEntry(key, date, str(msg["To"] or ""), str(msg["Subject"] or ""), msg)


def list_entries(instance_path: str, limit: int = 200) -> list[InboxEntry]:
    """The newest mails first."""
    path = inbox_path(instance_path)
    if not path.exists():
        return []
    box = mailbox.Maildir(str(path), create=False)
    entries = [_entry(key, box.get_bytes(key)) for key in box.keys()]
    entries.sort(key=lambda e: (e.date is not None, e.date or datetime.min), reverse=True)
    return entries[:limit]


def get_entry(instance_path: str, key: str) -> InboxEntry | None:
    path = inbox_path(instance_path)
    if not path.exists():
        return None
    box = mailbox.Maildir(str(path), create=False)
    try:
        return _entry(key, box.get_bytes(key))
    except KeyError:
        return None
