"""The codes behind the warehouse's enum-coded columns and their English names, as
oVirt's DWH translates them (``enum_translator``, language ``en_US``).

``ENUM_VALUES`` is (enum_type, code, value) for every enum type oVirt 4.4 translates;
``DEFAULT_LANGUAGE`` is the language ``v4_4_enum_translator`` shows (oVirt's
``history_configuration.default_language``).
"""

from __future__ import annotations

DEFAULT_LANGUAGE = "en_US"

_TYPES: dict[str, dict[int, str]] = {
    "DATACENTER_STATUS": {-1: "Unknown Status", 1: "Up", 2: "Maintenance", 3: "Problematic"},
    "ENTITY_TYPE": {2: "VM", 3: "Host", 5: "VM Pool", 15: "User", 17: "User Group", 18: "Tag"},
    "HOST_STATUS": {-1: "Unknown Status", 1: "Up", 2: "Maintenance", 3: "Problematic"},
    "HOST_TYPE": {0: "RHEL", 2: "RHEV"},
    "NIC_TYPE": {0: "rtl8139-pv", 1: "rtl8139", 2: "e1000", 3: "pv"},
    "OS_TYPE": {
        0: "Unknown",
        1: "Windows XP",
        3: "Windows 2003",
        4: "Windows 2008",
        5: "Other Linux",
        6: "Other",
        7: "RHEL 5",
        8: "RHEL 4",
        9: "RHEL 3",
        10: "Windows 2003 x64",
        11: "Windows 7",
        12: "Windows 7 x64",
        13: "RHEL 5 x64",
        14: "RHEL 4 x64",
        15: "RHEL 3 x64",
        16: "Windows 2008 x64",
        17: "Windows 2008R2 x64",
        18: "RHEL 6",
        19: "RHEL 6 x64",
    },
    "REPORTS_ALL": {0: "All"},
    "REPORTS_DETACHED_ON": {0: "Detached on"},
    "REPORTS_NONE_AVAILABLE": {0: "None Available"},
    "REPORTS_PERIOD": {0: "Daily", 1: "Monthly", 2: "Quarterly", 3: "Yearly"},
    "REPORTS_REMOVED_ON": {0: "Removed on"},
    "REPORTS_SHOW_DELETED": {0: "No", 1: "Yes"},
    "STORAGE_DOMAIN_STATUS": {0: "Unattached", 1: "Active", 2: "InActive", 3: "Mixed", 4: "Locked"},
    "STORAGE_DOMAIN_TYPE": {0: "Data (Master)", 1: "Data", 2: "ISO", 3: "Export"},
    "STORAGE_TYPE": {0: "Unknown", 1: "NFS", 2: "FCP", 3: "iSCSI", 4: "Local", 6: "All"},
    "USB_POLICY": {0: "Enabled", 1: "Disabled"},
    "VM_DISK_FORMAT": {3: "Unassigned", 4: "COW", 5: "Raw"},
    "VM_DISK_INTERFACE": {0: "IDE", 1: "SCSI", 2: "Virt IO"},
    "VM_DISK_STATUS": {0: "Unassigned", 1: "OK", 2: "Locked", 3: "Invalid", 4: "Illegal"},
    "VM_DISK_TYPE": {0: "Unassigned", 1: "System", 2: "Data"},
    "VM_STATUS": {-1: "Unknown Status", 0: "Down", 1: "Up", 2: "Paused", 3: "Problematic"},
    "VM_TYPE": {0: "Desktop", 1: "Server"},
}

ENUM_VALUES: tuple[tuple[str, int, str], ...] = tuple(
    (t, code, value) for t, codes in _TYPES.items() for code, value in codes.items()
)
ENUM_TYPES = tuple(_TYPES)

# Orrery's text -> oVirt's code, for the enum-coded columns of the v4_4 configuration
# views (the text stays in the orrery_configuration_history_* views). A value oVirt has
# no code for is NULL there.
_OS_CODES = {
    "other": 0,
    "windows_xp": 1,
    "windows_2003": 3,
    "windows_2008": 4,
    "other_linux": 5,
    "rhel_5": 7,
    "rhel_4": 8,
    "rhel_3": 9,
    "windows_2003x64": 10,
    "windows_7": 11,
    "windows_7x64": 12,
    "rhel_5x64": 13,
    "rhel_4x64": 14,
    "rhel_3x64": 15,
    "windows_2008x64": 16,
    "windows_2008r2x64": 17,
    "rhel_6": 18,
    "rhel_6x64": 19,
}
CODED_COLUMNS: dict[str, dict[str, int]] = {
    "operating_system": _OS_CODES,
    "vm_type": {"desktop": 0, "server": 1},
    "storage_type": {"nfs": 1, "fcp": 2, "iscsi": 3, "localfs": 4},
    "storage_domain_type": {"data": 1, "iso": 2, "export": 3},
    "vm_disk_format": {"cow": 4, "raw": 5},
    "vm_interface_type": {"rtl8139": 1, "e1000": 2, "virtio": 3},
    "usb_policy": {"enabled": 0, "enabled_native": 0, "enabled_legacy": 0, "disabled": 1},
}
