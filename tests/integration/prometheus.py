"""A real Prometheus (the Debian package's binary) on 127.0.0.1 for the tests: started with a given config and
rule files, queried through its HTTP API, stopped at the end.

The integration tier never skips: without the binary the test fails and says how to install it (``.ci/run``
installs the Debian package ``prometheus``).
"""

from __future__ import annotations

import contextlib
import json
import shutil
import signal
import subprocess
import threading
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest
import yaml
from tests.integration.fake_engine import FakeEngineFleet
from tests.integration.operator_process import free_port
from tests.integration.waiting import wait_until


class Prometheus:
    """A started Prometheus; ``url`` is its HTTP API on 127.0.0.1."""

    def __init__(self, *, binary: Path, config: Mapping[str, Any], workdir: Path) -> None:
        workdir.mkdir(parents=True, exist_ok=True)
        self.config_path = workdir / "prometheus.yml"
        self.config_path.write_text(yaml.safe_dump(dict(config), sort_keys=False))
        self.log_path = workdir / "prometheus.log"
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self._log = self.log_path.open("ab")
        self.process = subprocess.Popen(
            [
                str(binary),
                f"--config.file={self.config_path}",
                f"--storage.tsdb.path={workdir / 'data'}",
                f"--web.listen-address=127.0.0.1:{self.port}",
                "--storage.tsdb.retention.time=1h",
            ],
            stdout=self._log,
            stderr=subprocess.STDOUT,
            env={"PATH": "/usr/bin:/bin"},  # no proxy variables: everything it dials is on 127.0.0.0/8
        )
        try:
            wait_until(self._ready, what="Prometheus ready", timeout_seconds=30)
        except BaseException:
            self.stop()
            raise

    def _ready(self) -> bool:
        if self.process.poll() is not None:
            raise AssertionError(f"Prometheus exited {self.process.returncode}:\n{self.log_tail()}")
        try:
            with urllib.request.urlopen(f"{self.url}/-/ready", timeout=2) as response:
                return bool(response.status == 200)
        except OSError:
            return False

    def _get(self, path: str, **params: str) -> Any:
        query = urllib.parse.urlencode(params)
        with urllib.request.urlopen(f"{self.url}{path}?{query}", timeout=10) as response:
            document = json.load(response)
        if document.get("status") != "success":
            raise AssertionError(f"Prometheus {path} {params}: {document}")
        return document["data"]

    def query(self, expr: str) -> list[dict[str, Any]]:
        """The instant vector ``expr`` evaluates to now (a query error fails the test with Prometheus' message)."""
        try:
            data = self._get("/api/v1/query", query=expr)
        except urllib.error.HTTPError as exc:
            raise AssertionError(f"Prometheus refused {expr!r}: {exc.read().decode(errors='replace')}") from exc
        assert data["resultType"] == "vector", data
        result: list[dict[str, Any]] = data["result"]
        return result

    def healthy_targets(self, job: str) -> int:
        """Active targets of ``job`` whose last scrape succeeded."""
        data = self._get("/api/v1/targets", state="active")
        return sum(1 for t in data["activeTargets"] if t["labels"].get("job") == job and t["health"] == "up")

    def rule_health(self) -> dict[str, str]:
        """Each loaded rule's name and health (``ok``, ``err``, ``unknown``)."""
        data = self._get("/api/v1/rules")
        return {rule["name"]: rule["health"] for group in data["groups"] for rule in group["rules"]}

    def log_tail(self, lines: int = 40) -> str:
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self._log.close()


class EngineTargets:
    """Keeps a Prometheus file_sd file listing the engine pods the fleet serves (pod IP and engine port), each
    with its ``namespace`` and ``pod`` labels, as a PodMonitor attaches them (the Debian build of Prometheus has
    no Kubernetes discovery)."""

    def __init__(self, *, fleet: FakeEngineFleet, namespace: str, port: int, path: Path) -> None:
        self.path = path
        self._fleet, self._namespace, self._port = fleet, namespace, port
        self._written = ""
        self._stop = threading.Event()
        self._write()
        self._thread = threading.Thread(target=self._loop, name="engine-targets", daemon=True)
        self._thread.start()

    def _write(self) -> None:
        groups = [
            {"targets": [f"{ip}:{self._port}"], "labels": {"namespace": self._namespace, "pod": name}}
            for name, ip in sorted(self._fleet.serving().items())
        ]
        text = json.dumps(groups)
        if text != self._written:
            staging = self.path.with_suffix(".tmp")
            staging.write_text(text)
            staging.replace(self.path)  # atomic: Prometheus never reads half a file
            self._written = text

    def _loop(self) -> None:
        while not self._stop.wait(0.5):
            self._write()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)


def prometheus_binary() -> Path:
    found = shutil.which("prometheus")
    if found is None:
        pytest.fail(
            "the prometheus binary is missing: install the Debian package (apt-get install -y prometheus), "
            "as .ci/run does",
            pytrace=False,
        )
    return Path(found)


@contextlib.contextmanager
def running_prometheus(*, config: Mapping[str, Any], workdir: Path) -> Iterator[Prometheus]:
    server = Prometheus(binary=prometheus_binary(), config=config, workdir=workdir)
    try:
        yield server
    finally:
        server.stop()
