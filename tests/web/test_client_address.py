"""Where a request comes from and where a page's own links lead: language links that stay
on this site whatever the path, /healthz naming the client address the app sees, and the
per-IP limits keying an IPv6 client by its /64."""

from __future__ import annotations

import re

import pytest

from tests.conftest import make_settings
from tests.helpers import signup

LANGUAGE_LINK = re.compile(r'<a href="([^"]*)" lang="(?:de|en)" hreflang=')
# A path of ours: one '/' and then neither '/' nor '\' (either makes a browser go to another host).
OWN_PATH = re.compile(r"/[^/\\]")


def language_links(response) -> list[str]:
    links = LANGUAGE_LINK.findall(response.get_data(as_text=True))
    assert len(links) == 2, response.get_data(as_text=True)
    return links


@pytest.mark.parametrize("path", [
    "/subscribe", "/manage", "/confirm/not-a-token", "/unsubscribe/not-a-token",
    "/%5Cevil.example", "/%5C%5Cevil.example", "/%2F%2Fevil.example", "/nowhere/%5Cevil.example",
])
def test_language_links_stay_on_this_site(client, path):
    response = client.get(path, headers={"Accept": "text/html"})
    for link in language_links(response):
        assert OWN_PATH.match(link), f"{path}: {link}"


@pytest.mark.parametrize("path", ["//evil.example", "/\\evil.example", "///evil.example"])
def test_language_links_stay_on_this_site_for_a_raw_path(client, path):
    """Paths a client sends raw, which the test client would otherwise read as a host."""
    response = client.get("/", environ_overrides={"PATH_INFO": path}, headers={"Accept": "text/html"})
    assert response.status_code == 404
    for link in language_links(response):
        assert OWN_PATH.match(link), f"{path}: {link}"


def test_language_links_keep_the_page_and_its_token(client):
    assert language_links(client.get("/unsubscribe/abc")) == ["/unsubscribe/abc?lang=de", "/unsubscribe/abc?lang=en"]
    assert language_links(signup(client, "anna@example.org")) == ["/subscribe?lang=de", "/subscribe?lang=en"]


# -- 6. /healthz names the client address --------------------------------------------------------

@pytest.fixture
def make_client(settings, redis_conn):
    from newsletter import create_app

    apps = []

    def build(**overrides):
        app = create_app(make_settings(database_url=settings.database_url, smtp_port=settings.smtp_port,
                                       instance_path=settings.instance_path, **overrides))
        apps.append(app)
        return app.test_client()

    yield build
    for app in apps:
        app.extensions["newsletter_db"].dispose()


def test_healthz_reports_the_forwarded_address_behind_one_trusted_proxy(make_client):
    behind_proxy = make_client(trusted_proxies=1)
    answer = behind_proxy.get("/healthz", headers={"X-Forwarded-For": "203.0.113.9"},
                              environ_base={"REMOTE_ADDR": "10.0.0.2"})
    assert answer.status_code == 200
    assert (answer.get_json()["client_ip"], answer.get_json()["trusted_proxies"]) == ("203.0.113.9", 1)


def test_healthz_reports_the_socket_address_without_trusted_proxies(make_client):
    direct = make_client(trusted_proxies=0)
    answer = direct.get("/healthz", headers={"X-Forwarded-For": "203.0.113.9"},
                        environ_base={"REMOTE_ADDR": "198.51.100.4"})
    assert answer.status_code == 200
    assert (answer.get_json()["client_ip"], answer.get_json()["trusted_proxies"]) == ("198.51.100.4", 0)


# -- 7. IPv6 clients are limited per /64 ---------------------------------------------------------

def from_address(client, address: str, email: str) -> int:
    return client.post("/subscribe", data={"email": email}, environ_base={"REMOTE_ADDR": address}).status_code


def test_addresses_in_one_ipv6_64_share_a_budget(make_client):
    limited = make_client(signup_rate_limit="2 per minute")
    assert from_address(limited, "2001:db8:0:1::1", "a1@example.org") == 200
    assert from_address(limited, "2001:db8:0:1::2", "a2@example.org") == 200
    assert from_address(limited, "2001:db8:0:1:ffff:ffff:ffff:ffff", "a3@example.org") == 429
    # Another /64 (even the neighbouring one) has a budget of its own.
    assert from_address(limited, "2001:db8:0:2::1", "b1@example.org") == 200
    assert from_address(limited, "2001:db8:0:2::2", "b2@example.org") == 200


def test_an_ipv4_mapped_address_counts_as_its_ipv4_address(make_client):
    limited = make_client(signup_rate_limit="2 per minute")
    assert from_address(limited, "192.0.2.10", "c1@example.org") == 200
    assert from_address(limited, "::ffff:192.0.2.10", "c2@example.org") == 200
    assert from_address(limited, "192.0.2.10", "c3@example.org") == 429
    # IPv4 stays per address: the neighbour is not held.
    assert from_address(limited, "192.0.2.11", "c4@example.org") == 200
