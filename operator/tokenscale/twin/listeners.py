"""One HTTP listener per pod: its ``/metrics`` on the pod's own IP and the service's metrics port.

Each listener has its own registry holding one `tokenscale.twin.families.PodCollector`, served by
prometheus_client's threaded WSGI server (`prometheus_client.start_http_server`). Like a vLLM pod with one API
server (whose registry is prometheus_client's default), it honours the ``?name[]=<sample name>`` query the
scraper sends: the collector names no metrics up front (its families depend on the sample), so the registry is
built with ``support_collectors_without_names``, which makes prometheus_client collect it and keep only the
listed samples instead of answering with nothing. A listener is closed as soon as its pod goes: pod IPs are
recycled, and the next pod given that IP must find it free.
"""

from __future__ import annotations

import ipaddress
import threading
from collections.abc import Callable
from wsgiref.simple_server import WSGIServer

import prometheus_client

from tokenscale.core.types import EngineSample
from tokenscale.twin.families import PodCollector

__all__ = ["PodListener", "start_listener"]

_LOOPBACK = ipaddress.ip_network("127.0.0.0/8")


class PodListener:
    """A running listener; `close` stops it and frees ``address:port``."""

    def __init__(self, *, address: str, port: int, server: WSGIServer, thread: threading.Thread) -> None:
        self.address = address
        self.port = port
        self._server = server
        self._thread = thread

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)


def start_listener(
    *, address: str, port: int, sample_of: Callable[[], EngineSample | None], model_name: str
) -> PodListener:
    """Serve ``/metrics`` of one pod on ``address:port``.

    ``address`` must be in 127.0.0.0/8 (the twin binds only the local cluster's pod IPs; `ValueError`
    otherwise). Raises `OSError` when the address is taken (e.g. a recycled IP's previous listener is closing).
    """
    if ipaddress.ip_address(address) not in _LOOPBACK:
        raise ValueError(f"the twin serves pods on 127.0.0.0/8 only, not {address}")
    registry = prometheus_client.CollectorRegistry(auto_describe=False, support_collectors_without_names=True)
    registry.register(PodCollector(sample_of, model_name=model_name))
    server, thread = prometheus_client.start_http_server(port, addr=address, registry=registry)
    return PodListener(address=address, port=port, server=server, thread=thread)
