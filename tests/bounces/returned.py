"""Mail as it comes back to the bounce address, built the way MTAs build it: RFC 3464
delivery status notifications, RFC 5965 feedback reports, a reader's mail to the
List-Unsubscribe mailto: address, an out-of-office answer. The realistic provider samples
are files in samples/; these are for rules that need a DSN about a mail we really sent."""

from __future__ import annotations

import mailbox
from email.message import EmailMessage
from email.utils import make_msgid
from pathlib import Path


def _original_headers(original: EmailMessage) -> str:
    names = ("Return-Path", "From", "To", "Subject", "Date", "Message-ID", "List-Id")
    return "".join(f"{name}: {original[name]}\r\n" for name in names if original[name] is not None)


def dsn(*, to: str, recipient: str, status: str = "5.1.1", action: str = "failed",
        diagnostic: str = "smtp; 550 5.1.1 <{rcpt}>: Recipient address rejected: User unknown",
        original: EmailMessage | None = None, return_path: str | None = None) -> bytes:
    """A Postfix-style DSN delivered to `to` (our VERP address, or not) about `recipient`."""
    msg = EmailMessage()
    msg["Return-Path"] = "<>"
    msg["Delivered-To"] = to
    msg["From"] = "MAILER-DAEMON@mx.example.net (Mail Delivery System)"
    msg["To"] = to
    msg["Subject"] = "Undelivered Mail Returned to Sender"
    msg["Message-ID"] = make_msgid(domain="mx.example.net")
    msg["Auto-Submitted"] = "auto-replied"
    msg.set_content("This is the mail system at host mx.example.net.\n\nI'm sorry to have to inform you "
                    "that your message could not be delivered.\n")
    per_message = "Reporting-MTA: dns; mx.example.net\r\nArrival-Date: Mon, 7 Dec 2026 10:00:00 +0100\r\n"
    per_recipient = (f"Final-Recipient: rfc822; {recipient}\r\nOriginal-Recipient: rfc822;{recipient}\r\n"
                     f"Action: {action}\r\nStatus: {status}\r\n"
                     f"Diagnostic-Code: {diagnostic.format(rcpt=recipient)}\r\n")
    headers = _original_headers(original) if original is not None else (
        f"Return-Path: <{return_path or to}>\r\nFrom: newsletter@jobs.example.org\r\nTo: {recipient}\r\n"
        f"Subject: Neue Jobs\r\nMessage-ID: {make_msgid(domain='jobs.example.org')}\r\n")
    boundary = "dsn-boundary-0001"
    body = (
        f"--{boundary}\r\nContent-Type: text/plain; charset=us-ascii\r\n\r\nDelivery failed.\r\n"
        f"--{boundary}\r\nContent-Type: message/delivery-status\r\n\r\n{per_message}\r\n{per_recipient}\r\n"
        f"--{boundary}\r\nContent-Type: text/rfc822-headers\r\n\r\n{headers}\r\n"
        f"--{boundary}--\r\n"
    )
    head = "".join(f"{k}: {v}\r\n" for k, v in msg.items() if k.lower() not in ("content-type", "mime-version",
                                                                              "content-transfer-encoding"))
    return (head + f'MIME-Version: 1.0\r\nContent-Type: multipart/report; report-type=delivery-status; '
            f'boundary="{boundary}"\r\n\r\n' + body).encode()


def arf(*, to: str, original: EmailMessage, feedback_type: str = "abuse") -> bytes:
    """An RFC 5965 feedback report (as a mailbox provider's feedback loop sends one) about
    `original`, delivered to `to`."""
    boundary = "arf-boundary-0001"
    headers = _original_headers(original)
    return (
        f"Delivered-To: {to}\r\nFrom: <staff@fbl.example.net>\r\nTo: {to}\r\nSubject: FW: {original['Subject']}\r\n"
        f"Message-ID: {make_msgid(domain='fbl.example.net')}\r\nMIME-Version: 1.0\r\n"
        f'Content-Type: multipart/report; report-type=feedback-report; boundary="{boundary}"\r\n\r\n'
        f"--{boundary}\r\nContent-Type: text/plain\r\n\r\nThis is an email abuse report.\r\n"
        f"--{boundary}\r\nContent-Type: message/feedback-report\r\n\r\n"
        f"Feedback-Type: {feedback_type}\r\nUser-Agent: ExampleFBL/1.0\r\nVersion: 1\r\n"
        f"Original-Mail-From: <{original['Return-Path'] or ''}>\r\n\r\n"
        f"--{boundary}\r\nContent-Type: text/rfc822-headers\r\n\r\n{headers}\r\n"
        f"--{boundary}--\r\n"
    ).encode()


def plain(*, to: str, subject: str = "unsubscribe", sender: str = "leser@example.org",
          extra: dict[str, str] | None = None, body: str = "Bitte abmelden.\n") -> bytes:
    """A person's (or their mail program's) mail to `to`."""
    msg = EmailMessage()
    msg["Delivered-To"] = to
    msg["From"] = sender
    msg["To"] = to
    msg["Subject"] = subject
    msg["Message-ID"] = make_msgid(domain="example.org")
    for name, value in (extra or {}).items():
        msg[name] = value
    msg.set_content(body)
    return bytes(msg)


def maildir(root: Path, *messages: bytes) -> Path:
    """A Maildir holding `messages` in new/, as an MTA delivers them."""
    box = mailbox.Maildir(root, create=True)
    for raw in messages:
        box.add(raw)
    box.close()
    return root
