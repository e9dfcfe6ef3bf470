"""Orrery's domain model: aggregates, events, value objects, statuses and the rules.

Owns every decision an administrator can hit ("Cannot run VM. VM is running.").
Pure Python: no I/O, no clock, no random ids; time and new ids arrive as arguments.
May import the standard library and msgspec only -- nothing else of ours.

Shape: ``base`` holds Event/Aggregate/Tx, ``engine`` the whole in-memory state that
decisions read, and one module per area (``datacenter``, ``vm``, ...) holds that
area's aggregates, events and decision functions ``f(tx, ...) -> None``.
"""
