"""Every core module states its public names in ``__all__``, and they exist."""

from __future__ import annotations

import importlib
import inspect
import pkgutil
from types import ModuleType

import pytest

import tokenscale.core


def _modules() -> list[str]:
    return sorted(
        info.name for info in pkgutil.walk_packages(tokenscale.core.__path__, "tokenscale.core.") if not info.ispkg
    )


@pytest.mark.parametrize("name", _modules())
def test_all_lists_every_public_definition(name: str) -> None:
    module: ModuleType = importlib.import_module(name)
    exported = set(getattr(module, "__all__", ()))
    assert exported, f"{name} has no __all__"
    assert all(hasattr(module, item) for item in exported)
    defined = {
        item
        for item, value in vars(module).items()
        if not item.startswith("_")
        and (inspect.isfunction(value) or inspect.isclass(value))
        and value.__module__ == name
    }
    assert defined <= exported, f"{name} defines {sorted(defined - exported)} outside __all__"
