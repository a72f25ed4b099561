"""Kubeconfigs name the API server by a loopback IP literal and carry exactly one kind of credential."""

from __future__ import annotations

import base64
import json
import stat
from pathlib import Path

import pytest

from tokenscale.devcluster import kubeconfig


@pytest.fixture
def ca(tmp_path: Path) -> Path:
    path = tmp_path / "ca.crt"
    path.write_text("-----BEGIN CERTIFICATE-----\nCA\n-----END CERTIFICATE-----\n")
    return path


@pytest.mark.parametrize(
    "server",
    [
        pytest.param("https://localhost:6443", id="localhost-may-resolve-to-ipv6"),
        pytest.param("https://192.0.2.1:6443", id="outside-loopback"),
        pytest.param("http://127.0.0.1:6443", id="plain-http"),
    ],
)
def test_server_other_than_https_on_a_loopback_ip_is_refused(ca: Path, server: str) -> None:
    with pytest.raises(ValueError, match="127"):
        kubeconfig.kubeconfig_document(server_url=server, ca_cert=ca, user="u", token="t")


def test_both_or_neither_credential_is_refused(ca: Path) -> None:
    with pytest.raises(ValueError, match="either"):
        kubeconfig.kubeconfig_document(server_url="https://127.0.0.1:1", ca_cert=ca, user="u")
    with pytest.raises(ValueError, match="either"):
        kubeconfig.kubeconfig_document(
            server_url="https://127.0.0.1:1", ca_cert=ca, user="u", client_cert=ca, client_key=ca, token="t"
        )


def test_token_kubeconfig_is_written_for_its_owner_only_with_the_ca_embedded(ca: Path, tmp_path: Path) -> None:
    document = kubeconfig.kubeconfig_document(
        server_url="https://127.0.0.1:6443", ca_cert=ca, user="sa", token="secret", namespace="team"
    )

    path = kubeconfig.write_kubeconfig(tmp_path / "kc", document)

    written = json.loads(path.read_text())
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert base64.b64decode(written["clusters"][0]["cluster"]["certificate-authority-data"]) == ca.read_bytes()
    assert written["users"][0]["user"] == {"token": "secret"}
    assert written["contexts"][0]["context"]["namespace"] == "team"
