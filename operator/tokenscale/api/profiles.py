"""Performance profile files (YAML): their schema, the bundled ones, and conversion to `tokenscale.core.profile`.

A profile file states a service-time model (``perf``), optionally the request bucket grid, and optionally
measured velocities; velocities it does not state are derived from ``perf`` by `tokenscale.core.velocity`.
Bundled profiles live in ``tokenscale/api/data/profiles/`` and are chosen by name; any path works too.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

import yaml
from pydantic import BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel

from tokenscale.core import profile as core_profile
from tokenscale.core import velocity

__all__ = [
    "DEFAULT_PROMPT_TOKENS",
    "DEFAULT_TPOT_SLO_SECONDS",
    "ProfileFile",
    "bundled_profile_names",
    "load_profile",
]

DEFAULT_PROMPT_TOKENS = 1046.0
"""Median prompt length of the pooled Azure code and conv traces, at which V_P is derived."""
DEFAULT_TPOT_SLO_SECONDS = 0.1
"""TokenScale's TPOT objective, at which V_D is derived."""


class _Model(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="forbid", frozen=True)


class PerfFile(_Model):
    prefill_fixed_ms: float = Field(ge=0)
    prefill_ms_per_token: float = Field(ge=0)
    prefill_ms_per_token_squared: float = Field(ge=0)
    decode_fixed_ms: float = Field(gt=0)
    decode_ms_per_kv_token: float = Field(ge=0)
    decode_ms_per_sequence: float = Field(ge=0)
    kv_capacity_tokens: int = Field(gt=0)
    kv_bytes_per_token: int = Field(gt=0)
    link_bytes_per_second: float = Field(gt=0)
    kv_transfer_fixed_ms: float = Field(ge=0)
    max_num_seqs: int = Field(gt=0)
    max_num_batched_tokens: int = Field(gt=0)
    gpus_per_instance: int = Field(gt=0)
    cold_start_seconds: float = Field(ge=0)


class BucketsFile(_Model):
    input_edges_tokens: tuple[int, int] = (446, 1236)
    output_edges_tokens: tuple[int, int] = (50, 139)
    representative_input_tokens: tuple[float, float, float] = (289.0, 1000.0, 3011.0)
    representative_output_tokens: tuple[float, float, float] = (18.0, 90.0, 352.0)


class VelocitiesFile(_Model):
    prefill_tokens_per_second: float | None = Field(default=None, gt=0)
    network_tokens_per_second: float | None = Field(default=None, gt=0)
    decode_tokens_per_second: tuple[float, ...] | None = Field(default=None, min_length=9, max_length=9)


class ProfileFile(_Model):
    """One profile file."""

    name: str = Field(min_length=1)
    model: str = Field(min_length=1)
    gpu: str = Field(min_length=1)
    source: str = Field(min_length=1, description="Where the numbers come from; required.")
    perf: PerfFile
    buckets: BucketsFile = Field(default_factory=BucketsFile)
    velocities: VelocitiesFile = Field(default_factory=VelocitiesFile)

    def to_core(
        self,
        *,
        prompt_tokens: float = DEFAULT_PROMPT_TOKENS,
        tpot_slo_seconds: float = DEFAULT_TPOT_SLO_SECONDS,
    ) -> core_profile.Profile:
        """The core profile; velocities not stated in the file are derived at the given prompt length and TPOT."""
        perf = core_profile.PerfModel(**self.perf.model_dump())
        buckets = core_profile.BucketGrid(**self.buckets.model_dump())
        derived = velocity.derive_velocities(
            perf=perf, buckets=buckets, prompt_tokens=prompt_tokens, tpot_slo_seconds=tpot_slo_seconds
        )
        stated = self.velocities
        velocities = core_profile.Velocities(
            prefill_tokens_per_second=stated.prefill_tokens_per_second or derived.prefill_tokens_per_second,
            network_tokens_per_second=stated.network_tokens_per_second or derived.network_tokens_per_second,
            decode_tokens_per_second=stated.decode_tokens_per_second or derived.decode_tokens_per_second,
        )
        return core_profile.Profile(
            name=self.name,
            model=self.model,
            gpu=self.gpu,
            perf=perf,
            buckets=buckets,
            velocities=velocities,
            source=self.source,
        )


def _bundled_dir() -> resources.abc.Traversable:
    return resources.files("tokenscale.api").joinpath("data", "profiles")


def bundled_profile_names() -> list[str]:
    """Names of the profiles shipped with the package, sorted."""
    return sorted(p.name.removesuffix(".yaml") for p in _bundled_dir().iterdir() if p.name.endswith(".yaml"))


def load_profile(
    name_or_path: str,
    *,
    prompt_tokens: float = DEFAULT_PROMPT_TOKENS,
    tpot_slo_seconds: float = DEFAULT_TPOT_SLO_SECONDS,
) -> core_profile.Profile:
    """Load a bundled profile by name, or a profile file by path.

    Raises `ValueError` naming the bundled profiles when ``name_or_path`` is neither.
    """
    path = Path(name_or_path)
    if path.suffix in {".yaml", ".yml"} and path.exists():
        text = path.read_text()
    elif name_or_path in bundled_profile_names():
        text = _bundled_dir().joinpath(f"{name_or_path}.yaml").read_text()
    else:
        raise ValueError(f"unknown profile {name_or_path!r}; bundled: {', '.join(bundled_profile_names())}")
    parsed = ProfileFile.model_validate(yaml.safe_load(text))
    return parsed.to_core(prompt_tokens=prompt_tokens, tpot_slo_seconds=tpot_slo_seconds)
