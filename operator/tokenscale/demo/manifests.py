"""The demo's example objects: a prefill and a decode Deployment of engine pods, and the service that scales them.

The pods request one ``nvidia.com/gpu`` each (the fake GPU nodes have 8) and carry the role label of the default
preset (``tokenscale.io/role``), on the pods only: the Deployments select by ``app``, so flipping a decode pod
to ``converted`` keeps it in its ReplicaSet. Their KWOK annotation ``sim.tokenscale.io/cold-start-delay`` makes
a new pod Ready only after the profile's cold start, divided by the speed-up (KWOK plays the kubelet; no image is
ever pulled). The service's spec is the API's defaults with the demo's replica bounds and policy, compressed to
the sped-up world (`tokenscale.twin.speedup.compress_spec`) and naming the sped-up profile file.
"""

from __future__ import annotations

from typing import Any

from tokenscale.api import v1alpha1
from tokenscale.devcluster import nodes
from tokenscale.twin import speedup as twin_speedup

__all__ = ["DEMAND_WINDOW_SECONDS", "ENGINE_IMAGE", "deployment", "service", "service_spec"]

ENGINE_IMAGE = "vllm/vllm-openai:v0.11.0"
"""The image the example pods name (never pulled: KWOK runs no containers)."""


def _go_duration(seconds: float) -> str:
    return f"{round(seconds, 3):g}s"


def deployment(
    *, name: str, role_value: str, replicas: int, cold_start_seconds: float, metrics_port: int
) -> dict[str, Any]:
    """A Deployment of ``replicas`` engine pods with role label value ``role_value``, each Ready
    ``cold_start_seconds`` after it started, serving metrics on ``metrics_port``."""
    key, *_ = v1alpha1.RoleLabelSpec().resolved()
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name, "labels": {"app": name}},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {
                    "labels": {"app": name, key: role_value},
                    "annotations": {nodes.COLD_START_DELAY_ANNOTATION: _go_duration(cold_start_seconds)},
                },
                "spec": {
                    "terminationGracePeriodSeconds": 0,
                    "containers": [
                        {
                            "name": "engine",
                            "image": ENGINE_IMAGE,
                            "ports": [{"name": "metrics", "containerPort": metrics_port}],
                            "resources": {"limits": {nodes.GPU_RESOURCE: "1"}},
                        }
                    ],
                },
            },
        },
    }


DEMAND_WINDOW_SECONDS = 60.0
"""TokenScale's demand-quantile window in the demo, simulated seconds (the API default is 600 s)."""


def service_spec(
    *,
    prefill: str,
    decode: str,
    profile: str,
    policy: str,
    speedup: float,
    metrics_port: int,
    min_decode: int = 2,
    max_replicas: int = 8,
) -> dict[str, Any]:
    """The service's spec: API defaults, the demo's targets, bounds, policy and profile, compressed ``speedup``×.

    Raises `ValueError` (pydantic's) if the result is not a valid spec, e.g. a policy that needs settings the
    demo does not give (``distserve``, ``static``).
    """
    base = v1alpha1.DisaggregatedInferenceServiceSpec(
        prefill=v1alpha1.RoleSpec(
            scale_target_ref=v1alpha1.ScaleTargetRef(name=prefill), min_replicas=1, max_replicas=max_replicas
        ),
        decode=v1alpha1.RoleSpec(
            scale_target_ref=v1alpha1.ScaleTargetRef(name=decode), min_replicas=min_decode, max_replicas=max_replicas
        ),
        metrics=v1alpha1.MetricsSpec(port=metrics_port),
        policy=v1alpha1.PolicySpec(
            name=v1alpha1.PolicyName(policy),
            # The default 600 s demand window outlasts the demo's 8 simulated minutes; 60 s lets the scale-in after
            # the burst show (docs/demo.md). The cold-start hold on scale-in stays the profile's.
            tokenscale=v1alpha1.TokenScalePolicySpec(demand_window_seconds=DEMAND_WINDOW_SECONDS),
        ),
        profile=v1alpha1.ProfileSpec(name=profile),
    )
    spec = twin_speedup.compress_spec(base.model_dump(by_alias=True, mode="json", exclude_none=True), speedup=speedup)
    v1alpha1.parse_spec(spec)  # the compressed spec must still be one the API server accepts
    return spec


def service(*, name: str, spec: dict[str, Any]) -> dict[str, Any]:
    """The DisaggregatedInferenceService object."""
    return {"apiVersion": v1alpha1.API_VERSION, "kind": v1alpha1.KIND, "metadata": {"name": name}, "spec": spec}
