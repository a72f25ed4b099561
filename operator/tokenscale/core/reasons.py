"""Reason codes of decisions: stable CamelCase strings, used as metric labels and in status and Events.

Renaming one breaks dashboards and alerts; add new codes instead. Each is documented in docs/algorithms.md.
"""

from __future__ import annotations

__all__ = [
    "BOUNDED_BY_MAX",
    "BOUNDED_BY_MIN",
    "BURST_CONVERSION",
    "CONVERSION_BREAKS_TPOT",
    "CONVERSION_CAPPED",
    "CONVERSION_EXPIRED",
    "CONVERSION_LOW_WATER",
    "CONVERSION_NOT_USED",
    "CONVERSION_STABILIZED",
    "COOLDOWN_ACTIVE",
    "DECODE_THROUGHPUT",
    "DECODE_VELOCITY",
    "INPUT_PARTIALLY_UNKNOWN",
    "INPUT_UNKNOWN",
    "LATENCY_MODERATE",
    "LATENCY_SEVERE",
    "METRIC_ABOVE_TARGET",
    "METRIC_BELOW_TARGET",
    "PANIC_MODE",
    "PLAN_HELD",
    "PREFILL_VELOCITY",
    "REPLANNED",
    "SCALE_IN_BLOCKED_UNKNOWN_INPUT",
    "SCALE_IN_STABILIZED",
    "SOFT_SCALE_IN_ABORTED",
    "SOFT_SCALE_IN_COMPLETED",
    "SOFT_SCALE_IN_OBSERVING",
    "SOFT_SCALE_IN_STARTED",
    "STATIC_COUNTS",
    "STEP_LIMITED",
    "SYNC_PERIOD_WAIT",
    "WITHIN_TOLERANCE",
    "ZERO_LOAD",
]

# Shared: inputs and guards (tokenscale.core.decide, tokenscale.core.guards).
INPUT_UNKNOWN = "InputUnknown"
"""A role has no Ready pod with fresh metrics: hold every count."""
INPUT_PARTIALLY_UNKNOWN = "InputPartiallyUnknown"
"""Some Ready pods have no fresh metrics: they are assumed to carry the mean load; no scale-in."""
SCALE_IN_STABILIZED = "ScaleInStabilized"
"""A scale-in was limited to the highest recommendation within the stabilisation window."""
SCALE_IN_BLOCKED_UNKNOWN_INPUT = "ScaleInBlockedUnknownInput"
"""A scale-in was refused because an input is unknown."""
STEP_LIMITED = "StepLimited"
"""A change was cut to the most replicas one tick may add or remove."""
BOUNDED_BY_MIN = "BoundedByMin"
BOUNDED_BY_MAX = "BoundedByMax"

# Convertible decoders (tokenscale.core.conversion).
BURST_CONVERSION = "BurstConversion"
CONVERSION_CAPPED = "ConversionCapped"
"""Arrivals exceed Ready prefill plus converted capacity but no further decoder may convert."""
CONVERSION_EXPIRED = "ConversionExpired"
CONVERSION_LOW_WATER = "ConversionLowWater"
CONVERSION_STABILIZED = "ConversionStabilized"
"""The low-water mark holds, but a converted pod stays until the restore stabilisation has passed since its
conversion and the last conversion pressure."""
CONVERSION_BREAKS_TPOT = "ConversionBreaksTPOT"
CONVERSION_NOT_USED = "ConversionNotUsed"
"""The policy does not convert decoders: converted pods go back to decoding."""

# Policies.
PREFILL_VELOCITY = "PrefillVelocity"
DECODE_VELOCITY = "DecodeVelocity"
ZERO_LOAD = "ZeroLoad"
DECODE_THROUGHPUT = "DecodeThroughput"
WITHIN_TOLERANCE = "WithinTolerance"
COOLDOWN_ACTIVE = "CooldownActive"
LATENCY_MODERATE = "LatencyModerate"
LATENCY_SEVERE = "LatencySevere"
SOFT_SCALE_IN_STARTED = "SoftScaleInStarted"
SOFT_SCALE_IN_OBSERVING = "SoftScaleInObserving"
SOFT_SCALE_IN_COMPLETED = "SoftScaleInCompleted"
SOFT_SCALE_IN_ABORTED = "SoftScaleInAborted"
METRIC_ABOVE_TARGET = "MetricAboveTarget"
METRIC_BELOW_TARGET = "MetricBelowTarget"
SYNC_PERIOD_WAIT = "SyncPeriodWait"
PANIC_MODE = "PanicMode"
REPLANNED = "Replanned"
PLAN_HELD = "PlanHeld"
STATIC_COUNTS = "StaticCounts"
