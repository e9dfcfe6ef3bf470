"""Imports every command area so the command and handler registries are complete."""

from commands import datacenter

__all__ = ["datacenter"]
