"""helm, bound to the session's cluster: render, lint, install and uninstall the chart with given values.

Values go through a JSON file (``--values``), so no ``--set`` escaping is involved; helm validates them against
the chart's values.schema.json on every call.
"""

from __future__ import annotations

import json
import subprocess
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from tokenscale.devcluster import cluster

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "charts" / "tokenscale"


@dataclass(frozen=True)
class Helm:
    binary: Path
    kubeconfig: Path

    @classmethod
    def for_cluster(cls, dev_cluster: cluster.DevCluster) -> Helm:
        return cls(binary=dev_cluster.binaries.path("helm"), kubeconfig=dev_cluster.kubeconfig)

    def run(
        self, *args: str, values: Mapping[str, Any] | None = None, check: bool = True
    ) -> subprocess.CompletedProcess[str]:
        """``helm <args>`` against the cluster; with ``values``, passed as a values file."""
        with tempfile.NamedTemporaryFile("w", suffix=".json") as values_file:
            json.dump(dict(values or {}), values_file)
            values_file.flush()
            done = subprocess.run(
                [str(self.binary), f"--kubeconfig={self.kubeconfig}", *args, f"--values={values_file.name}"],
                capture_output=True,
                text=True,
                timeout=180,
                check=False,
            )
        if check and done.returncode != 0:
            raise AssertionError(f"helm {' '.join(args)} exited {done.returncode}: {done.stderr.strip()}")
        return done

    def template_text(
        self, *, release: str, namespace: str, values: Mapping[str, Any] | None = None, include_crds: bool = False
    ) -> str:
        args = ["template", release, str(CHART), f"--namespace={namespace}"]
        return self.run(*args, *(["--include-crds"] if include_crds else []), values=values).stdout

    def template(
        self, *, release: str, namespace: str, values: Mapping[str, Any] | None = None
    ) -> list[dict[str, Any]]:
        """The rendered objects (CRDs excluded)."""
        text = self.template_text(release=release, namespace=namespace, values=values)
        return [document for document in yaml.safe_load_all(text) if document]

    def install(self, *, release: str, namespace: str, values: Mapping[str, Any] | None = None) -> str:
        """``helm install --wait``: returns helm's output (the rendered NOTES.txt)."""
        args = ["install", release, str(CHART), f"--namespace={namespace}", "--wait", "--timeout=120s"]
        return self.run(*args, values=values).stdout

    def uninstall(self, *, release: str, namespace: str) -> None:
        self.run("uninstall", release, f"--namespace={namespace}", "--wait", "--timeout=60s", check=False)


def find(objects: list[dict[str, Any]], kind: str, name: str | None = None) -> dict[str, Any]:
    """The one rendered object of ``kind`` (and ``name``)."""
    (found,) = [o for o in objects if o["kind"] == kind and (name is None or o["metadata"]["name"] == name)]
    return found
