"""The confirmation step of the admin's destructive actions, without any script: the
action's button posts without `confirm=yes`, which changes nothing and answers a page
saying what would happen, whose own button posts again with it."""

from __future__ import annotations

from collections.abc import Mapping

from flask import render_template, request

CONFIRM_FIELD = "confirm"


def confirmed() -> bool:
    """Whether this POST carries the confirmation."""
    return request.form.get(CONFIRM_FIELD) == "yes"


def ask(title: str, question: str, action: str, fields: Mapping[str, str], button: str, back: str, *,
        checkbox: str | None = None, error: str | None = None, danger: bool = True) -> tuple[str, int]:
    """The confirmation page: `question` about what posting `fields` to `action` would do.
    `checkbox`: the label of a box that must be ticked as well (an explicit confirmation);
    `error`: why the last attempt was not taken (then the answer is a 400)."""
    page = render_template("admin/confirm.html", title=title, question=question, action=action, fields=fields,
                           button=button, back=back, checkbox=checkbox, error=error, danger=danger)
    return page, 400 if error else 200


def page_number(raw: str | None) -> int:
    """A page number from a query string: 1 for anything that is none."""
    raw = raw or ""
    # isascii: str.isdigit() also takes "²", which int() refuses.
    return int(raw) if raw.isascii() and raw.isdigit() and len(raw) < 7 else 1


def int_field(raw: str | None) -> int | None:
    """An id from a form or query string; None for anything that is none."""
    raw = (raw or "").strip()
    return int(raw) if raw.isascii() and raw.isdigit() and len(raw) < 10 else None
