"""The admin's reader record shows the whole search the reader keeps: radius, remote work
and job types, in words, beside keywords and place."""

from __future__ import annotations

import re

from tests.helpers import find_subscriber, subscribe_confirmed
from tests.web.admin.conftest import logged_in


def _field(html: str, name: str) -> str:
    return re.search(rf'<dd data-field="{name}">(.*?)</dd>', html, re.DOTALL).group(1).strip()


def test_the_record_shows_radius_remote_and_job_types(client, database, smtp, drain, viewer):
    subscribe_confirmed(client, smtp, drain, "anna@example.org", location="Köln", radius="50", remote="no",
                        employment_type=["apprenticeship", "full_time"])
    subscribe_confirmed(client, smtp, drain, "ben@example.org")
    logged_in(client, viewer)
    anna = client.get(f"/admin/subscribers/reader?id={find_subscriber(database, 'anna@example.org').id}",
                      headers={"Accept-Language": "de"}).get_data(as_text=True)
    assert (_field(anna, "radius"), _field(anna, "remote"), _field(anna, "employment_type")) == (
        "50 km", "Nur vor Ort", "Vollzeit, Ausbildung")
    ben = client.get(f"/admin/subscribers/reader?id={find_subscriber(database, 'ben@example.org').id}&lang=en"
                     ).get_data(as_text=True)
    assert (_field(ben, "radius"), _field(ben, "remote"), _field(ben, "employment_type")) == (
        "–", "On site or remote", "Every type")
