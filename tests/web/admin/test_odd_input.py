"""Odd query strings and form fields on the admin's pages: a clear 4xx or the page's
default, never a 500. "²" is a digit to str.isdigit() but not to int(); a NUL cannot be
stored in a PostgreSQL text column at all."""

from __future__ import annotations

from typing import Any

import pytest

from tests.web.admin.conftest import logged_in, post


@pytest.mark.parametrize("path", ["/admin/editions?before=²", "/admin/audit?page=²", "/admin/listings?page=²",
                                  "/admin/suppressions?page=²"])
def test_a_non_ascii_digit_in_a_page_parameter_shows_the_first_page(client: Any, operator: str, path: str) -> None:
    logged_in(client, operator)
    assert client.get(path).status_code == 200


def test_a_non_ascii_digit_as_a_reader_id_is_no_reader(client: Any, operator: str) -> None:
    logged_in(client, operator)
    assert client.get("/admin/subscribers/reader?id=²").status_code == 404
    for action in ("unsubscribe", "erase", "export"):
        assert post(client, f"/admin/subscribers/{action}", {"id": "²"}).status_code == 404


def test_a_non_ascii_digit_as_an_alarm_marks_all_seen(client: Any, operator: str) -> None:
    logged_in(client, operator)
    assert post(client, "/admin/alarms/seen", {"alarm": "²"}).status_code == 303


def test_a_nul_in_the_audit_filter_is_refused(client: Any, operator: str) -> None:
    logged_in(client, operator)
    assert client.get("/admin/audit?action=login%00").status_code == 400


def test_a_nul_in_a_listing_id_is_no_listing(client: Any, operator: str) -> None:
    logged_in(client, operator)
    assert post(client, "/admin/listings/withdraw", {"id": "job\x00"}).status_code == 404
