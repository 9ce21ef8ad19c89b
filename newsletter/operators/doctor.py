"""`newsletter doctor`: a configuration checked end to end before the first send, one result
per check. Each check returns what it found and never raises: whatever breaks becomes a
`fail` result with a fix, and no secret appears in any of them (STANDARDS 35)."""

from __future__ import annotations

import secrets
import urllib.error
import urllib.request
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, replace
from datetime import UTC, date, datetime
from email import message_from_bytes
from email import policy as email_policy
from email.message import EmailMessage
from email.utils import format_datetime, make_msgid
from enum import StrEnum
from functools import wraps
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from newsletter.config import ConfigError, Settings, aligned, mask_url
from newsletter.mail import dns_records
from newsletter.mail.transport import DeliveryError, SmtpTransport

SUBJECT = "Newsletter doctor test"
# Gmail shows "[Message clipped]" for HTML over this size and hides the rest, the
# unsubscribe link and the Impressum with it.
GMAIL_CLIP_BYTES = 102 * 1024
HTTP_TIMEOUT_SECONDS = 5.0
SMTP_TIMEOUT_SECONDS = 10.0
DB_CONNECT_TIMEOUT_SECONDS = 5


class Status(StrEnum):
    OK = "ok"
    FAIL = "fail"
    SKIP = "skip"  # could not or need not be checked; never a failure (printed as ok: ... skipped)


@dataclass(frozen=True)
class Result:
    check: str
    status: Status
    detail: str
    fix: str = ""

    @property
    def failed(self) -> bool:
        return self.status == Status.FAIL

    def line(self) -> str:
        """One `ok`/`fail` line (CONTRACT); a check that was not made is no failure: it reads
        `ok: CHECK: skipped: why`."""
        fix = f" -- fix: {self.fix}" if self.fix else ""
        detail = " ".join(self.detail.split())
        if self.status == Status.SKIP:
            return f"{Status.OK}: {self.check}: skipped: {detail}"
        return f"{self.status}: {self.check}: {detail}{fix}"


def ok(check: str, detail: str) -> Result:
    return Result(check, Status.OK, detail)


def fail(check: str, detail: str, fix: str) -> Result:
    return Result(check, Status.FAIL, detail, fix)


def skip(check: str, detail: str) -> Result:
    return Result(check, Status.SKIP, detail)


def _secrets_of(settings: Settings) -> list[str]:
    from sqlalchemy.engine import make_url

    found = [settings.smtp_password, settings.secret_key, *settings.secret_key_fallbacks]
    try:
        found.append(make_url(settings.database_url).password or "")
    except Exception:  # noqa: BLE001 - the URL was validated; nothing to hide otherwise
        pass
    try:
        found.append(urlsplit(settings.redis_url).password or "")
    except ValueError:
        pass
    return [secret for secret in found if len(secret) >= 3]


def _scrubbed(result: Result, settings: Settings) -> Result:
    """The result with any secret of the settings replaced by ***, wherever an error message
    quoted it from."""
    detail, fix = result.detail, result.fix
    for secret in _secrets_of(settings):
        detail, fix = detail.replace(secret, "***"), fix.replace(secret, "***")
    return replace(result, detail=detail, fix=fix)


def _guarded(check: str, fix: str) -> Callable[[Callable[..., Result]], Callable[..., Result]]:
    """Whatever a check did not see coming is a fail line of its own, not a traceback."""
    def decorate(function: Callable[..., Result]) -> Callable[..., Result]:
        @wraps(function)
        def run(*args: Any, **kwargs: Any) -> Result:
            try:
                return function(*args, **kwargs)
            except Exception as exc:  # noqa: BLE001 - the doctor reports, it does not crash
                return fail(check, f"{type(exc).__name__}: {exc}", fix)
        return run
    return decorate


# -- the checks, in the order they run ------------------------------------------------------

def check_settings(load: Callable[[], Settings]) -> tuple[Result, Settings | None]:
    try:
        settings = load()
    except ConfigError as exc:
        return fail("settings", str(exc), "correct that variable (environment, .env or -e FILE)"), None
    return ok("settings", f"loaded (NEWSLETTER_ENV={settings.env})"), settings


@_guarded("database", "check NEWSLETTER_DATABASE_URL")
def check_database(settings: Settings) -> Result:
    from alembic.runtime.migration import MigrationContext
    from alembic.script import ScriptDirectory
    from sqlalchemy import create_engine
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import SQLAlchemyError

    from newsletter.migrate import alembic_config

    where = mask_url(settings.database_url)
    url = make_url(settings.database_url)
    connect_args: dict[str, Any] = {}
    if url.get_backend_name() == "sqlite":
        path = url.database or ""
        # Connecting would create an empty file: say what is missing instead.
        if path and path != ":memory:" and not path.startswith("file:") and not Path(path).is_file():
            return fail("database", f"no database file at {path}", "run `newsletter db upgrade` to create the schema")
    else:
        connect_args["connect_timeout"] = DB_CONNECT_TIMEOUT_SECONDS
    engine = create_engine(settings.database_url, connect_args=connect_args)
    try:
        with engine.connect() as conn:
            current = MigrationContext.configure(conn).get_current_revision()
    except SQLAlchemyError as exc:
        reason = getattr(exc, "orig", None) or exc
        return fail("database", f"{where} does not answer: {reason}",
                    "check NEWSLETTER_DATABASE_URL and that the database server runs")
    finally:
        engine.dispose()
    heads = ScriptDirectory.from_config(alembic_config(settings.database_url)).get_heads()
    if current is None:
        return fail("database", f"{where} has no schema yet", "run `newsletter db upgrade`")
    if current not in heads:
        return fail("database", f"{where} is at revision {current}, the newest is {', '.join(heads)}",
                    "run `newsletter db upgrade`")
    return ok("database", f"{where} answers, at the newest revision {current}")


@_guarded("redis", "check NEWSLETTER_REDIS_URL")
def check_redis(settings: Settings) -> Result:
    from redis.exceptions import RedisError

    from newsletter.job_context import redis_from_settings

    where = mask_url(settings.redis_url)
    try:
        with redis_from_settings(settings) as client:
            client.ping()
    except RedisError as exc:
        return fail("redis", f"{where} does not answer: {exc}", "start Redis or correct NEWSLETTER_REDIS_URL")
    return ok("redis", f"{where} answers")


def _tls_fix(settings: Settings) -> str:
    return (f"give the relay a certificate for {settings.smtp_host} from a trusted CA, or set NEWSLETTER_SMTP_CA_FILE "
            "to the CA that issued it")


def _is_tls_problem(error: DeliveryError) -> bool:
    return any(word in error.detail for word in ("SSL", "certificate", "TLS"))


def check_relay(settings: Settings) -> Iterator[Result]:
    """EHLO, then STARTTLS or TLS, then AUTH: each a connection of its own through the one
    SMTP transport, so that each line names the step that failed."""
    s = replace(settings, smtp_timeout_seconds=min(settings.smtp_timeout_seconds, SMTP_TIMEOUT_SECONDS))
    where = f"{s.smtp_host}:{s.smtp_port}"
    plain = replace(s, smtp_username="", smtp_password="",
                    smtp_security="none" if s.smtp_security == "starttls" else s.smtp_security)
    try:
        with SmtpTransport(plain) as transport:
            conn = transport.open()
            answered, offers_starttls = conn.does_esmtp, bool(conn.has_extn("starttls"))
            auth = str(conn.esmtp_features.get("auth", "")).strip()
    except DeliveryError as exc:
        fix = _tls_fix(s) if _is_tls_problem(exc) else (
            "check NEWSLETTER_SMTP_HOST and NEWSLETTER_SMTP_PORT (and NEWSLETTER_SMTP_SECURITY: tls for port 465, "
            "starttls for 587) and that the relay runs and lets this host connect")
        yield fail("smtp relay", f"{where} does not answer EHLO: {exc.detail}", fix)
        yield skip("smtp tls", "the relay did not answer")
        yield skip("smtp auth", "the relay did not answer")
        return
    if not answered:
        yield fail("smtp relay", f"{where} answered but refused EHLO", "use a relay that speaks ESMTP")
        return
    yield ok("smtp relay", f"{where} answers EHLO" + (" (over TLS, certificate verified)" if s.smtp_security == "tls" else ""))

    tls_ok = True
    if s.smtp_security == "starttls":
        tls_ok = False
        if not offers_starttls:
            yield fail("smtp tls", f"{where} does not offer STARTTLS but NEWSLETTER_SMTP_SECURITY=starttls",
                       "turn STARTTLS on at the relay, or use its TLS port with NEWSLETTER_SMTP_SECURITY=tls")
        else:
            try:
                with SmtpTransport(replace(s, smtp_username="", smtp_password="")) as transport:
                    transport.open()
                tls_ok = True
                yield ok("smtp tls", f"{where} offers STARTTLS; the certificate verified")
            except DeliveryError as exc:
                yield fail("smtp tls", f"the TLS handshake with {where} failed: {exc.detail}", _tls_fix(s))
    elif s.smtp_security == "tls":
        yield ok("smtp tls", "implicit TLS; the certificate verified")
    else:
        yield skip("smtp tls", "NEWSLETTER_SMTP_SECURITY=none: mail travels to the relay unencrypted "
                               "(fine for a relay on this host)")

    if not s.smtp_username:
        yield skip("smtp auth", "no NEWSLETTER_SMTP_USERNAME: the relay must accept mail from this host without AUTH")
    elif not tls_ok:
        yield skip("smtp auth", "not tried: the password never goes without the TLS the settings ask for")
    else:
        try:
            with SmtpTransport(s) as transport:
                transport.open()
        except DeliveryError as exc:
            offered = f" (the relay offers AUTH {auth})" if auth else ""
            reply = str(exc).replace("SMTP AUTH refused: ", "")
            yield fail("smtp auth", f"{where} refused AUTH as {s.smtp_username!r}: {reply}{offered}",
                       "check NEWSLETTER_SMTP_USERNAME and NEWSLETTER_SMTP_PASSWORD")
            return
        yield ok("smtp auth", f"{where} accepted AUTH as {s.smtp_username!r}")


@_guarded("dkim key", "check NEWSLETTER_DKIM_KEY_FILE")
def check_dkim(settings: Settings, lookup: dns_records.Lookup) -> Result:
    if not settings.dkim_key_file:
        return skip("dkim key", "no DKIM key configured (NEWSLETTER_DKIM_KEY_FILE, _SELECTOR, _DOMAIN); "
                                "Gmail and Yahoo want DKIM of bulk senders")
    try:
        key = dns_records.dkim_key(settings)
    except (dns_records.DkimKeyError, OSError) as exc:
        return fail("dkim key", f"NEWSLETTER_DKIM_KEY_FILE cannot be used: {exc}",
                    "give a PEM RSA private key, or an Ed25519 private key as 32 bytes in base64")
    assert key is not None
    verified = _signs_and_verifies(settings, key)
    if not verified:
        return fail("dkim key", "a message signed with the key does not verify against its own public key",
                    "generate a new key pair")
    record = dns_records.Record("DKIM", dns_records.dkim_name(settings), key.record_value)
    found = dns_records.check(record, lookup, key)
    loaded = f"the {key.algorithm} key loads and signs"
    if found.outcome == dns_records.Outcome.UNKNOWN:
        return skip("dkim key", f"{loaded}; not compared with DNS ({found.detail})")
    if found.outcome == dns_records.Outcome.FAIL:
        return fail("dkim key", f"{loaded}, but {record.name}: {found.detail}",
                    "publish the DKIM record `newsletter dns-records` prints")
    return ok("dkim key", f"{loaded} and matches the record at {record.name}")


def _signs_and_verifies(settings: Settings, key: dns_records.DkimKey) -> bool:
    """Sign a message as every mail is signed and verify it offline against the public key
    derived for DNS: proves dkimpy takes the key and the record we print is its own."""
    import dkim

    from newsletter.mail.dkim import signer_for

    signer = signer_for(settings)
    assert signer is not None
    message = (f"From: {settings.mail_from_address}\r\nTo: doctor@example.org\r\nSubject: {SUBJECT}\r\n"
               f"Date: {format_datetime(_now())}\r\n\r\nDKIM self-test\r\n").encode()
    signed = signer.sign(message)
    record = key.record_value.encode()
    return bool(dkim.verify(signed, dnsfunc=lambda _name, timeout=5: record))


def _now() -> datetime:
    return datetime.now(UTC)


def check_alignment(settings: Settings) -> Result:
    if not settings.dkim_key_file:
        return skip("dmarc alignment", "no DKIM signing: DMARC can pass on SPF alone, which forwarding breaks")
    if aligned(settings.dkim_domain, settings.mail_domain):
        return ok("dmarc alignment", f"DKIM d={settings.dkim_domain} aligns with the From domain {settings.mail_domain}")
    return fail("dmarc alignment", f"DKIM d={settings.dkim_domain} does not align with the From domain "
                                   f"{settings.mail_domain}: DMARC fails on DKIM",
                f"sign with NEWSLETTER_DKIM_DOMAIN={settings.mail_domain} and publish its key")


@_guarded("test mail", "check the relay settings")
def check_test_mail(settings: Settings, to: str | None) -> Result:
    if not to:
        return skip("test mail", "none sent; `newsletter doctor --to YOUR-ADDRESS` sends one through the relay")
    from newsletter.mail.dkim import signer_for

    message = EmailMessage()
    message["From"] = settings.mail_from
    message["To"] = to
    message["Subject"] = SUBJECT
    message["Date"] = format_datetime(_now())
    message["Message-ID"] = make_msgid("doctor", domain=settings.mail_domain)
    message["Auto-Submitted"] = "auto-generated"
    message.set_content("This test mail was sent by `newsletter doctor` to check the relay settings.\n"
                        "Diese Testmail hat `newsletter doctor` geschickt, um den Versand zu prüfen.\n")
    data = message.as_bytes(policy=email_policy.SMTPUTF8 if not to.isascii() else email_policy.SMTP)
    signer = signer_for(settings)
    if signer is not None:
        data = signer.sign(data)
    s = replace(settings, smtp_timeout_seconds=min(settings.smtp_timeout_seconds, SMTP_TIMEOUT_SECONDS))
    try:
        with SmtpTransport(s) as transport:
            transport.send(settings.effective_bounce_address, to, data, utf8=not to.isascii())
    except DeliveryError as exc:
        return fail("test mail", f"the relay did not take the test mail: {exc}",
                    "see the smtp lines above; the relay's reply says what it wants")
    return ok("test mail", f"the relay accepted a test mail to {to} ({message['Message-ID']})")


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: Any, **kwargs: Any) -> None:  # a 3xx is the answer itself
        return None


@_guarded("one-click unsubscribe", "check NEWSLETTER_BASE_URL")
def check_one_click(settings: Settings) -> Result:
    """POST List-Unsubscribe=One-Click, as a mailbox provider does (RFC 8058), with a valid
    token of a reader nobody is: it must answer 2xx, without a redirect, and change nothing."""
    from newsletter.tokens import tokens_for

    token = tokens_for(settings).unsubscribe("doctor-" + secrets.token_urlsafe(12))
    shown = settings.url("/unsubscribe/") + "<token>"
    request = urllib.request.Request(
        settings.url("/unsubscribe/" + token), data=b"List-Unsubscribe=One-Click", method="POST",
        headers={"Content-Type": "application/x-www-form-urlencoded", "User-Agent": "newsletter-doctor"},
    )
    opener = urllib.request.build_opener(_NoRedirect)
    try:
        with opener.open(request, timeout=HTTP_TIMEOUT_SECONDS) as response:
            status = response.status
    except urllib.error.HTTPError as exc:
        status = exc.code
        exc.close()
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        return fail("one-click unsubscribe", f"POST {mask_url(shown)} failed: {reason}",
                    "serve NEWSLETTER_BASE_URL: the reverse proxy must pass /unsubscribe/ to the web app "
                    "(gunicorn wsgi:app), and NEWSLETTER_BASE_URL must be the address readers reach")
    if 300 <= status < 400:
        return fail("one-click unsubscribe", f"POST {mask_url(shown)} answered {status}, a redirect",
                    "RFC 8058 wants 2xx: set NEWSLETTER_BASE_URL to the final https address the proxy serves")
    if not 200 <= status < 300:
        return fail("one-click unsubscribe", f"POST {mask_url(shown)} answered {status}",
                    "the reverse proxy must pass POST /unsubscribe/ to the web app unchanged")
    return ok("one-click unsubscribe", f"POST {mask_url(shown)} answered {status}")


def _long_listings(count: int, today: date) -> list[Any]:
    """Listings as long as real ones get: gendered titles with their tech stack, company
    names with legal forms, hybrid locations, slugs in URLs, full descriptions."""
    from newsletter.mail.digest import ListingView, snippet

    description = (
        "Die Süddeutsche Versicherungs- und Finanzdienstleistungsgesellschaft ist ein traditionsreiches Unternehmen "
        "mit über 4.000 Mitarbeitenden. Für unser Team suchen wir ab sofort Verstärkung. Zu Ihren Aufgaben gehören "
        "die Planung und Umsetzung neuer Projekte, die Abstimmung mit internen Fachabteilungen und die Dokumentation. "
        "Wir bieten 30 Tage Urlaub, flexible Arbeitszeiten, ein Jobticket und betriebliche Altersvorsorge."
    )
    title = ("Senior Softwareentwicklerin / Softwareentwickler Backend (Python, Django, PostgreSQL) – "
             "Schwerpunkt Zahlungsverkehr und Schnittstellen (m/w/d)")
    return [
        ListingView(
            title=f"{title} {n + 1}",
            url=(f"https://jobs.example.org/stellenangebote/{100000 + n}-senior-softwareentwicklerin-softwareentwickler-"
                 "backend-python-django-postgresql-schwerpunkt-zahlungsverkehr-frankfurt-am-main"),
            company="Süddeutsche Versicherungs- und Finanzdienstleistungsgesellschaft mbH & Co. KGaA",
            location="Frankfurt am Main (Hybrid, bis zu drei Tage Homeoffice pro Woche)",
            category="IT, Softwareentwicklung & Datenbanken",
            published=today,
            snippet=snippet(description),
        )
        for n in range(count)
    ]


@_guarded("digest size", "check the digest templates")
def check_digest_size(settings: Settings) -> Result:
    from newsletter.mail.digest import DigestComposer
    from newsletter.tokens import tokens_for

    # Unsigned: the signature is a header and does not change the HTML part.
    unsigned = replace(settings, dkim_key_file="", dkim_selector="", dkim_domain="")
    composer = DigestComposer(unsigned)
    count = settings.digest_max_listings
    today = _now().date()
    listings = _long_listings(count, today)
    tokens = tokens_for(settings)
    reader = "doctor-" + secrets.token_urlsafe(12)
    sizes = []
    for language in ("de", "en"):
        variant = composer.render_variant(language, "Softwareentwicklung Python Django", "Frankfurt am Main",
                                          listings, count + 250, today)
        data, _ = composer.build(variant, "leserin.mustermann@example.org", tokens.preferences(reader),
                                 tokens.unsubscribe(reader), "doctor:newsletter")
        message = message_from_bytes(data, policy=email_policy.default)
        assert isinstance(message, EmailMessage)
        html = message.get_body(preferencelist=("html",))
        assert html is not None
        # As sent (quoted-printable): what the mailbox receives and Gmail measures.
        sizes.append((len(str(html.get_payload()).encode()), language))
    size, language = max(sizes)
    shown = f"{size / 1024:.1f} KB"
    if size >= GMAIL_CLIP_BYTES:
        return fail("digest size", f"the HTML part of a digest with {count} long listings is {shown} ({language}); "
                                   "Gmail clips above 102 KB and hides the unsubscribe link and Impressum",
                    "lower NEWSLETTER_DIGEST_MAX_LISTINGS")
    return ok("digest size", f"HTML part {shown} with {count} long listings (largest: {language}; "
                             "Gmail clips above 102 KB)")


def run(load: Callable[[], Settings], *, to: str | None = None,
        lookup: dns_records.Lookup | None = None) -> Iterator[Result]:
    """Every check in order, each result as soon as it is known."""
    first, settings = check_settings(load)
    yield first
    if settings is None:
        return
    dns = lookup or dns_records.Lookup()
    steps: list[Callable[[], Iterable[Result]]] = [
        lambda: [check_database(settings)],
        lambda: [check_redis(settings)],
        lambda: _relay_guarded(settings),
        lambda: [check_dkim(settings, dns)],
        lambda: [check_alignment(settings)],
        lambda: [check_test_mail(settings, to)],
        lambda: [check_one_click(settings)],
        lambda: [check_digest_size(settings)],
    ]
    for step in steps:
        for result in step():
            yield _scrubbed(result, settings)


def _relay_guarded(settings: Settings) -> Iterator[Result]:
    try:
        yield from check_relay(settings)
    except Exception as exc:  # noqa: BLE001 - the doctor reports, it does not crash
        yield fail("smtp relay", f"{type(exc).__name__}: {exc}", "check the NEWSLETTER_SMTP_* settings")
