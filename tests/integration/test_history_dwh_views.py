"""oVirt 4.4's DWH interface over a warehouse fed from a real event log and samples:
every ``v4_4_*`` view oVirt documents, with its columns; enum codes that translate;
PostgreSQL's ``to_char`` answering as PostgreSQL does (checked on the dev database)."""

from __future__ import annotations

import os
import random
from datetime import datetime, timedelta

import psycopg
import pytest

from commands.store import EventLog, libpq_url
from domain.statuses import VmStatus
from domain.tag import TagAdded, TagAttached
from domain.user import UserAdded
from history.readonly import QueryLimits, run_read_only
from history.samples import GiB, VmSample
from history.warehouse import Warehouse, open_read_only
from tests.unit.test_history_config import Gen

pytestmark = pytest.mark.integration

# oVirt 4.4.9.1's v4_4 views and, for those this change adds or widens, the columns
# its documentation lists (written out here, not read from our schema).
OVIRT_VIEWS = [
    "enum_translator",
    "configuration_history_datacenters",
    "latest_configuration_datacenters",
    "map_history_datacenters_storage_domains",
    "latest_map_datacenters_storage_domains",
    "configuration_history_storage_domains",
    "latest_configuration_storage_domains",
    "configuration_history_clusters",
    "latest_configuration_clusters",
    "configuration_history_hosts",
    "latest_configuration_hosts",
    "configuration_history_hosts_interfaces",
    "latest_configuration_hosts_interfaces",
    "configuration_history_vms",
    "latest_configuration_vms",
    "configuration_history_vms_interfaces",
    "latest_configuration_vms_interfaces",
    "configuration_history_vms_disks",
    "latest_configuration_vms_disks",
    "configuration_history_vms_devices",
    "latest_configuration_vms_devices",
    "statistics_vms_users_usage_hourly",
    "statistics_vms_users_usage_daily",
    "users_details_history",
    "latest_users_details",
    "tags_relations_history",
    "latest_tags_relations",
    "tags_details_history",
    "latest_tags_details",
] + [
    f"{kind}_{family}_resources_usage_{period}"
    for kind, families in (
        ("statistics", ("storage_domains", "hosts", "hosts_interfaces", "vms")),
        ("statistics", ("vms_interfaces", "vms_disks")),
        ("fully_joined_statistics", ("hosts", "vms")),
    )
    for family in families
    for period in ("samples", "hourly", "daily")
]
_CONF = "create_date update_date"
_USAGE = (
    "history_id history_datetime user_id vm_id session_time_in_minutes cpu_usage_percent "
    "max_cpu_usage memory_usage_percent max_memory_usage user_cpu_usage_percent "
    "max_user_cpu_usage_percent system_cpu_usage_percent max_system_cpu_usage_percent "
    "vm_ip vm_client_ip user_logged_in_to_guest currently_running_on_host "
    "vm_configuration_version current_host_configuration_version"
)
_NIC = (
    "history_id host_interface_id host_interface_name host_id host_interface_type "
    "host_interface_speed_bps mac_address logical_network_name ip_address gateway bond "
    f"bond_name vlan_id host_configuration_version {_CONF}"
)
_DEV = (
    "history_id vm_id device_id type address is_managed is_plugged is_readonly "
    f"vm_configuration_version device_configuration_version {_CONF}"
)
_USER = (
    "user_id first_name last_name domain username department user_role_title email "
    f"external_id active {_CONF} delete_date"
)
_TAGD = f"history_id tag_id tag_name tag_description tag_path tag_level {_CONF} delete_date"
_TAGR = "history_id entity_id entity_type parent_id attach_date detach_date"
_FJ_HOST = (
    "host_id host_unique_id host_name cluster_id host_type fqdn_or_ip memory_size_mb "
    "swap_size_mb cpu_model number_of_cores number_of_sockets cpu_speed_mh host_os "
    "kernel_version kvm_version vdsm_version vdsm_port threads_per_core number_of_threads "
    "hardware_manufacturer hardware_product_name hardware_version hardware_serial_number "
    "cluster_configuration_version host_create_date host_update_date host_delete_date "
    "history_datetime host_status host_seconds_in_status host_minutes_in_status "
    "memory_usage_percent ksm_shared_memory_mb cpu_usage_percent ksm_cpu_percent active_vms "
    "total_vms total_vms_vcpus cpu_load system_cpu_usage_percent user_cpu_usage_percent "
    "swap_used_mb host_interface_id host_interface_name host_interface_type "
    "host_interface_speed_bps mac_address logical_network_name ip_address gateway bond "
    "bond_name vlan_id host_interface_create_date host_interface_update_date "
    "host_interface_delete_date receive_rate_percent transmit_rate_percent "
    "received_total_byte transmitted_total_byte received_dropped_total_packets "
    "transmitted_dropped_total_packets"
)
_FJ_VM = (
    "vm_id vm_name vm_description vm_type cluster_id template_id template_name "
    "cpu_per_socket number_of_sockets memory_size_mb operating_system default_host "
    "high_availability initialized stateless fail_back usb_policy time_zone vm_pool_id "
    "vm_pool_name created_by_user_id cluster_configuration_version "
    "default_host_configuration_version vm_create_date vm_update_date vm_delete_date "
    "history_datetime vm_status cpu_usage_percent memory_usage_percent "
    "user_cpu_usage_percent system_cpu_usage_percent vm_ip currently_running_on_host "
    "current_user_id disks_usage current_host_configuration_version memory_buffered_kb "
    "memory_cached_kb device_id device_type address is_managed is_plugged is_readonly "
    "device_create_date device_update_date device_delete_date vm_interface_id "
    "vm_interface_name vm_interface_type vm_interface_speed_bps mac_address "
    "logical_network_name vm_interface_create_date vm_interface_update_date "
    "vm_interface_delete_date receive_rate_percent transmit_rate_percent "
    "received_total_byte transmitted_total_byte received_dropped_total_packets "
    "transmitted_dropped_total_packets vm_disk_id vm_disk_name vm_disk_description "
    "storage_domain_id vm_disk_size_mb vm_disk_type vm_disk_format is_shared "
    "vm_disk_create_date vm_disk_update_date vm_disk_delete_date vm_disk_status "
    "vm_disk_seconds_in_status vm_disk_minutes_in_status vm_disk_actual_size_mb "
    "read_rate_bytes_per_second read_ops_per_second read_latency_seconds "
    "write_rate_bytes_per_second write_ops_per_second write_latency_seconds "
    "flush_latency_seconds"
)
_MAX_HOST = "max_memory_usage max_cpu_usage max_receive_rate_percent max_transmit_rate_percent"
_MAX_VM = "max_cpu_usage max_read_ops_per_second max_flush_latency_seconds"
COLUMNS = {
    "map_history_datacenters_storage_domains": (
        "history_id storage_domain_id datacenter_id attach_date detach_date"
    ),
    "latest_map_datacenters_storage_domains": (
        "history_id storage_domain_id datacenter_id attach_date"
    ),
    "configuration_history_hosts_interfaces": f"{_NIC} delete_date",
    "latest_configuration_hosts_interfaces": _NIC,
    "configuration_history_vms_devices": f"{_DEV} delete_date",
    "latest_configuration_vms_devices": _DEV,
    "statistics_vms_users_usage_hourly": _USAGE,
    "statistics_vms_users_usage_daily": _USAGE,
    "users_details_history": _USER,
    "latest_users_details": _USER,
    "tags_relations_history": _TAGR,
    "latest_tags_relations": _TAGR,
    "tags_details_history": _TAGD,
    "latest_tags_details": _TAGD,
    "fully_joined_statistics_hosts_resources_usage_samples": _FJ_HOST,
    "fully_joined_statistics_hosts_resources_usage_hourly": f"{_FJ_HOST} {_MAX_HOST}",
    "fully_joined_statistics_hosts_resources_usage_daily": f"{_FJ_HOST} {_MAX_HOST}",
    "fully_joined_statistics_vms_resources_usage_samples": (
        f"{_FJ_VM} seconds_in_status minutes_in_status"
    ),
    "fully_joined_statistics_vms_resources_usage_hourly": (
        f"{_FJ_VM} {_MAX_VM} vm_seconds_in_status vm_minutes_in_status"
    ),
    "fully_joined_statistics_vms_resources_usage_daily": (
        f"{_FJ_VM} {_MAX_VM} vm_seconds_in_status vm_minutes_in_status"
    ),
    "statistics_vms_resources_usage_samples": (
        "vm_ip vm_client_ip current_user_id user_logged_in_to_guest disks_usage"
    ),
    "statistics_vms_disks_resources_usage_samples": (
        "vm_disk_status seconds_in_status minutes_in_status read_ops_per_second "
        "write_ops_per_second"
    ),
    "statistics_vms_disks_resources_usage_hourly": (
        "vm_disk_status seconds_in_status minutes_in_status read_ops_per_second "
        "max_read_ops_per_second write_ops_per_second max_write_ops_per_second"
    ),
    "configuration_history_vms_disks": "vm_disk_type vm_disk_format is_shared",
}

# to_char samples: (timestamp, pattern, PostgreSQL 16's answer)
TO_CHAR = [
    ("2026-12-02 13:04:05.123456", "YYYY-MM-DD HH24:MI:SS", "2026-12-02 13:04:05"),
    ("2026-12-06 07:08:09", "D", "1"),
    ("2026-12-02 13:04:05", "D", "4"),
    ("2026-12-02 13:04:05", "HH24:00", "13:00"),
    ("2026-05-02 01:00:00", "Mon DD, YYYY", "May 02, 2026"),
    ("2026-05-02 01:00:00", "Month|Day|Dy", "May      |Saturday |Sat"),
    ("2026-05-02 21:00:00", "FMMonth FMDD FMHH12 am PM", "May 2 9 pm PM"),
    ("2021-01-01 00:00:00", "DDD IW WW W Q J CC", "001 53 01 1 1 2459216 21"),
    ("2020-02-29 23:59:59.999", "MS US SSSS", "999 999000 86399"),
    ("2026-12-02 13:04:05", '"at" hh24:mi', "at 13:04"),
]


def _feed(tmp_path):
    log = EventLog(database_url=None, data_dir=tmp_path)
    g = Gen(5)
    rnd = random.Random(5)
    for _ in range(200):
        g.step(rnd.randrange(50), rnd.randrange(50), rnd.randrange(50), rnd.choice([0, 1, 5]))
    user, tag = g.new_id(), g.new_id()
    g.emit(UserAdded, user, user_name="ann", name="Ann", password_hash="secret-hash")
    g.emit(TagAdded, tag, name="gold")
    vm = g.live("vm")[0]
    g.emit(TagAttached, tag, object_id=vm.id)
    log.append(g.events)
    w = Warehouse(tmp_path / "h.duckdb")
    w.catch_up(log.read)
    t0 = datetime(2026, 3, 1, 10)
    w.ingest_samples(
        VmSample(
            time=t0 + timedelta(minutes=m),
            vm_id=vm.id,
            status=(VmStatus.DOWN if m >= 3 else VmStatus.UP).value,
            memory_total=GiB,
            seconds_in_status=60,
        )
        for m in range(6)
    )
    return w, vm, user, tag


def test_every_ovirt_view_has_its_columns(tmp_path):
    w, vm, user, tag = _feed(tmp_path)
    with w:
        for view in OVIRT_VIEWS:
            cols, _ = w.query(f"SELECT * FROM v4_4_{view} LIMIT 0")
            assert len(cols) == len(set(cols)), view  # no ambiguous names
            missing = set(COLUMNS.get(view, "").split()) - set(cols)
            assert not missing, (view, missing)
        # names oVirt's view lacks and a view it joins has would make its queries ambiguous
        for view, name in (
            ("configuration_history_storage_domains", "datacenter_id"),
            ("configuration_history_vms_interfaces", "vm_id"),
            ("statistics_vms_resources_usage_samples", "memory_size_mb"),
            ("statistics_hosts_resources_usage_hourly", "memory_size_mb"),
        ):
            assert name not in w.query(f"SELECT * FROM v4_4_{view} LIMIT 0")[0], view
        # a VM that went down has rows with oVirt's Down code, which translates
        rows = w.query(
            "SELECT s.vm_status, e.value, count(*)"
            " FROM v4_4_statistics_vms_resources_usage_samples s JOIN v4_4_enum_translator e"
            " ON e.enum_type = 'VM_STATUS' AND e.enum_key = s.vm_status"
            " WHERE s.vm_id = ? GROUP BY ALL ORDER BY 1",
            [vm.id],
        )[1]
        assert rows == [(0, "Down", 3), (1, "Up", 3)]
        types = {r[0] for r in w.query("SELECT enum_type FROM v4_4_enum_translator")[1]}
        assert {"OS_TYPE", "VM_TYPE", "STORAGE_TYPE", "VM_DISK_TYPE", "ENTITY_TYPE"} <= types
        assert w.query(
            "SELECT value FROM v4_4_enum_translator WHERE enum_type = 'OS_TYPE' AND enum_key = 5"
        )[1] == [("Other Linux",)]
        # enum-coded configuration columns are oVirt's smallint codes; our text is in
        # orrery_* views; update_date is NULL until the first update
        got = w.query(
            "SELECT c.vm_type, t.value, c.operating_system, o.value, c.update_date,"
            " r.vm_type, r.operating_system"
            " FROM v4_4_configuration_history_vms c JOIN orrery_configuration_history_vms r"
            " USING (history_id)"
            " JOIN v4_4_enum_translator t ON t.enum_type = 'VM_TYPE' AND t.enum_key = c.vm_type"
            " JOIN v4_4_enum_translator o ON o.enum_type = 'OS_TYPE'"
            " AND o.enum_key = c.operating_system"
            " WHERE c.vm_id = ? ORDER BY c.history_id LIMIT 1",
            [vm.id],
        )
        assert got[1] == [(1, "Server", 0, "Unknown", None, "server", "other")]
        # users and tags come from the log; a user's password hash never does
        got = w.query("SELECT user_id, username, first_name FROM v4_4_latest_users_details")
        assert got[1] == [(user, "ann", "Ann")]
        assert "secret-hash" not in str(w.query("SELECT config FROM config_history")[1])
        assert w.query("SELECT tag_id, tag_name FROM v4_4_latest_tags_details")[1] == [
            (tag, "gold")
        ]
        assert w.query("SELECT entity_id, entity_type, parent_id FROM v4_4_latest_tags_relations")[
            1
        ] == [(vm.id, 2, tag)]
        assert w.query("SELECT count(*) FROM v4_4_statistics_vms_users_usage_hourly")[1] == [(0,)]


def test_to_char_answers_as_postgresql(tmp_path):
    w, *_ = _feed(tmp_path)
    url = os.environ.get("ORRERY_TEST_DATABASE_URL")
    if not url:
        pytest.fail("ORRERY_TEST_DATABASE_URL is not set: to_char is checked against it")
    with w, psycopg.connect(libpq_url(url)) as pg:
        for ts, fmt, want in TO_CHAR:
            got_pg = pg.execute("SELECT to_char(%s::timestamp, %s)", (ts, fmt)).fetchone()
            assert got_pg == (want,), (ts, fmt)
            assert w.query("SELECT to_char(CAST(? AS TIMESTAMP), ?)", [ts, fmt])[1] == [(want,)], (
                ts,
                fmt,
            )
        # SQL from outside (the read-only door) may call them too
        res = w.run_sql("SELECT to_char(TIMESTAMP '2026-12-02 13:04:05', 'HH24:00')")
        assert res.rows == [("13:00",)]
    con = open_read_only(tmp_path / "h.duckdb")
    try:
        res = run_read_only(
            con.cursor(),
            "SELECT to_char(TIMESTAMP '2026-12-06 07:08:09', 'D'), initcap('hello world')",
            limits=QueryLimits(),
        )
        assert res.rows == [("1", "Hello World")]
    finally:
        con.close()
