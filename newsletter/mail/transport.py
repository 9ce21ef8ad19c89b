"""The one SMTP transport every mail leaves through, and the meaning of the relay's answers.

Classification (STANDARDS 22-24): 4xx and lost connections are temporary and retried;
a 5xx for the recipient is a bounce; 5.7.x and a refused sender are the operator's problem
(an alarm, retried), never the reader's bounce.

A relay's reply often names the refused address ("550 5.7.1 <bob@example.org>: Recipient
address rejected"). Its text lands in delivery rows, alarms, logs and consent events, some
of them shared by a whole chunk of readers (STANDARDS 33), so every DeliveryError carries it
with addresses replaced by "<address>": what a reply means is decided before that.
"""

from __future__ import annotations

import base64
import re
import smtplib
import socket
import ssl
from enum import StrEnum
from types import TracebackType

from newsletter.config import Settings


# Anything address-like: a local part (quoted or not), "@", and a domain, which may be
# missing where a reply was cut short; with its angle brackets when it has them. Matches
# start only where a word starts, so a long word without "@" costs linear time.
_ADDRESS = re.compile(r"""(?<![^\s<>()\[\],;:"])<?(?:"[^"\r\n]*"|[^\s<>()\[\],;:"@]+)@[^\s<>()\[\],;:"'@]*>?""")
REDACTED = "<address>"


def redact_addresses(text: str) -> str:
    """`text` with every email address in it replaced by REDACTED."""
    return _ADDRESS.sub(REDACTED, text)


class Stage(StrEnum):
    """Where in the conversation the relay said no: what it refused (us or one reader)."""

    CONNECT = "connect"  # connecting, EHLO, STARTTLS, AUTH, or the connection lost
    MAIL = "mail"  # MAIL FROM: our envelope sender
    RCPT = "rcpt"  # RCPT TO: the one recipient of the message
    DATA = "data"  # the message, after the recipient was accepted
    NONE = ""  # not in the conversation (e.g. an address this relay cannot take)


class DeliveryError(Exception):
    """The relay did not accept a message. `code` is the SMTP reply code (0: no reply);
    `detail` is what it said, without any address in it; `stage` where it said it."""

    def __init__(self, code: int, detail: str, stage: Stage = Stage.NONE) -> None:
        detail = redact_addresses(detail)[:400]
        super().__init__(f"{code} {detail}".strip())
        self.code = code
        self.detail = detail
        self.stage = stage


class TemporaryError(DeliveryError):
    """Try again later: 4xx, a timeout or a lost connection."""


class BounceError(DeliveryError):
    """The recipient was refused for good (5xx): suppress the address."""


class PolicyError(DeliveryError):
    """The relay refuses us, not the reader (5.7.x, sender refused, AUTH): alarm and retry."""


class UnsendableError(DeliveryError):
    """The message cannot be sent through this relay at all (e.g. it lacks SMTPUTF8)."""


_ENHANCED = re.compile(r"^\s*([245])\.(\d{1,3})\.(\d{1,3})")


def _text(raw: bytes | str) -> str:
    return raw.decode("utf-8", "replace") if isinstance(raw, bytes) else str(raw)


def classify(
    code: int, raw_detail: bytes | str, *, sender_side: bool = False, stage: Stage = Stage.NONE
) -> DeliveryError:
    """Turn an SMTP reply into the error that says what to do about it. `stage` only
    travels with the error (what it means is decided by the reply and `sender_side`)."""
    detail = _text(raw_detail)  # cut short (and redacted) by DeliveryError, not before
    enhanced = _ENHANCED.match(detail)
    if 400 <= code < 500:
        return TemporaryError(code, detail, stage)
    if enhanced and enhanced.group(1) == "5" and enhanced.group(2) == "7":
        return PolicyError(code, detail, stage)
    if sender_side and code >= 500:
        return PolicyError(code, detail, stage)
    if code >= 500:
        return BounceError(code, detail, stage)
    return TemporaryError(code, detail, stage)


def _login(conn: smtplib.SMTP, username: str, password: str) -> None:
    """AUTH as configured. smtplib sends credentials as ASCII only; a user name or password
    that is not (an umlaut in a password) goes as AUTH PLAIN, which carries UTF-8 (RFC 4616)."""
    if username.isascii() and password.isascii():
        conn.login(username, password)
        return
    if not conn.has_extn("auth"):
        raise smtplib.SMTPNotSupportedError("SMTP AUTH extension not supported by server.")
    if "PLAIN" not in conn.esmtp_features["auth"].upper().split():
        raise PolicyError(0, "SMTP AUTH: a user name or password that is not ASCII needs AUTH PLAIN, "
                             "which the relay does not offer")
    token = base64.b64encode(b"\0" + username.encode() + b"\0" + password.encode()).decode("ascii")
    code, reply = conn.docmd("AUTH", "PLAIN " + token)
    if code not in (235, 503):  # 503: already authenticated, as smtplib's login accepts it
        raise smtplib.SMTPAuthenticationError(code, reply)


class SmtpTransport:
    """An SMTP connection to the relay, reusable for many messages.

    Use as a context manager; `send` reconnects when the previous connection was lost.
    """

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._conn: smtplib.SMTP | None = None

    def __enter__(self) -> SmtpTransport:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def open(self) -> smtplib.SMTP:
        """Connect, secure and log in as configured; return the live connection."""
        if self._conn is not None:
            return self._conn
        s = self.settings
        # Building a TLS context reads the CA store (~25 ms): only when TLS is configured.
        context = ssl.create_default_context(cafile=s.smtp_ca_file or None) if s.smtp_security != "none" else None
        try:
            conn: smtplib.SMTP
            if s.smtp_security == "tls":
                conn = smtplib.SMTP_SSL(s.smtp_host, s.smtp_port, timeout=s.smtp_timeout_seconds, context=context)
            else:
                conn = smtplib.SMTP(s.smtp_host, s.smtp_port, timeout=s.smtp_timeout_seconds)
            conn.ehlo()
            if s.smtp_security == "starttls":
                if not conn.has_extn("starttls"):
                    conn.close()
                    raise PolicyError(0, "the relay does not offer STARTTLS but NEWSLETTER_SMTP_SECURITY=starttls")
                conn.starttls(context=context)
                conn.ehlo()
            if s.smtp_username:
                _login(conn, s.smtp_username, s.smtp_password)
        except PolicyError as exc:
            exc.stage = Stage.CONNECT  # STARTTLS missing, or AUTH PLAIN missing for a non-ASCII login
            raise
        except smtplib.SMTPAuthenticationError as exc:
            raise PolicyError(exc.smtp_code, "SMTP AUTH refused: " + _text(exc.smtp_error), Stage.CONNECT) from None
        except smtplib.SMTPNotSupportedError as exc:
            raise PolicyError(0, f"the relay does not support what the settings ask for: {exc}", Stage.CONNECT) from None
        except smtplib.SMTPResponseException as exc:
            raise classify(exc.smtp_code, exc.smtp_error, sender_side=True, stage=Stage.CONNECT) from None
        except (OSError, smtplib.SMTPException) as exc:
            raise TemporaryError(0, f"cannot reach {s.smtp_host}:{s.smtp_port}: {exc}", Stage.CONNECT) from None
        self._conn = conn
        return conn

    @property
    def smtputf8(self) -> bool:
        """Whether the relay offers SMTPUTF8 (RFC 6531)."""
        return bool(self.open().has_extn("smtputf8"))

    def send(self, envelope_from: str, recipient: str, data: bytes, *, utf8: bool = False) -> None:
        """Send one message to one recipient or raise the DeliveryError that says why not."""
        conn = self.open()
        options = ["SMTPUTF8", "BODY=8BITMIME"] if utf8 else []
        try:
            refused = conn.sendmail(envelope_from, [recipient], data, mail_options=options)
        except smtplib.SMTPRecipientsRefused as exc:
            code, detail = next(iter(exc.recipients.values()))
            raise classify(code, detail, stage=Stage.RCPT) from None
        except smtplib.SMTPSenderRefused as exc:
            raise classify(exc.smtp_code, exc.smtp_error, sender_side=True, stage=Stage.MAIL) from None
        except smtplib.SMTPNotSupportedError as exc:
            raise UnsendableError(0, str(exc)) from None
        except UnicodeEncodeError:
            # A non-ASCII address without SMTPUTF8: refused before it reached the wire,
            # but the MAIL transaction is open; reset it for the next message.
            self._reset()
            raise UnsendableError(0, "a non-ASCII address needs SMTPUTF8") from None
        except smtplib.SMTPResponseException as exc:
            if exc.smtp_code in (421, -1):
                self._drop()
            # sendmail's only other replies: DATA's, and EHLO/HELO's before MAIL.
            stage = Stage.DATA if isinstance(exc, smtplib.SMTPDataError) else Stage.CONNECT
            raise classify(exc.smtp_code, exc.smtp_error, stage=stage) from None
        except (OSError, smtplib.SMTPServerDisconnected, socket.timeout) as exc:
            self._drop()
            raise TemporaryError(0, f"connection lost: {exc}", Stage.CONNECT) from None
        if refused:
            code, detail = next(iter(refused.values()))
            raise classify(code, detail, stage=Stage.RCPT)

    def _reset(self) -> None:
        try:
            if self._conn is not None:
                self._conn.rset()
        except (OSError, smtplib.SMTPException):
            self._drop()

    def _drop(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            try:
                conn.close()
            except OSError:
                pass

    def close(self) -> None:
        """Say QUIT politely; a broken connection is just dropped."""
        conn, self._conn = self._conn, None
        if conn is None:
            return
        try:
            conn.quit()
        except (OSError, smtplib.SMTPException):
            try:
                conn.close()
            except OSError:
                pass
