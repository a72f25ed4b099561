"""Properties over generated observations, for every registered policy:

- final counts never leave ``[min, max]``;
- unknown input holds every count and converts nothing; partially unknown input never scales in;
- TokenScale and HeteroScale never want fewer replicas when load grows, at a fixed state.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from tests.unit.core.helpers import make_settings, pod

from tokenscale.core import decide
from tokenscale.core.policies import registry
from tokenscale.core.settings import (
    Behavior,
    DistServeSettings,
    HeteroScaleSettings,
    RoleBounds,
    ScalingSettings,
    StaticSettings,
    TokenScaleSettings,
)
from tokenscale.core.types import LoadSignals, Observation, PodView, Role, RoleView, ServingRole

PROPERTY_SETTINGS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# token rates over several orders of magnitude, so that small and large loads both show up
rates = st.one_of(
    st.just(0.0),
    st.floats(min_value=0.0, max_value=5_000.0),
    st.floats(min_value=0.0, max_value=50_000.0),
    st.floats(min_value=0.0, max_value=300_000.0),
)
# latencies: unknown, within every objective (< 0.1 s), or anything up to a severe breach
latencies = st.one_of(st.none(), st.floats(min_value=0.001, max_value=0.09), st.floats(min_value=0.001, max_value=5.0))


ALL_POLICIES = st.sampled_from(registry.policy_names())


@st.composite
def scaling_settings(draw: st.DrawFn, policy: st.SearchStrategy[str] = ALL_POLICIES) -> ScalingSettings:
    bounds = []
    for _ in range(2):
        low = draw(st.integers(min_value=1, max_value=4))
        bounds.append(RoleBounds(low, draw(st.integers(min_value=low, max_value=24))))
    return make_settings(
        draw(policy),
        prefill=bounds[0],
        decode=bounds[1],
        behavior=Behavior(
            max_scale_up_step=draw(st.integers(min_value=1, max_value=10)),
            max_scale_down_step=draw(st.integers(min_value=1, max_value=10)),
            scale_in_stabilization_seconds=draw(st.sampled_from([0.0, 5.0, 60.0])),
        ),
        tokenscale=TokenScaleSettings(
            convertible_decoders_max=draw(st.integers(min_value=0, max_value=4)), prefill_chunk_tokens=500
        ),
        heteroscale=HeteroScaleSettings(
            target_decode_tokens_per_second=draw(st.sampled_from([None, 1000.0])),
            soft_scale_in_seconds=draw(st.sampled_from([0.0, 3.0])),
            scale_out_cooldown_seconds=draw(st.sampled_from([0.0, 3.0])),
            scale_in_cooldown_seconds=draw(st.sampled_from([0.0, 3.0])),
        ),
        distserve=DistServeSettings(prefill_goodput_requests_per_second=5.0, decode_goodput_requests_per_second=8.0),
        static=StaticSettings(
            prefill_replicas=draw(st.integers(min_value=1, max_value=30)),
            decode_replicas=draw(st.integers(min_value=1, max_value=30)),
        ),
    )


@st.composite
def role_pods(draw: st.DrawFn, role: Role, count: int) -> tuple[PodView, ...]:
    out = []
    for i in range(count):
        converted = role is Role.DECODE and draw(st.booleans())
        out.append(
            pod(
                f"{role.value[0]}{i}",
                role,
                serving=ServingRole.CONVERTED if converted else None,
                ready=draw(st.booleans() | st.just(True)),
                running=draw(st.floats(min_value=0, max_value=800)),
                waiting=draw(st.floats(min_value=0, max_value=200)),
                kv=draw(st.floats(min_value=0, max_value=1)),
                converted_since=draw(st.none() | st.floats(min_value=-500, max_value=0)) if converted else None,
            )
        )
    # a role with known load has at least one Ready pod with fresh metrics
    out[0] = dataclasses.replace(out[0], ready=True, load_known=True)
    return tuple(out)


@st.composite
def load_signals(draw: st.DrawFn) -> LoadSignals:
    arriving = draw(rates)
    return LoadSignals(
        arriving_prompt_tokens_per_second=arriving,
        processed_prompt_tokens_per_second=arriving,
        generation_tokens_per_second=draw(rates),
        arriving_requests_per_second=draw(st.floats(min_value=0, max_value=300)),
        mean_prompt_tokens=draw(st.floats(min_value=1, max_value=8000)),
        mean_generation_tokens=draw(st.floats(min_value=1, max_value=2000)),
        bucket_tokens_per_second=draw(st.just(()) | st.tuples(*[rates] * 9)),
        ttft_p90_seconds=draw(latencies),
        itl_p90_seconds=draw(latencies),
        recent_arriving_prompt_tokens_per_second=draw(st.none() | rates),
    )


@st.composite
def observations(draw: st.DrawFn, now: float) -> Observation:
    prefill = draw(role_pods(Role.PREFILL, draw(st.integers(min_value=1, max_value=6))))
    decode = draw(role_pods(Role.DECODE, draw(st.integers(min_value=1, max_value=8))))
    return Observation(
        now_seconds=now,
        prefill=RoleView(draw(st.integers(min_value=1, max_value=24)), prefill),
        decode=RoleView(draw(st.integers(min_value=1, max_value=24)), decode),
        load=draw(load_signals()),
    )


@st.composite
def histories(draw: st.DrawFn, length: int = 4) -> tuple[Observation, ...]:
    """A few ticks one to three seconds apart."""
    now, out = 100.0, []
    for _ in range(draw(st.integers(min_value=1, max_value=length))):
        now += draw(st.sampled_from([1.0, 2.0, 3.0]))
        out.append(draw(observations(now)))
    return tuple(out)


def _replay(config: ScalingSettings, ticks: tuple[Observation, ...]) -> tuple[decide.ControllerState, list[Any]]:
    state = decide.initial_state(settings=config)
    decisions = []
    for o in ticks:
        decision, state = decide.decide(settings=config, observation=o, state=state)
        decisions.append(decision)
    return state, decisions


@PROPERTY_SETTINGS
@given(config=scaling_settings(), ticks=histories())
def test_counts_never_leave_the_bounds(config: ScalingSettings, ticks: tuple[Observation, ...]) -> None:
    _, decisions = _replay(config, ticks)
    for decision in decisions:
        assert config.prefill.min_replicas <= decision.prefill_replicas <= config.prefill.max_replicas
        assert config.decode.min_replicas <= decision.decode_replicas <= config.decode.max_replicas


@PROPERTY_SETTINGS
@given(config=scaling_settings(), ticks=histories(), data=st.data())
def test_unknown_input_holds_after_any_history(
    config: ScalingSettings, ticks: tuple[Observation, ...], data: st.DataObject
) -> None:
    state, _ = _replay(config, ticks)
    unknown = dataclasses.replace(
        data.draw(observations(ticks[-1].now_seconds + 1)), load=None, unknown_reasons=("prefill: no Ready pod",)
    )
    decision, after = decide.decide(settings=config, observation=unknown, state=state)
    assert decision.action.value == "hold"
    assert decision.prefill_replicas == config.prefill.clamp(unknown.prefill.spec_replicas)
    assert decision.decode_replicas == config.decode.clamp(unknown.decode.spec_replicas)
    assert (decision.convert_pods, decision.withdraw_pods) == ((), ())
    assert after == state


@PROPERTY_SETTINGS
@given(config=scaling_settings(), ticks=histories(), data=st.data())
def test_partially_unknown_input_never_scales_in(
    config: ScalingSettings, ticks: tuple[Observation, ...], data: st.DataObject
) -> None:
    state, _ = _replay(config, ticks)
    partial = dataclasses.replace(data.draw(observations(ticks[-1].now_seconds + 1)), unknown_reasons=("d9: stale",))
    decision, _ = decide.decide(settings=config, observation=partial, state=state)
    assert decision.prefill_replicas >= min(partial.prefill.spec_replicas, config.prefill.max_replicas)
    assert decision.decode_replicas >= min(partial.decode.spec_replicas, config.decode.max_replicas)
    assert decision.withdraw_pods == ()


def _scaled(o: Observation, factor: float) -> Observation:
    """The same observation with every load rate (not the latencies) multiplied by ``factor``."""
    assert o.load is not None
    signals = o.load
    recent = signals.recent_arriving_prompt_tokens_per_second
    return dataclasses.replace(
        o,
        load=dataclasses.replace(
            signals,
            arriving_prompt_tokens_per_second=signals.arriving_prompt_tokens_per_second * factor,
            processed_prompt_tokens_per_second=signals.processed_prompt_tokens_per_second * factor,
            generation_tokens_per_second=signals.generation_tokens_per_second * factor,
            arriving_requests_per_second=signals.arriving_requests_per_second * factor,
            bucket_tokens_per_second=tuple(rate * factor for rate in signals.bucket_tokens_per_second),
            recent_arriving_prompt_tokens_per_second=None if recent is None else recent * factor,
        ),
    )


@PROPERTY_SETTINGS
@given(
    config=scaling_settings(policy=st.sampled_from(["tokenscale", "heteroscale", "tokenscale-no-conversion"])),
    ticks=histories(),
    data=st.data(),
    factor=st.floats(min_value=1.0, max_value=20.0),
)
def test_more_load_never_wants_fewer_replicas(
    config: ScalingSettings, ticks: tuple[Observation, ...], data: st.DataObject, factor: float
) -> None:
    state, _ = _replay(config, ticks[:-1])
    base = data.draw(observations(ticks[-1].now_seconds))
    low, _ = decide.decide(settings=config, observation=base, state=state)
    high, _ = decide.decide(settings=config, observation=_scaled(base, factor), state=state)
    assert high.recommended_prefill_replicas >= low.recommended_prefill_replicas
    assert high.recommended_decode_replicas >= low.recommended_decode_replicas
    assert high.prefill_replicas >= low.prefill_replicas
    assert high.decode_replicas >= low.decode_replicas
