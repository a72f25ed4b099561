"""A watched cache of one namespace's pods, so that a tick reads its pods without a request.

The protocol is client-go's reflector, run in one thread per namespace:

- **list** the namespace's pods (``GET .../pods``), replace the store, remember the list's resourceVersion;
  the cache is now *synced*;
- **watch** from that resourceVersion (``watch=true&allowWatchBookmarks=true&timeoutSeconds=...``) and apply
  each ``ADDED``/``MODIFIED``/``DELETED``; every event and bookmark moves the resourceVersion on;
- when the server ends the watch (its ``timeoutSeconds``), **resume**: watch again from the last
  resourceVersion, without a list; the server replays what happened in between;
- **410 Gone** (the resourceVersion fell out of the server's window): list again;
- any other failure (connection refused or reset, an error status, a read timeout on a silent connection):
  the cache is *not synced* until a list succeeds again, retried with a growing backoff.

Reads while not synced raise `errors.CacheNotSyncedError` (an `errors.ApiError`), so a tick that cannot trust
its pods decides nothing: no scale-in, and no other action, on a view that may have missed changes. The
state after a resume is as fresh as a list would be: the server sends every change after the resourceVersion
before anything newer, and a read in the round trip of the resume request sees the state from before it
(as a list sent a moment earlier would).

Pods are matched to selectors in memory (`tokenscale.kube.selectors`). Each selector read is remembered with
the names of its pods and kept up to date on every event, so a read costs the pods it returns, not the
namespace's; a selector not read for `_VIEW_IDLE_SECONDS` is forgotten at the next list.

Writes the operator makes itself (a label flip, an annotation) are applied from the PATCH answer at once
(`PodCache.apply`), so the next tick sees them even if the watch event is still on its way; an older object
never replaces a newer one (resourceVersions of one resource are compared as integers, which etcd-backed
servers give and Kubernetes >= 1.35 guarantees as comparable, KEP-5504; a version that is not an integer is
taken as newer).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import urllib3
from kubernetes import client, watch

from tokenscale.kube import errors, pods, rest, selectors

__all__ = ["PodCache"]

logger = logging.getLogger(__name__)

_VIEW_IDLE_SECONDS = 600.0
"""A selector not read for this long (its service was deleted, its workload's selector changed) is dropped."""
_READ_SLACK_SECONDS = 30.0
"""Client read timeout beyond the watch's own timeout: a connection silent for longer is dead (half-open)."""
_BACKOFF_SECONDS = (0.5, 1.0, 2.0, 4.0, 8.0)
"""Waits before retrying after a failure, growing with consecutive failures (the last one repeats)."""
_GONE = 410


@dataclass(slots=True)
class _View:
    """One selector's pods: the parsed selector, the names that match it, when it was last read."""

    selector: selectors.Selector
    names: set[str] = field(default_factory=set)
    read_at: float = 0.0


def _newer(candidate: str, current: str) -> bool:
    """Whether resourceVersion ``candidate`` is newer than ``current`` (see the module docstring)."""
    try:
        return int(candidate) > int(current)
    except ValueError:
        return True


class PodCache:
    """The pods of one namespace, listed once and then watched, in a daemon thread (`start`, `stop`).

    ``api_client`` is used for the list and the watch requests only; the caller gives one of its own, since a
    watch holds its connection for ``watch_timeout_seconds``.
    """

    def __init__(self, api_client: client.ApiClient, *, namespace: str, watch_timeout_seconds: int = 300) -> None:
        self._api_client = api_client
        self._namespace = namespace
        self._path = f"/api/v1/namespaces/{namespace}/pods"
        self._watch_timeout_seconds = watch_timeout_seconds
        self._lock = threading.Lock()
        self._pods: dict[str, pods.PodInfo] = {}
        self._versions: dict[str, str] = {}
        self._views: dict[str, _View] = {}
        self._resource_version: str | None = None
        self._synced = threading.Event()
        self._tried = threading.Event()
        self._stopping = threading.Event()
        self._watch: watch.Watch | None = None
        self._thread = threading.Thread(target=self._run, name=f"pod-cache-{namespace}", daemon=True)
        self.lists = 0
        """Lists sent (the first, and one per 410 or failure)."""
        self.watches = 0
        """Watch requests sent (the first after each list, and one per resume)."""

    @property
    def synced(self) -> bool:
        return self._synced.is_set()

    @property
    def tried(self) -> bool:
        """Whether the first list has been answered (successfully or not)."""
        return self._tried.is_set()

    def start(self) -> None:
        self._thread.start()

    def stop(self, *, timeout_seconds: float = 5.0) -> None:
        """End the thread: the open watch is cut, so this does not wait for its timeout."""
        self._stopping.set()
        current = self._watch
        if current is not None:
            current.stop()  # type: ignore[no-untyped-call]
        self._thread.join(timeout_seconds)

    def pods(self, selector: str) -> list[pods.PodInfo]:
        """The pods matching ``selector`` now, sorted by name; an empty selector matches none.

        Raises `errors.CacheNotSyncedError` when the cache is not synced, `ValueError` for a selector that
        does not parse.
        """
        if not selector.strip():
            return []
        with self._lock:
            if not self._synced.is_set():
                raise errors.CacheNotSyncedError(
                    f"the pod cache of namespace {self._namespace} is not synced (listing or reconnecting)",
                    status=0,
                    reason="CacheNotSynced",
                )
            view = self._views.get(selector)
            if view is None:
                parsed = selectors.parse_selector(selector)
                view = _View(selector=parsed, names={n for n, p in self._pods.items() if parsed.matches(p.labels)})
                self._views[selector] = view
            view.read_at = time.monotonic()
            return sorted((self._pods[name] for name in view.names), key=lambda pod: pod.name)

    def apply(self, item: Mapping[str, Any]) -> None:
        """Take ``item`` (a pod as the API server returned it, e.g. a PATCH answer) unless the cache holds a
        newer version of it."""
        metadata = item.get("metadata") or {}
        with self._lock:
            current = self._versions.get(str(metadata.get("name", "")))
            version = str(metadata.get("resourceVersion", ""))
            if current is None or _newer(version, current):
                self._put(item)

    # -- the thread --------------------------------------------------------------------------------------------

    def _run(self) -> None:
        failures = 0
        while not self._stopping.is_set():
            try:
                if self._resource_version is None:
                    self._list()
                self._watch_once()
                failures = 0
            except client.ApiException as exc:
                if exc.status == _GONE:
                    logger.info("pods in %s: watch expired (410 Gone), listing again", self._namespace)
                    self._resource_version = None  # a list, at once: the cache stays synced meanwhile
                    continue
                failures = self._failed(failures, exc)
            except (errors.ApiError, urllib3.exceptions.HTTPError, OSError, ValueError) as exc:
                failures = self._failed(failures, exc)
            except Exception as exc:
                # Whatever else (a bug, a malformed event): a thread that died would leave a cache that reads as
                # synced and never changes again; this one says so and lists again.
                logger.exception("pods in %s: unexpected failure of the watch", self._namespace)
                failures = self._failed(failures, exc)

    def _failed(self, failures: int, exc: Exception) -> int:
        """After anything but a clean end or a 410: not synced until a list succeeds; wait before retrying."""
        self._synced.clear()
        self._tried.set()
        self._resource_version = None
        if self._stopping.is_set():
            return failures
        wait = _BACKOFF_SECONDS[min(failures, len(_BACKOFF_SECONDS) - 1)]
        logger.warning(
            "pods in %s: %s; pod reads hold (no decisions) until listed again, retrying in %.1f s",
            self._namespace,
            exc,
            wait,
        )
        self._stopping.wait(wait)
        return failures + 1

    def _list(self) -> None:
        document = rest.request_json(self._api_client, method="GET", path=self._path)
        self.lists += 1
        with self._lock:
            self._pods.clear()
            self._versions.clear()
            idle_since = time.monotonic() - _VIEW_IDLE_SECONDS
            self._views = {text: view for text, view in self._views.items() if view.read_at >= idle_since}
            for view in self._views.values():
                view.names.clear()
            for item in document.get("items") or ():
                self._put(item)
            self._resource_version = str((document.get("metadata") or {}).get("resourceVersion", "")) or None
            self._synced.set()
            self._tried.set()

    def _open(self, **kwargs: Any) -> urllib3.BaseHTTPResponse:
        """One watch request, as `kubernetes.watch.Watch.stream` calls it. It names no model as its return type
        (no ``:rtype:``), so the watch hands each event's object on as a plain dict, not deserialised (its
        ``deserialize=False`` mode loses ERROR events' objects in kubernetes 37: a KeyError on 410)."""
        query = [
            ("watch", "true"),
            ("allowWatchBookmarks", "true"),
            ("resourceVersion", str(kwargs["resource_version"])),
            ("timeoutSeconds", str(kwargs["timeout_seconds"])),
        ]
        method, url, headers, _, _ = self._api_client.param_serialize(
            method="GET",
            resource_path=self._path,
            query_params=query,
            header_params={"Accept": "application/json"},
            auth_settings=["BearerToken"],
        )
        answer = self._api_client.call_api(
            method, url, header_params=headers, _request_timeout=(10.0, kwargs["timeout_seconds"] + _READ_SLACK_SECONDS)
        )
        self.watches += 1
        if not 200 <= answer.status <= 299:  # e.g. 410 for a resourceVersion too old, 403 without RBAC
            body = answer.read()  # type: ignore[no-untyped-call]
            answer.response.release_conn()
            raise client.ApiException(status=answer.status, reason=f"{answer.reason}: {body[:200]!r}")
        response: urllib3.BaseHTTPResponse = answer.response
        return response

    def _watch_once(self) -> None:
        """One watch request until the server ends it (return) or it fails (raise)."""
        self._watch = watch.Watch()  # type: ignore[no-untyped-call]
        try:
            for event in self._watch.stream(  # type: ignore[no-untyped-call]
                self._open,
                resource_version=self._resource_version,
                timeout_seconds=self._watch_timeout_seconds,
            ):
                kind, item = event.get("type"), event.get("object") or {}
                version = str((item.get("metadata") or {}).get("resourceVersion", ""))
                with self._lock:
                    if kind in {"ADDED", "MODIFIED"}:
                        self._put(item)
                    elif kind == "DELETED":
                        self._remove(str(item["metadata"]["name"]))
                if version:
                    self._resource_version = version
                if self._stopping.is_set():
                    return
        finally:
            self._watch = None

    def _put(self, item: Mapping[str, Any]) -> None:
        """Store one pod and update every view (the lock is held)."""
        info = pods.pod_info(item)
        self._pods[info.name] = info
        self._versions[info.name] = str((item.get("metadata") or {}).get("resourceVersion", ""))
        for view in self._views.values():
            if view.selector.matches(info.labels):
                view.names.add(info.name)
            else:
                view.names.discard(info.name)

    def _remove(self, name: str) -> None:
        self._pods.pop(name, None)
        self._versions.pop(name, None)
        for view in self._views.values():
            view.names.discard(name)
