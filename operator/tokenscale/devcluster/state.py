"""``state.json``: what a running cluster is, written by the process that started it, read by any other."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tokenscale.devcluster.components import Ports
from tokenscale.devcluster.processes import ComponentProcess

__all__ = ["ClusterState"]


@dataclass(frozen=True)
class ClusterState:
    """What ``state.json`` holds: enough to use, inspect and stop a running cluster from another process."""

    home: Path
    server_url: str
    kubeconfig: Path
    ports: Ports
    processes: tuple[ComponentProcess, ...]
    nodes: tuple[str, ...]
    started_at_unix: float
    timings_seconds: Mapping[str, float]

    def to_json(self) -> str:
        document: dict[str, Any] = {
            "home": str(self.home),
            "serverURL": self.server_url,
            "kubeconfig": str(self.kubeconfig),
            "ports": dataclasses.asdict(self.ports),
            "processes": [
                {"name": p.name, "pid": p.pid, "binary": str(p.binary), "log": str(p.log)} for p in self.processes
            ],
            "nodes": list(self.nodes),
            "startedAtUnix": self.started_at_unix,
            "timingsSeconds": dict(self.timings_seconds),
        }
        return json.dumps(document, indent=2) + "\n"

    @classmethod
    def from_json(cls, text: str) -> ClusterState:
        document = json.loads(text)
        return cls(
            home=Path(document["home"]),
            server_url=document["serverURL"],
            kubeconfig=Path(document["kubeconfig"]),
            ports=Ports(**document["ports"]),
            processes=tuple(
                ComponentProcess(name=p["name"], pid=p["pid"], binary=Path(p["binary"]), log=Path(p["log"]))
                for p in document["processes"]
            ),
            nodes=tuple(document["nodes"]),
            started_at_unix=document["startedAtUnix"],
            timings_seconds=document["timingsSeconds"],
        )

    def process(self, name: str) -> ComponentProcess | None:
        return next((p for p in self.processes if p.name == name), None)
