"""The twin process: one `ServiceTwin` per DisaggregatedInferenceService, kept in step with the cluster by a poller.

Every ``poll_seconds`` the poller lists the services of the watched namespaces and, for each, the pods of its two
targets (by their /scale selectors, as the operator finds them), then syncs that service's twin. A service that
appears is bound (its profile loaded, a model built, the load queued to start once both roles have a Ready
pod); one that goes is closed. A service whose spec cannot be read, whose engine is not vLLM (the twin speaks
vLLM's metrics), or whose roles have variants (several GPU types), is skipped with one warning. Scrapes do not
wait for the poller: each one advances its model.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any, Protocol

from tokenscale.api import profiles, v1alpha1
from tokenscale.core.profile import Profile
from tokenscale.kube import errors as kube_errors
from tokenscale.kube import pods as kube_pods
from tokenscale.kube.scale import ScaleRef
from tokenscale.sim import traces
from tokenscale.twin import listeners
from tokenscale.twin.service import ServiceSnapshot, ServiceTwin, TwinEvent

__all__ = ["ServiceSource", "Twin"]

logger = logging.getLogger(__name__)


class ServiceSource(Protocol):
    """What the twin reads of the cluster (implemented by `tokenscale.kube.services.ServiceReader`)."""

    def list_services(self, *, namespace: str) -> list[dict[str, Any]]: ...

    def target_pods(self, *, namespace: str, ref: ScaleRef) -> list[kube_pods.PodInfo]: ...


def _ref(role: v1alpha1.RoleSpec) -> ScaleRef:
    target = role.scale_target_ref
    assert target is not None  # services with variants are skipped (`Twin._parse`)
    return ScaleRef(api_version=target.api_version, kind=target.kind, name=target.name)


class Twin:
    """Twins of the services in ``namespaces`` (``only``: just these service names)."""

    def __init__(
        self,
        *,
        source: ServiceSource,
        namespaces: Sequence[str],
        load: traces.Trace,
        speedup: float = 1.0,
        warm_up_seconds: float = 0.0,
        poll_seconds: float = 0.2,
        only: Sequence[str] = (),
        clock: Callable[[], float] = time.monotonic,
        load_profile: Callable[[str], Profile] = profiles.load_profile,
        listen: Callable[..., listeners.PodListener] = listeners.start_listener,
    ) -> None:
        self._source = source
        self._namespaces = tuple(namespaces)
        self._load = load
        self._speedup = speedup
        self._warm_up_seconds = warm_up_seconds
        self._poll_seconds = poll_seconds
        self._only = frozenset(only)
        self._clock = clock
        self._load_profile = load_profile
        self._listen = listen
        self._services: dict[tuple[str, str], ServiceTwin] = {}
        self._skipped: dict[tuple[str, str], str] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # -- one poll -----------------------------------------------------------------------------------------------

    def poll_once(self) -> None:
        """List services and their pods once and sync every twin."""
        listed: set[tuple[str, str]] = set()
        for namespace in self._namespaces:
            for item in self._source.list_services(namespace=namespace):
                name = str(item.get("metadata", {}).get("name", ""))
                if self._only and name not in self._only:
                    continue
                key = (namespace, name)
                spec = self._parse(key, item.get("spec") or {})
                if spec is None:
                    continue
                listed.add(key)
                twin = self._services.get(key) or self._bind(key, spec)
                if twin is None:
                    continue
                prefill = self._source.target_pods(namespace=namespace, ref=_ref(spec.prefill))
                decode = self._source.target_pods(namespace=namespace, ref=_ref(spec.decode))
                twin.sync(spec=spec, prefill_pods=prefill, decode_pods=decode)
        for key in [k for k in self._services if k not in listed]:
            with self._lock:
                gone = self._services.pop(key)
            gone.close()
            logger.info("%s/%s: service gone, its twin closed", *key)

    def _skip(self, key: tuple[str, str], why: str) -> None:
        if self._skipped.get(key) != why:
            logger.warning("%s/%s: not twinned: %s", *key, why)
        self._skipped[key] = why

    def _parse(self, key: tuple[str, str], spec: dict[str, Any]) -> v1alpha1.DisaggregatedInferenceServiceSpec | None:
        try:
            parsed = v1alpha1.parse_spec(spec)
        except ValueError as error:  # pydantic's ValidationError is a ValueError
            self._skip(key, f"invalid spec: {str(error).splitlines()[0]}")
            return None
        if parsed.engine is not v1alpha1.Engine.VLLM:
            self._skip(key, f"engine {parsed.engine.value}: the twin serves vLLM metrics only")
            return None
        if parsed.prefill.variants or parsed.decode.variants:
            # One model per role; a role's deployment groups (spec.placement) are its template's pods and twin fine.
            self._skip(key, "variants: the twin models one GPU type per role")
            return None
        return parsed

    def _bind(self, key: tuple[str, str], spec: v1alpha1.DisaggregatedInferenceServiceSpec) -> ServiceTwin | None:
        try:
            profile = self._load_profile(spec.profile.name)
        except (ValueError, OSError) as error:
            self._skip(key, f"profile: {error}")
            return None
        twin = ServiceTwin(
            namespace=key[0],
            name=key[1],
            spec=spec,
            profile=profile,
            load=self._load,
            speedup=self._speedup,
            clock=self._clock,
            warm_up_seconds=self._warm_up_seconds,
            listen=self._listen,
        )
        with self._lock:
            self._services[key] = twin
        self._skipped.pop(key, None)
        logger.info("%s/%s: twinned with profile %s", *key, profile.name)
        return twin

    # -- running ------------------------------------------------------------------------------------------------

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.poll_once()
            except kube_errors.ApiError as error:
                logger.warning("twin poll failed, retried in %.1f s: %s", self._poll_seconds, error)
            self._stop.wait(self._poll_seconds)

    def start(self) -> None:
        """Poll in a background thread until `stop`."""
        self._thread = threading.Thread(target=self._run, name="twin-poller", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop polling and close every listener; snapshots stay readable."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
        for twin in self.services():
            twin.close()

    # -- reading ------------------------------------------------------------------------------------------------

    def services(self) -> list[ServiceTwin]:
        with self._lock:
            return list(self._services.values())

    def service(self, namespace: str, name: str) -> ServiceTwin | None:
        with self._lock:
            return self._services.get((namespace, name))

    def snapshots(self) -> list[ServiceSnapshot]:
        return [twin.snapshot() for twin in self.services()]

    def events(self) -> list[TwinEvent]:
        return [event for twin in self.services() for event in list(twin.events)]
