"""hostd: the host daemon, Orrery's VDSM. One per hypervisor, TCP 54321.

Owns libvirt: domain XML, VM lifecycle, disk images (qemu-img), bridges, statistics
sampling and hooks, and the host protocol (``hostd.protocol``) -- the only module the
Manager side imports. Imports nothing else of ours.

Layout (top to bottom; docs/architecture.md, and pyproject's import-linter contracts keep
it): ``cli`` -> ``daemon`` (the server) -> ``dispatch`` (request type -> handler) beside
``connection`` (libvirt) -> the ``*_requests`` modules, one per family of requests and
independent of each other -> ``core`` (state and plumbing) -> the drivers (``domxml``,
``virt``, ``images``, ``network``, ``hooks``, ``stats``) -> ``protocol``.
"""
