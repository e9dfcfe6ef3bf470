"""Value types more than one aggregate holds: sizes, the Blank template's id, VM type and
graphics, NICs, disk attachments and interfaces, snapshot types, quota modes.

They sit under every aggregate module so that a template can carry a VM's NICs and a pool
event a VM's disk attachments without one aggregate module importing another.
"""

from __future__ import annotations

from enum import StrEnum
from uuid import UUID

import msgspec

BLANK_TEMPLATE_ID = UUID(int=0)


MiB = 1 << 20


GiB = 1 << 30


class VmType(StrEnum):
    DESKTOP = "desktop"
    SERVER = "server"
    HIGH_PERFORMANCE = "high_performance"


class Graphics(StrEnum):
    VNC = "vnc"
    SPICE = "spice"
    NONE = "none"


class NicInterface(StrEnum):
    VIRTIO = "virtio"
    E1000 = "e1000"
    RTL8139 = "rtl8139"


class SnapshotType(StrEnum):
    ACTIVE = "active"
    REGULAR = "regular"
    PREVIEW = "preview"


class Nic(msgspec.Struct, frozen=True, kw_only=True):
    id: UUID
    name: str
    vnic_profile_id: UUID | None = None
    mac: str
    interface: NicInterface = NicInterface.VIRTIO
    plugged: bool = True
    linked: bool = True


class DiskInterface(StrEnum):
    VIRTIO = "virtio"
    VIRTIO_SCSI = "virtio_scsi"
    IDE = "ide"
    SATA = "sata"


class DiskAttachment(msgspec.Struct, frozen=True, kw_only=True):
    disk_id: UUID
    interface: DiskInterface = DiskInterface.VIRTIO_SCSI
    bootable: bool = False
    active: bool = True


class QuotaMode(StrEnum):
    DISABLED = "disabled"
    AUDIT = "audit"
    ENFORCED = "enforced"
