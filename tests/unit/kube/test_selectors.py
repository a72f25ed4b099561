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


@pytest.mark.parametrize(
    ("selector", "labels", "matches"),
    [
        pytest.param("app=llama", {"app": "llama", "x": "y"}, True, id="equality-holds"),
        pytest.param("app==llama", {"app": "other"}, False, id="double-equals-differs"),
        pytest.param("app=llama,role=decode", {"app": "llama", "role": "prefill"}, False, id="every-requirement"),
        pytest.param("role!=decode", {}, True, id="not-equals-matches-absent-key"),
        pytest.param("role!=decode", {"role": "decode"}, False, id="not-equals-differs"),
        pytest.param("tier in (a, b)", {"tier": "b"}, True, id="in-set"),
        pytest.param("tier in (a,b)", {}, False, id="in-needs-the-key"),
        pytest.param("tier notin (a,b)", {}, True, id="notin-matches-absent-key"),
        pytest.param("tier notin (a,b)", {"tier": "a"}, False, id="notin-excludes"),
        pytest.param("canary", {"canary": ""}, True, id="exists"),
        pytest.param("!canary", {"canary": "1"}, False, id="does-not-exist"),
        pytest.param("gen>3", {"gen": "4"}, True, id="greater-than"),
        pytest.param("gen<3", {"gen": "x"}, False, id="less-than-not-a-number"),
        pytest.param("", {"a": "b"}, True, id="empty-matches-all"),
    ],
)
def test_selector_matches_labels_as_the_api_server_does(selector: str, labels: dict[str, str], matches: bool) -> None:
    assert selectors.parse_selector(selector).matches(labels) is matches


@pytest.mark.parametrize(
    "selector",
    [
        pytest.param("app in a,b", id="set-without-parentheses"),
        pytest.param("app=x y", id="space-in-value"),
        pytest.param("app===x", id="triple-equals"),
    ],
)
def test_selector_outside_the_grammar_is_refused(selector: str) -> None:
    with pytest.raises(ValueError, match="cannot parse"):
        selectors.parse_selector(selector)
