"""API tokens in the admin: the list (revoked ones too: the record of who had access),
creating one with its scopes, and revoking one, the steps of `newsletter api-token`.

A new token's secret is on the one page that answers its creation and nowhere else: not
in a flash message (the session cookie is signed, not encrypted), not in the audit log,
not in any log line (STANDARDS 35). Only its SHA-256 is stored."""

from __future__ import annotations

from flask import flash, redirect, render_template, request, url_for
from flask.typing import ResponseReturnValue
from flask_babel import gettext as _

from newsletter.db import get_session
from newsletter.models import AdminRole
from newsletter.operators import api_tokens
from newsletter.validation import InvalidInput
from newsletter.web.admin.auth import bp, record, require
from newsletter.web.admin.confirm import ask, confirmed
from newsletter.web.extensions import settings


def _list_page(status: int = 200, **context: object) -> tuple[str, int]:
    return render_template("admin/tokens.html", tokens=api_tokens.list_tokens(get_session()),
                           scopes=api_tokens.SCOPES, scopes_of=api_tokens.scopes_of, tz=settings().tz,
                           **{"name": "", "chosen": (), "error": None, **context}), status


@bp.get("/tokens")
@require(AdminRole.VIEWER)
def tokens() -> tuple[str, int]:
    return _list_page()


@bp.post("/tokens")
@require(AdminRole.OPERATOR)
def token_create() -> tuple[str, int]:
    name = (request.form.get("name") or "").strip()[:api_tokens.MAX_NAME + 1]
    chosen = [scope for scope in request.form.getlist("scope") if scope in api_tokens.SCOPES]
    if not chosen:
        # The command gives a token named without scopes every scope; a form makes the
        # choice explicit, so nobody hands out more than they meant (STANDARDS 36).
        return _list_page(400, name=name, chosen=chosen, error=_("Choose at least one scope."))
    db = get_session()
    try:
        new = api_tokens.create(db, name, chosen)
    except InvalidInput as exc:
        db.rollback()
        return _list_page(400, name=name, chosen=chosen, error=str(exc))
    record("token.create", detail={"name": new.row.name, "scopes": new.row.scopes})
    db.commit()
    page = render_template("admin/token_created.html", token=new.row, secret=new.secret,
                           scopes=sorted(api_tokens.scopes_of(new.row)))
    return page, 201


@bp.post("/tokens/revoke")
@require(AdminRole.OPERATOR)
def token_revoke() -> ResponseReturnValue:
    name = (request.form.get("name") or "").strip()[:api_tokens.MAX_NAME]
    back = url_for("admin.tokens")
    if not any(t.name == name and t.revoked_at is None for t in api_tokens.list_tokens(get_session())):
        flash(_("No active token has this name."), "error")
        return redirect(back, code=303)
    if not confirmed():
        return ask(_("Revoke a token"), _("Revoke the token “%(name)s”? Every request with it is refused at once; "
                                          "this cannot be undone.", name=name),
                   url_for("admin.token_revoke"), {"name": name}, _("Revoke"), back)
    db = get_session()
    count = api_tokens.revoke(db, name)
    record("token.revoke", detail={"name": name, "count": count})
    db.commit()
    flash(_("The token “%(name)s” is revoked.", name=name), "ok")
    return redirect(back, code=303)
