"""The warehouse's tables and its oVirt-named views (``v4_4_*``), as DuckDB DDL.

Physical tables are ours; the views give them the column names oVirt's DWH reports use,
so a query written against ``ovirt_engine_history`` keeps working. Times are naive UTC
``TIMESTAMP``s. Status columns hold oVirt's DWH bucket codes (``enum_translator``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from history import pgdialect, views44
from history.enums import CODED_COLUMNS, DEFAULT_LANGUAGE, ENUM_VALUES

# -- status buckets ----------------------------------------------------------------------
VM_BUCKET_CODES = {"Down": 0, "Up": 1, "Paused": 2, "Problematic": 3}
HOST_BUCKET_CODES = {"Up": 1, "Maintenance": 2, "Problematic": 3}
# oVirt's STORAGE_DOMAIN_STATUS has no maintenance code: a domain in maintenance is InActive
STORAGE_DOMAIN_BUCKET_CODES = {"Active": 1, "Inactive": 2, "Maintenance": 2}


# -- statistics tables: one spec drives samples, hourly, daily and their views -----------
@dataclass(frozen=True)
class StatsSpec:
    """One statistics family: ``{base}_samples_history``, ``_hourly_history``, ``_daily_history``.

    ``measures`` are (column, max column, SQL type): averaged and maximised by the rollups.
    ``lasts`` are (column, SQL type) taken from the latest sample of the period.
    """

    base: str
    key: str
    status: str | None
    measures: tuple[tuple[str, str, str], ...]
    lasts: tuple[tuple[str, str], ...]
    view: str  # the v4_4 view family name, e.g. "vms"

    @property
    def samples(self) -> str:
        return f"{self.base}_samples_history"

    @property
    def hourly(self) -> str:
        return f"{self.base}_hourly_history"

    @property
    def daily(self) -> str:
        return f"{self.base}_daily_history"

    def sample_columns(self) -> list[tuple[str, str]]:
        cols = [("history_id", "BIGINT"), ("history_datetime", "TIMESTAMP"), (self.key, "UUID")]
        if self.status:
            cols += [(self.status, "SMALLINT"), ("seconds_in_status", "INTEGER")]
        cols += [(c, t) for c, _, t in self.measures]
        cols += list(self.lasts)
        return cols

    def rollup_columns(self) -> list[tuple[str, str]]:
        cols = [("history_id", "BIGINT"), ("history_datetime", "TIMESTAMP"), (self.key, "UUID")]
        if self.status:
            cols += [(self.status, "SMALLINT"), ("minutes_in_status", "DOUBLE")]
        cols += [("sample_count", "INTEGER")]
        for c, m, t in self.measures:
            cols += [(c, "DOUBLE"), (m, t)]
        cols += list(self.lasts)
        return cols


VM = StatsSpec(
    base="vm",
    key="vm_id",
    status="vm_status",
    measures=(
        ("cpu_usage_percent", "max_cpu_usage", "REAL"),
        ("memory_usage_percent", "max_memory_usage", "REAL"),
        ("user_cpu_usage_percent", "max_user_cpu_usage_percent", "REAL"),
        ("system_cpu_usage_percent", "max_system_cpu_usage_percent", "REAL"),
        ("memory_used_mb", "max_memory_used_mb", "BIGINT"),
        ("memory_buffered_kb", "max_memory_buffered_kb", "BIGINT"),
        ("memory_cached_kb", "max_memory_cached_kb", "BIGINT"),
    ),
    lasts=(
        ("memory_size_mb", "BIGINT"),
        ("vm_ip", "VARCHAR"),
        ("currently_running_on_host", "UUID"),
        ("vm_configuration_version", "BIGINT"),
        ("current_host_configuration_version", "BIGINT"),
    ),
    view="vms",
)

HOST = StatsSpec(
    base="host",
    key="host_id",
    status="host_status",
    measures=(
        ("memory_usage_percent", "max_memory_usage", "REAL"),
        ("cpu_usage_percent", "max_cpu_usage", "REAL"),
        ("user_cpu_usage_percent", "max_user_cpu_usage_percent", "REAL"),
        ("system_cpu_usage_percent", "max_system_cpu_usage_percent", "REAL"),
        ("ksm_cpu_percent", "max_ksm_cpu_percent", "REAL"),
        ("ksm_shared_memory_mb", "max_ksm_shared_memory_mb", "BIGINT"),
        ("cpu_load", "max_cpu_load", "REAL"),
        ("active_vms", "max_active_vms", "INTEGER"),
        ("total_vms", "max_total_vms", "INTEGER"),
        ("total_vms_vcpus", "max_total_vms_vcpus", "INTEGER"),
        ("swap_used_mb", "max_swap_used_mb", "BIGINT"),
        ("memory_used_mb", "max_memory_used_mb", "BIGINT"),
    ),
    lasts=(("memory_size_mb", "BIGINT"), ("host_configuration_version", "BIGINT")),
    view="hosts",
)

STORAGE_DOMAIN = StatsSpec(
    base="storage_domain",
    key="storage_domain_id",
    status="storage_domain_status",
    measures=(
        ("available_disk_size_gb", "max_available_disk_size_gb", "DOUBLE"),
        ("used_disk_size_gb", "max_used_disk_size_gb", "DOUBLE"),
    ),
    lasts=(("storage_configuration_version", "BIGINT"),),
    view="storage_domains",
)

VM_INTERFACE = StatsSpec(
    base="vm_interface",
    key="vm_interface_id",
    status=None,
    measures=(
        ("receive_rate_percent", "max_receive_rate_percent", "REAL"),
        ("transmit_rate_percent", "max_transmit_rate_percent", "REAL"),
    ),
    lasts=(
        ("vm_id", "UUID"),
        ("received_total_byte", "BIGINT"),
        ("transmitted_total_byte", "BIGINT"),
        ("received_dropped_total_packets", "BIGINT"),
        ("transmitted_dropped_total_packets", "BIGINT"),
        ("vm_interface_configuration_version", "BIGINT"),
    ),
    view="vms_interfaces",
)

VM_DISK = StatsSpec(
    base="vm_disk",
    key="vm_disk_id",
    status=None,
    measures=(
        ("read_rate_bytes_per_second", "max_read_rate_bytes_per_second", "BIGINT"),
        ("write_rate_bytes_per_second", "max_write_rate_bytes_per_second", "BIGINT"),
        ("read_latency_seconds", "max_read_latency_seconds", "DOUBLE"),
        ("write_latency_seconds", "max_write_latency_seconds", "DOUBLE"),
        ("flush_latency_seconds", "max_flush_latency_seconds", "DOUBLE"),
    ),
    lasts=(
        ("vm_id", "UUID"),
        ("vm_disk_actual_size_mb", "BIGINT"),
        ("read_ops_total_count", "BIGINT"),
        ("write_ops_total_count", "BIGINT"),
        ("vm_disk_configuration_version", "BIGINT"),
    ),
    view="vms_disks",
)

# A host's network interface (oVirt's host_interface_* tables). hostd reports no link
# speed, so the *_rate_percent columns stay 0; the byte rates are ours, from the counters.
HOST_INTERFACE = StatsSpec(
    base="host_interface",
    key="host_interface_id",
    status=None,
    measures=(
        ("receive_rate_percent", "max_receive_rate_percent", "REAL"),
        ("transmit_rate_percent", "max_transmit_rate_percent", "REAL"),
        ("receive_rate_bytes_per_second", "max_receive_rate_bytes_per_second", "BIGINT"),
        ("transmit_rate_bytes_per_second", "max_transmit_rate_bytes_per_second", "BIGINT"),
    ),
    lasts=(
        ("host_id", "UUID"),
        ("host_interface_name", "VARCHAR"),
        ("received_total_byte", "BIGINT"),
        ("transmitted_total_byte", "BIGINT"),
        ("received_total_packets", "BIGINT"),
        ("transmitted_total_packets", "BIGINT"),
        ("received_error_total_packets", "BIGINT"),
        ("transmitted_error_total_packets", "BIGINT"),
        ("received_dropped_total_packets", "BIGINT"),
        ("transmitted_dropped_total_packets", "BIGINT"),
        ("host_interface_configuration_version", "BIGINT"),
    ),
    view="hosts_interfaces",
)

STATS: tuple[StatsSpec, ...] = (VM, HOST, STORAGE_DOMAIN, VM_INTERFACE, VM_DISK, HOST_INTERFACE)
STATS_BY_BASE = {s.base: s for s in STATS}

# -- configuration history: one type-2 table for every tracked kind -----------------------
CONFIG_COLUMNS: tuple[tuple[str, str], ...] = (
    ("history_id", "BIGINT"),
    ("kind", "VARCHAR"),
    ("object_id", "UUID"),
    ("create_date", "TIMESTAMP"),  # when the object was created
    ("valid_from", "TIMESTAMP"),  # when this version began (oVirt's update_date)
    ("valid_to", "TIMESTAMP"),  # when it ended; NULL while current
    ("deleted", "BOOLEAN"),  # this version ended with the object's removal
    ("parent_version", "BIGINT"),  # history_id of the parent's version then current
    ("name", "VARCHAR"),
    ("description", "VARCHAR"),
    ("data_center_id", "UUID"),
    ("cluster_id", "UUID"),
    ("host_id", "UUID"),
    ("storage_domain_id", "UUID"),
    ("vm_id", "UUID"),
    ("template_id", "UUID"),
    ("memory_mb", "BIGINT"),
    ("cpu_sockets", "INTEGER"),
    ("cpu_cores", "INTEGER"),
    ("cpu_threads", "INTEGER"),
    ("os_type", "VARCHAR"),
    ("object_type", "VARCHAR"),
    ("config", "JSON"),
)
CONFIG_COLUMN_NAMES = tuple(c for c, _ in CONFIG_COLUMNS)


def _ddl_table(name: str, cols: list[tuple[str, str]] | tuple[tuple[str, str], ...]) -> str:
    body = ",\n  ".join(f"{c} {t}" for c, t in cols)
    return f"CREATE TABLE IF NOT EXISTS {name} (\n  {body}\n)"


def tables_ddl() -> list[str]:
    out = [
        "CREATE TABLE IF NOT EXISTS history_tracking (name VARCHAR PRIMARY KEY, position BIGINT)",
        "CREATE TABLE IF NOT EXISTS history_settings (name VARCHAR PRIMARY KEY, value VARCHAR)",
        "CREATE TABLE IF NOT EXISTS enum_translator "
        "(enum_type VARCHAR, enum_key SMALLINT, value VARCHAR, language_code VARCHAR)",
        "CREATE TABLE IF NOT EXISTS history_configuration "
        "(var_name VARCHAR PRIMARY KEY, var_value VARCHAR, var_datetime TIMESTAMP)",
        _ddl_table("config_history", CONFIG_COLUMNS),
        "CREATE SEQUENCE IF NOT EXISTS rollup_history_id",
    ]
    for spec in STATS:
        out.append(_ddl_table(spec.samples, spec.sample_columns()))
        out.append(_ddl_table(spec.hourly, spec.rollup_columns()))
        out.append(_ddl_table(spec.daily, spec.rollup_columns()))
    return out


# -- views ------------------------------------------------------------------------------
def _j(path: str, alias: str, cast: str | None = None) -> str:
    expr = f"json_extract_string(config, '$.{path}')"
    return f"CAST({expr} AS {cast}) AS {alias}" if cast else f"{expr} AS {alias}"


# kind -> (view family, [select expressions]) over config_history rows of that kind.
_CONFIG_VIEWS: dict[str, tuple[str, list[str]]] = {
    "data_center": (
        "datacenters",
        [
            "object_id AS datacenter_id",
            "name AS datacenter_name",
            "description AS datacenter_description",
            _j("local", "is_local_storage", "BOOLEAN"),
            _j("compatibility_version", "compatibility_version"),
            _j("quota_mode", "quota_mode"),
        ],
    ),
    "storage_domain": (
        "storage_domains",
        [
            "object_id AS storage_domain_id",
            "name AS storage_domain_name",
            _j("domain_type", "storage_domain_type"),
            _j("storage_type", "storage_type"),
            "data_center_id AS datacenter_id",
            "parent_version AS datacenter_configuration_version",
        ],
    ),
    "cluster": (
        "clusters",
        [
            "object_id AS cluster_id",
            "name AS cluster_name",
            "description AS cluster_description",
            "data_center_id AS datacenter_id",
            _j("cpu_type", "cpu_name"),
            _j("count_threads_as_cores", "count_threads_as_cores", "BOOLEAN"),
            _j("compatibility_version", "compatibility_version"),
            "parent_version AS datacenter_configuration_version",
        ],
    ),
    "host": (
        "hosts",
        [
            "object_id AS host_id",
            _j("hardware_uuid", "host_unique_id"),
            "name AS host_name",
            "cluster_id AS cluster_id",
            "object_type AS host_type",
            _j("address", "fqdn_or_ip"),
            "memory_mb AS memory_size_mb",
            _j("swap_total_mb", "swap_size_mb", "BIGINT"),
            _j("cpu_model", "cpu_model"),
            "cpu_cores AS number_of_cores",
            "cpu_sockets AS number_of_sockets",
            _j("cpu_speed_mhz", "cpu_speed_mh", "DOUBLE"),
            "os_type AS host_os",
            _j("kernel_version", "kernel_version"),
            _j("qemu_version", "kvm_version"),
            _j("vdsm_version", "vdsm_version"),
            _j("port", "vdsm_port", "INTEGER"),
            "cpu_threads AS threads_per_core",
            "cpu_threads AS number_of_threads",
            _j("hardware_manufacturer", "hardware_manufacturer"),
            _j("hardware_product_name", "hardware_product_name"),
            _j("hardware_version", "hardware_version"),
            _j("hardware_serial_number", "hardware_serial_number"),
            "parent_version AS cluster_configuration_version",
        ],
    ),
    "network": (
        "networks",
        [
            "object_id AS network_id",
            "name AS network_name",
            "description AS network_description",
            "data_center_id AS datacenter_id",
            _j("vlan_id", "vlan_id", "INTEGER"),
            _j("mtu", "mtu", "INTEGER"),
            _j("required", "required", "BOOLEAN"),
            "parent_version AS datacenter_configuration_version",
        ],
    ),
    "vm": (
        "vms",
        [
            "object_id AS vm_id",
            "name AS vm_name",
            "description AS vm_description",
            "object_type AS vm_type",
            "cluster_id AS cluster_id",
            "template_id AS template_id",
            _j("template_name", "template_name"),
            "cpu_cores AS cpu_per_socket",
            "cpu_sockets AS number_of_sockets",
            "memory_mb AS memory_size_mb",
            "os_type AS operating_system",
            "host_id AS default_host",
            _j("highly_available", "high_availability", "BOOLEAN"),
            "TRUE AS initialized",
            _j("stateless", "stateless", "BOOLEAN"),
            "FALSE AS fail_back",
            _j("usb_policy", "usb_policy"),
            _j("time_zone", "time_zone"),
            _j("pool_id", "vm_pool_id", "UUID"),
            _j("pool_name", "vm_pool_name"),
            _j("created_by_user_id", "created_by_user_id", "UUID"),
            "parent_version AS cluster_configuration_version",
            "CAST(NULL AS BIGINT) AS default_host_configuration_version",
        ],
    ),
    "disk": (
        "vms_disks",
        [
            "object_id AS vm_disk_id",
            "object_id AS image_id",
            "storage_domain_id AS storage_domain_id",
            "name AS vm_disk_name",
            "description AS vm_disk_description",
            "CAST(json_extract_string(config, '$.provisioned_size') AS BIGINT) // 1048576"
            " AS vm_disk_size_mb",
            "object_type AS vm_disk_format",
            _j("sparse", "is_sparse", "BOOLEAN"),
            _j("shareable", "is_shared", "BOOLEAN"),
            _j("bootable", "is_bootable", "BOOLEAN"),
            "CAST(CASE WHEN CAST(json_extract_string(config, '$.bootable') AS BOOLEAN)"
            " THEN 1 ELSE 2 END AS SMALLINT) AS vm_disk_type",
            "parent_version AS storage_domain_configuration_version",
        ],
    ),
    "vm_interface": (
        "vms_interfaces",
        [
            "object_id AS vm_interface_id",
            "name AS vm_interface_name",
            "object_type AS vm_interface_type",
            "CAST(NULL AS BIGINT) AS vm_interface_speed_bps",
            _j("mac", "mac_address"),
            _j("network_name", "logical_network_name"),
            _j("vnic_profile_id", "vnic_profile_id", "UUID"),
            "vm_id AS vm_id",
            "parent_version AS vm_configuration_version",
        ],
    ),
}
CONFIG_VIEW_KINDS = tuple(_CONFIG_VIEWS)


# Our columns that oVirt's view of that family does not have and another view it is
# joined with does (an oVirt query naming it unqualified would be ambiguous): they are
# in the orrery_* views only.
_NOT_IN_V4_4 = {"storage_domains": {"datacenter_id"}, "vms_interfaces": {"vm_id"}}
_STATS_NOT_IN_V4_4 = {"vm": {"memory_size_mb"}, "host": {"memory_size_mb"}}


def _omitted(family: str, expr: str) -> bool:
    return expr.rpartition(" AS ")[2] in _NOT_IN_V4_4.get(family, ())


def _coded(expr: str) -> str:
    """``expr`` (``<text> AS <alias>``) as oVirt's smallint code if the alias is coded."""
    text, _, alias = expr.rpartition(" AS ")
    codes = CODED_COLUMNS.get(alias)
    if not codes:
        return expr
    arms = " ".join(f"WHEN '{k}' THEN {v}" for k, v in codes.items())
    return f"CAST(CASE lower({text}) {arms} END AS SMALLINT) AS {alias}"


def views_ddl() -> list[str]:
    out = [
        "CREATE OR REPLACE VIEW v4_4_enum_translator AS "
        "SELECT e.enum_type, e.enum_key, e.value FROM enum_translator e "
        "JOIN history_configuration c ON c.var_name = 'default_language' "
        "AND e.language_code = c.var_value"
    ]
    for kind, (family, text_exprs) in _CONFIG_VIEWS.items():
        for prefix, exprs in (
            ("v4_4", [_coded(e) for e in text_exprs if not _omitted(family, e)]),
            ("orrery", text_exprs),  # Orrery's own text for the enum-coded columns
        ):
            cols = ",\n  ".join(exprs)
            common = (
                "history_id,\n  " + cols + ",\n  create_date,\n  "
                "CASE WHEN valid_from > create_date THEN valid_from END AS update_date,\n  "
                "valid_from,\n  valid_to"
            )
            out.append(
                f"CREATE OR REPLACE VIEW {prefix}_configuration_history_{family} AS\n"
                f"SELECT {common},\n  CASE WHEN deleted THEN valid_to END AS delete_date\n"
                f"FROM config_history WHERE kind = '{kind}'"
            )
            out.append(
                f"CREATE OR REPLACE VIEW {prefix}_latest_configuration_{family} AS\n"
                f"SELECT {common}\nFROM config_history "
                f"WHERE kind = '{kind}' AND valid_to IS NULL AND NOT deleted"
            )
    for spec in STATS:
        omit = _STATS_NOT_IN_V4_4.get(spec.base, set())
        sel = [f"s.{c}" for c, _ in spec.sample_columns() if c not in omit]
        if spec.status:
            i = sel.index("s.seconds_in_status") + 1
            sel.insert(i, "CAST(s.seconds_in_status AS DOUBLE) / 60 AS minutes_in_status")
        sel += _EXTRA_SAMPLE_COLUMNS.get(spec.base, [])
        out.append(
            f"CREATE OR REPLACE VIEW v4_4_statistics_{spec.view}_resources_usage_samples AS\n"
            f"SELECT {', '.join(sel)} FROM {spec.samples} AS s{_SAMPLE_JOINS.get(spec.base, '')}"
        )
        for period, table in (("hourly", spec.hourly), ("daily", spec.daily)):
            rcols = [c for c, _ in spec.rollup_columns() if c not in omit]
            if spec.status:
                i = rcols.index("minutes_in_status")
                rcols.insert(
                    i, "CAST(round(minutes_in_status * 60) AS INTEGER) AS seconds_in_status"
                )
            rcols += _EXTRA_ROLLUP_COLUMNS.get(spec.base, [])
            out.append(
                f"CREATE OR REPLACE VIEW v4_4_statistics_{spec.view}_resources_usage_{period} AS\n"
                f"SELECT {', '.join(rcols)} FROM {table}"
            )
    return out + views44.views_ddl()


# oVirt's columns that Orrery's sampler has no source for (no guest agent sessions, no
# per-disk guest usage): present, typed, NULL. See docs/history.md.
_GUEST_NULLS = [
    "CAST(NULL AS VARCHAR) AS vm_client_ip",
    "CAST(NULL AS UUID) AS current_user_id",
    "CAST(NULL AS BOOLEAN) AS user_logged_in_to_guest",
    "CAST(NULL AS VARCHAR) AS disks_usage",
]
# A disk is sampled while its VM runs: its status is OK (1) for the VM's time in status.
_DISK_ROLLUP = [
    "CAST(1 AS SMALLINT) AS vm_disk_status",
    "CAST(round(sample_count * 60) AS INTEGER) AS seconds_in_status",
    "CAST(sample_count AS DOUBLE) AS minutes_in_status",
    "CAST(NULL AS INTEGER) AS read_ops_per_second",
    "CAST(NULL AS INTEGER) AS max_read_ops_per_second",
    "CAST(NULL AS INTEGER) AS write_ops_per_second",
    "CAST(NULL AS INTEGER) AS max_write_ops_per_second",
]
_OPS = (
    "CAST(CASE WHEN epoch(s.history_datetime) > epoch(lag(s.history_datetime) OVER w)"
    " THEN greatest(s.{c}_ops_total_count - lag(s.{c}_ops_total_count) OVER w, 0)"
    " / (epoch(s.history_datetime) - epoch(lag(s.history_datetime) OVER w)) END AS INTEGER)"
    " AS {c}_ops_per_second"
)
_EXTRA_SAMPLE_COLUMNS: dict[str, list[str]] = {
    "vm": _GUEST_NULLS,
    "vm_disk": [
        "CAST(1 AS SMALLINT) AS vm_disk_status",
        "v.seconds_in_status AS seconds_in_status",
        "CAST(v.seconds_in_status AS DOUBLE) / 60 AS minutes_in_status",
        _OPS.format(c="read"),
        _OPS.format(c="write"),
    ],
}
_SAMPLE_JOINS = {
    "vm_disk": " LEFT JOIN vm_samples_history AS v ON v.vm_id = s.vm_id"
    " AND v.history_datetime = s.history_datetime"
    " WINDOW w AS (PARTITION BY s.vm_disk_id ORDER BY s.history_datetime)",
}
_EXTRA_ROLLUP_COLUMNS: dict[str, list[str]] = {"vm": _GUEST_NULLS, "vm_disk": _DISK_ROLLUP}


def create_all(con: Any) -> None:
    """Creates missing tables and (re)creates the views; idempotent."""
    for stmt in tables_ddl():
        con.execute(stmt)
    have = set(con.execute("SELECT enum_type, enum_key, value FROM enum_translator").fetchall())
    missing = [[t, k, v, DEFAULT_LANGUAGE] for t, k, v in ENUM_VALUES if (t, k, v) not in have]
    stale = [r for r in have if r not in set(ENUM_VALUES)]
    if stale:  # codes an older Orrery wrote that oVirt gives another meaning
        con.executemany(
            "DELETE FROM enum_translator WHERE enum_type = ? AND enum_key = ? AND value = ?",
            [list(r) for r in stale],
        )
    if missing:
        con.executemany("INSERT INTO enum_translator VALUES (?, ?, ?, ?)", missing)
    con.execute(
        "INSERT INTO history_configuration VALUES ('default_language', ?, now()) "
        "ON CONFLICT DO NOTHING",
        [DEFAULT_LANGUAGE],
    )
    pgdialect.register(con)
    for stmt in views_ddl():
        con.execute(stmt)
