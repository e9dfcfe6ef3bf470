"""hostd: the host daemon, Orrery's VDSM. One per hypervisor, TCP 54321.

Owns libvirt: domain XML, VM lifecycle, disk images (qemu-img), bridges, statistics
sampling and hooks, and the host protocol (``hostd.protocol``) -- the only module the
Manager side imports. Imports nothing else of ours.
"""
