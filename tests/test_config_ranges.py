"""Every number setting names itself and its range when it is out of it, and takes its edges."""

from __future__ import annotations

import pytest

from newsletter.config import _RANGES, PREFIX, ConfigError, load_settings


def _load(name: str, value: float):
    return load_settings(environ={PREFIX + name.upper(): str(value), "NEWSLETTER_SECRET_KEY": "k" * 40},
                         dotenv_path=None)


@pytest.mark.parametrize("limit", _RANGES, ids=lambda r: r.name)
def test_a_number_out_of_range_is_one_line_naming_the_setting(limit):
    below = limit.low if limit.above else limit.low - 1
    with pytest.raises(ConfigError, match=rf"^{PREFIX}{limit.name.upper()}: must be ") as refused:
        _load(limit.name, below)
    assert "\n" not in str(refused.value)


@pytest.mark.parametrize("limit", _RANGES, ids=lambda r: r.name)
def test_a_number_on_the_edge_of_its_range_is_taken(limit):
    edge = limit.high if limit.above else limit.low
    assert getattr(_load(limit.name, edge), limit.name) == edge
