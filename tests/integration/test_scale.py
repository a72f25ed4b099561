"""A Deployment scaled through its /scale subresource gets Running pods on the fake GPU nodes, each with its own
127.1.x.y IP on which this process can bind and serve: the ground the engine twin stands on."""

from __future__ import annotations

import contextlib
import ipaddress
import json
import threading
import urllib.request
from collections.abc import Iterator
from datetime import datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from tests.integration.conftest import SESSION_NODES
from tests.integration.waiting import wait_until

from tokenscale.devcluster import nodes
from tokenscale.devcluster.kubectl import Kubectl

pytestmark = pytest.mark.integration

_POD_NETWORK = ipaddress.ip_network(nodes.POD_CIDR)


def _deployment(
    name: str, *, replicas: int, gpus: int, annotations: dict[str, str] | None = None, **pod_spec: Any
) -> dict[str, Any]:
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": {"app": name}, "annotations": annotations or {}},
                "spec": {
                    "containers": [
                        {
                            "name": "engine",
                            "image": "vllm/vllm-openai:v0.11.0",
                            "resources": {"limits": {nodes.GPU_RESOURCE: str(gpus)}},
                        }
                    ],
                    **pod_spec,
                },
            },
        },
    }


def _pods(kubectl: Kubectl, namespace: str, app: str) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = kubectl.get_json("pods", f"--namespace={namespace}", f"--selector=app={app}")["items"]
    return [pod for pod in items if "deletionTimestamp" not in pod["metadata"]]


def _is_ready(pod: dict[str, Any]) -> bool:
    conditions = pod["status"].get("conditions", [])
    return pod["status"].get("phase") == "Running" and any(
        c["type"] == "Ready" and c["status"] == "True" for c in conditions
    )


def _patch_scale(kubectl: Kubectl, namespace: str, name: str, replicas: int) -> None:
    patch = json.dumps({"spec": {"replicas": replicas}})
    kubectl.run(
        "patch", "deployment", name, f"--namespace={namespace}", "--subresource=scale", "--type=merge", "-p", patch
    )


@contextlib.contextmanager
def _serving_on(address: str, body: bytes) -> Iterator[int]:
    """An HTTP server on (address, ephemeral port) answering every GET with ``body``; yields the port."""

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer((address, 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield int(server.server_address[1])
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def _fetch(url: str) -> bytes:
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    with opener.open(url, timeout=5) as response:
        return bytes(response.read())


def test_scale_subresource_gives_running_gpu_pods_with_distinct_bindable_loopback_ips(
    kubectl: Kubectl, namespace: str
) -> None:
    kubectl.apply_objects([_deployment("prefill", replicas=0, gpus=1)], namespace=namespace)
    _patch_scale(kubectl, namespace, "prefill", 3)

    scale = kubectl.get_json("deployment", "prefill", f"--namespace={namespace}", "--subresource=scale")
    pods = wait_until(
        lambda: (
            (found := _pods(kubectl, namespace, "prefill")) and len(found) == 3 and all(map(_is_ready, found)) and found
        ),
        what="3 Ready prefill pods",
    )
    gpu_nodes = {node.name: node for node in SESSION_NODES}
    ips = [pod["status"]["podIP"] for pod in pods]

    assert scale["spec"]["replicas"] == 3
    assert {pod["spec"]["nodeName"] for pod in pods} <= set(gpu_nodes)
    assert all(pod["status"]["hostIP"] == gpu_nodes[pod["spec"]["nodeName"]].internal_ip for pod in pods)
    assert len(set(ips)) == 3
    assert all(ipaddress.ip_address(ip) in _POD_NETWORK for ip in ips)
    for pod, ip in zip(pods, ips, strict=True):
        name = pod["metadata"]["name"].encode()
        with _serving_on(ip, name) as port:
            assert _fetch(f"http://{ip}:{port}/metrics") == name


def test_scale_in_through_the_scale_subresource_removes_pods(kubectl: Kubectl, namespace: str) -> None:
    kubectl.apply_objects([_deployment("decode", replicas=3, gpus=1)], namespace=namespace)
    wait_until(lambda: len(list(filter(_is_ready, _pods(kubectl, namespace, "decode")))) == 3, what="3 Ready pods")

    _patch_scale(kubectl, namespace, "decode", 1)

    wait_until(
        lambda: len(kubectl.get_json("pods", f"--namespace={namespace}", "--selector=app=decode")["items"]) == 1,
        what="scale-in to 1 pod, the others deleted",
    )


def test_gpu_capacity_bounds_how_many_pods_run(kubectl: Kubectl, namespace: str) -> None:
    # A node of its own (tainted, so no other test's pod lands there): 2 GPUs fit 2 one-GPU pods, not 3.
    small = nodes.FakeNode(name=f"small-{namespace}"[:63], internal_ip="127.0.251.1", gpu_count=2)
    taint = {"key": "tokenscale.io/test", "value": namespace, "effect": "NoSchedule"}
    manifest = nodes.node_manifest(small)
    manifest["spec"]["taints"] = [taint]
    kubectl.create_objects([manifest])
    try:
        kubectl.apply_objects(
            [
                _deployment(
                    "tight",
                    replicas=3,
                    gpus=1,
                    nodeSelector={"kubernetes.io/hostname": small.name},
                    tolerations=[{**taint, "operator": "Equal"}],
                )
            ],
            namespace=namespace,
        )

        def running_and_unschedulable() -> tuple[int, list[str]] | None:
            pods = _pods(kubectl, namespace, "tight")
            running = sum(map(_is_ready, pods))
            unschedulable = [
                c.get("message", "")
                for pod in pods
                for c in pod["status"].get("conditions", [])
                if c["type"] == "PodScheduled" and c["status"] == "False"
            ]
            return (running, unschedulable) if running + len(unschedulable) == 3 else None

        running, unschedulable = wait_until(running_and_unschedulable, what="2 running pods and 1 unschedulable")
        assert running == small.gpu_count
        assert len(unschedulable) == 1
        assert f"Insufficient {nodes.GPU_RESOURCE}" in unschedulable[0]
    finally:
        kubectl.run("delete", "node", small.name, "--wait=false")


def test_cold_start_annotation_delays_readiness_but_not_the_pod_ip(kubectl: Kubectl, namespace: str) -> None:
    delay_seconds = 3
    annotations = {nodes.COLD_START_DELAY_ANNOTATION: f"{delay_seconds}s"}
    kubectl.apply_objects([_deployment("cold", replicas=1, gpus=1, annotations=annotations)], namespace=namespace)

    pod = wait_until(lambda: [p for p in _pods(kubectl, namespace, "cold") if _is_ready(p)], what="a Ready pod")[0]
    ready = next(c for c in pod["status"]["conditions"] if c["type"] == "Ready")
    started = datetime.fromisoformat(pod["status"]["startTime"])
    became_ready = datetime.fromisoformat(ready["lastTransitionTime"])

    # The API keeps whole seconds, so the measured gap can be up to 1 s shorter than the delay.
    assert (became_ready - started).total_seconds() >= delay_seconds - 1
    assert ipaddress.ip_address(pod["status"]["podIP"]) in _POD_NETWORK
