"""One Settings object built from NEWSLETTER_* variables (and a `.env` file), validated at start.

A bad value raises ConfigError whose message is one line naming the variable; the CLI and
wsgi.py print that line and stop.
"""

from __future__ import annotations

import ipaddress
import os
import re
import secrets
from dataclasses import dataclass, field, fields, replace
from datetime import datetime
from functools import cached_property
from email.headerregistry import Address
from email.utils import parseaddr
from pathlib import Path
from typing import Any, Mapping
from urllib.parse import quote, unquote, urlsplit, urlunsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from dotenv import dotenv_values


class ConfigError(ValueError):
    """A configuration value is missing or malformed; str() is one line naming the variable."""


PREFIX = "NEWSLETTER_"
ENVIRONMENTS = ("development", "production", "test")
SECURITY_MODES = ("none", "starttls", "tls")
# Numbers beyond this are typing mistakes, and larger seconds or days overflow a timedelta.
NUMBER_MAX = 10**9
# Characters a header value cannot carry (mail.safe_header refuses them at send time).
_CONTROL_CHARS = re.compile(r"[\x00-\x1f\x7f]")
# RFC 2919: a List-Id is a dot-atom with at least one dot ("label.namespace").
_ATOM = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+"
_LIST_ID = re.compile(rf"{_ATOM}(?:\.{_ATOM})+")
# A signing key shorter than this can be guessed offline from any signed link.
MIN_KEY_LENGTH = 32
# Where an authority starts: after "scheme://" or "//"; anything else is read from the start.
_AUTHORITY_START = re.compile(r"^(?:[A-Za-z][A-Za-z0-9+.\-]*:)?//")
# redis-py also reads a password from the query string.
_QUERY_PASSWORD = re.compile(r"([?&]password=)[^&#]*", re.IGNORECASE)


@dataclass(frozen=True)
class Settings:
    """Every setting of the service. Field names are the variable names without the prefix."""

    env: str = "development"
    database_url: str = "sqlite:///instance/newsletter.db"
    redis_url: str = "redis://127.0.0.1:6379/0"
    smtp_host: str = "127.0.0.1"
    smtp_port: int = 25
    smtp_username: str = ""
    smtp_password: str = ""
    smtp_security: str = "none"
    smtp_timeout_seconds: float = 30.0
    # A CA bundle for a relay whose certificate comes from a private CA (else the system's).
    smtp_ca_file: str = ""
    # SMTP AUTH without TLS, for a relay on this host only (production refuses it otherwise).
    smtp_plaintext_auth_on_loopback: bool = False
    base_url: str = "http://127.0.0.1:5000"
    secret_key: str = ""
    secret_key_fallbacks: tuple[str, ...] = ()
    mail_from: str = "Jobs-Newsletter <newsletter@jobs.example.org>"
    bounce_address: str = ""
    list_name: str = "Jobs-Newsletter"
    list_id: str = ""
    timezone: str = "Europe/Berlin"
    digest_interval_days: int = 14
    # First scheduled edition, local time in `timezone`; a Tuesday 08:00 suits readers.
    digest_first: str = "2026-01-06T08:00"
    retry_base_seconds: float = 60.0
    # After this long a temporarily failing mail is given up (SMTP's usual queue life is days;
    # a confirmation link is only good for 48 h anyway).
    retry_give_up_seconds: float = 2 * 24 * 3600.0
    send_lease_seconds: int = 300
    # Messages per second over all workers together (shared through Redis); 0: no limit.
    send_rate: float = 0.0
    # Deliveries one send job claims and sends over one SMTP connection. Each job has fixed
    # costs (its SMTP connection, the edition's variants), so larger chunks amortise them;
    # 500 under a send rate still fits within half a lease (bench/digest.py).
    send_chunk_size: int = 500
    digest_max_listings: int = 20
    board_url: str = "https://jobs.example.org"
    # Where "N more matching jobs" points; {keywords} and {location} are URL-encoded.
    board_search_url: str = "https://jobs.example.org/suche?q={keywords}&ort={location}"
    dkim_selector: str = ""
    dkim_domain: str = ""
    dkim_key_file: str = ""
    # A queued job not started after this long is presumed lost (Redis flushed) and re-queued.
    requeue_after_seconds: int = 60
    # How often the scheduler runs the reconciler and the digest tick.
    reconcile_interval_seconds: int = 60
    tick_interval_seconds: int = 120
    # Number of reverse proxies in front of the web app whose X-Forwarded-For is trusted.
    trusted_proxies: int = 0
    signup_rate_limit: str = "10 per minute;100 per hour"
    confirm_max_age_hours: float = 48.0
    # How long a mailed link to a reader's data export and erasure works (STANDARDS 26).
    data_link_max_age_minutes: float = 60.0
    # Unsubscribed, bounced and complained readers keep address and search this long, then
    # only the hashed suppression entry and the consent proof remain (STANDARDS 34).
    former_reader_retention_days: int = 30
    unconfirmed_retention_days: int = 14
    # Consent proof is kept three years after the end of a subscription (§195 BGB).
    consent_retention_days: int = 3 * 365
    privacy_url: str = "https://jobs.example.org/datenschutz"
    # The board's own origins (https://jobs.example.org) that may show /embed/subscribe in
    # a frame; every other page, and the embed too while this is empty, may be framed by none.
    embed_origins: tuple[str, ...] = ()
    impressum: str = (
        "Beispiel Jobs GmbH, Musterstraße 1, 10115 Berlin. Geschäftsführung: Erika Mustermann. "
        "Registergericht Amtsgericht Berlin-Charlottenburg, HRB 000000."
    )
    instance_path: str = "instance"
    demo: bool = False
    demo_smtp_port: int = 8025
    metrics_token: str = ""
    # A web admin session unused this long ends (the operator logs in again).
    admin_idle_minutes: int = 30
    # Where bounces, complaints and mailto unsubscribes arrive, when the scheduler should
    # fetch them itself: imaps://USER:PASSWORD@HOST[:PORT]/FOLDER, or imap:// with STARTTLS
    # (TLS always; see parse_imap_url).
    bounce_imap_url: str = ""
    # The IMAP folder processed messages move to (created when missing); never deleted.
    bounce_imap_done_folder: str = "Processed"
    bounce_poll_seconds: int = 300
    # Soft bounces (4.x.x, delayed) on this many editions in a row suppress the address.
    soft_bounce_limit: int = 3
    # A recipient's policy refusals (5.7.x while others are accepted) on this many editions.
    policy_bounce_limit: int = 2
    extra: Mapping[str, str] = field(default_factory=dict, compare=False, repr=False)

    # -- derived values -------------------------------------------------------------------
    @property
    def is_production(self) -> bool:
        return self.env == "production"

    @property
    def tz(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)

    @cached_property  # asked for several times per message sent (bench/digest_profile.py)
    def mail_from_address(self) -> str:
        return parseaddr(self.mail_from)[1]

    @cached_property
    def mail_domain(self) -> str:
        return self.mail_from_address.rpartition("@")[2]

    @property
    def signing_keys(self) -> list[str]:
        """Old keys first, the current key last: itsdangerous signs with the last one."""
        return [*self.secret_key_fallbacks, self.secret_key]

    @property
    def effective_bounce_address(self) -> str:
        if self.bounce_address:
            return self.bounce_address
        return f"bounces@{self.mail_domain}"

    @property
    def effective_list_id(self) -> str:
        return self.list_id or f"jobs-newsletter.{self.mail_domain}"

    def url(self, path: str) -> str:
        """An absolute link under BASE_URL, as every mail needs."""
        return self.base_url.rstrip("/") + path


def _parse_int(name: str, raw: str, low: int, high: int) -> int:
    try:
        value = int(raw)
    except ValueError:
        raise ConfigError(f"{name}: expected a whole number, got {raw!r}") from None
    if not low <= value <= high:
        raise ConfigError(f"{name}: must be between {low} and {high}, got {value}")
    return value


def _parse_float(name: str, raw: str, low: float, high: float = NUMBER_MAX) -> float:
    try:
        value = float(raw)
    except ValueError:
        raise ConfigError(f"{name}: expected a number, got {raw!r}") from None
    if not low <= value <= high:  # also refuses nan and inf, which no setting can use
        raise ConfigError(f"{name}: must be between {low:g} and {high:g}, got {raw}")
    return value


def _parse_bool(name: str, raw: str) -> bool:
    lowered = raw.strip().lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off", ""):
        return False
    raise ConfigError(f"{name}: expected true or false, got {raw!r}")


def mask_url(url: str) -> str:
    """`url` with the password of its userinfo as ***, for error lines and logs.

    Works on text no URL parser accepts (a password with an unescaped '#' or '/', a scheme
    without '//'), since that is what an error line shows: everything between the first ':'
    of the userinfo and the last '@' is masked, which may hide more than the password but
    never less."""
    url = _QUERY_PASSWORD.sub(r"\1***", url)
    start = match.end() if (match := _AUTHORITY_START.match(url)) else 0
    at = url.rfind("@")
    colon = url.find(":", start, at) if at > start else -1
    if colon < 0:
        return url
    return f"{url[:colon + 1]}***{url[at:]}"


def _ascii_mailbox(name: str, value: str) -> str:
    """The mailbox with its domain in ASCII (an IDN as its xn-- A-label): the envelope,
    Message-ID, VERP and List-Id all take the domain from here, and none of them may carry
    anything else. A local part that is not ASCII would need SMTPUTF8 at every relay on the
    way to every reader, so it is refused."""
    display, addr = parseaddr(value)
    if "\r" in value or "\n" in value or "@" not in addr:
        raise ConfigError(f"{name}: expected an address like 'Jobs <news@example.org>', got {value!r}")
    local, _, domain = addr.rpartition("@")
    try:
        Address(display, local, domain)
    except (ValueError, IndexError) as exc:
        raise ConfigError(f"{name}: {exc}") from None
    if not local.isascii():
        raise ConfigError(f"{name}: the part before the @ must be ASCII, got {local!r}")
    ascii_domain = _ascii_domain(name, domain)
    if ascii_domain == domain:
        return value
    head, _, tail = value.rpartition("@" + domain)
    return f"{head}@{ascii_domain}{tail}"


def _ascii_domain(name: str, domain: str) -> str:
    """An IDN as its A-label: DKIM's d= is looked up in DNS as written (RFC 6376 3.5)."""
    import idna

    try:
        return idna.encode(domain, uts46=True).decode("ascii")
    except idna.IDNAError as exc:
        raise ConfigError(f"{name}: not a domain name ({exc}), got {domain!r}") from None


def _ascii_url(name: str, url: str, keep: str = "") -> str:
    """The URL with an IDN host as its A-label and anything else that is not ASCII (or a
    space) percent-encoded: links built on it go into List-Unsubscribe, which must be ASCII
    and is read raw (RFC 8058), and into text mails, where only such links are clickable.
    `keep`: characters left alone (the placeholders' braces of a URL template)."""
    if url.isascii() and " " not in url:
        return url
    parts = urlsplit(url)
    host = parts.hostname or ""
    netloc = parts.netloc
    safe = "/%:@!$&'()*+,;=-._~" + keep
    if not netloc.isascii():
        try:
            port = parts.port
        except ValueError:  # its message quotes the port, which may be part of a password
            raise ConfigError(f"{name}: invalid port, got {mask_url(url)!r}") from None
        userinfo = netloc.rpartition("@")[0]
        netloc = quote(userinfo, safe="%:!$&'()*+,;=-._~") + "@" if "@" in parts.netloc else ""
        netloc += _ascii_domain(name, host) + (f":{port}" if port is not None else "")
    return urlunsplit((parts.scheme, netloc, quote(parts.path, safe=safe),
                       quote(parts.query, safe=safe + "?"), quote(parts.fragment, safe=safe + "?")))


def _check_port(name: str, port: int | None) -> None:
    if port is not None and not 1 <= port <= 65535:
        raise ConfigError(f"{name}: the port must be between 1 and 65535, got {port}")


def _check_redis_url(url: str) -> None:
    """What redis-py would refuse only at the first connection, as a ValueError from deep
    inside a command (a port that is no number)."""
    from redis.connection import parse_url

    name = "NEWSLETTER_REDIS_URL"
    if not url.startswith(("redis://", "rediss://", "unix://")):
        raise ConfigError(f"{name}: expected a redis:// or rediss:// URL, got {mask_url(url)!r}")
    try:
        port = urlsplit(url).port
    except ValueError:  # its message quotes the port, which may be part of a password
        raise ConfigError(f"{name}: the port must be a number between 1 and 65535, got {mask_url(url)!r}") from None
    try:
        options = parse_url(url)
    except ValueError as exc:
        raise ConfigError(f"{name}: {exc}") from None
    _check_port(name, port)
    _check_redis_tls_files(name, url, options)


def _check_redis_tls_files(name: str, url: str, options: Mapping[str, Any]) -> None:
    # redis-py passes unknown query parameters to the connection as they are: a plain
    # redis:// connection refuses ssl_* with a TypeError, a missing file fails the first
    # connection only.
    for key in ("ssl_ca_certs", "ssl_certfile", "ssl_keyfile"):
        if key not in options:
            continue
        if not url.startswith("rediss://"):
            raise ConfigError(f"{name}: {key} needs a rediss:// (TLS) URL")
        if not Path(options[key]).is_file():
            raise ConfigError(f"{name}: {key}: no such file {options[key]!r}")


def _check_database_url(url: str) -> None:
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    name = "NEWSLETTER_DATABASE_URL"
    if not url.startswith(("sqlite", "postgresql")):
        raise ConfigError(f"{name}: expected a sqlite:// or postgresql:// URL, got {mask_url(url)!r}")
    try:
        port = make_url(url).port
    except ArgumentError:  # its message quotes the whole URL
        raise ConfigError(f"{name}: not a SQLAlchemy URL, got {mask_url(url)!r}") from None
    except ValueError:  # SQLAlchemy's int() of the port
        raise ConfigError(f"{name}: the port must be a number between 1 and 65535") from None
    _check_port(name, port)


def _check_list_id(list_name: str, list_id: str) -> None:
    # Both go into the List-Id header of every mail to a subscriber: a bad one would make
    # every such mail fail at send time instead of the service at start.
    if _CONTROL_CHARS.search(list_name):
        raise ConfigError(f"NEWSLETTER_LIST_NAME: control characters cannot go into a mail header, got {list_name!r}")
    if list_id and not _LIST_ID.fullmatch(list_id):
        raise ConfigError(
            f"NEWSLETTER_LIST_ID: expected a dotted id like 'jobs.example.org' (RFC 2919), got {list_id!r}"
        )


def _is_loopback(host: str) -> bool:
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def aligned(dkim_domain: str, from_domain: str) -> bool:
    """Whether a DKIM d= domain aligns with the From domain in DMARC's relaxed mode, simply
    put: the same domain, or one a subdomain of the other. (DMARC's organisational domain
    would need the public suffix list; two sibling subdomains count as not aligned here.)"""
    d, f = dkim_domain.lower().rstrip("."), from_domain.lower().rstrip(".")
    return bool(d) and bool(f) and (d == f or d.endswith("." + f) or f.endswith("." + d))


def _check_plaintext_auth(s: Settings) -> None:
    # The password in clear is tolerable only where it never leaves this host.
    if s.smtp_plaintext_auth_on_loopback and not _is_loopback(s.smtp_host):
        raise ConfigError(
            "NEWSLETTER_SMTP_PLAINTEXT_AUTH_ON_LOOPBACK: only for a relay on 127.0.0.0/8, ::1 or localhost, "
            f"but NEWSLETTER_SMTP_HOST is {s.smtp_host!r}"
        )


@dataclass(frozen=True)
class ImapUrl:
    """NEWSLETTER_BOUNCE_IMAP_URL taken apart. TLS always: `imaps` from the first byte,
    `imap` only after STARTTLS (there is no way to send the password in clear)."""

    starttls: bool
    host: str
    port: int
    user: str
    password: str = field(repr=False)  # never into a log line by way of repr()
    folder: str


def parse_imap_url(url: str) -> ImapUrl:
    """imaps://USER:PASSWORD@HOST[:PORT]/FOLDER or imap://... (STARTTLS); FOLDER defaults to
    INBOX, user, password and folder are percent-decoded. ConfigError naming the variable."""
    name = "NEWSLETTER_BOUNCE_IMAP_URL"
    masked = mask_url(url)
    parts = urlsplit(url)
    if parts.scheme not in ("imaps", "imap"):
        raise ConfigError(f"{name}: expected imaps://USER:PASSWORD@HOST[:PORT]/FOLDER (or imap:// for STARTTLS), "
                          f"got {masked!r}")
    if parts.query or parts.fragment:
        # Most likely a '?' or '#' of the password left unescaped: the rest would be lost.
        raise ConfigError(f"{name}: unexpected '?' or '#' (percent-encode them in the password), got {masked!r}")
    try:
        port = parts.port
    except ValueError:  # its message quotes the port, which may be part of a password
        raise ConfigError(f"{name}: the port must be a number between 1 and 65535, got {masked!r}") from None
    _check_port(name, port)
    if not parts.hostname:
        raise ConfigError(f"{name}: no host, got {masked!r}")
    if parts.username is None or parts.password is None or not parts.username:
        raise ConfigError(f"{name}: give the mailbox's user and password as USER:PASSWORD@, got {masked!r}")
    user, password = unquote(parts.username), unquote(parts.password)
    folder = unquote(parts.path.lstrip("/")) or "INBOX"
    # imaplib sends LOGIN's arguments as ASCII quoted strings, which cannot carry these.
    for what, value in (("user", user), ("password", password)):
        if not value.isascii() or _CONTROL_CHARS.search(value):
            raise ConfigError(f"{name}: the {what} must be ASCII without control characters, got {masked!r}")
    if _CONTROL_CHARS.search(folder):
        raise ConfigError(f"{name}: control characters in the folder name, got {masked!r}")
    return ImapUrl(starttls=parts.scheme == "imap", host=parts.hostname,
                   port=port or (143 if parts.scheme == "imap" else 993),
                   user=user, password=password, folder=folder)


def _check_bounce_imap(s: Settings) -> None:
    if not s.bounce_imap_url:
        return
    imap = parse_imap_url(s.bounce_imap_url)
    done = s.bounce_imap_done_folder
    name = "NEWSLETTER_BOUNCE_IMAP_DONE_FOLDER"
    # '*' and '%' are LIST's wildcards: such a name could not be looked up to be created.
    if not done.strip() or _CONTROL_CHARS.search(done) or "*" in done or "%" in done:
        raise ConfigError(f"{name}: expected a folder name (without '*' or '%'), got {done!r}")
    # Moved into the folder it is read from, every message would be read again at each poll.
    # (Folder names are case-sensitive, but for INBOX: RFC 3501 5.1.)
    if done == imap.folder or done.upper() == imap.folder.upper() == "INBOX":
        raise ConfigError(f"{name}: must differ from the folder NEWSLETTER_BOUNCE_IMAP_URL reads ({imap.folder!r})")


# A host name as a CSP source takes it: labels of letters, digits and inner hyphens (an IDN
# is first turned into its A-label); an IPv4 address matches this too.
_HOST_LABEL = re.compile(r"(?!-)[a-z0-9-]{1,63}(?<!-)")
_LOOPBACK_HOSTS = ("localhost", "127.0.0.1")


def parse_embed_origins(values: tuple[str, ...]) -> tuple[str, ...]:
    """NEWSLETTER_EMBED_ORIGINS as CSP frame-ancestors sources: each a bare origin,
    scheme://host[:port], lower-cased, IDN hosts as A-labels. They go verbatim into a
    response header, and a wildcard or a path would hand the embedded form to pages
    nobody chose (clickjacking), so anything else refuses to start. `none` alone, or
    nothing, is no origin at all."""
    name = "NEWSLETTER_EMBED_ORIGINS"
    if len(values) == 1 and values[0].strip().strip("'").lower() == "none":
        return ()
    origins: list[str] = []
    for value in values:
        origin = _embed_origin(name, value.strip())
        if origin not in origins:
            origins.append(origin)
    return tuple(origins)


def _embed_origin(name: str, value: str) -> str:
    shown = value[:200]
    if "*" in value:
        raise ConfigError(f"{name}: wildcards are not allowed, name each origin (https://jobs.example.org), got {shown!r}")
    if _CONTROL_CHARS.search(value) or " " in value or ";" in value or "'" in value:
        raise ConfigError(f"{name}: expected comma-separated origins like https://jobs.example.org, got {shown!r}")
    parts = urlsplit(value)
    if parts.scheme.lower() not in ("https", "http") or not parts.netloc:
        raise ConfigError(f"{name}: expected an origin like https://jobs.example.org, got {shown!r}")
    if parts.path not in ("", "/") or parts.query or parts.fragment or value.endswith(("?", "#")):
        raise ConfigError(f"{name}: an origin has no path, query or fragment (https://jobs.example.org), got {shown!r}")
    if "@" in parts.netloc:
        raise ConfigError(f"{name}: an origin has no user or password, got {shown!r}")
    try:
        port = parts.port
    except ValueError:
        raise ConfigError(f"{name}: the port must be a number between 1 and 65535, got {shown!r}") from None
    _check_port(name, port)
    host = (parts.hostname or "").rstrip(".")
    if host and not host.isascii():
        host = _ascii_domain(name, host)
    host = host.lower()
    if not host or not all(_HOST_LABEL.fullmatch(label) for label in host.split(".")):
        raise ConfigError(f"{name}: not a host name, got {shown!r}")
    scheme = parts.scheme.lower()
    if scheme == "http" and host not in _LOOPBACK_HOSTS:
        raise ConfigError(f"{name}: use https (http only for localhost or 127.0.0.1), got {shown!r}")
    return f"{scheme}://{host}" + (f":{port}" if port is not None else "")


def _check_rate_limit(name: str, value: str) -> None:
    from limits import parse_many

    try:
        parse_many(value)
    except ValueError:
        raise ConfigError(f"{name}: not a Flask-Limiter rate like '10 per minute', got {value!r}") from None


def load_settings(
    environ: Mapping[str, str] | None = None,
    dotenv_path: str | os.PathLike[str] | None = ".env",
    **overrides: Any,
) -> Settings:
    """Build and validate Settings from the environment (which wins) and a `.env` file."""
    source: dict[str, str] = {}
    if dotenv_path is not None and Path(dotenv_path).is_file():
        try:
            source.update({k: v for k, v in dotenv_values(dotenv_path).items() if v is not None})
        except UnicodeDecodeError as exc:
            raise ConfigError(f"{dotenv_path}: not UTF-8 text (byte {exc.object[exc.start]:#04x} at offset {exc.start}); "
                              "convert the file to UTF-8") from None
    source.update(os.environ if environ is None else environ)

    values: dict[str, Any] = {}
    defaults = Settings()
    for f in fields(Settings):
        if f.name == "extra":
            continue
        var = PREFIX + f.name.upper()
        if var not in source:
            continue
        raw = source[var].strip()
        current = getattr(defaults, f.name)
        if isinstance(current, bool):
            values[f.name] = _parse_bool(var, raw)
        elif isinstance(current, int):
            values[f.name] = _parse_int(var, raw, 0, NUMBER_MAX)
        elif isinstance(current, float):
            values[f.name] = _parse_float(var, raw, 0.0)
        elif isinstance(current, tuple):
            values[f.name] = tuple(part.strip() for part in raw.split(",") if part.strip())
        else:
            values[f.name] = raw
    values.update(overrides)
    settings = replace(defaults, **values)
    return validate(settings)


@dataclass(frozen=True)
class _Range:
    """A number setting's allowed range; `above` makes `low` itself not allowed."""

    name: str
    low: float
    high: float = NUMBER_MAX
    above: bool = False

    def holds(self, value: float) -> bool:
        return (self.low < value if self.above else self.low <= value) and value <= self.high

    def message(self, value: float) -> str:
        low = f"more than {self.low:g}" if self.above else f"at least {self.low:g}"
        if self.high == NUMBER_MAX:
            return f"must be {low}, got {value:g}"
        if not self.above:
            return f"must be between {self.low:g} and {self.high:g}, got {value:g}"
        return f"must be {low} and at most {self.high:g}, got {value:g}"


_RANGES = (
    _Range("smtp_port", 1, 65535),
    # 0 would make every connection fail at once; an hour-long silence is a dead relay (and
    # a send job that waits that long has long lost its lease to another worker).
    _Range("smtp_timeout_seconds", 0, 3600, above=True),
    _Range("digest_interval_days", 1),
    _Range("send_lease_seconds", 5),
    # 0 would retry a temporary failure at once, over and over, instead of backing off.
    _Range("retry_base_seconds", 0, above=True),
    # 0 would take every queued job for lost and queue it again on each reconcile.
    _Range("requeue_after_seconds", 1),
    _Range("confirm_max_age_hours", 0, above=True),
    _Range("data_link_max_age_minutes", 0, 24 * 60, above=True),  # a day at most (STANDARDS 26)
    _Range("former_reader_retention_days", 1),
    _Range("unconfirmed_retention_days", 1),
    # 0 would delete the proof of consent as soon as a subscription ends.
    _Range("consent_retention_days", 1),
    _Range("reconcile_interval_seconds", 1),
    _Range("tick_interval_seconds", 1),
    _Range("bounce_poll_seconds", 10),
    _Range("soft_bounce_limit", 1, 100),
    _Range("policy_bounce_limit", 1, 100),
    _Range("send_chunk_size", 1, 10_000),
    _Range("digest_max_listings", 1, 200),
    # The demo's inbox listens here and its mail goes here: 0 would be a random port nobody sends to.
    _Range("demo_smtp_port", 1, 65535),
    # 0 would end every admin session at its next request; a day at most, as an unattended
    # browser should not stay logged in overnight.
    _Range("admin_idle_minutes", 1, 24 * 60),
)


def _check_ranges(s: Settings) -> None:
    for limit in _RANGES:
        value = getattr(s, limit.name)
        if not limit.holds(value):
            raise ConfigError(f"{PREFIX}{limit.name.upper()}: {limit.message(value)}")


def validate(settings: Settings) -> Settings:
    """Check every value; fill in the development secret key. Returns the final Settings."""
    s = settings
    if s.env not in ENVIRONMENTS:
        raise ConfigError(f"NEWSLETTER_ENV: expected one of {', '.join(ENVIRONMENTS)}, got {s.env!r}")
    _check_database_url(s.database_url)
    _check_redis_url(s.redis_url)
    _check_bounce_imap(s)
    _check_ranges(s)
    if s.smtp_security not in SECURITY_MODES:
        raise ConfigError(
            f"NEWSLETTER_SMTP_SECURITY: expected one of {', '.join(SECURITY_MODES)}, got {s.smtp_security!r}"
        )
    if bool(s.smtp_username) != bool(s.smtp_password):
        raise ConfigError("NEWSLETTER_SMTP_PASSWORD: SMTP AUTH needs both a username and a password")
    _check_plaintext_auth(s)
    if s.smtp_ca_file and not Path(s.smtp_ca_file).is_file():
        raise ConfigError(f"NEWSLETTER_SMTP_CA_FILE: no such file {s.smtp_ca_file!r}")
    base = urlsplit(s.base_url)
    if base.scheme not in ("http", "https") or not base.netloc or base.query or base.fragment:
        raise ConfigError(f"NEWSLETTER_BASE_URL: expected an absolute http(s) URL, got {mask_url(s.base_url)!r}")
    s = replace(s, base_url=_ascii_url("NEWSLETTER_BASE_URL", s.base_url))
    s = replace(s, mail_from=_ascii_mailbox("NEWSLETTER_MAIL_FROM", s.mail_from))
    if s.bounce_address:
        s = replace(s, bounce_address=_ascii_mailbox("NEWSLETTER_BOUNCE_ADDRESS", s.bounce_address))
    _check_list_id(s.list_name, s.list_id)
    try:
        ZoneInfo(s.timezone)
    except (ZoneInfoNotFoundError, ValueError):
        raise ConfigError(f"NEWSLETTER_TIMEZONE: unknown time zone {s.timezone!r}") from None
    try:
        first = datetime.fromisoformat(s.digest_first)
    except ValueError:
        raise ConfigError(
            f"NEWSLETTER_DIGEST_FIRST: expected an ISO local date-time like 2026-01-06T08:00, got {s.digest_first!r}"
        ) from None
    if first.tzinfo is not None:
        raise ConfigError("NEWSLETTER_DIGEST_FIRST: give a local time without offset; NEWSLETTER_TIMEZONE sets the zone")
    _check_rate_limit("NEWSLETTER_SIGNUP_RATE_LIMIT", s.signup_rate_limit)
    for name, url in (("NEWSLETTER_BOARD_URL", s.board_url), ("NEWSLETTER_BOARD_SEARCH_URL", s.board_search_url)):
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise ConfigError(f"{name}: expected an absolute http(s) URL, got {mask_url(url)!r}")
    s = replace(s, board_url=_ascii_url("NEWSLETTER_BOARD_URL", s.board_url),
                board_search_url=_ascii_url("NEWSLETTER_BOARD_SEARCH_URL", s.board_search_url, keep="{}"))
    dkim = (s.dkim_selector, s.dkim_domain, s.dkim_key_file)
    if any(dkim) and not all(dkim):
        raise ConfigError("NEWSLETTER_DKIM_KEY_FILE: DKIM signing needs NEWSLETTER_DKIM_SELECTOR, _DOMAIN and _KEY_FILE together")
    if s.dkim_domain and not s.dkim_domain.isascii():
        s = replace(s, dkim_domain=_ascii_domain("NEWSLETTER_DKIM_DOMAIN", s.dkim_domain))
    if s.dkim_key_file and not Path(s.dkim_key_file).is_file():
        raise ConfigError(f"NEWSLETTER_DKIM_KEY_FILE: no such file {s.dkim_key_file!r}")
    privacy = urlsplit(s.privacy_url)
    if privacy.scheme not in ("http", "https") or not privacy.netloc:
        raise ConfigError(f"NEWSLETTER_PRIVACY_URL: expected an absolute http(s) URL, got {mask_url(s.privacy_url)!r}")
    s = replace(s, privacy_url=_ascii_url("NEWSLETTER_PRIVACY_URL", s.privacy_url))
    s = replace(s, embed_origins=parse_embed_origins(s.embed_origins))
    if not s.impressum.strip():
        raise ConfigError("NEWSLETTER_IMPRESSUM: the operator's Impressum is required (DDG §5)")

    if s.is_production:
        if not s.secret_key:
            raise ConfigError("NEWSLETTER_SECRET_KEY: required when NEWSLETTER_ENV=production")
        if len(s.secret_key) < MIN_KEY_LENGTH:
            raise ConfigError(f"NEWSLETTER_SECRET_KEY: use at least {MIN_KEY_LENGTH} random characters in production")
        # An old key still signs valid links: a weak one is as good as a weak key.
        for number, old in enumerate(s.secret_key_fallbacks, 1):
            if len(old) < MIN_KEY_LENGTH:
                raise ConfigError(f"NEWSLETTER_SECRET_KEY_FALLBACKS: entry {number} is shorter than "
                                  f"{MIN_KEY_LENGTH} characters; every key must be as strong in production")
        if s.smtp_username and s.smtp_security == "none" and not s.smtp_plaintext_auth_on_loopback:
            raise ConfigError("NEWSLETTER_SMTP_SECURITY: SMTP AUTH would send the password in clear; use starttls or "
                              "tls (or, for a relay on this host, NEWSLETTER_SMTP_PLAINTEXT_AUTH_ON_LOOPBACK=true)")
        if base.scheme != "https":
            raise ConfigError(f"NEWSLETTER_BASE_URL: must be https in production, got {mask_url(s.base_url)!r}")
        if s.demo:
            raise ConfigError("NEWSLETTER_DEMO: the demo inbox cannot be turned on in production")
        # DMARC passes on DKIM only when d= aligns with the From domain (STANDARDS 36).
        if s.dkim_key_file and not aligned(s.dkim_domain, s.mail_domain):
            raise ConfigError(f"NEWSLETTER_DKIM_DOMAIN: {s.dkim_domain!r} does not align with the From domain "
                              f"{s.mail_domain!r} of NEWSLETTER_MAIL_FROM (DMARC); sign with the From domain "
                              "or a domain it belongs to")
        # The built-in values describe a made-up operator: in production every mail would
        # carry its Impressum (DDG §5) and point readers to its privacy notice.
        defaults = Settings()
        for variable, field_name in _OPERATOR_SETTINGS:
            if getattr(s, field_name) == getattr(defaults, field_name):
                raise ConfigError(f"{variable}: required in production; the built-in value is a made-up example")
    elif not s.secret_key:
        s = replace(s, secret_key=_dev_secret_key(Path(s.instance_path)))
    return s


_OPERATOR_SETTINGS = (
    ("NEWSLETTER_IMPRESSUM", "impressum"),
    ("NEWSLETTER_MAIL_FROM", "mail_from"),
    ("NEWSLETTER_PRIVACY_URL", "privacy_url"),
    ("NEWSLETTER_BOARD_URL", "board_url"),
    ("NEWSLETTER_BOARD_SEARCH_URL", "board_search_url"),
)


def _dev_secret_key(instance: Path) -> str:
    """A random key kept in instance/ so that dev links survive restarts."""
    try:
        return _read_or_make_key(instance / "secret_key")
    except OSError as exc:
        raise ConfigError(
            f"NEWSLETTER_INSTANCE_PATH: cannot keep the development secret key in {str(instance)!r}: "
            f"{exc.strerror or exc} (or set NEWSLETTER_SECRET_KEY)"
        ) from None


def _read_or_make_key(path: Path) -> str:
    try:
        return _checked_key(path)
    except FileNotFoundError:
        pass
    path.parent.mkdir(parents=True, exist_ok=True)
    key = secrets.token_urlsafe(48)
    # Written aside and linked into place, so that a process losing the race (`make demo`
    # starts several) reads a whole key, never an empty file still being written.
    draft = path.with_name(f".{path.name}.{secrets.token_hex(4)}")
    fd = os.open(draft, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(key)
    try:
        os.link(draft, path)
    except FileExistsError:  # another process won the race
        return _checked_key(path)
    finally:
        draft.unlink()
    return key


def _checked_key(path: Path) -> str:
    # An empty file would sign every link with the empty key, which anyone can forge.
    key = path.read_text().strip()
    if len(key) < MIN_KEY_LENGTH:
        held = f"only {len(key)} characters" if key else "no key"
        raise ConfigError(
            f"NEWSLETTER_SECRET_KEY: the development key file {str(path)!r} holds {held} (at least "
            f"{MIN_KEY_LENGTH} needed); delete it to have a new one made, or set NEWSLETTER_SECRET_KEY"
        )
    return key
