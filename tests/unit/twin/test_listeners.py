"""A pod's listener serves its /metrics on the pod's own loopback IP, read by the operator's scraper, and frees
the address when closed."""

from __future__ import annotations

import ipaddress
import socket

import httpx
import pytest

from tokenscale.core.types import EngineSample
from tokenscale.metrics.engines import preset_for
from tokenscale.metrics.scraper import Endpoint, Scraper, ScrapeSettings
from tokenscale.metrics.source import PodTarget, Unknown
from tokenscale.twin.listeners import start_listener

# A range no dev cluster hands out (127.0.0.0/16 holds node IPs only, and nothing binds this one).
POD_IP = "127.0.200.7"
MODEL = "meta-llama/Llama-3.1-8B-Instruct"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((POD_IP, 0))
        return int(sock.getsockname()[1])


async def scrape(port: int) -> EngineSample | Unknown:
    settings = ScrapeSettings(allowed_networks=(ipaddress.ip_network("127.0.0.0/8"),), timeout_seconds=2.0)
    async with Scraper(settings) as scraper:
        answers = await scraper.scrape([PodTarget("pod", POD_IP)], Endpoint(preset=preset_for("vllm"), port=port))
    return answers["pod"]


async def test_the_scraper_reads_what_the_listener_serves_at_each_scrape() -> None:
    served = [EngineSample(timestamp_seconds=0.0, prompt_tokens_total=100.0, requests_waiting=3.0)]
    port = free_port()
    listener = start_listener(address=POD_IP, port=port, sample_of=lambda: served[-1], model_name=MODEL)
    try:
        first = await scrape(port)
        served.append(EngineSample(timestamp_seconds=0.0, prompt_tokens_total=250.0, requests_waiting=0.0))
        second = await scrape(port)
    finally:
        listener.close()
    assert isinstance(first, EngineSample)
    assert isinstance(second, EngineSample)
    assert (first.prompt_tokens_total, first.requests_waiting) == (100.0, 3.0)
    assert (second.prompt_tokens_total, second.requests_waiting) == (250.0, 0.0)


async def test_the_listener_honours_the_name_query_as_a_vllm_pod_does() -> None:
    sample = EngineSample(timestamp_seconds=0.0, prompt_tokens_total=100.0, requests_waiting=3.0)
    port = free_port()
    listener = start_listener(address=POD_IP, port=port, sample_of=lambda: sample, model_name=MODEL)
    try:
        async with httpx.AsyncClient() as client:
            whole = (await client.get(f"http://{POD_IP}:{port}/metrics")).text
            only = await client.get(f"http://{POD_IP}:{port}/metrics", params=[("name[]", "vllm:prompt_tokens_total")])
    finally:
        listener.close()
    assert "vllm:num_requests_waiting{" in whole
    sample_lines = [line for line in only.text.splitlines() if not line.startswith("#")]
    assert sample_lines == [f'vllm:prompt_tokens_total{{engine="0",model_name="{MODEL}"}} 100.0']


async def test_a_closed_listener_frees_its_address_for_the_next_pod() -> None:
    port = free_port()
    sample = EngineSample(timestamp_seconds=0.0, generation_tokens_total=7.0)
    start_listener(address=POD_IP, port=port, sample_of=lambda: sample, model_name=MODEL).close()
    again = start_listener(address=POD_IP, port=port, sample_of=lambda: sample, model_name=MODEL)
    try:
        answer = await scrape(port)
    finally:
        again.close()
    assert isinstance(answer, EngineSample)
    assert answer.generation_tokens_total == 7.0
    assert isinstance(await scrape(port), Unknown)  # closed: nothing answers there


def test_a_taken_address_is_an_os_error() -> None:
    port = free_port()
    sample = EngineSample(timestamp_seconds=0.0)
    first = start_listener(address=POD_IP, port=port, sample_of=lambda: sample, model_name=MODEL)
    try:
        with pytest.raises(OSError):  # noqa: PT011 - the address-in-use errno varies by platform
            start_listener(address=POD_IP, port=port, sample_of=lambda: sample, model_name=MODEL)
    finally:
        first.close()


@pytest.mark.parametrize("address", [pytest.param("0.0.0.0", id="any-address"), pytest.param("::1", id="ipv6")])
def test_only_loopback_pod_ips_are_served(address: str) -> None:
    with pytest.raises(ValueError, match=r"127\.0\.0\.0/8"):
        start_listener(address=address, port=8000, sample_of=lambda: None, model_name=MODEL)
