"""The admin's digest preview "as a search" with the job-alert fields (radius, remote, job
types), checked as the signup form checks them; the preview, its HTML frame and its test
mail show the listings that search gets, with their job facts, and a placeholder web link.
Through the admin's pages with a logged-in operator, the SMTP sink for the test mail."""

from __future__ import annotations

import html
import re

import pytest

from newsletter.models import AdminRole, AuditEvent
from tests.helpers import BASE, add_listing, all_rows
from tests.web.admin.conftest import logged_in, make_account, post


@pytest.fixture
def operator(database) -> str:
    return make_account(database, "olga@jobs.example.org", AdminRole.OPERATOR)


@pytest.fixture
def board(database) -> None:
    with database.session_scope() as session:
        add_listing(session, 1, "Python-Entwicklerin", location="Berlin", employment_type="full_time",
                    salary_min=52000, salary_max=68000, salary_currency="EUR", salary_unit="year")
        add_listing(session, 2, "Python Remote-Team", location="Hamburg", remote=True, employment_type="full_time")
        add_listing(session, 3, "Werkstudent Python", location="Potsdam", employment_type="student",
                    salary_min=16, salary_currency="EUR", salary_unit="hour")
        add_listing(session, 4, "Python in München", location="München", employment_type="part_time")


def _listed(page: str) -> list[str]:
    found = re.search(r'<ol class="listings" id="preview-listings">(.*?)</ol>', page, re.DOTALL)
    return re.findall(r"<li>([^<]+?) <span", found.group(1)) if found else []


def _text(page: str) -> str:
    return html.unescape(re.search(r'<pre class="mail" id="preview-text">(.*?)</pre>', page, re.DOTALL).group(1))


def test_remote_job_types_and_radius_narrow_the_preview(client, database, board, operator):
    logged_in(client, operator)

    def preview(**query):
        page = client.get("/admin/preview", query_string={"keywords": "python", **query})
        assert page.status_code == 200
        return page.get_data(as_text=True)

    assert sorted(_listed(preview())) == ["Python Remote-Team", "Python in München", "Python-Entwicklerin",
                                          "Werkstudent Python"]
    page = preview(remote="only")
    assert _listed(page) == ["Python Remote-Team"]
    assert "Remote" in _text(page).split("Python Remote-Team", 1)[1].split("\n\n")[0]
    assert re.search(r'<option value="only" selected>', page)

    page = client.get("/admin/preview", query_string=[("keywords", "python"), ("employment_type", "student"),
                                                      ("employment_type", "full_time")]).get_data(as_text=True)
    assert sorted(_listed(page)) == ["Python Remote-Team", "Python-Entwicklerin", "Werkstudent Python"]
    assert 'value="student" checked' in page and 'value="full_time" checked' in page
    assert 'value="part_time" checked' not in page
    text = _text(page)
    assert "52.000–68.000 € im Jahr · Vollzeit" in text and "ab 16 € pro Stunde · Werkstudent/in" in text
    assert f"{BASE}/digest/PREVIEW" in text and "/digest/" not in text.replace(f"{BASE}/digest/PREVIEW", "")

    # Berlin and 10 km: Potsdam (about 27 km) is out, 50 km takes it in; remote "no" leaves
    # the remote team in Hamburg out, which remote "also" (the default) would keep.
    assert _listed(preview(location="Berlin", radius="10", remote="no")) == ["Python-Entwicklerin"]
    assert sorted(_listed(preview(location="Berlin", radius="50", remote="no"))) == ["Python-Entwicklerin",
                                                                                      "Werkstudent Python"]
    assert "Python Remote-Team" in _listed(preview(location="Berlin", radius="10"))

    # The frame shows the same search's digest.
    frame = client.get("/admin/preview/frame", query_string={"keywords": "python", "employment_type": "student"})
    assert "Werkstudent Python" in frame.get_data(as_text=True)
    assert "Python-Entwicklerin" not in frame.get_data(as_text=True)


@pytest.mark.parametrize(
    ("field", "value", "reason"),
    [("radius", "7", "radius: expected one of 10, 25, 50, 100 (km)"),
     ("remote", "sometimes", "remote: expected one of no, also, only"),
     ("employment_type", "astronaut", "employment_type: unknown type")],
)
def test_a_bad_search_field_is_refused_with_its_reason(client, database, board, operator, field, value, reason):
    logged_in(client, operator)
    page = client.get("/admin/preview", query_string={"location": "Berlin", field: value}).get_data(as_text=True)
    assert reason in html.unescape(page)
    assert 'id="preview-listings"' not in page


def test_the_test_mail_of_a_search_has_its_listings_and_the_placeholder(client, database, board, operator, smtp):
    logged_in(client, operator)
    page = "/admin/preview?keywords=python&employment_type=student&remote=also"
    response = post(client, "/admin/preview/test", {"keywords": "python", "employment_type": "student",
                                                    "remote": "also", "to": "chefin@jobs.example.org"}, page=page)
    assert response.status_code == 303
    [mail] = smtp.wait_for(1)
    text = mail.part("plain")
    assert "Werkstudent Python" in text and "Python-Entwicklerin" not in text
    assert f"{BASE}/digest/PREVIEW" in text and f'href="{BASE}/digest/PREVIEW"' in mail.part("html")
    [event] = [e for e in all_rows(database, AuditEvent) if e.action == "preview.test_send"]
    assert event.detail["employment_type"] == "student" and event.detail["remote"] == "also"
