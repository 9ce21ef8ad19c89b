"""Page language: German first, English too (Flask-Babel; catalogues in newsletter/translations)."""

from __future__ import annotations

from pathlib import Path

from flask import Flask, g, has_request_context, request, url_for
from flask_babel import Babel, get_locale
from werkzeug.exceptions import HTTPException

from newsletter.subscribers.consent import LANGUAGES

TRANSLATIONS = Path(__file__).resolve().parent.parent / "translations"


def _form_language() -> str | None:
    """The language of the page the form was on (our signup form posts it), else the
    newsletter language chosen in it. A body the form parser refuses (413, malformed) means
    no choice: the error page for that very body must still render, not fail again."""
    try:
        return request.form.get("consent_language") or request.form.get("language")
    except HTTPException:
        return None


def select_locale() -> str:
    """?lang= wins, then the posted form's language, then a language the view chose (a
    subscriber's), then the browser's."""
    asked = request.args.get("lang") or _form_language() if request else None
    if asked in LANGUAGES:
        return str(asked)
    chosen = g.get("page_language")
    if chosen in LANGUAGES:
        return str(chosen)
    return request.accept_languages.best_match(LANGUAGES, default="de") or "de"


def keep_page_language(endpoint: str, values: dict[str, object]) -> None:
    """Links and forms of a page lead to pages in its language: where that is not the one
    the browser asks for (an English page for a German browser), they carry ?lang=."""
    if not has_request_context() or not endpoint.startswith("public.") or "lang" in values:
        return
    page = str(get_locale())
    if page != request.accept_languages.best_match(LANGUAGES, default="de"):
        values["lang"] = page


def language_url(language: str) -> str:
    """This page in `language`, built from its endpoint: a link built from the request's
    path would follow it anywhere, and `/\\evil.example` is another host to a browser.
    A request no route matched (a 404 page) gets the signup form."""
    if request.endpoint is None or request.endpoint == "static":
        return url_for("public.subscribe_form", lang=language)
    return url_for(request.endpoint, **(request.view_args or {}), lang=language)


def init_app(app: Flask) -> None:
    app.config["BABEL_TRANSLATION_DIRECTORIES"] = str(TRANSLATIONS)
    app.config["BABEL_DEFAULT_LOCALE"] = "de"
    Babel(app, locale_selector=select_locale)
    app.jinja_env.globals["get_locale"] = get_locale
    app.jinja_env.globals["language_url"] = language_url
    app.url_defaults(keep_page_language)
