"""GET /healthz, and the token kinds that must never stand in for one another."""

from __future__ import annotations

from dataclasses import replace

import pytest

from newsletter import create_app
from newsletter.tokens import TokenExpired, TokenInvalid, Tokens
from tests.smtp_sink import free_port


def test_healthz_is_200_when_database_and_redis_answer(client):
    response = client.get("/healthz")
    assert response.status_code == 200
    assert response.get_json() == {
        "status": "ok", "checks": {"database": "ok", "redis": "ok"}, "client_ip": "127.0.0.1", "trusted_proxies": 0,
    }


def test_healthz_is_503_without_redis(settings):
    app = create_app(replace(settings, redis_url=f"redis://127.0.0.1:{free_port()}/0"))
    response = app.test_client().get("/healthz")
    assert response.status_code == 503
    body = response.get_json()
    assert body["checks"]["database"] == "ok" and body["checks"]["redis"].startswith("error")


def test_healthz_is_503_without_database(settings):
    app = create_app(replace(settings, database_url=f"postgresql+psycopg://postgres@127.0.0.1:{free_port()}/none"))
    response = app.test_client().get("/healthz")
    assert response.status_code == 503
    assert response.get_json()["checks"]["database"].startswith("error")


KEYS = ["old-key-000000000000000000000000000", "new-key-111111111111111111111111111"]


def test_each_token_kind_only_reads_as_itself():
    tokens = Tokens(KEYS, 3600)
    public_id = "abcdefghijklmnop"
    confirm, unsub, prefs = tokens.confirm(public_id, 7), tokens.unsubscribe(public_id), tokens.preferences(public_id)
    data = tokens.data(public_id)
    later_prefs, later_data = tokens.preferences(public_id, 3), tokens.data(public_id, 3)
    assert tokens.read_confirm(confirm) == (public_id, 7)
    assert tokens.read_unsubscribe(unsub) == public_id
    assert tokens.read_preferences(prefs) == tokens.read_data(data) == (public_id, 0)
    assert tokens.read_preferences(later_prefs) == tokens.read_data(later_data) == (public_id, 3)
    kinds = {tokens.read_confirm: [confirm], tokens.read_unsubscribe: [unsub],
             tokens.read_preferences: [prefs, later_prefs], tokens.read_data: [data, later_data]}
    for reader, foreign in [(r, t) for r in kinds for k, ts in kinds.items() if k is not r for t in ts]:
        with pytest.raises(TokenInvalid):
            reader(foreign)


def test_a_generation_0_link_is_the_link_mailed_before_links_named_a_generation():
    """Every preferences link already in an inbox stays valid and is spelt as before."""
    from itsdangerous import URLSafeSerializer

    from newsletter.tokens import PREFERENCES_SALT

    tokens = Tokens(KEYS, 3600)
    public_id = "abcdefghijklmnop"
    mailed_before = URLSafeSerializer(KEYS, salt=PREFERENCES_SALT).dumps(public_id)
    assert tokens.preferences(public_id) == tokens.preferences(public_id, 0) == mailed_before
    assert tokens.read_preferences(mailed_before) == (public_id, 0)
    assert tokens.preferences(public_id, 1) != mailed_before
    # Only the spellings we mail: a generation 0 (or not a whole number) inside a list is no link of ours.
    for value in ([public_id, 0], [public_id, -1], [public_id, True], [public_id, "1"], [public_id, 1, 2]):
        with pytest.raises(TokenInvalid):
            tokens.read_preferences(URLSafeSerializer(KEYS, salt=PREFERENCES_SALT).dumps(value))


def test_tokens_never_contain_the_address_or_row_id():
    tokens = Tokens(KEYS, 3600)
    token = tokens.unsubscribe("Zq3-random-public-id")
    assert "@" not in token and "example" not in token


def test_old_links_survive_a_key_rotation_but_not_an_unknown_key():
    before = Tokens(KEYS[:1], 3600)
    after = Tokens(KEYS, 3600)  # the old key is now a fallback
    stranger = Tokens(["some-other-key-22222222222222222222"], 3600)
    link = before.unsubscribe("abcdefghijklmnop")
    assert after.read_unsubscribe(link) == "abcdefghijklmnop"
    assert after.read_preferences(before.preferences("abcdefghijklmnop")) == ("abcdefghijklmnop", 0)
    assert after.read_preferences(before.preferences("abcdefghijklmnop", 2)) == ("abcdefghijklmnop", 2)
    assert after.read_data(before.data("abcdefghijklmnop", 2)) == ("abcdefghijklmnop", 2)
    with pytest.raises(TokenInvalid):
        stranger.read_unsubscribe(link)


def test_confirmation_tokens_expire():
    fresh = Tokens(KEYS, 3600).confirm("abcdefghijklmnop")
    with pytest.raises(TokenExpired):
        Tokens(KEYS, -1).read_confirm(fresh)
