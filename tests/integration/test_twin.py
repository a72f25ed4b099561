"""`tokenscale twin` on the real control plane, without the operator: it serves each pod of the service on the
pod's own IP, follows role-label flips and pod deletions, and its text is read by the operator's scraper."""

from __future__ import annotations

import asyncio
import ipaddress
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from tests.integration import operator_process as harness
from tests.integration.waiting import wait_until

from tokenscale.core.types import EngineSample
from tokenscale.devcluster import cluster
from tokenscale.devcluster.kubectl import Kubectl
from tokenscale.metrics.engines import preset_for
from tokenscale.metrics.scraper import Endpoint, Scraper, ScrapeSettings
from tokenscale.metrics.source import PodTarget, Unknown

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
PREFILL, DECODE, SERVICE = "tw-prefill", "tw-decode", "tw"


def scrape(pod_ip: str, port: int) -> EngineSample | Unknown:
    async def once() -> EngineSample | Unknown:
        settings = ScrapeSettings(allowed_networks=(ipaddress.ip_network("127.0.0.0/8"),), timeout_seconds=2.0)
        async with Scraper(settings) as scraper:
            found = await scraper.scrape([PodTarget("pod", pod_ip)], Endpoint(preset=preset_for("vllm"), port=port))
        return found["pod"]

    return asyncio.run(once())


def pod_ips(kubectl: Kubectl, namespace: str, app: str) -> dict[str, str]:
    return {
        pod["metadata"]["name"]: pod["status"]["podIP"]
        for pod in harness.pods(kubectl, namespace, app)
        if pod.get("status", {}).get("podIP")
    }


@pytest.fixture
def twin_process(dev_cluster: cluster.DevCluster, namespace: str, tmp_path: Path) -> Iterator[int]:
    """The service's two Deployments (Ready at once) and a `tokenscale twin` process on a load of about twice one
    prefiller's capacity (60 requests/s of 1024 prompt tokens); yields the metrics port."""
    kubectl = dev_cluster.kubectl
    port = harness.free_port()
    harness.apply(
        kubectl,
        namespace,
        harness.deployment(PREFILL, replicas=1, role="prefill"),
        harness.deployment(DECODE, replicas=2, role="decode"),
        harness.service(SERVICE, prefill_target=PREFILL, decode_target=DECODE, metrics={"port": port}),
    )
    log = (tmp_path / "twin.log").open("wb")
    env = {k: v for k, v in os.environ.items() if k.upper() not in {"HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY"}}
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT / "operator"), env.get("PYTHONPATH", "")])
    argv = [sys.executable, "-m", "tokenscale", "twin", "-n", namespace, "--kubeconfig", str(dev_cluster.kubeconfig)]
    argv += ["--trace", "poisson:rps=60", "--status-seconds", "1", "--for", "120"]
    process = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, env=env, cwd=ROOT)
    try:
        yield port
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        log.close()
        if process.returncode != 0:
            sys.stderr.write((tmp_path / "twin.log").read_text(errors="replace")[-3000:])
    assert process.returncode == 0


def test_the_twin_serves_pods_follows_flips_and_frees_deleted_pods_ips(
    kubectl: Kubectl, namespace: str, twin_process: int
) -> None:
    port = twin_process
    prefill_ip = wait_until(lambda: next(iter(pod_ips(kubectl, namespace, PREFILL).values()), None), what="prefill IP")
    decoders = wait_until(
        lambda: len(pod_ips(kubectl, namespace, DECODE)) == 2 and pod_ips(kubectl, namespace, DECODE), what="decode IPs"
    )

    def prompt_tokens(ip: str) -> float:
        """The pod's prompt-token counter; -1 when it does not answer."""
        sample = scrape(ip, port)
        if not isinstance(sample, EngineSample):
            return -1.0
        return sample.prompt_tokens_total or 0.0

    # The prefiller works through the load, and its counter grows between scrapes.
    first = wait_until(lambda: prompt_tokens(prefill_ip) > 0 and prompt_tokens(prefill_ip), what="prefill tokens")
    wait_until(lambda: prompt_tokens(prefill_ip) > first, what="prefill tokens to grow")

    # A decoder flipped to the converted value takes prompts from the queue (the load is twice one prefiller).
    converted_pod, converted_ip = sorted(decoders.items())[0]
    assert prompt_tokens(converted_ip) == 0
    kubectl.run(
        "label", "pod", converted_pod, "tokenscale.io/role=converted", "--overwrite", f"--namespace={namespace}"
    )
    wait_until(lambda: prompt_tokens(converted_ip) > 0, what="the converted decoder to prefill")
    kubectl.run("label", "pod", converted_pod, "tokenscale.io/role=decode", "--overwrite", f"--namespace={namespace}")

    def unchanged_for_half_a_second() -> float | None:
        # Restoring stops new pulls; the prompts the decoder holds (under one chunk) finish within a few steps.
        before = prompt_tokens(converted_ip)
        time.sleep(0.5)
        return before if prompt_tokens(converted_ip) == before > 0 else None

    settled = wait_until(unchanged_for_half_a_second, what="the restored decoder to stop prefilling")
    time.sleep(1.0)
    assert prompt_tokens(converted_ip) == settled  # restored: no new prompts

    # A deleted pod's listener goes; its replacement is served with its own counters (kwok may give it the same IP).
    kubectl.run("delete", "pod", converted_pod, f"--namespace={namespace}", "--wait=true")
    replacement = wait_until(
        lambda: next((ip for name, ip in pod_ips(kubectl, namespace, DECODE).items() if name not in decoders), None),
        what="the replacement pod",
    )
    wait_until(lambda: prompt_tokens(replacement) == 0, what="the replacement served as a fresh decoder")
    if replacement != converted_ip:
        assert isinstance(scrape(converted_ip, port), Unknown)
