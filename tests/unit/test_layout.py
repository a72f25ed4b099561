"""Guards on the repository layout that the language would not catch by itself."""

from __future__ import annotations

import importlib
import socket
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def test_operator_folder_is_not_a_package() -> None:
    # A package named `operator` would shadow the standard library's operator module.
    assert not (ROOT / "operator" / "__init__.py").exists()
    assert importlib.import_module("operator").__name__ == "operator"
    assert hasattr(importlib.import_module("operator"), "itemgetter")


def test_loopback_guard_refuses_addresses_outside_127() -> None:
    with (
        socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock,
        pytest.raises(AssertionError, match="loopback"),
    ):
        sock.connect(("192.0.2.1", 9))  # TEST-NET-1: refused by the guard before any packet leaves
