"""Listings in the admin: the newest ones, paged; a feed file uploaded (JSON, JSON Lines,
CSV, JSON-LD) through the import of `newsletter listings import`: every row checked first,
the good ones kept, each rejected one named; withdrawing one as `DELETE
/api/v1/listings/<id>` does, after a confirmation."""

from __future__ import annotations

from flask import abort, flash, redirect, render_template, request, url_for
from flask.typing import ResponseReturnValue
from flask_babel import gettext as _
from sqlalchemy.exc import IntegrityError

from newsletter.db import get_session, retry_once_on_conflict
from newsletter.listings import store
from newsletter.listings.formats import FeedError, parse_feed
from newsletter.models import AdminRole
from newsletter.operators import recent_listings
from newsletter.web.admin import uploads
from newsletter.web.admin.auth import bp, record, require
from newsletter.web.admin.confirm import ask, confirmed, page_number
from newsletter.web.extensions import settings


def _page(status: int = 200, **context: object) -> tuple[str, int]:
    listing = recent_listings.page(get_session(), page_number(request.args.get("page")))
    return render_template("admin/listings.html", log=listing, limit_mb=uploads.MAX_UPLOAD // (1024 * 1024),
                           tz=settings().tz, **context), status


@bp.get("/listings")
@require(AdminRole.VIEWER)
def listings() -> tuple[str, int]:
    return _page()


@bp.post("/listings/upload")
@require(AdminRole.OPERATOR)
def listings_upload() -> tuple[str, int]:
    upload = uploads.uploaded("upload")
    if upload is None:
        return _page(400, error=_("Choose a feed file to upload."))
    name, raw = upload
    try:
        records = parse_feed(raw, name)
    except FeedError as exc:
        return _page(400, error=_("%(file)s: cannot import: %(reason)s", file=name, reason=str(exc)))
    db = get_session()

    def attempt() -> store.ImportResult:
        result = store.import_records(db, records)
        record("listings.import", detail={"file": name, "added": result.added, "updated": result.updated,
                                          "unchanged": result.unchanged, "rejected": len(result.rejected)})
        return result

    try:
        # The CLI's one transaction per file (the audit row in it); a concurrent import of
        # the same new id is tried once more, as there.
        result = retry_once_on_conflict(db, attempt)
    except IntegrityError:
        return _page(409, error=_("%(file)s: a concurrent import collided twice; nothing of this file written",
                                  file=name))
    return _page(result=result, file=name)


@bp.post("/listings/withdraw")
@require(AdminRole.OPERATOR)
def listing_withdraw() -> ResponseReturnValue:
    external_id = (request.form.get("id") or "")[:store.MAX_ID]
    db = get_session()
    row = recent_listings.get(db, external_id)
    if row is None:
        abort(404)
    back = url_for("admin.listings")
    if row.withdrawn_at is not None:
        flash(_("This listing is withdrawn already."), "error")
        return redirect(back, code=303)
    if not confirmed():
        return ask(_("Withdraw a listing"),
                   _("Withdraw “%(title)s” (%(id)s)? It stays stored but goes into no digest any more; a feed brings "
                     "it back only when the board posts it anew.", title=row.title, id=row.external_id),
                   url_for("admin.listing_withdraw"), {"id": row.external_id}, _("Withdraw"), back)
    store.withdraw(db, external_id)
    record("listing.withdraw", detail={"id": external_id})
    db.commit()
    flash(_("The listing “%(title)s” is withdrawn.", title=row.title), "ok")
    return redirect(back, code=303)
