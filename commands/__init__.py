"""The write side: command messages, handlers, the event store, group commit, policies.

Owns turning a request into events in the log: load (the in-memory Engine kept in
step with the log) -> decide (``domain``) -> append (one transaction per batch).
May import ``domain`` and ``hostd.protocol``; never ``projections``' internals, ``history``
or ``api``.
"""
