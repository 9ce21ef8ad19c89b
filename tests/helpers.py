"""Small helpers shared by the tests: finding links in mails and forms in pages."""

from __future__ import annotations

import re
from urllib.parse import urlsplit

BASE = "http://newsletter.test"


def links(text: str, prefix: str) -> list[str]:
    """Every absolute link under BASE_URL + prefix in a text part."""
    return re.findall(re.escape(BASE + prefix) + r"[^\s<>\"]+", text)


def path_of(url: str) -> str:
    return urlsplit(url).path


def form_action(html: str) -> str:
    match = re.search(r'<form method="post" action="([^"]+)"', html)
    assert match, "no POST form on the page"
    return match.group(1)


def signup(client, email: str, **fields: str):
    data = {"email": email, **fields}
    return client.post("/subscribe", data=data, headers={"User-Agent": "pytest-browser"})
