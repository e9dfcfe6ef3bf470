"""Imports every module of the domain (the aggregate modules and ``domain.rules``) so the
event and aggregate registries are complete."""

from __future__ import annotations

import importlib
import pkgutil

import domain

LOADED = [
    importlib.import_module(m.name)
    for m in sorted(pkgutil.walk_packages(domain.__path__, "domain."), key=lambda m: m.name)
    if m.name != "domain.model"
]
