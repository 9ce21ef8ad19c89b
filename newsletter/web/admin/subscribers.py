"""Readers in the admin: finding one by address, the newest ones and the counts by state,
one reader's record (consent log, digests, bounces), and the operator's actions on them:
unsubscribe, erase and export (the steps and the JSON of the reader's own links, from the
channel "admin"), the CSV import (the CLI's rules), and the suppression list with its lift.

The audit log names a reader by the hash of their address, never by the address
(STANDARDS 33): it is kept for good, and an erased reader must not live on in it."""

from __future__ import annotations

import json

from flask import Response, abort, flash, redirect, render_template, request, url_for
from flask.typing import ResponseReturnValue
from flask_babel import gettext as _

from newsletter.db import get_session
from newsletter.listings.formats import FeedError, decode
from newsletter.models import AdminRole, Subscriber, SubscriberStatus, SuppressionReason
from newsletter.operators import reader_record
from newsletter.subscribers import subscriptions, suppressions
from newsletter.subscribers.csv_import import KNOWN_COLUMNS, CsvError, import_csv
from newsletter.web.admin import uploads
from newsletter.web.admin.auth import bp, client_ip, current_user, record, require
from newsletter.web.admin.confirm import ask, confirmed, int_field, page_number
from newsletter.web.extensions import enqueue_outbox_after_commit, settings

ADMIN = subscriptions.Origin(channel="admin")


def state_label(value: str) -> str:
    """A reader's state in the page's language."""
    labels = {SubscriberStatus.PENDING: _("pending"), SubscriberStatus.CONFIRMED: _("confirmed"),
              SubscriberStatus.UNSUBSCRIBED: _("unsubscribed"), SubscriberStatus.BOUNCED: _("bounced"),
              SubscriberStatus.COMPLAINED: _("complained"), SuppressionReason.ERASED: _("erased"),
              "suppressed": _("suppressed")}
    return labels.get(value, value)


@bp.app_template_filter("reader_state")
def _reader_state(value: str) -> str:
    return state_label(value)


def _reader(raw: str | None) -> Subscriber:
    subscriber_id = int_field(raw)
    sub = reader_record.get(get_session(), subscriber_id) if subscriber_id is not None else None
    if sub is None:
        abort(404)
    return sub


def _reader_url(sub: Subscriber) -> str:
    return url_for("admin.subscriber", id=sub.id)


@bp.get("/subscribers")
@require(AdminRole.VIEWER)
def subscribers() -> ResponseReturnValue:
    """The counts, the newest readers (of one state), and the search by address."""
    db = get_session()
    query = (request.args.get("q") or "").strip()[:320]
    state = request.args.get("state") or ""
    if query:
        found = reader_record.find(db, query)
        if found is not None:
            return redirect(_reader_url(found), code=303)
    page = render_template(
        "admin/subscribers.html", counts=subscriptions.stats(db), states=list(SubscriberStatus), state=state,
        readers=reader_record.latest(db, status=state or None), query=query, latest=reader_record.LATEST,
        not_found=bool(query), tz=settings().tz,
    )
    return (page, 404) if query else page


@bp.get("/subscribers/reader")
@require(AdminRole.VIEWER)
def subscriber() -> str:
    sub = _reader(request.args.get("id"))
    return render_template("admin/subscriber.html", r=reader_record.record(get_session(), sub), sub=sub,
                           tz=settings().tz)


@bp.post("/subscribers/unsubscribe")
@require(AdminRole.OPERATOR)
def subscriber_unsubscribe() -> ResponseReturnValue:
    sub = _reader(request.form.get("id"))
    if sub.status not in (SubscriberStatus.CONFIRMED, SubscriberStatus.PENDING):
        flash(_("This reader gets no list mail: there is nothing to unsubscribe."), "error")
        return redirect(_reader_url(sub), code=303)
    if not confirmed():
        return ask(_("Unsubscribe"), _("Unsubscribe %(address)s? They get no more digests; the consent log records "
                                       "the unsubscribe from the admin.", address=sub.email),
                   url_for("admin.subscriber_unsubscribe"), {"id": str(sub.id)}, _("Unsubscribe"), _reader_url(sub))
    db = get_session()
    subscriptions.unsubscribe(db, sub, ADMIN)
    record("subscriber.unsubscribe", detail={"subscriber_hash": sub.email_hash})
    db.commit()
    flash(_("The reader is unsubscribed."), "ok")
    return redirect(_reader_url(sub), code=303)


@bp.post("/subscribers/erase")
@require(AdminRole.OPERATOR)
def subscriber_erase() -> ResponseReturnValue:
    sub = _reader(request.form.get("id"))
    if not confirmed():
        return ask(_("Erase"), _("Erase everything held about %(address)s (GDPR)? Only a hashed suppression entry "
                                 "and the consent proof remain. This cannot be undone.", address=sub.email),
                   url_for("admin.subscriber_erase"), {"id": str(sub.id)}, _("Erase for good"), _reader_url(sub))
    db = get_session()
    hashed = sub.email_hash
    subscriptions.erase(db, sub, ADMIN)
    record("subscriber.erase", detail={"subscriber_hash": hashed})
    db.commit()
    flash(_("The reader's data is erased; a hashed suppression entry and the consent proof remain."), "ok")
    return redirect(url_for("admin.subscribers"), code=303)


@bp.post("/subscribers/export")
@require(AdminRole.OPERATOR)
def subscriber_export() -> Response:
    """The JSON a reader downloads through their own data link, as a download."""
    sub = _reader(request.form.get("id"))
    db = get_session()
    body = json.dumps(subscriptions.export(db, sub), ensure_ascii=False, indent=2)
    record("subscriber.export", detail={"subscriber_hash": sub.email_hash})
    db.commit()
    response = Response(body, mimetype="application/json")
    response.headers["Content-Disposition"] = 'attachment; filename="newsletter-data.json"'
    return response


# -- the CSV import ------------------------------------------------------------------------------

def _import_page(status: int = 200, **context: object) -> tuple[str, int]:
    return render_template("admin/subscribers_import.html", columns=KNOWN_COLUMNS,
                           limit_mb=uploads.MAX_UPLOAD // (1024 * 1024), **context), status


@bp.get("/subscribers/import")
@require(AdminRole.VIEWER)
def subscribers_import_form() -> tuple[str, int]:
    return _import_page()


@bp.post("/subscribers/import")
@require(AdminRole.OPERATOR)
def subscribers_import() -> tuple[str, int]:
    """`newsletter subscribers import` from a browser: the good rows are taken, each bad one
    named with its line; a file that is no CSV at all takes nothing."""
    upload = uploads.uploaded("upload.csv")
    if upload is None:
        return _import_page(400, error=_("Choose a CSV file to import."))
    name, raw = upload
    db = get_session()
    try:
        report = import_csv(db, decode(raw), source=name)
    except (CsvError, FeedError) as exc:
        db.rollback()
        return _import_page(400, error=_("%(file)s: cannot import, nothing written: %(reason)s", file=name,
                                         reason=str(exc)))
    record("subscribers.import", detail={"file": name, "confirmed": report.confirmed, "pending": report.pending,
                                         "skipped": len(report.skipped), "rejected": len(report.rejected)})
    db.commit()
    enqueue_outbox_after_commit(report.outbox_ids)  # the double-opt-in mails of the pending rows
    return _import_page(report=report, file=name)


# -- the suppression list --------------------------------------------------------------------------

@bp.get("/suppressions")
@require(AdminRole.VIEWER)
def suppressions_page() -> str:
    query = (request.args.get("q") or "").strip()[:320]
    listing = suppressions.page(get_session(), page_number(request.args.get("page")), query)
    return render_template("admin/suppressions.html", log=listing, query=query,
                           bad_query=bool(query) and suppressions.search_key(query) is None,
                           prefix=suppressions.PREFIX_LENGTH, tz=settings().tz)


@bp.post("/suppressions/lift")
@require(AdminRole.OPERATOR)
def suppression_lift() -> ResponseReturnValue:
    """Lift one entry where the law allows: never a complaint; a bounce only with the
    operator's explicit word that the mailbox takes mail again."""
    db = get_session()
    entry = suppressions.get(db, request.form.get("hash") or "")
    if entry is None:
        abort(404)
    back = url_for("admin.suppressions_page", q=entry.email_hash)
    bounce_ok = request.form.get("bounce_ok") == "yes"
    bounced = entry.reason == SuppressionReason.BOUNCED
    try:
        suppressions.check_liftable(entry, bounce_confirmed=True)  # what no confirmation can change
    except suppressions.LiftRefused:
        flash(_("This address complained about our mail (marked it as spam): its suppression is never lifted."),
              "error")
        return redirect(back, code=303)
    if not confirmed() or (bounced and not bounce_ok):
        error = _("Tick the box to confirm that the mailbox accepts mail again.") if confirmed() else None
        return ask(_("Lift a suppression"), _lift_question(entry.reason, entry.email_hash[:suppressions.PREFIX_LENGTH]),
                   url_for("admin.suppression_lift"), {"hash": entry.email_hash}, _("Lift the suppression"), back,
                   checkbox=_("I have made sure that this mailbox accepts mail again.") if bounced else None,
                   error=error)
    user = current_user()
    lifted = suppressions.lift(db, entry.email_hash, actor=user.email if user else "-", ip=client_ip(),
                               bounce_confirmed=bounce_ok)
    db.commit()
    if lifted.restored:
        flash(_("The suppression is lifted; the reader is %(state)s again.", state=state_label(lifted.restored)), "ok")
    else:
        flash(_("The suppression is lifted."), "ok")
    return redirect(url_for("admin.suppressions_page"), code=303)


def _lift_question(reason: str, prefix: str) -> str:
    if reason == SuppressionReason.BOUNCED:
        return _("The address %(hash)s… bounced. Lifting puts a reader who had confirmed back on the list: they "
                 "get the next digest. Only do this when the bounce was a mistake or the mailbox works again.",
                 hash=prefix)
    return _("Lift the suppression of %(hash)s… (%(reason)s)? No reader changes; an import may then add the "
             "address again.", hash=prefix, reason=state_label(reason))
