"""The reader's pages: signup (and its embeddable form), confirm, one-click unsubscribe,
preferences, data export and erasure, manage link."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from typing import Any, NoReturn, TypeVar
from urllib.parse import parse_qsl, urlsplit, urlunsplit

from flask import Blueprint, Response, g, jsonify, redirect, render_template, request, url_for
from flask.blueprints import BlueprintSetupState
from werkzeug.exceptions import HTTPException

from newsletter.db import get_session, retry_once_on_conflict
from newsletter.listings import criteria
from newsletter.models import ConfirmResult, Subscriber, SubscriberStatus
from newsletter.subscribers import consent, subscriptions
from newsletter.tokens import TokenExpired, TokenInvalid, tokens_for
from newsletter.validation import InvalidInput, clean_email, clean_preferences, clean_text
from newsletter.web import search_fields
from newsletter.web.errors import error_response, wants_json
from newsletter.web.extensions import enqueue_outbox_after_commit, limiter, settings, signup_limit
from newsletter.web.security import allow_embedding

bp = Blueprint("public", __name__)

HONEYPOT = "website"


def _origin(data: Any = None, channel: str = "web") -> subscriptions.Origin:
    """Who did it, from where. `data` is a signup's body: the form the consent was given on
    is the one that posted it (its `form_url` field, else the Referer). Any other action
    happens on our own page, named without its token: a Referer there is only the mail
    client or the page before, not where the person acted."""
    # Our own address from NEWSLETTER_BASE_URL: the Host header is the client's to choose.
    rule = request.url_rule.rule if request.url_rule is not None else request.path
    ours = settings().url(rule)
    form_url = (_posted_form_url(data) or _web_url(request.referrer) or ours) if data is not None else ours
    return subscriptions.Origin(
        ip=request.remote_addr,
        user_agent=request.user_agent.string or None,
        form_url=form_url,
        channel=channel,
    )


def _posted_form_url(data: Any) -> str | None:
    return _web_url(data.get("form_url"))


def _web_url(value: object) -> str | None:
    """The page `value` names, if it is an http(s) URL that fits the consent record, else
    None: a form field and a Referer are both the client's to choose. Only scheme, host
    (with port) and path are kept: userinfo, query and fragment are the visitor's (a board
    page that pre-fills the form carries the address there), and the signup record is kept
    as consent proof after an erasure. The 500 characters are counted on what is kept."""
    try:
        parts = urlsplit(clean_text("form_url", value, 8000))
    except (InvalidInput, ValueError):
        return None
    host = parts.netloc.rpartition("@")[2]
    if parts.scheme not in ("http", "https") or not host:
        return None
    page = urlunsplit((parts.scheme, host, parts.path, "", ""))
    return page if len(page) <= 500 else None


def _consent_shown(data: dict[str, Any], prefs: Any) -> tuple[str, str]:
    """The consent wording the person saw: the version and page language the form says it
    showed (hidden fields of our form), else the current version in the newsletter's
    language (a form embedded elsewhere). A version we never published is refused: we could
    not say what was agreed to."""
    version = data.get("consent_version")
    if version is None or version == "":
        version = consent.CURRENT_VERSION
    if not isinstance(version, str) or version not in consent.CONSENT_TEXTS:
        raise InvalidInput("body", "consent_version: not a published version of the consent text")
    language = data.get("consent_language")
    return version, language if isinstance(language, str) and language in consent.LANGUAGES else prefs.language


def _page(template: str, status: int = 200, **context: Any) -> Response:
    response = Response(render_template(template, **context), mimetype="text/html")
    response.status_code = status
    return response


def _request_data() -> dict[str, Any]:
    if request.is_json:
        data = request.get_json(silent=True)
        if not isinstance(data, dict):
            raise InvalidInput("body", "body: expected a JSON object")
        if isinstance(data.get("employment_type"), list):
            data["employment_type"] = search_fields.joined_types(data["employment_type"])
        return data
    return _form()


# A percent-escape of a byte over 0x7F: the body holds text that is not ASCII.
_HIGH_ESCAPE = re.compile(rb"%[89a-fA-F][0-9a-fA-F]")


def _form() -> dict[str, Any]:
    """The posted form. Werkzeug gives an empty form for a body it cannot decode (not
    UTF-8); that must not read as a form with every field left empty."""
    if request.mimetype == "application/x-www-form-urlencoded":
        # Werkzeug keeps escapes that are no UTF-8 as they came ("M%FCnchen", from a Latin-1
        # page), which then read as typed: decode such a body strictly first. The cached
        # body is what the form is then parsed from.
        raw = request.get_data(cache=True)
        if _HIGH_ESCAPE.search(raw) and not _utf8_form(raw):
            raise InvalidInput("body", "body: the form could not be read (send it urlencoded or multipart, in UTF-8)")
    form = request.form.to_dict(flat=True)
    if "employment_type" in form:  # checkboxes post one field per type ticked
        form["employment_type"] = str(search_fields.joined_types(request.form.getlist("employment_type")))
    unreadable = not form and (request.content_length or request.headers.get("Transfer-Encoding"))
    # A multipart part that is not UTF-8 comes back with U+FFFD in place of its bytes:
    # stored, it would turn "München" into "M�nchen" for good.
    if unreadable or any("\ufffd" in value for value in form.values()):
        raise InvalidInput("body", "body: the form could not be read (send it urlencoded or multipart, in UTF-8)")
    return form


def _utf8_form(raw: bytes) -> bool:
    try:
        parse_qsl(raw.decode("utf-8"), keep_blank_values=True, encoding="utf-8", errors="strict")
    except (UnicodeDecodeError, ValueError):
        return False
    return True


def _form_context(**extra: Any) -> dict[str, Any]:
    from flask_babel import get_locale

    lang = str(get_locale() or "de")
    context = {
        "consent_text": consent.consent_text(lang, list_name=settings().list_name,
                                             interval_days=settings().digest_interval_days),
        "consent_version": consent.CURRENT_VERSION,
        "consent_language": lang,
        "privacy_url": settings().privacy_url,
        # The page the consent was given on, for the consent record (README "Signup").
        "form_url": settings().url("/subscribe"),
        "values": {},
        "errors": {},
    }
    context.update(extra)
    return context


@bp.record_once
def _search_choices(state: BlueprintSetupState) -> None:
    # Globals, not context: the form macros (_search_fields.html) are imported without it.
    state.app.jinja_env.globals["search_choices"] = {
        "radii": criteria.RADII, "default_radius": criteria.DEFAULT_RADIUS, "remote": criteria.REMOTE_CHOICES,
        "default_remote": criteria.DEFAULT_REMOTE, "types": criteria.EMPLOYMENT_TYPES,
    }


def _prefilled() -> dict[str, object]:
    """The search of the board's "subscribe to this search" link, as far as it is valid."""
    return search_fields.prefill(search_fields.search_data(search_fields.query_values(request.query_string)))


def _language_links(values: dict[str, object], **keep: str) -> dict[str, str]:
    """This form in each language with the search it was opened with: switching the
    language must not lose what the board's link filled in."""
    query: dict[str, Any] = {name: values[name] for name in search_fields.SEARCH_FIELDS if values.get(name)}
    query.update(keep)
    endpoint = request.endpoint or "public.subscribe_form"
    return {lang: url_for(endpoint, **query, lang=lang) for lang in consent.LANGUAGES}


@bp.get("/")
def index() -> Response:
    return redirect(url_for("public.subscribe_form"), code=302)  # type: ignore[return-value]


@bp.get("/subscribe")
def subscribe_form() -> Response:
    values = _prefilled()
    return _page("subscribe.html", **_form_context(values=values, language_links=_language_links(values)))


# -- the form for frames on the board's own pages ------------------------------------------------
# It posts to /subscribe?embed=1, which answers (form again, or "check your inbox") in the
# frame: the reader stays on the board's page. Only NEWSLETTER_EMBED_ORIGINS may frame
# these pages (web/security.py); every other page of ours refuses any frame.

EMBED_PATH = "/embed/subscribe"


def _embed_form_url(value: object) -> str:
    """The board page the frame sits on, when the frame's address names it
    (`?form_url=...`, for the consent record), else the embed's own address."""
    return _web_url(value) or settings().url(EMBED_PATH)


@bp.url_value_preprocessor
def _embeddable(endpoint: str | None, _values: dict[str, Any] | None) -> None:
    # Before any before_request hook and the rate limit: a 429 or error page answering the
    # frame's post must show in the frame too, or the reader sees an empty box.
    if endpoint == "public.embed_subscribe_form" or (endpoint == "public.subscribe" and _embedded()):
        allow_embedding()


@bp.get(EMBED_PATH)
def embed_subscribe_form() -> Response:
    values = _prefilled()
    form_url = _embed_form_url(search_fields.query_values(request.query_string).get("form_url"))
    keep = {"form_url": form_url} if form_url != settings().url(EMBED_PATH) else {}
    return _page("embed_subscribe.html", **_form_context(
        values=values, form_url=form_url, language_links=_language_links(values, **keep)))


def _embedded() -> bool:
    return request.args.get("embed") == "1"


@bp.post("/subscribe")
@limiter.limit(signup_limit, methods=["POST"])
def subscribe() -> Response:
    embedded = _embedded()
    data: dict[str, Any] = {}
    try:
        data = _request_data()
        if data.get(HONEYPOT):
            return _signup_answer(embedded, data)  # a bot: the normal answer, nothing stored, nothing mailed
        email = clean_email(data.get("email"))
        prefs = clean_preferences(data, default_language=_default_language())
        version, consent_language = _consent_shown(data, prefs)
    except InvalidInput as exc:
        if wants_json():
            return error_response(400, str(exc), exc.field)
        return _signup_refused(data, exc, embedded)
    origin = _origin(data)
    s = settings()
    session = get_session()
    # A concurrent signup of the same address collides on its unique hash; the retry finds the row.
    ids = retry_once_on_conflict(session, lambda: subscriptions.signup(
        session, email, prefs, origin, version, consent_language,
        list_name=s.list_name, interval_days=s.digest_interval_days))
    enqueue_outbox_after_commit(ids)
    return _signup_answer(embedded, data)


def _signup_refused(data: dict[str, Any], exc: InvalidInput, embedded: bool) -> Response:
    """The form again, with what was typed and the reason: the text fields as typed (to
    correct them), the choices as far as they are valid (a bad one shows its default)."""
    values: dict[str, object] = {k: _echo(data.get(k)) for k in ("email", "keywords", "location", "language")}
    chosen = search_fields.prefill(data)
    values.update({k: chosen[k] for k in ("radius", "remote", "employment_type") if k in chosen})
    errors = {exc.field: str(exc)}
    if embedded:
        return _page("embed_subscribe.html", 400, **_form_context(
            values=values, errors=errors, form_url=_embed_form_url(data.get("form_url"))))
    return _page("subscribe.html", 400, **_form_context(values=values, errors=errors))


def _echo(value: object) -> str:
    """What the reader typed, to show the form again: at most 300 characters, and only what
    UTF-8 can carry (a JSON body may hold lone surrogates, which would fail the page)."""
    return str(value or "")[:300].encode("utf-8", "replace").decode("utf-8")


def _default_language() -> str:
    from flask_babel import get_locale

    return str(get_locale() or "de")


def _signup_answer(embedded: bool = False, data: dict[str, Any] | None = None) -> Response:
    """The one answer for every address state (STANDARDS 29). The page is the same for
    everyone, so it is rendered once per language (and form: the embed's is compact). In a
    frame on a board page, its link back to the form names that page (the next signup's
    consent record must too): that answer is rendered each time."""
    if wants_json():
        response = jsonify(status="pending")
        response.status_code = 202
        return response
    from flask import current_app
    from flask_babel import get_locale

    cache: dict[str, str] = current_app.extensions.setdefault("newsletter_signup_answer", {})
    # Its links carry ?lang= when the page's language is not the browser's (i18n).
    key = f"{get_locale() or 'de'}:{request.accept_languages.best_match(consent.LANGUAGES, default='de')}:{embedded}"
    board_page = _web_url((data or {}).get("form_url")) if embedded else None
    if board_page and board_page != settings().url(EMBED_PATH):
        back = url_for("public.embed_subscribe_form", form_url=board_page)
        return Response(render_template("embed_subscribe_done.html", back_url=back), mimetype="text/html")
    body = cache.get(key)
    if body is None:
        body = cache[key] = render_template("embed_subscribe_done.html" if embedded else "subscribe_done.html")
    return Response(body, mimetype="text/html")


# -- a reader's links: a token in the path names the subscriber -----------------------------
# Each kind of link has its resolver, called first by its views. It answers a link that
# leads nowhere with the page that says why, as an HTTP exception carrying that page (400
# for a forged, garbled or other kind of token, 410 for an expired one, 404 for a reader
# gone), and it sets the page language to the reader's.

T = TypeVar("T")


def _refuse(template: str, status: int, **context: Any) -> NoReturn:
    raise HTTPException(response=_page(template, status, **context))


def _read(read: Callable[[str], T], token: str, expired_page: str | None = None) -> T:
    """What `token` holds, read by `read`; `expired_page` is the 410 page of a kind that expires."""
    try:
        return read(token)
    except TokenExpired:
        if expired_page is None:
            raise
        _refuse(expired_page, 410)
    except TokenInvalid:
        _refuse("link_invalid.html", 400)


def _confirm_target(token: str) -> tuple[Subscriber, int | None]:
    """The subscriber a confirmation link names, and the mail it came in."""
    public_id, message_id = _read(tokens_for(settings()).read_confirm, token, "confirm_expired.html")
    session = get_session()
    sub = subscriptions.find(session, public_id)
    if sub is None:
        _refuse("link_invalid.html", 404, gone=True)
    # In the language the mail was asked for in, which is not yet the row's.
    requested = subscriptions.requested_preferences(session, sub, message_id)
    g.page_language = requested.language if requested is not None else sub.language
    return sub, message_id


def _unsubscribe_target(token: str) -> Subscriber | None:
    """The subscriber an unsubscribe link names, or None when there is none any more: the
    answer is the same either way (a repeated one-click POST after an erasure, say)."""
    sub = subscriptions.find(get_session(), _read(tokens_for(settings()).read_unsubscribe, token))
    if sub is not None:
        g.page_language = sub.language
    return sub


def _preferences_target(token: str) -> Subscriber:
    return _of_generation(*_read(tokens_for(settings()).read_preferences, token))


def _data_target(token: str) -> Subscriber:
    return _of_generation(*_read(tokens_for(settings()).read_data, token, "data_expired.html"))


def _of_generation(public_id: str, generation: int) -> Subscriber:
    """The subscriber a preferences or data link names. Gone, or the link was mailed to a
    former subscription of the address (an unsubscribe and a new signup since): such a
    link no longer works, as an erased reader's does not (404)."""
    sub = subscriptions.find(get_session(), public_id)
    if sub is None or sub.link_generation != generation:
        _refuse("link_invalid.html", 404, gone=True)
    g.page_language = sub.language
    return sub


# -- confirmation ------------------------------------------------------------------------

@bp.get("/confirm/<token>")
def confirm_page(token: str) -> Response:
    sub, _message_id = _confirm_target(token)
    if sub.status == SubscriberStatus.CONFIRMED:
        return _confirm_done(sub, already=True)
    if sub.status != SubscriberStatus.PENDING:
        return _page("link_invalid.html", 410, gone=True)
    return _page("confirm.html", token=token)


@bp.post("/confirm/<token>")
def confirm(token: str) -> Response:
    sub, message_id = _confirm_target(token)
    session = get_session()
    result, ids = subscriptions.confirm(session, sub, _origin(), message_id)
    session.commit()
    enqueue_outbox_after_commit(ids)
    if result == ConfirmResult.INVALID:
        return _page("link_invalid.html", 410, gone=True)
    return _confirm_done(sub, already=result == ConfirmResult.ALREADY)


def _confirm_done(sub: Subscriber, already: bool) -> Response:
    """The lasting links only on the first confirmation: a confirmation link lives for
    days and may have been forwarded, and the reader has them by mail already."""
    links: dict[str, Any] = {} if already else dict(_links(sub))
    return _page("confirm_done.html", already=already, **links)


def _links(sub: Subscriber) -> dict[str, str]:
    tokens = tokens_for(settings())
    return {
        "preferences_url": url_for("public.preferences", token=tokens.preferences(sub.public_id, sub.link_generation)),
        "unsubscribe_url": url_for("public.unsubscribe", token=tokens.unsubscribe(sub.public_id)),
    }


# -- one-click unsubscribe (RFC 8058) --------------------------------------------------------

@bp.route("/unsubscribe/<token>", methods=["GET", "HEAD"])
def unsubscribe_page(token: str) -> Response:
    sub = _unsubscribe_target(token)
    subscribed = sub is not None and sub.status in (SubscriberStatus.CONFIRMED, SubscriberStatus.PENDING)
    return _page("unsubscribe.html", token=token, subscribed=subscribed)


@bp.post("/unsubscribe/<token>")
def unsubscribe(token: str) -> Response:
    """One click: no cookie, no CSRF token, 200 and no redirect; repeating it is fine."""
    sub = _unsubscribe_target(token)
    if sub is not None:
        session = get_session()
        one_click = request.form.get("List-Unsubscribe") == "One-Click"
        reason = request.form.get("reason")
        reason = reason if not one_click and reason in subscriptions.UNSUBSCRIBE_REASONS else None
        channel = "one-click" if one_click else "web"
        subscriptions.unsubscribe(session, sub, _origin(channel=channel), reason)
        session.commit()
    resubscribe_url = url_for("public.subscribe_form")
    return _page("unsubscribe_done.html", resubscribe_url=resubscribe_url)


# -- preferences and the data link --------------------------------------------------------

def _preferences_page(sub: Subscriber, token: str, status: int = 200, **extra: Any) -> Response:
    values = {"keywords": sub.keywords, "location": sub.location, "language": sub.language,
              "radius": sub.radius, "remote": sub.remote, "employment_type": sub.employment_type}
    values.update(extra.pop("values", {}))
    return _page(
        "preferences.html", status, sub=sub, token=token, values=values,
        errors=extra.pop("errors", {}), subscribed=sub.status == SubscriberStatus.CONFIRMED,
        unsubscribe_url=_links(sub)["unsubscribe_url"], place=_place_of(sub), **extra,
    )


def _place_of(sub: Subscriber) -> dict[str, Any] | None:
    """Where the reader's saved search looks: the place their location resolved to, or
    that it is unknown to the gazetteer (then listings are found by the place's name, with
    no radius), or that with remote "only" it plays no part. None without a location."""
    if not sub.location:
        return None
    from newsletter.listings import places  # the gazetteer table loads on first use only

    found = places.resolve(sub.location)
    return {"typed": sub.location, "name": found.name if found is not None else None, "radius": sub.radius,
            # Remote listings alone, wherever they are (listings/matching.py): the place plays no part.
            "remote_only": sub.remote == "only"}


def _stored_choices(sub: Subscriber, form: dict[str, Any]) -> dict[str, object]:
    """The saved choices a post leaves out: a form of ours sends all of them (its job
    types with an empty hidden field first), so an absent one is kept, not reset."""
    kept: dict[str, object] = {"remote": sub.remote, "employment_type": sub.employment_type}
    # A radius kept only for an unchanged place: a new place starts from the default.
    if sub.radius in criteria.RADII and form.get("location") == sub.location:
        kept["radius"] = sub.radius
    return kept


@bp.get("/preferences/<token>")
def preferences(token: str) -> Response:
    sub = _preferences_target(token)
    return _preferences_page(sub, token)


@bp.post("/preferences/<token>")
def update_preferences(token: str) -> Response:
    sub = _preferences_target(token)
    session = get_session()
    try:
        form = _form()
        missing = [name for name in ("keywords", "location", "language") if name not in form]
        if missing:
            # Not our form: an absent field is not a field emptied on purpose.
            raise InvalidInput("body", f"body: the form lacks {', '.join(missing)}")
        data = {**_stored_choices(sub, form), **form}
        prefs = clean_preferences(data, default_language=sub.language)
    except InvalidInput as exc:
        # Show what was typed, to correct it; an unreadable form shows the stored settings.
        fields = () if exc.field == "body" else ("keywords", "location", "language")
        typed: dict[str, object] = {k: request.form.get(k, "")[:300] for k in fields}
        if exc.field != "body":
            chosen = search_fields.prefill(data)
            typed.update({k: chosen[k] for k in ("radius", "remote", "employment_type") if k in chosen})
        return _preferences_page(sub, token, 400, values=typed, errors={exc.field: str(exc)})
    changed = subscriptions.update_preferences(session, sub, prefs, _origin())
    session.commit()
    g.page_language = sub.language
    return _preferences_page(sub, token, saved=changed)


@bp.post("/preferences/<token>/data-link")
def data_link(token: str) -> Response:
    """Mail a fresh data link to the reader's own address: the lasting preferences link in
    every digest may have been forwarded, so it opens no data itself (STANDARDS 26)."""
    sub = _preferences_target(token)
    session = get_session()
    ids = subscriptions.request_data_link(session, sub, _origin())
    session.commit()
    enqueue_outbox_after_commit(ids)
    return _preferences_page(sub, token, data_link_sent=True)


# -- data export and erasure: behind a mailed link that expires (STANDARDS 14, 15, 26) -------

def _private(response: Response) -> Response:
    response.headers["Cache-Control"] = "no-store"  # personal data: no copy in any cache
    return response


@bp.get("/data/<token>")
def data_page(token: str) -> Response:
    sub = _data_target(token)
    return _private(_page("data.html", sub=sub, token=token, errors={}))


@bp.get("/data/<token>/data.json")
def export(token: str) -> Response:
    sub = _data_target(token)
    body = json.dumps(subscriptions.export(get_session(), sub), ensure_ascii=False, indent=2)
    response = Response(body, mimetype="application/json")
    response.headers["Content-Disposition"] = 'attachment; filename="newsletter-data.json"'
    return _private(response)


@bp.post("/data/<token>/erase")
def erase(token: str) -> Response:
    sub = _data_target(token)
    if request.form.get("confirm") != "yes":
        return _private(_page("data.html", 400, sub=sub, token=token, errors={"erase": "confirm"}))
    session = get_session()
    subscriptions.erase(session, sub, _origin())
    session.commit()
    return _page("erased.html")


# -- "manage my subscription": the link by mail ----------------------------------------------

@bp.get("/manage")
def manage_form() -> Response:
    return _page("manage.html", values={}, errors={})


@bp.post("/manage")
@limiter.limit(signup_limit, methods=["POST"])
def manage() -> Response:
    try:
        email = clean_email(_form().get("email"))
    except InvalidInput as exc:
        return _page(
            "manage.html", 400, values={"email": _echo(request.form.get("email"))},
            errors={exc.field: str(exc)},
        )
    session = get_session()
    ids = subscriptions.request_manage_link(session, email, _origin())
    session.commit()
    enqueue_outbox_after_commit(ids)
    return _page("manage_done.html")


@bp.app_context_processor
def _page_globals() -> dict[str, Any]:
    from flask_babel import get_locale

    s = settings()
    return {"privacy_url": s.privacy_url, "confirm_hours": int(s.confirm_max_age_hours),
            "data_link_minutes": int(s.data_link_max_age_minutes),
            "impressum": s.impressum, "interval_days": s.digest_interval_days,
            "every": consent.every(str(get_locale() or "de"), s.digest_interval_days)}
