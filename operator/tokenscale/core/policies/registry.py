"""Policies by name. An unknown name is an error that lists the valid ones (no silent default).

The ablation variants of TokenScale are registered beside it: ``tokenscale-prefill-only`` (TokenScale's
prefill scaler, DistServe-style decode sizing, no conversion) and ``tokenscale-no-conversion``.
"""

from __future__ import annotations

from tokenscale.core.policies.apa import APAPolicy
from tokenscale.core.policies.base import Policy
from tokenscale.core.policies.distserve import DistServePolicy
from tokenscale.core.policies.heteroscale import HeteroScalePolicy
from tokenscale.core.policies.hpa import HPAPolicy
from tokenscale.core.policies.kpa import KPAPolicy
from tokenscale.core.policies.static import StaticPolicy
from tokenscale.core.policies.tokenscale import TokenScalePolicy

__all__ = ["get_policy", "policy_names"]

_POLICIES: dict[str, Policy] = {
    policy.name: policy
    for policy in (
        TokenScalePolicy(),
        HeteroScalePolicy(),
        HPAPolicy(),
        KPAPolicy(),
        APAPolicy(),
        DistServePolicy(),
        StaticPolicy(),
        TokenScalePolicy(name="tokenscale-prefill-only", converts=False, decode_sizing="distserve"),
        TokenScalePolicy(name="tokenscale-no-conversion", converts=False),
    )
}


def policy_names() -> tuple[str, ...]:
    """Every registered name, in registration order."""
    return tuple(_POLICIES)


def get_policy(name: str) -> Policy:
    """The policy registered as ``name``; raises `ValueError` listing the valid names otherwise."""
    try:
        return _POLICIES[name]
    except KeyError:
        raise ValueError(f"unknown policy {name!r}; valid: {', '.join(_POLICIES)}") from None
