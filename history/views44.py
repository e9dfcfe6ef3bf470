"""The oVirt 4.4 DWH views built over other views rather than over one table: the data
center / storage domain map, host NICs and VM devices as configuration, the VM users
usage, users and tags history, and the six ``fully_joined_statistics`` views.

Definitions are ours, over our tables (``history.schema``); only the view and column
names follow oVirt's documented interface. What Orrery cannot fill is described in
docs/history.md ("Columns Orrery does not fill").
"""

from __future__ import annotations

# oVirt's ENTITY_TYPE codes for the objects a tag relation names
ENTITY_TYPE_OF_KIND = {"vm": 2, "host": 3, "user": 15, "tag": 18}

_MAP_DC_SD = """
WITH r AS (
  SELECT history_id, object_id, data_center_id, valid_from, valid_to,
    CASE WHEN lag(data_center_id) OVER w IS NOT DISTINCT FROM data_center_id
          AND lag(valid_to) OVER w = valid_from THEN 0 ELSE 1 END AS starts
  FROM config_history WHERE kind = 'storage_domain'
  WINDOW w AS (PARTITION BY object_id ORDER BY valid_from, history_id)
), islands AS (
  SELECT *, sum(starts) OVER (PARTITION BY object_id ORDER BY valid_from, history_id)
    AS island FROM r
)
SELECT CAST(min(history_id) AS INTEGER) AS history_id, object_id AS storage_domain_id,
  data_center_id AS datacenter_id, min(valid_from) AS attach_date,
  CASE WHEN bool_or(valid_to IS NULL) THEN NULL ELSE max(valid_to) END AS detach_date
FROM islands WHERE data_center_id IS NOT NULL
GROUP BY object_id, data_center_id, island
"""

# Host NICs are known from hostd's samples only (no configuration event names them):
# one row per NIC, from its first sample on; the first sample's id is its history_id.
_HOST_NICS = """
SELECT CAST(min(history_id) AS INTEGER) AS history_id, host_interface_id,
  arg_min(host_interface_name, history_datetime) AS host_interface_name,
  arg_min(host_id, history_datetime) AS host_id,
  CAST(NULL AS SMALLINT) AS host_interface_type,
  CAST(NULL AS INTEGER) AS host_interface_speed_bps,
  CAST(NULL AS VARCHAR) AS mac_address, CAST(NULL AS VARCHAR) AS logical_network_name,
  CAST(NULL AS VARCHAR) AS ip_address, CAST(NULL AS VARCHAR) AS gateway,
  CAST(NULL AS BOOLEAN) AS bond, CAST(NULL AS VARCHAR) AS bond_name,
  CAST(NULL AS INTEGER) AS vlan_id,
  CAST(arg_min(host_interface_configuration_version, history_datetime) AS INTEGER)
    AS host_configuration_version,
  min(history_datetime) AS create_date, CAST(NULL AS TIMESTAMP) AS update_date{delete}
FROM host_interface_samples_history GROUP BY host_interface_id
"""

# A VM's devices: its NICs (a disk's attachment to a VM is not in the disk's history).
_VM_DEVICES = """
SELECT history_id, vm_id, object_id AS device_id, 'interface' AS type,
  CAST('' AS VARCHAR) AS address, TRUE AS is_managed,
  coalesce(CAST(json_extract_string(config, '$.plugged') AS BOOLEAN), TRUE) AS is_plugged,
  FALSE AS is_readonly, parent_version AS vm_configuration_version,
  history_id AS device_configuration_version, create_date,
  CASE WHEN history_id > first_id THEN valid_from END AS update_date{delete}
FROM (SELECT *, min(history_id) OVER (PARTITION BY object_id) AS first_id
      FROM config_history WHERE kind = 'vm_interface')
WHERE {where}
"""

_USERS_USAGE = """
SELECT CAST(NULL AS BIGINT) AS history_id, CAST(NULL AS TIMESTAMP) AS history_datetime,
  CAST(NULL AS UUID) AS user_id, CAST(NULL AS UUID) AS vm_id,
  CAST(NULL AS DOUBLE) AS session_time_in_minutes,
  CAST(NULL AS SMALLINT) AS cpu_usage_percent, CAST(NULL AS SMALLINT) AS max_cpu_usage,
  CAST(NULL AS SMALLINT) AS memory_usage_percent, CAST(NULL AS SMALLINT) AS max_memory_usage,
  CAST(NULL AS SMALLINT) AS user_cpu_usage_percent,
  CAST(NULL AS SMALLINT) AS max_user_cpu_usage_percent,
  CAST(NULL AS SMALLINT) AS system_cpu_usage_percent,
  CAST(NULL AS SMALLINT) AS max_system_cpu_usage_percent,
  CAST(NULL AS VARCHAR) AS vm_ip, CAST(NULL AS VARCHAR) AS vm_client_ip,
  CAST(NULL AS BOOLEAN) AS user_logged_in_to_guest,
  CAST(NULL AS UUID) AS currently_running_on_host,
  CAST(NULL AS BIGINT) AS vm_configuration_version,
  CAST(NULL AS BIGINT) AS current_host_configuration_version
WHERE FALSE
"""

_USERS = """
SELECT object_id AS user_id, json_extract_string(config, '$.name') AS first_name,
  json_extract_string(config, '$.last_name') AS last_name,
  json_extract_string(config, '$.domain') AS domain,
  json_extract_string(config, '$.user_name') AS username,
  CAST(NULL AS VARCHAR) AS department, CAST(NULL AS VARCHAR) AS user_role_title,
  json_extract_string(config, '$.email') AS email,
  json_extract_string(config, '$.principal') AS external_id, TRUE AS active,
  create_date, CASE WHEN history_id > first_id THEN valid_from END AS update_date,
  CASE WHEN deleted THEN valid_to END AS delete_date
FROM (SELECT *, min(history_id) OVER (PARTITION BY object_id) AS first_id
      FROM config_history WHERE kind = 'user')
WHERE {where}
"""

_TAGS = """
SELECT history_id, object_id AS tag_id, name AS tag_name, description AS tag_description,
  CAST(NULL AS VARCHAR) AS tag_path, CAST(NULL AS SMALLINT) AS tag_level,
  create_date, CASE WHEN history_id > first_id THEN valid_from END AS update_date,
  CASE WHEN deleted THEN valid_to END AS delete_date
FROM (SELECT *, min(history_id) OVER (PARTITION BY object_id) AS first_id
      FROM config_history WHERE kind = 'tag')
WHERE {where}
"""

_ENTITY_CASE = "CASE e.kind " + " ".join(
    f"WHEN '{k}' THEN {c}" for k, c in ENTITY_TYPE_OF_KIND.items()
)
# Each tag version lists the objects it is attached to (and names its parent tag); a
# relation is an unbroken run of versions that list the same object.
_TAG_RELATIONS = f"""
WITH pairs AS (
  SELECT t.history_id, t.object_id AS parent_id, CAST(o.entity AS UUID) AS entity_id,
    t.valid_from, t.valid_to
  FROM config_history t,
    unnest(CAST(json_extract(t.config, '$.object_ids') AS VARCHAR[])) AS o(entity)
  WHERE t.kind = 'tag'
  UNION ALL
  SELECT history_id, CAST(json_extract_string(config, '$.parent_id') AS UUID), object_id,
    valid_from, valid_to
  FROM config_history WHERE kind = 'tag' AND json_extract_string(config, '$.parent_id')
    IS NOT NULL
), runs AS (
  SELECT *, CASE WHEN lag(valid_to) OVER w = valid_from THEN 0 ELSE 1 END AS starts
  FROM pairs WINDOW w AS (PARTITION BY parent_id, entity_id ORDER BY valid_from)
), islands AS (
  SELECT *, sum(starts) OVER (PARTITION BY parent_id, entity_id ORDER BY valid_from)
    AS island FROM runs
), rel AS (
  SELECT CAST(min(history_id) AS INTEGER) AS history_id, entity_id, parent_id,
    min(valid_from) AS attach_date,
    CASE WHEN bool_or(valid_to IS NULL) THEN NULL ELSE max(valid_to) END AS detach_date
  FROM islands GROUP BY parent_id, entity_id, island
)
SELECT rel.history_id, rel.entity_id,
  CAST({_ENTITY_CASE} END AS SMALLINT) AS entity_type, rel.parent_id, rel.attach_date,
  rel.detach_date
FROM rel JOIN (SELECT DISTINCT object_id, kind FROM config_history) e
  ON e.object_id = rel.entity_id
WHERE e.kind IN ({", ".join(f"'{k}'" for k in ENTITY_TYPE_OF_KIND)})
"""

_CONF_EXCLUDE = "history_id, create_date, update_date, delete_date, valid_from, valid_to"


def _fully_joined_hosts(period: str) -> str:
    rollup = period != "samples"
    mx = (lambda c: f", nic_stats.max_{c}") if rollup else (lambda c: "")
    return f"""
SELECT conf.* EXCLUDE ({_CONF_EXCLUDE}),
  conf.create_date AS host_create_date, conf.update_date AS host_update_date,
  conf.delete_date AS host_delete_date,
  stats.* EXCLUDE (history_id, host_id, host_configuration_version, seconds_in_status,
    minutes_in_status),
  stats.seconds_in_status AS host_seconds_in_status,
  stats.minutes_in_status AS host_minutes_in_status,
  nic_conf.host_interface_id, nic_conf.host_interface_name, nic_conf.host_interface_type,
  nic_conf.host_interface_speed_bps, nic_conf.mac_address, nic_conf.logical_network_name,
  nic_conf.ip_address, nic_conf.gateway, nic_conf.bond, nic_conf.bond_name,
  nic_conf.vlan_id, nic_conf.create_date AS host_interface_create_date,
  nic_conf.update_date AS host_interface_update_date,
  nic_conf.delete_date AS host_interface_delete_date,
  nic_stats.receive_rate_percent{mx("receive_rate_percent")},
  nic_stats.transmit_rate_percent{mx("transmit_rate_percent")},
  nic_stats.received_total_byte, nic_stats.transmitted_total_byte,
  nic_stats.received_dropped_total_packets, nic_stats.transmitted_dropped_total_packets
FROM v4_4_configuration_history_hosts AS conf
  LEFT JOIN v4_4_statistics_hosts_resources_usage_{period} AS stats
    ON conf.history_id = stats.host_configuration_version
  LEFT JOIN v4_4_configuration_history_hosts_interfaces AS nic_conf
    ON nic_conf.host_id = conf.host_id
  LEFT JOIN v4_4_statistics_hosts_interfaces_resources_usage_{period} AS nic_stats
    ON nic_conf.host_interface_id = nic_stats.host_interface_id
   AND stats.history_datetime = nic_stats.history_datetime
"""


def _fully_joined_vms(period: str) -> str:
    rollup = period != "samples"
    vm_status = "vm_" if rollup else ""
    nmx = (lambda c: f", nic_stats.max_{c}") if rollup else (lambda c: "")
    dmx = (lambda c: f", disk_stats.max_{c}") if rollup else (lambda c: "")
    disk_measures = ", ".join(
        f"disk_stats.{c}{dmx(c)}"
        for c in (
            "read_rate_bytes_per_second",
            "read_ops_per_second",
            "read_latency_seconds",
            "write_rate_bytes_per_second",
            "write_ops_per_second",
            "write_latency_seconds",
            "flush_latency_seconds",
        )
    )
    return f"""
SELECT conf.* EXCLUDE ({_CONF_EXCLUDE}),
  conf.create_date AS vm_create_date, conf.update_date AS vm_update_date,
  conf.delete_date AS vm_delete_date,
  stats.* EXCLUDE (history_id, vm_id, vm_configuration_version, seconds_in_status,
    minutes_in_status),
  stats.seconds_in_status AS {vm_status}seconds_in_status,
  stats.minutes_in_status AS {vm_status}minutes_in_status,
  device_conf.device_id, device_conf.type AS device_type, device_conf.address,
  device_conf.is_managed, device_conf.is_plugged, device_conf.is_readonly,
  device_conf.create_date AS device_create_date,
  device_conf.update_date AS device_update_date,
  device_conf.delete_date AS device_delete_date,
  nic_conf.vm_interface_id, nic_conf.vm_interface_name, nic_conf.vm_interface_type,
  nic_conf.vm_interface_speed_bps, nic_conf.mac_address, nic_conf.logical_network_name,
  nic_conf.create_date AS vm_interface_create_date,
  nic_conf.update_date AS vm_interface_update_date,
  nic_conf.delete_date AS vm_interface_delete_date,
  nic_stats.receive_rate_percent{nmx("receive_rate_percent")},
  nic_stats.transmit_rate_percent{nmx("transmit_rate_percent")},
  nic_stats.received_total_byte, nic_stats.transmitted_total_byte,
  nic_stats.received_dropped_total_packets, nic_stats.transmitted_dropped_total_packets,
  disk_conf.vm_disk_id, disk_conf.vm_disk_name, disk_conf.vm_disk_description,
  disk_conf.storage_domain_id, disk_conf.vm_disk_size_mb, disk_conf.vm_disk_type,
  disk_conf.vm_disk_format, disk_conf.is_shared,
  disk_conf.create_date AS vm_disk_create_date,
  disk_conf.update_date AS vm_disk_update_date,
  disk_conf.delete_date AS vm_disk_delete_date,
  disk_stats.vm_disk_status, disk_stats.seconds_in_status AS vm_disk_seconds_in_status,
  disk_stats.minutes_in_status AS vm_disk_minutes_in_status,
  disk_stats.vm_disk_actual_size_mb, {disk_measures}
FROM v4_4_configuration_history_vms AS conf
  LEFT JOIN v4_4_statistics_vms_resources_usage_{period} AS stats
    ON conf.history_id = stats.vm_configuration_version
  LEFT JOIN v4_4_configuration_history_vms_devices AS device_conf
    ON conf.history_id = device_conf.vm_configuration_version
  LEFT JOIN v4_4_configuration_history_vms_disks AS disk_conf
    ON device_conf.device_configuration_version = disk_conf.history_id
  LEFT JOIN v4_4_configuration_history_vms_interfaces AS nic_conf
    ON device_conf.device_configuration_version = nic_conf.history_id
  LEFT JOIN v4_4_statistics_vms_interfaces_resources_usage_{period} AS nic_stats
    ON nic_conf.history_id = nic_stats.vm_interface_configuration_version
   AND stats.history_datetime = nic_stats.history_datetime
  LEFT JOIN v4_4_statistics_vms_disks_resources_usage_{period} AS disk_stats
    ON disk_conf.history_id = disk_stats.vm_disk_configuration_version
   AND stats.history_datetime = disk_stats.history_datetime
"""


def views_ddl() -> list[str]:
    """CREATE OR REPLACE VIEW statements; they follow ``schema.views_ddl()``'s views."""
    delete = ",\n  CAST(NULL AS TIMESTAMP) AS delete_date"
    dev_delete = ",\n  CASE WHEN deleted THEN valid_to END AS delete_date"
    views = {
        "map_history_datacenters_storage_domains": _MAP_DC_SD,
        "latest_map_datacenters_storage_domains": "SELECT history_id, storage_domain_id, "
        "datacenter_id, attach_date FROM v4_4_map_history_datacenters_storage_domains "
        "WHERE detach_date IS NULL",
        "configuration_history_hosts_interfaces": _HOST_NICS.format(delete=delete),
        "latest_configuration_hosts_interfaces": _HOST_NICS.format(delete=""),
        "configuration_history_vms_devices": _VM_DEVICES.format(delete=dev_delete, where="TRUE"),
        "latest_configuration_vms_devices": _VM_DEVICES.format(
            delete="", where="valid_to IS NULL AND NOT deleted"
        ),
        "statistics_vms_users_usage_hourly": _USERS_USAGE,
        "statistics_vms_users_usage_daily": _USERS_USAGE,
        "users_details_history": _USERS.format(where="TRUE"),
        "latest_users_details": _USERS.format(where="valid_to IS NULL AND NOT deleted"),
        "tags_relations_history": _TAG_RELATIONS,
        "latest_tags_relations": "SELECT * FROM v4_4_tags_relations_history "
        "WHERE detach_date IS NULL",
        "tags_details_history": _TAGS.format(where="TRUE"),
        "latest_tags_details": _TAGS.format(where="valid_to IS NULL AND NOT deleted"),
    }
    for period in ("samples", "hourly", "daily"):
        views[f"fully_joined_statistics_hosts_resources_usage_{period}"] = _fully_joined_hosts(
            period
        )
        views[f"fully_joined_statistics_vms_resources_usage_{period}"] = _fully_joined_vms(period)
    return [f"CREATE OR REPLACE VIEW v4_4_{name} AS {sql}" for name, sql in views.items()]
