"""Imports every command module so the command and handler registries are complete."""

from __future__ import annotations

import importlib
import pkgutil

import commands

LOADED = [
    importlib.import_module(f"commands.{m.name}")
    for m in sorted(pkgutil.iter_modules(commands.__path__), key=lambda m: m.name)
    if m.name not in ("all", "bootstrap")
]
