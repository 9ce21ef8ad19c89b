"""The dashboard (the list, the last editions, the schedule, the queues and workers, open
alarms), marking alarms seen, and the audit log's page."""

from __future__ import annotations

from flask import Response, abort, redirect, render_template, request, url_for
from flask_babel import gettext as _

from newsletter import queueing
from newsletter.db import get_session
from newsletter.models import AdminRole
from newsletter.operators import audit, dashboard
from newsletter.subscribers import subscriptions
from newsletter.web.admin.auth import bp, record, require
from newsletter.web.admin.chart import line_chart
from newsletter.web.admin.confirm import int_field, page_number
from newsletter.web.extensions import redis, settings


@bp.get("/", endpoint="dashboard")
@require(AdminRole.VIEWER)
def dashboard_page() -> str:
    db = get_session()
    dates, series = dashboard.daily_series(db)
    labels = {"signups": _("Signups"), "confirmations": _("Confirmations"), "unsubscribes": _("Unsubscribes")}
    editions = [dashboard.edition_figures(db, e) for e in dashboard.editions(db, limit=5)]
    return render_template(
        "admin/dashboard.html",
        states=subscriptions.stats(db),
        chart=line_chart(dates, series, labels),
        days=list(zip(dates, *series.values(), strict=True)),
        series_labels=[labels[name] for name in series],
        editions=editions,
        upcoming=dashboard.upcoming(db, settings()),
        queues=dashboard.queue_status(redis(), queueing.ALL),
        alarms=dashboard.open_alarms(db),
        tz=settings().tz,
    )


@bp.post("/alarms/seen")
@require(AdminRole.OPERATOR)
def alarms_seen() -> Response:
    """Mark one open alarm (form field `alarm`) or all of them seen."""
    alarm = int_field(request.form.get("alarm"))
    ids = [alarm] if alarm is not None else None
    db = get_session()
    count = dashboard.mark_alarms_seen(db, ids)
    record("alarms.seen", detail={"alarms": ids or "all", "count": count})
    db.commit()
    return redirect(url_for("admin.dashboard") + "#alarms", code=303)


@bp.get("/audit")
@require(AdminRole.VIEWER)
def audit_log() -> str:
    db = get_session()
    number = page_number(request.args.get("page"))
    action = request.args.get("action") or None
    if action and "\x00" in action:  # PostgreSQL refuses a NUL in a text parameter
        abort(400)
    return render_template("admin/audit.html", log=audit.page(db, number, action=action), action=action,
                           actions=audit.actions(db), tz=settings().tz)
