"""Where each file of a local cluster lives: one directory, its *home*, per cluster."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

__all__ = ["ClusterLayout", "default_home"]


def default_home() -> Path:
    """``<cache>/dev-cluster``; the cache is ``$TOKENSCALE_CACHE_DIR``, ``$XDG_CACHE_HOME/tokenscale`` or
    ``~/.cache/tokenscale``, as for the binaries."""
    cache = os.environ.get("TOKENSCALE_CACHE_DIR")
    if not cache:
        cache = str(Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "tokenscale")
    return Path(cache).expanduser() / "dev-cluster"


@dataclass(frozen=True)
class ClusterLayout:
    """Where each file of a cluster lives under its home."""

    home: Path

    @property
    def state_file(self) -> Path:
        return self.home / "state.json"

    @property
    def lock_file(self) -> Path:
        return self.home / "lock"

    @property
    def pki_dir(self) -> Path:
        return self.home / "pki"

    @property
    def etcd_dir(self) -> Path:
        return self.home / "etcd"

    @property
    def logs_dir(self) -> Path:
        return self.home / "logs"

    @property
    def kubeconfig(self) -> Path:
        return self.home / "kubeconfig"

    @property
    def kwok_config(self) -> Path:
        return self.home / "kwok" / "stages.yaml"

    @property
    def kwok_home(self) -> Path:
        # kwok also loads ~/.kwok/kwok.yaml when it exists; its own HOME keeps a user's file out of the cluster.
        return self.home / "kwok" / "home"

    @property
    def kubectl_cache(self) -> Path:
        return self.home / "kubectl-cache"

    @property
    def service_accounts_dir(self) -> Path:
        return self.home / "serviceaccounts"

    def log(self, component: str) -> Path:
        return self.logs_dir / f"{component}.log"
