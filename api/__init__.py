"""Entry points: the oVirt v4-compatible REST API (aiohttp), SSO, portals and the CLI.

Owns everything a person or a client talks to. May import ``commands``,
``projections`` and ``history`` (and ``hostd`` only to launch the daemon from the CLI).
"""
