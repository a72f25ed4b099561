"""Label selectors in their string form, as /scale's ``status.selector`` carries them.

The operator passes the string through to pod lists unchanged; it only needs the label keys a selector
constrains, to refuse flipping a role label that the workload selects on (the flipped pod would leave its
ReplicaSet, which would replace it).
"""

from __future__ import annotations

import re

__all__ = ["selector_keys"]

# One requirement: optional "!" (does not exist), a key, then an operator or nothing (exists).
_KEY = re.compile(r"^\s*!?\s*([A-Za-z0-9._/-]+)")


def selector_keys(selector: str) -> frozenset[str]:
    """The label keys constrained by ``selector`` (``app=x,tier in (a,b),!canary`` -> app, tier, canary).

    Commas inside ``in (...)``/``notin (...)`` value sets do not split requirements.
    """
    keys: set[str] = set()
    depth = 0
    start = 0
    requirements: list[str] = []
    for index, char in enumerate(selector):
        if char == "(":
            depth += 1
        elif char == ")":
            depth -= 1
        elif char == "," and depth == 0:
            requirements.append(selector[start:index])
            start = index + 1
    requirements.append(selector[start:])
    for requirement in requirements:
        match = _KEY.match(requirement)
        if match and requirement.strip():
            keys.add(match.group(1))
    return frozenset(keys)
