"""Variants: a role served by several pools (scale targets) on different GPU types, and how the role's capacity
is split across them (HeteroScale's heterogeneous pools; reference/algorithms.md §2.1, §2.4).

Every policy sizes a role in instances of the service's *reference* profile (``spec.profile``). With variants that
count means capacity: ``demand = N · v_ref`` tokens/s, where ``v_ref`` is one reference instance's velocity for the
role (`instance_tokens_per_second`). The split then decides *where* that capacity runs:

- **scale-out** adds the cheapest capacity first: variants in order of cost per token/s
  (``cost_per_gpu_hour · gpus_per_instance / v``), each up to its ``max_replicas`` and to the instances its free
  GPUs allow (``room``); the last part of the deficit, less than one instance of the cheapest variant, is covered by
  the cheapest *instance count* that covers it (one A100 may cost less than one H100 although the H100's tokens are
  cheaper) [reconstructed];
- **scale-in** removes the most expensive capacity first: from the variant with the highest cost per token/s, as
  many instances as keep the capacity at or above the demand, never below a variant's ``min_replicas``;
- otherwise the counts stay (only bounds apply). Nothing is moved between variants while the demand is met, so
  there is no churn: a cheaper variant gains share as load rises and the expensive one loses it as load falls.

The role's direction comes from the decision, which already passed the shared guards (stabilisation, step limits,
bounds) in reference units: `demand_tokens_per_second` turns the decided count into the demand, holding the
current capacity when the decided count equals the current one in reference units (`reference_replicas`, which
rounds *down*, so the policy never believes it has more capacity than it has, and a scale-in always went through
stabilisation first). Pure: no clock, no I/O.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from tokenscale.core.profile import BUCKET_COUNT, Velocities
from tokenscale.core.types import Reason, Role

__all__ = [
    "CAPACITY_SHORT",
    "VARIANT_BOUNDED",
    "VARIANT_SCALE_IN",
    "VARIANT_SCALE_OUT",
    "Variant",
    "VariantSplit",
    "demand_tokens_per_second",
    "instance_tokens_per_second",
    "reference_replicas",
    "split_capacity",
]

VARIANT_SCALE_OUT = "VariantScaleOut"
"""Instances added to a variant: the cheapest capacity (cost per token/s) that covers the role's demand."""
VARIANT_SCALE_IN = "VariantScaleIn"
"""Instances removed from a variant: the most expensive capacity the demand no longer needs."""
VARIANT_BOUNDED = "VariantBounded"
"""A variant's count moved into its own [minReplicas, maxReplicas]."""
CAPACITY_SHORT = "CapacityShort"
"""The role's demand exceeds what every variant may add (each at its maximum or without room: free GPUs of its
type where it may run)."""

_MIDDLE_BUCKET = BUCKET_COUNT // 2
_EPSILON_TOKENS_PER_SECOND = 1e-6


@dataclass(frozen=True, slots=True)
class Variant:
    """One pool of a role: instances of one profile on one GPU type, with a price and its own bounds.

    ``tokens_per_second`` is one instance's capacity for the role (`instance_tokens_per_second`);
    ``cost_per_gpu_hour`` a relative weight (any currency; only ratios matter).
    """

    name: str
    tokens_per_second: float
    gpus_per_instance: int
    cost_per_gpu_hour: float
    min_replicas: int = 0
    max_replicas: int = 16

    def __post_init__(self) -> None:
        if self.tokens_per_second <= 0 or self.cost_per_gpu_hour < 0 or self.gpus_per_instance < 1:
            raise ValueError(f"variant {self.name}: velocity and GPUs must be positive, cost not negative")
        if not 0 <= self.min_replicas <= self.max_replicas:
            raise ValueError(f"variant {self.name}: need 0 <= min_replicas <= max_replicas")

    @property
    def cost_per_instance_hour(self) -> float:
        return self.cost_per_gpu_hour * self.gpus_per_instance

    @property
    def cost_per_token_per_second(self) -> float:
        """Hourly cost of one token/s of capacity: the order in which variants are filled."""
        return self.cost_per_instance_hour / self.tokens_per_second


@dataclass(frozen=True, slots=True)
class VariantSplit:
    """Replicas per variant (in the variants' order), the capacity they give and what is left uncovered."""

    replicas: Mapping[str, int]
    capacity_tokens_per_second: float
    demand_tokens_per_second: float
    shortfall_tokens_per_second: float
    reasons: tuple[Reason, ...]


def instance_tokens_per_second(
    *, velocities: Velocities, role: Role, bucket_tokens_per_second: Sequence[float] = ()
) -> float:
    """One instance's capacity for ``role``, tokens/s.

    - prefill: ``min(V_P, V_N)`` prompt tokens/s (compute or KV shipping, whichever binds);
    - decode: the (input + output) tokens/s a decoder releases for the arriving bucket mix, the harmonic mean
      ``Σ λ_b / Σ (λ_b / V_D,b)`` of the per-bucket velocities weighted by each bucket's arriving tokens; without
      bucket rates, the middle bucket's ``V_D`` (as HeteroScale's and DistServe's derivations use).
    """
    if role is Role.PREFILL:
        return min(velocities.prefill_tokens_per_second, velocities.network_tokens_per_second)
    rates = tuple(bucket_tokens_per_second)
    total = sum(rates)
    if len(rates) != BUCKET_COUNT or total <= 0:
        return velocities.decode_tokens_per_second[_MIDDLE_BUCKET]
    return total / sum(rate / v for rate, v in zip(rates, velocities.decode_tokens_per_second, strict=True))


def reference_replicas(*, capacity_tokens_per_second: float, reference_tokens_per_second: float) -> int:
    """The role's capacity in whole reference instances, rounded down: what the policy is told it has."""
    return math.floor(capacity_tokens_per_second / reference_tokens_per_second + 1e-9)


def demand_tokens_per_second(
    *, decided_replicas: int, capacity_tokens_per_second: float, reference_tokens_per_second: float
) -> float:
    """The capacity the split must provide for a decided count in reference instances.

    The current capacity when the decision keeps the current count (`reference_replicas`), so a hold never moves
    instances; else ``decided_replicas · v_ref``, above the capacity for a scale-out and below it for a scale-in.
    """
    current = reference_replicas(
        capacity_tokens_per_second=capacity_tokens_per_second, reference_tokens_per_second=reference_tokens_per_second
    )
    if decided_replicas == current:
        return capacity_tokens_per_second
    return decided_replicas * reference_tokens_per_second


def _headroom(variant: Variant, replicas: int, added: int, room: Mapping[str, int] | None) -> int:
    by_bounds = variant.max_replicas - replicas
    if room is None or variant.name not in room:
        return max(by_bounds, 0)
    return max(min(by_bounds, room[variant.name] - added), 0)


def split_capacity(
    *,
    demand_tokens_per_second: float,
    variants: Sequence[Variant],
    current: Mapping[str, int],
    room: Mapping[str, int] | None = None,
) -> VariantSplit:
    """Replicas per variant that cover ``demand_tokens_per_second`` (module docstring for the rules).

    ``current``: replicas each variant has now (missing: 0). ``room``: most instances each variant may *add* now,
    from the free GPUs of its type (missing or None: no limit); bounds raised to a variant's minimum are not
    limited by room (they are configuration, as the role's bounds are). Raises `ValueError` for no variants or
    duplicate names.
    """
    names = [v.name for v in variants]
    if not variants or len(set(names)) != len(names):
        raise ValueError("need at least one variant, with distinct names")
    found: list[Reason] = []
    replicas: dict[str, int] = {}
    for variant in variants:
        now = current.get(variant.name, 0)
        bounded = min(variant.max_replicas, max(variant.min_replicas, now))
        if bounded != now:
            found.append(
                Reason(
                    VARIANT_BOUNDED,
                    f"{variant.name}: {now} -> {bounded} replicas, within [{variant.min_replicas}, "
                    f"{variant.max_replicas}]",
                )
            )
        replicas[variant.name] = bounded
    before = dict(replicas)

    by_cost = sorted(variants, key=lambda v: (v.cost_per_token_per_second, v.name))
    if _capacity(variants, replicas) < demand_tokens_per_second - _EPSILON_TOKENS_PER_SECOND:
        _grow(demand_tokens_per_second=demand_tokens_per_second, by_cost=by_cost, replicas=replicas, room=room)
    elif _capacity(variants, replicas) > demand_tokens_per_second + _EPSILON_TOKENS_PER_SECOND:
        for variant in reversed(by_cost):
            spare = _capacity(variants, replicas) - demand_tokens_per_second
            removable = min(
                replicas[variant.name] - variant.min_replicas,
                math.floor(spare / variant.tokens_per_second + 1e-9),
            )
            # The float tolerance above must not take away capacity the demand needs.
            while removable > 0 and spare - removable * variant.tokens_per_second < -_EPSILON_TOKENS_PER_SECOND:
                removable -= 1
            if removable > 0:
                replicas[variant.name] -= removable
    for variant in variants:
        delta = replicas[variant.name] - before[variant.name]
        if delta > 0:
            found.append(
                Reason(
                    VARIANT_SCALE_OUT,
                    f"{variant.name}: +{delta} ({variant.cost_per_token_per_second * 1000:.4g} per 1000 tokens/s "
                    f"per hour, {variant.tokens_per_second:.0f} tokens/s each)",
                )
            )
        elif delta < 0:
            found.append(
                Reason(
                    VARIANT_SCALE_IN,
                    f"{variant.name}: {delta} (most expensive capacity first; "
                    f"{variant.cost_per_token_per_second * 1000:.4g} per 1000 tokens/s per hour)",
                )
            )
    total = _capacity(variants, replicas)
    shortfall = max(0.0, demand_tokens_per_second - total)
    if shortfall > _EPSILON_TOKENS_PER_SECOND:
        found.append(
            Reason(
                CAPACITY_SHORT,
                f"{shortfall:.0f} tokens/s of {demand_tokens_per_second:.0f} uncovered: every variant is at its "
                "maximum or has no room (free GPUs of its type where it may run)",
            )
        )
    return VariantSplit(
        replicas=dict(replicas),
        capacity_tokens_per_second=total,
        demand_tokens_per_second=demand_tokens_per_second,
        shortfall_tokens_per_second=shortfall if shortfall > _EPSILON_TOKENS_PER_SECOND else 0.0,
        reasons=tuple(found),
    )


def _capacity(variants: Sequence[Variant], replicas: Mapping[str, int]) -> float:
    return sum(replicas[v.name] * v.tokens_per_second for v in variants)


def _instances(deficit_tokens_per_second: float, variant: Variant) -> int:
    """Instances of ``variant`` that cover a deficit: at least one (float noise of 1e-9 instances ignored)."""
    return max(1, math.ceil(deficit_tokens_per_second / variant.tokens_per_second - 1e-9))


def _grow(
    *,
    demand_tokens_per_second: float,
    by_cost: Sequence[Variant],
    replicas: dict[str, int],
    room: Mapping[str, int] | None,
) -> None:
    """Add instances, cheapest capacity first, until the demand is covered or nothing may grow (``replicas`` is
    updated in place; ``room`` limits what each variant may add in this call)."""
    start = dict(replicas)
    while True:
        deficit = demand_tokens_per_second - _capacity(by_cost, replicas)
        if deficit <= _EPSILON_TOKENS_PER_SECOND:
            return
        open_ = [
            (v, h) for v in by_cost if (h := _headroom(v, replicas[v.name], replicas[v.name] - start[v.name], room)) > 0
        ]
        if not open_:
            return
        cheapest, headroom = open_[0]
        whole = math.floor(deficit / cheapest.tokens_per_second + 1e-9)
        if whole >= 1:
            replicas[cheapest.name] += min(whole, headroom)
            continue
        # Less than one instance of the cheapest capacity is missing: the fewest-cost instances that cover it.
        covering = [
            (_instances(deficit, v) * v.cost_per_instance_hour, v.cost_per_token_per_second, v)
            for v, h in open_
            if _instances(deficit, v) <= h
        ]
        if covering:
            _, _, best = min(covering, key=lambda item: (item[0], item[1], item[2].name))
            replicas[best.name] += _instances(deficit, best)
            return
        replicas[cheapest.name] += headroom
