"""`newsletter dns-records [--check]` and `newsletter doctor`: what a sender must publish in
DNS, and a configuration checked end to end before the first send. The work is done in
mail/dns_records.py and operators/doctor.py; here are the options and the printing."""

from __future__ import annotations

import sys
from typing import NoReturn

import click

from newsletter.cli.context import settings
from newsletter.cli.errors import fail
from newsletter.config import ConfigError
from newsletter.mail import dns_records
from newsletter.operators import doctor
from newsletter.validation import InvalidInput, clean_email


def _resolver(_ctx: click.Context, _param: click.Parameter, value: str | None) -> tuple[str, int] | None:
    if value is None:
        return None
    try:
        return dns_records.parse_resolver(value)
    except ValueError:
        raise click.BadParameter(f"expected an IP address with an optional port (1.1.1.1, 127.0.0.1:5353, "
                                 f"[::1]:53), got {value!r}") from None


resolver_option = click.option(
    "--resolver", metavar="ADDRESS[:PORT]", callback=_resolver,
    help="Ask this DNS server instead of the system's resolver (an internal resolver; the tests' own).",
)
_PUBLISH = "publish the record `newsletter dns-records` prints"


@click.command("dns-records")
@click.option("--check", is_flag=True, help="Look each record up in DNS and say whether what is published matches.")
@resolver_option
def dns_records_command(check: bool, resolver: tuple[str, int] | None) -> None:
    """The SPF, DKIM and DMARC records to publish, as zone-file lines (or, with --check,
    whether DNS publishes them: exit 1 when one does not match)."""
    plan = dns_records.plan(settings())
    if not check:
        for line in plan.lines():
            click.echo(line)
        if plan.key_error:
            fail(plan.key_error)
        return
    lookup = dns_records.Lookup(resolver)
    failed = bool(plan.key_error)
    for record in plan.records:
        found = dns_records.check(record, lookup, plan.key)
        fix = f" -- fix: {_PUBLISH}" if found.outcome == dns_records.Outcome.FAIL else ""
        click.echo(f"{found.outcome}: {record.kind} {record.name}: {found.detail}{fix}")
        failed = failed or found.outcome == dns_records.Outcome.FAIL
        if record.kind == "SPF" and plan.key is None:
            status = "fail" if plan.key_error else "skip"
            click.echo(f"{status}: DKIM: {plan.dkim_note}")
    if failed:
        sys.exit(1)


@click.command("doctor")
@click.option("--to", metavar="ADDRESS", help="Also send a test mail to ADDRESS through the relay.")
@resolver_option
def doctor_command(to: str | None, resolver: tuple[str, int] | None) -> None:
    """Check the configuration end to end before the first send: database, Redis, the SMTP
    relay (EHLO, TLS, AUTH), DKIM, DMARC alignment, one-click unsubscribe, digest size. One
    `ok`/`fail` line per check (a check not made reads `ok: CHECK: skipped: why`); exit 1 if any fails."""
    if to is not None:
        try:
            to = clean_email(to)
        except InvalidInput as exc:
            fail(f"--to: {str(exc).removeprefix('email: ')}", code=2)
    failed = False
    for result in doctor.run(settings, to=to, lookup=dns_records.Lookup(resolver)):
        click.echo(result.line())
        failed = failed or result.failed
    if failed:
        sys.exit(1)


def report_bad_settings(exc: ConfigError) -> NoReturn:
    """`newsletter doctor` on settings that do not load: its first line says so (console.main
    calls this instead of its usual exit 2), and nothing else can be checked."""
    def refuse() -> NoReturn:
        raise exc

    result, _ = doctor.check_settings(refuse)
    click.echo(result.line())
    sys.exit(1)
