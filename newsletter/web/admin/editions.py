"""Editions in the admin: the list, one edition with its live progress, "send now" after a
confirmation that says what it would cover (the dry run), pause, resume and cancel, and
the digest preview with its test send. The same domain functions as `newsletter digest`
and the API do the work (editions/planning.py, editions/state.py); queueing follows the
commit (web/extensions.py)."""

from __future__ import annotations

from typing import Any

from flask import Response, abort, flash, jsonify, redirect, render_template, request, url_for
from flask_babel import gettext as _

from newsletter.db import get_session
from newsletter.editions import planning, state
from newsletter.listings import criteria
from newsletter.mail.delivery import Kind
from newsletter.models import AdminRole, email_hash
from newsletter.operators import dashboard, digest_preview
from newsletter.validation import InvalidInput, Preferences
from newsletter.web.admin.auth import bp, record, require
from newsletter.web.admin.confirm import int_field
from newsletter.web.extensions import queue_edition_after_commit, settings

PAGE = 25
# The preview form's fields; the digest's language is not `language`, which would set the
# page's own language (web/i18n.py reads that form field). employment_type may come as
# several checkboxes or as one comma-separated value (the frame's and test send's query).
PREVIEW_FIELDS = ("email", "keywords", "location", "radius", "remote", "employment_type", "digest_language")


def _figures(edition_id: int) -> dashboard.EditionFigures:
    db = get_session()
    edition = state.get_edition(db, edition_id)
    if edition is None:
        abort(404)
    return dashboard.edition_figures(db, edition)


@bp.get("/editions")
@require(AdminRole.VIEWER)
def editions() -> str:
    before = int_field(request.args.get("before"))
    db = get_session()
    rows = [dashboard.edition_figures(db, e) for e in dashboard.editions(db, limit=PAGE, before=before)]
    older = rows[-1].edition.id if len(rows) == PAGE else None
    return render_template("admin/editions.html", editions=rows, older=older, tz=settings().tz)


@bp.get("/editions/<int:edition_id>")
@require(AdminRole.VIEWER)
def edition(edition_id: int) -> str:
    figures = _figures(edition_id)
    alarms, last_alarm = state.alarms_since(get_session(), figures.edition)
    return render_template("admin/edition.html", f=figures, e=figures.edition, alarms=alarms,
                           last_alarm=last_alarm, tz=settings().tz)


@bp.get("/editions/<int:edition_id>/progress")
@require(AdminRole.VIEWER)
def edition_progress(edition_id: int) -> Response:
    """The counts the edition page refreshes while the edition sends (static/admin/progress.js)."""
    f = _figures(edition_id)
    return jsonify(id=f.edition.id, state=f.edition.state, recipients=f.edition.planned, retrying=f.retrying, **f.counts)


@bp.post("/editions/<int:edition_id>/<any(pause, resume, cancel):action>")
@require(AdminRole.OPERATOR)
def change_edition(edition_id: int, action: str) -> Response:
    db = get_session()
    if state.get_edition(db, edition_id) is None:
        abort(404)
    try:
        state.set_state(db, edition_id, action)
    except state.EditionError as exc:
        db.rollback()
        flash(str(exc), "error")
        return redirect(url_for("admin.edition", edition_id=edition_id), code=303)
    record(f"edition.{action}", edition_id=edition_id)
    db.commit()
    if action == "resume":
        queue_edition_after_commit(edition_id)
    flash({"pause": _("The edition is paused."), "resume": _("The edition sends again."),
           "cancel": _("The edition is cancelled.")}[action], "ok")
    return redirect(url_for("admin.edition", edition_id=edition_id), code=303)


@bp.get("/editions/new")
@require(AdminRole.VIEWER)
def new_edition() -> str:
    """The dry run: who and what an edition made now would cover; the send button confirms."""
    db = get_session()
    return render_template("admin/edition_new.html", preview=planning.preview(db, settings()),
                           open_edition=state.open_edition(db), tz=settings().tz)


@bp.post("/editions")
@require(AdminRole.OPERATOR)
def send_now() -> Response:
    db = get_session()
    try:
        created = planning.create_edition(db, settings(), "admin")
    except state.EditionError as exc:
        db.rollback()
        flash(str(exc), "error")
        return redirect(url_for("admin.new_edition"), code=303)
    record("edition.send", edition_id=created.id,
           detail={"recipients": created.planned, "listings": created.listing_count})
    db.commit()
    if created.planned:
        queue_edition_after_commit(created.id)
    return redirect(url_for("admin.edition", edition_id=created.id), code=303)


# -- the digest preview ---------------------------------------------------------------------

def _preview_from(values: Any) -> tuple[dict[str, str], digest_preview.DigestPreview | None, str | None]:
    """The form's values, the preview they ask for (None before any was asked) and an error."""
    form = {name: (values.get(name) or "").strip()[:320] for name in PREVIEW_FIELDS}
    form["employment_type"] = ",".join(v.strip() for v in values.getlist("employment_type") if v.strip())[:320]
    db = get_session()
    prefs: Preferences | None
    if form["email"]:
        prefs = digest_preview.preferences_of(db, form["email"])
        if prefs is None:
            return form, None, _("No subscriber has this address.")
    elif any(form[name] for name in PREVIEW_FIELDS[1:]):
        try:
            prefs = digest_preview.preferences(form["keywords"], form["location"], form["digest_language"] or "de",
                                               form["radius"], form["remote"], form["employment_type"])
        except InvalidInput as exc:
            return form, None, str(exc)
    else:
        return form, None, None
    return form, digest_preview.compose(db, settings(), prefs), None


@bp.get("/preview")
@require(AdminRole.VIEWER)
def preview() -> str:
    form, result, error = _preview_from(request.args)
    query = {k: v for k, v in form.items() if v}
    return render_template("admin/preview.html", form=form, preview=result, error=error, query=query,
                           tz=settings().tz, radii=criteria.RADII, default_radius=criteria.DEFAULT_RADIUS,
                           employment_types=_type_choices())


def _type_choices() -> list[tuple[str, str]]:
    """The job types the preview form offers, labelled in the page's language."""
    labels = {"full_time": _("Full-time"), "part_time": _("Part-time"), "student": _("Working student"),
              "internship": _("Internship"), "apprenticeship": _("Apprenticeship"), "freelance": _("Freelance")}
    return [(kind, labels[kind]) for kind in criteria.EMPLOYMENT_TYPES]


@bp.get("/preview/frame")
@require(AdminRole.VIEWER)
def preview_frame() -> Response:
    """The digest's HTML alone, for the preview page's sandboxed frame: no script can run
    in it, and only our admin may frame it."""
    _form, result, _error = _preview_from(request.args)
    if result is None or result.empty:
        abort(404)
    response = Response(result.html, mimetype="text/html")
    response.headers["Content-Security-Policy"] = (
        "default-src 'none'; style-src 'unsafe-inline'; img-src data:; form-action 'none'; base-uri 'none'; "
        "frame-ancestors 'self'; sandbox"
    )
    response.headers["X-Frame-Options"] = "SAMEORIGIN"
    return response


@bp.post("/preview/test")
@require(AdminRole.OPERATOR)
def preview_test() -> Response:
    """Mail the preview to the address typed, marked as a test; no delivery row, no count."""
    form, result, error = _preview_from(request.form)
    back = url_for("admin.preview", **{k: v for k, v in form.items() if v})
    to = (request.form.get("to") or "").strip()
    if result is None:
        flash(error or _("Choose a subscriber or a search first."), "error")
        return redirect(back, code=303)
    try:
        outcome = digest_preview.send_test(settings(), result, to)
    except InvalidInput as exc:
        flash(str(exc), "error")
        return redirect(back, code=303)
    # Hashes, not addresses: the audit log is kept for good and names no reader (STANDARDS 33).
    detail: dict[str, object] = {"to_hash": email_hash(to), "outcome": outcome.kind.value,
                                 "listings": len(result.listings)}
    if form["email"]:
        detail["as_subscriber_hash"] = email_hash(form["email"])
    else:
        detail |= result.prefs.search()
    record("preview.test_send", detail=detail)
    get_session().commit()
    if outcome.kind is Kind.SENT:
        flash(_("The test mail was sent to %(address)s.", address=to), "ok")
    else:
        flash(_("The test mail was not sent: %(reason)s", reason=outcome.detail or outcome.kind.value), "error")
    return redirect(back, code=303)
