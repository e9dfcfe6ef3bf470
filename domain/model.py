"""Imports every module of the domain so the event and aggregate registries are complete."""

from __future__ import annotations

import importlib
import pkgutil

import domain

LOADED = [
    importlib.import_module(f"domain.{m.name}")
    for m in sorted(pkgutil.iter_modules(domain.__path__), key=lambda m: m.name)
    if m.name != "model"
]
