"""Imports every area of the model so the event and aggregate registries are complete."""

from domain import base, cluster, datacenter, engine, network, statuses, storage

__all__ = ["base", "cluster", "datacenter", "engine", "network", "statuses", "storage"]
