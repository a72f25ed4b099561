"""kubectl as a subprocess, bound to one kubeconfig: how this package applies objects to the cluster."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = ["Kubectl", "KubectlError"]


class KubectlError(RuntimeError):
    """kubectl exited non-zero; the message holds its command line and stderr."""

    def __init__(self, args: list[str], returncode: int, stderr: str) -> None:
        super().__init__(f"kubectl {' '.join(args)} exited {returncode}: {stderr.strip()}")
        self.returncode = returncode
        self.stderr = stderr


@dataclass(frozen=True)
class Kubectl:
    """Runs ``binary --kubeconfig <kubeconfig> --cache-dir <cache_dir> ...``.

    The per-cluster discovery cache keeps a cluster from reading another's cached API list: ports, and so
    the cache keys under ``~/.kube/cache``, are reused between clusters.
    """

    binary: Path
    kubeconfig: Path
    cache_dir: Path
    env: Mapping[str, str] = field(default_factory=dict)

    def run(
        self, *args: str, input_text: str | None = None, check: bool = True, timeout_seconds: float = 120
    ) -> subprocess.CompletedProcess[str]:
        """Run kubectl; with ``check``, raise `KubectlError` on a non-zero exit."""
        argv = [str(self.binary), f"--kubeconfig={self.kubeconfig}", f"--cache-dir={self.cache_dir}", *args]
        done = subprocess.run(
            argv,
            input=input_text,
            capture_output=True,
            text=True,
            env=dict(self.env) or None,
            timeout=timeout_seconds,
            check=False,
        )
        if check and done.returncode != 0:
            raise KubectlError(list(args), done.returncode, done.stderr)
        return done

    def get_json(self, *args: str) -> Any:
        """``kubectl get <args> -o json``, decoded."""
        return json.loads(self.run("get", *args, "-o", "json").stdout)

    def create_objects(self, objects: list[dict[str, Any]], *, namespace: str | None = None) -> None:
        """Create ``objects`` in one call (a v1 List); namespaced ones without a namespace go to ``namespace``
        (else to the kubeconfig context's)."""
        self._send("create", objects, namespace=namespace)

    def apply_objects(self, objects: list[dict[str, Any]], *, namespace: str | None = None) -> None:
        """Apply ``objects`` (client-side apply) in one call, as `create_objects` places them."""
        self._send("apply", objects, namespace=namespace)

    def _send(self, verb: str, objects: list[dict[str, Any]], *, namespace: str | None) -> None:
        where = [f"--namespace={namespace}"] if namespace else []
        listing = {"apiVersion": "v1", "kind": "List", "items": objects}
        self.run(verb, *where, "-f", "-", input_text=json.dumps(listing))
