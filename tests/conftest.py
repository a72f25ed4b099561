"""Fixtures for every tier. The loopback guard: tests dial 127.0.0.0/8 only (docs/testing.md)."""

from __future__ import annotations

import ipaddress
import os
import socket
from typing import Any

import pytest

_LOOPBACK = ipaddress.ip_network("127.0.0.0/8")

# Loopback traffic must never be sent to a proxy.
for _var in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy", "all_proxy"):
    os.environ.pop(_var, None)
os.environ["NO_PROXY"] = os.environ["no_proxy"] = "127.0.0.0/8,localhost"


def _check_destination(family: int, address: Any) -> None:
    if family == socket.AF_INET:
        host = address[0]
        if ipaddress.ip_address(socket.gethostbyname(host)) not in _LOOPBACK:
            raise AssertionError(f"test dialled {host}, outside 127.0.0.0/8: tests dial loopback only")
    elif family == socket.AF_INET6:
        raise AssertionError(f"test dialled IPv6 {address[0]}: tests dial 127.0.0.0/8 only")


@pytest.fixture(autouse=True)
def loopback_only(monkeypatch: pytest.MonkeyPatch) -> None:
    """Fail any test whose process connects outside 127.0.0.0/8 (asyncio's sock_connect goes through here)."""
    real_connect = socket.socket.connect
    real_connect_ex = socket.socket.connect_ex

    def connect(self: socket.socket, address: Any) -> None:
        _check_destination(self.family, address)
        real_connect(self, address)

    def connect_ex(self: socket.socket, address: Any) -> int:
        _check_destination(self.family, address)
        return real_connect_ex(self, address)

    monkeypatch.setattr(socket.socket, "connect", connect)
    monkeypatch.setattr(socket.socket, "connect_ex", connect_ex)
