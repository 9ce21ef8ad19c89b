"""The one delivery step every mail takes, transactional or digest: choose the recipient's
form, build (and sign) the message, send it, and say what came of it as an Outcome.

What the outcome means for the mail's own row (the outbox's, a digest delivery's) is the
caller's bookkeeping; what it means for the reader (a bounce) is the subscriber
lifecycle's (subscriptions.mark_bounced). The rules both kinds of mail share live here too:
when to try again (`retry_delay`) and the operator alarms (`policy_alarm`, `build_alarm`).

The step raises nothing the relay or a build can cause; the database's errors and the send
rate's pass through (the job fails and the lease hands its mail on).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from enum import StrEnum

from sqlalchemy import Connection, insert, select
from sqlalchemy.exc import SQLAlchemyError

from newsletter.config import Settings
from newsletter.mail.compose import MailBuildError, ascii_address
from newsletter.mail.transport import (
    BounceError,
    PolicyError,
    SmtpTransport,
    Stage,
    TemporaryError,
    UnsendableError,
    redact_addresses,
)
from newsletter.models import OperatorAlarm, utcnow

log = logging.getLogger(__name__)

POLICY_ALARM = "smtp_policy"
BUILD_ALARM = MailBuildError.ALARM

# Builds the signed message bytes for the recipient in the form chosen, and whether that
# form needs SMTPUTF8; returns (bytes, Message-ID).
Build = Callable[[str, bool], tuple[bytes, str]]


class Kind(StrEnum):
    """What came of one mail."""

    SENT = "sent"  # the relay accepted it
    RETRY = "retry"  # a 4xx, a timeout, a lost connection: try again later
    BOUNCED = "bounced"  # the recipient refused for good: the reader's address is dead
    POLICY = "policy"  # the relay refuses us, not the reader: alarm, try again later
    BUILD = "build"  # we could not build it (a template, the DKIM key): alarm, try again later
    UNSENDABLE = "unsendable"  # this relay cannot take it at all (no SMTPUTF8): give up


# The kinds that wait for another try (until the give-up time, `retry_delay`).
RETRIED = frozenset({Kind.RETRY, Kind.POLICY, Kind.BUILD})


@dataclass(frozen=True, slots=True)
class Outcome:
    """What came of one mail: its kind, the reason (addresses redacted: the transport's reply,
    or the build's error), where in the SMTP conversation it happened, and for a sent mail
    its Message-ID. `error` is the exception behind a failure, for a log's traceback."""

    kind: Kind
    detail: str = ""
    stage: Stage = Stage.NONE
    message_id: str | None = None
    error: BaseException | None = field(default=None, compare=False, repr=False)


def recipient_for(address: str, smtputf8: bool) -> str | None:
    """The form of `address` to send to: its ASCII form wherever there is one (an IDN
    domain as A-labels: a later hop may lack SMTPUTF8); the address itself only when its
    local part needs SMTPUTF8 and the relay offers it; None when it cannot go at all."""
    return ascii_address(address) or (address if smtputf8 else None)


def send(
    transport: SmtpTransport,
    sender: str,
    address: str,
    build: Build,
    *,
    what: str,
    pace: Callable[[], None] | None = None,
) -> Outcome:
    """Send one mail to `address` from the envelope `sender` and classify what came of it.
    `build(recipient, utf8)` makes the signed bytes; any fault of ours in it (but the
    database's) is a MailBuildError named by `what` (an id, never the reader). `pace` runs
    between building and sending (the send rate)."""
    try:
        recipient = recipient_for(address, transport.smtputf8)
        if recipient is None:
            raise UnsendableError(0, "the address needs SMTPUTF8 and the relay does not offer it")
        # Raw UTF-8 headers only in an SMTPUTF8 transaction: every other mail keeps its
        # Subject as RFC 2047 encoded-words (STANDARDS 21), whatever the relay offers.
        utf8 = not recipient.isascii()
        try:
            data, message_id = build(recipient, utf8)
        except SQLAlchemyError:
            raise  # the database, not the mail: the job fails and the lease hands it on
        except Exception as exc:  # noqa: BLE001 - any fault of ours in building it: see MailBuildError
            raise MailBuildError(f"{what}: {type(exc).__name__}: {exc}") from exc
        if pace is not None:
            pace()
        transport.send(sender, recipient, data, utf8=utf8)
    except MailBuildError as exc:
        return Outcome(Kind.BUILD, str(exc), error=exc)
    except TemporaryError as exc:
        return Outcome(Kind.RETRY, str(exc), exc.stage, error=exc)
    except PolicyError as exc:
        return Outcome(Kind.POLICY, str(exc), exc.stage, error=exc)
    except BounceError as exc:
        return Outcome(Kind.BOUNCED, str(exc), exc.stage, error=exc)
    except UnsendableError as exc:
        return Outcome(Kind.UNSENDABLE, str(exc), exc.stage, error=exc)
    return Outcome(Kind.SENT, message_id=message_id)


_ENHANCED_STATUS = re.compile(r"\b([245]\.\d{1,3}\.\d{1,3})\b")


def enhanced_status(detail: str) -> str:
    """The enhanced status code ("5.7.1") a reply holds, or ""."""
    found = _ENHANCED_STATUS.search(detail)
    return found.group(1) if found else ""


def retry_delay(settings: Settings, attempts: int, first_queued: datetime, now: datetime) -> float | None:
    """Seconds until the next try of a mail tried `attempts` times: the retry base, doubled
    after every try; None when that try would fall after the give-up time, counted from
    `first_queued` (an outbox row's creation, a digest's edition): give up now."""
    delay: float = settings.retry_base_seconds * (2 ** max(attempts - 1, 0))
    if now + timedelta(seconds=delay) > first_queued + timedelta(seconds=settings.retry_give_up_seconds):
        return None
    return delay


def policy_alarm(conn: Connection, where: str, outcome: Outcome) -> None:
    """The relay refuses us, not the reader: log it and raise the operator's alarm, named by
    `where` (a mail's id, never the reader; the reply is redacted by the transport)."""
    log.error("%s: relay refuses our mail (operator action needed): %s", where, outcome.detail)
    _alarm(conn, POLICY_ALARM, f"{where}: {outcome.detail}")


def build_alarm(conn: Connection, outcome: Outcome, where: str = "", quiet: timedelta | None = None) -> bool:
    """Raise the operator's alarm for a mail that could not be built, unless one was raised
    within `quiet` (a missing DKIM key fails every mail, each on every try). True if raised."""
    if quiet is not None:
        recent = conn.scalar(select(OperatorAlarm.id).where(
            OperatorAlarm.kind == BUILD_ALARM, OperatorAlarm.at > utcnow() - quiet).limit(1))
        if recent is not None:
            return False
    _alarm(conn, BUILD_ALARM, f"{where}: {outcome.detail}" if where else outcome.detail)
    return True


_INSERT_ALARM = insert(OperatorAlarm)


def _alarm(conn: Connection, kind: str, message: str) -> None:
    # Redacted again: an exception of our own (building a mail) may quote an address.
    conn.execute(_INSERT_ALARM, {"kind": kind, "message": redact_addresses(message)[:1000], "at": utcnow()})
