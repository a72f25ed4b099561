"""Engine presets: exposition names of each engine mapped to `tokenscale.core.types.EngineSample`.

One module per engine (`vllm`, `sglang`, `trtllm`), each holding a ``PRESET``; `preset_for` picks one by the
name used in the custom resource (`tokenscale.api.v1alpha1.Engine`). An unknown name is an error that lists
the valid ones, never a silent default.
"""

from __future__ import annotations

from tokenscale.metrics.engines import sglang, trtllm, vllm
from tokenscale.metrics.engines.preset import EnginePreset

__all__ = ["PRESETS", "UnknownEngineError", "preset_for"]

PRESETS: dict[str, EnginePreset] = {preset.engine: preset for preset in (vllm.PRESET, sglang.PRESET, trtllm.PRESET)}


class UnknownEngineError(ValueError):
    """No preset has this engine name."""


def preset_for(engine: str) -> EnginePreset:
    """The preset of ``engine`` (``vllm``, ``sglang`` or ``trtllm``; an `Engine` enum value works too)."""
    try:
        return PRESETS[str(engine)]
    except KeyError:
        raise UnknownEngineError(f"unknown engine {engine!r}; valid engines: {', '.join(sorted(PRESETS))}") from None
