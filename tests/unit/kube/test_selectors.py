"""Label keys of a selector string: what the operator checks before flipping a role label."""

from __future__ import annotations

import pytest

from tokenscale.kube import selectors


@pytest.mark.parametrize(
    ("selector", "keys"),
    [
        pytest.param("app=llama", {"app"}, id="equality"),
        pytest.param("app=llama,tokenscale.io/role=decode", {"app", "tokenscale.io/role"}, id="prefixed-key"),
        pytest.param("app==x,tier!=web", {"app", "tier"}, id="double-equals-and-not-equals"),
        pytest.param("tier in (a,b),app notin (c, d)", {"tier", "app"}, id="set-commas-do-not-split"),
        pytest.param("canary,!legacy", {"canary", "legacy"}, id="exists-and-not-exists"),
        pytest.param("", set(), id="empty"),
    ],
)
def test_selector_keys_lists_every_constrained_key(selector: str, keys: set[str]) -> None:
    assert selectors.selector_keys(selector) == keys
