"""Label selectors in their string form, as /scale's ``status.selector`` carries them.

The operator needs two things of a selector: the label keys it constrains (to refuse flipping a role label
that the workload selects on: the flipped pod would leave its ReplicaSet, which would replace it), and
whether a pod's labels match it (pods come from a watched cache, not from a list with ``labelSelector``).

The grammar is the API server's (k8s.io/apimachinery ``labels.Parse``): requirements separated by commas,
each ``key``, ``!key``, ``key=value``, ``key==value``, ``key!=value``, ``key in (a,b)``, ``key notin (a,b)``,
``key>n`` or ``key<n``. ``!=`` and ``notin`` also match a pod without the key, as on the server.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass

__all__ = ["Selector", "parse_selector", "selector_keys"]

# One requirement: optional "!" (does not exist), a key, then an operator or nothing (exists).
_KEY = re.compile(r"^\s*!?\s*([A-Za-z0-9._/-]+)")
_NAME = r"[A-Za-z0-9._/-]+"
_VALUE = r"[A-Za-z0-9._-]*"
_EXISTS = re.compile(rf"^\s*(!?)\s*({_NAME})\s*$")
_COMPARE = re.compile(rf"^\s*({_NAME})\s*(==|=|!=)\s*({_VALUE})\s*$")
_SET = re.compile(rf"^\s*({_NAME})\s+(in|notin)\s*\(([^()]*)\)\s*$")
_ORDER = re.compile(rf"^\s*({_NAME})\s*([<>])\s*(-?[0-9]+)\s*$")

_Requirement = Callable[[Mapping[str, str]], bool]


def _requirements(selector: str) -> list[str]:
    """``selector`` split at the commas outside ``(...)``."""
    depth = 0
    start = 0
    parts: list[str] = []
    for index, char in enumerate(selector):
        if char == "(":
            depth += 1
        elif char == ")":
            depth -= 1
        elif char == "," and depth == 0:
            parts.append(selector[start:index])
            start = index + 1
    parts.append(selector[start:])
    return parts


def selector_keys(selector: str) -> frozenset[str]:
    """The label keys constrained by ``selector`` (``app=x,tier in (a,b),!canary`` -> app, tier, canary).

    Commas inside ``in (...)``/``notin (...)`` value sets do not split requirements.
    """
    keys: set[str] = set()
    for requirement in _requirements(selector):
        match = _KEY.match(requirement)
        if match and requirement.strip():
            keys.add(match.group(1))
    return frozenset(keys)


def _integer(text: str | None) -> int | None:
    try:
        return int(text) if text is not None else None
    except ValueError:
        return None


def _requirement(text: str) -> _Requirement:
    if match := _EXISTS.match(text):
        negated, key = match.group(1) == "!", match.group(2)
        return lambda labels: (key in labels) != negated
    if match := _COMPARE.match(text):
        key, operator, value = match.groups()
        if operator == "!=":
            return lambda labels: labels.get(key) != value
        return lambda labels: labels.get(key) == value
    if match := _SET.match(text):
        key, operator, values_text = match.groups()
        values = frozenset(v.strip() for v in values_text.split(","))
        if operator == "notin":
            return lambda labels: labels.get(key) not in values
        return lambda labels: labels.get(key) in values
    if match := _ORDER.match(text):
        key, operator, bound_text = match.groups()
        bound = int(bound_text)
        if operator == ">":
            return lambda labels: (value := _integer(labels.get(key))) is not None and value > bound
        return lambda labels: (value := _integer(labels.get(key))) is not None and value < bound
    raise ValueError(f"cannot parse the label selector requirement {text.strip()!r}")


@dataclass(frozen=True, slots=True)
class Selector:
    """A parsed label selector: every requirement must hold."""

    text: str
    requirements: tuple[_Requirement, ...]

    def matches(self, labels: Mapping[str, str]) -> bool:
        return all(requirement(labels) for requirement in self.requirements)


def parse_selector(selector: str) -> Selector:
    """Parse the string form of a label selector. An empty ``selector`` matches every pod.

    Raises `ValueError` for a requirement outside the grammar above.
    """
    if not selector.strip():
        return Selector(text=selector, requirements=())
    return Selector(text=selector, requirements=tuple(_requirement(part) for part in _requirements(selector)))
