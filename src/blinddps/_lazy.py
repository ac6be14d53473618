"""Lazy package exports (PEP 562): a package names where each export lives and loads
that module on first use, so that ``blinddps <command> --help`` need not import torch."""
from __future__ import annotations

import importlib
from typing import Any, Callable


def lazy_exports(package: str, home: dict[str, str], namespace: dict[str, Any]) -> Callable[[str], Any]:
    """A module ``__getattr__`` for ``package``: ``home`` maps an exported name to the
    submodule (relative, without the dot) that defines it; a loaded name is cached in
    the package's ``namespace``."""

    def __getattr__(name: str) -> Any:
        if name not in home:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(f".{home[name]}", package), name)
        namespace[name] = value
        return value

    return __getattr__
