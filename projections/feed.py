"""The event and audit feed: oVirt-style events (``GET /events``) derived from the log.

Each log event becomes (at most) one feed entry with a monotonic index, an oVirt
``AuditLogType`` code, a severity (normal / warning / error / alert), a readable
description built from the event and the names of the objects around it, the time,
user, correlation id, and the related vm / host / cluster / data center / storage
domain / template ids and names.

The mapping is table-driven, most specific first:

1. ``TOPIC_RULES[topic]``                 one event type
2. ``COMMAND_RULES[(command, kind)]``     the command that caused it (``meta.command``)
3. ``STATUS_RULES[(kind, status)]``       an update event that sets ``status``
4. ``ACTION_CODES[(kind, action)]``       add / update / remove of any aggregate
5. a generic fallback                     "<Label> <name> was <changed> by <user>."

so an event type nobody has described yet still shows up sensibly. Codes not in
oVirt use Orrery's range 100000-100099 (documented below).

Folding (oVirt's ``event_flood_in_sec`` = 30): an entry identical to one written less
than 30 s earlier (same code, object, description and user) is folded into it
(``repeat_count`` + 1, ``last_time``). Events of one command on one object with the
same code share one entry whose description follows the latest event (so "started"
gains its host once the scheduler has placed the VM).
"""

from __future__ import annotations

import re
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID

from domain.engine import Engine
from projections.db import ViewDB
from projections.engine_view import object_name, parent_ids
from projections.runner import Change, Projection

FOLD_SECONDS = 30
SEVERITIES = ("normal", "warning", "error", "alert")

# Orrery's own codes (not in oVirt's AuditLogType).
ORRERY_GENERIC = 100000  # an event no rule describes
ORRERY_ADDED = 100001  # an object of a kind without an oVirt "add" code was added
ORRERY_UPDATED = 100002
ORRERY_REMOVED = 100003
ORRERY_STATUS = 100004  # a status change without an oVirt code
ORRERY_POOL_VM_REVERTED = 100005  # an automatic pool restores a VM it took back
ORRERY_EVENT_HIDDEN = 100006  # an entry was removed from the event list (DELETE /events/N)
ORRERY_USER_LOCKED = 100007  # an account locked after failed logins
ORRERY_USER_UNLOCKED = 100008


@dataclass(frozen=True)
class Rule:
    code: int
    severity: str
    text: str  # str.format template; see _Fields for the names


_BY = "{label} {name} was {verb}{by}."

# (kind, action) -> oVirt AuditLogType code. Values from ovirt-engine AuditLogType.java.
ACTION_CODES: dict[tuple[str, str], int] = {
    ("vm", "add"): 34,  # USER_ADD_VM
    ("vm", "update"): 35,  # USER_UPDATE_VM
    ("vm", "remove"): 113,  # USER_REMOVE_VM_FINISHED
    ("host", "add"): 42,  # USER_ADD_VDS
    ("host", "update"): 43,  # USER_UPDATE_VDS
    ("host", "remove"): 44,  # USER_REMOVE_VDS
    ("cluster", "add"): 809,  # USER_ADD_CLUSTER (USER_ADD_VDS_GROUP)
    ("cluster", "update"): 811,
    ("cluster", "remove"): 813,
    ("data_center", "add"): 950,  # USER_ADD_STORAGE_POOL
    ("data_center", "update"): 952,
    ("data_center", "remove"): 954,
    ("storage_domain", "add"): 956,  # USER_ADD_STORAGE_DOMAIN
    ("storage_domain", "update"): 958,
    ("storage_domain", "remove"): 960,
    ("network", "add"): 942,  # NETWORK_ADD_NETWORK
    ("network", "update"): 1114,  # NETWORK_UPDATE_NETWORK
    ("network", "remove"): 944,
    ("template", "add"): 48,  # USER_ADD_VM_TEMPLATE
    ("template", "update"): 49,
    ("template", "remove"): 50,
    ("disk", "add"): 2020,  # USER_ADD_DISK
    ("disk", "update"): 88,  # USER_UPDATE_VM_DISK
    ("disk", "remove"): 2012,  # USER_REMOVE_DISK
    ("vm_pool", "add"): 300,  # USER_ADD_VM_POOL
    ("vm_pool", "update"): 314,
    ("vm_pool", "remove"): 304,
    ("role", "add"): 854,  # USER_ADD_ROLE
    ("role", "update"): 856,
    ("role", "remove"): 858,
    ("permission", "add"): 850,  # USER_ADD_PERMISSION
    ("permission", "remove"): 852,
    ("tag", "add"): 432,  # USER_ADD_TAG
    ("tag", "update"): 430,
    ("tag", "remove"): 434,
    ("quota", "add"): 3000,  # USER_ADD_QUOTA
    ("quota", "update"): 3002,
    ("quota", "remove"): 3004,
    ("user", "add"): 149,  # USER_ADD
    ("user", "remove"): 325,  # USER_REMOVE_ADUSER
}

# Event types of domain/vm.py and domain/host.py, with oVirt's codes and wording.
TOPIC_RULES: dict[str, Rule] = {
    "EventHidden": Rule(
        ORRERY_EVENT_HIDDEN, "normal", "Event {position} was removed from the event list{by}."
    ),
    "VmStartRequested": Rule(150, "normal", "Starting VM {vm} was initiated by {user}."),
    "VmScheduled": Rule(32, "normal", "VM {vm} was started by {user}{on_host}."),
    "VmShutdownRequested": Rule(
        73, "normal", "VM shutdown initiated by {user} on VM {vm}{on_host}."
    ),
    "VmStopRequested": Rule(33, "normal", "VM {vm} powered off by {user}{on_host}."),
    "VmSavedStateDiscarded": Rule(
        111, "normal", "Suspended VM {vm} has had its save state cleared by {user}."
    ),
    "VmRebootRequested": Rule(157, "normal", "VM {vm} is rebooting, initiated by {user}."),
    "VmPauseRequested": Rule(39, "normal", "VM {vm} was paused by {user}{on_host}."),
    "VmResumeRequested": Rule(40, "normal", "VM {vm} was resumed by {user}{on_host}."),
    "VmSuspendRequested": Rule(
        501, "normal", "Suspending VM {vm} was initiated by User {user}{on_host}."
    ),
    "VmMigrationStarted": Rule(
        62,
        "normal",
        "Migration started (VM: {vm}, Source: {source_host}, "
        "Destination: {destination_host}, User: {user}).",
    ),
    "VmMigrated": Rule(
        63,
        "normal",
        "Migration completed (VM: {vm}, Source: {source_host}, "
        "Destination: {destination_host}, Downtime: {downtime_ms} ms).",
    ),
    "VmMigrationFailed": Rule(65, "error", "Migration failed (VM: {vm}, Source: {host})."),
    "VmMigrationCanceled": Rule(
        161, "normal", "Migration cancelled (VM: {vm}, Source: {host}, User: {user})."
    ),
    "HostNetworkSetupFailed": Rule(
        519,
        "error",
        "Host {host} does not comply with the cluster {cluster} networks, the following "
        "networks are missing on host: '{networks}' (hostd: {reason}).",
    ),  # VDS_SET_NONOPERATIONAL_NETWORK
    "HostCapabilitiesRefreshed": Rule(
        606, "normal", "Successfully refreshed the capabilities of host {host}."
    ),  # HOST_REFRESHED_CAPABILITIES
    "HostRefreshFailed": Rule(
        607, "error", "Failed to refresh the capabilities of host {host} ({reason})."
    ),  # HOST_REFRESH_CAPABILITIES_FAILED
    "VmHostLost": Rule(142, "warning", "VM {vm} was set to the Unknown status."),
    "VmMarkedDown": Rule(
        143, "warning", "Vm {vm} was shut down due to {host} host reboot or manual fence."
    ),
    "VmSnapshotAdded": Rule(
        45, "normal", "Snapshot creation for VM '{vm}' was initiated by {user}."
    ),
    "VmImagesReady": Rule(53, "normal", "VM {vm} creation has been completed."),
    "VmPoolRevertStarted": Rule(
        ORRERY_POOL_VM_REVERTED,
        "normal",
        "VM {vm} was returned to VM-Pool {pool}; its disks are being restored to the state "
        "of Template {template}.",
    ),
    # Logins (USER_VDC_LOGIN, USER_VDC_LOGIN_FAILED); a flood is one entry with its count.
    "UserLoggedIn": Rule(30, "normal", "User {account} logged in from {source}."),
    "UserLoginFailed": Rule(
        114, "error", "Failed login of User {account} from {source}: {reason} ({count} attempt(s))."
    ),
    "UnknownUserLoginFailed": Rule(
        114,
        "error",
        "Failed login of unknown User {user_name} from {source} ({count} attempt(s)).",
    ),
    "UserLocked": Rule(
        ORRERY_USER_LOCKED,
        "warning",
        "User {account} was locked until {until} after {failures} failed logins.",
    ),
    "UserUnlocked": Rule(ORRERY_USER_UNLOCKED, "normal", "User {account} was unlocked{by}."),
}

COMMAND_RULES: dict[tuple[str, str], Rule] = {
    ("StartVm", "vm"): Rule(32, "normal", "VM {vm} was started by {user} (Host: {host})."),
    ("RunVm", "vm"): Rule(32, "normal", "VM {vm} was started by {user} (Host: {host})."),
    ("StopVm", "vm"): Rule(33, "normal", "VM {vm} powered off by {user} (Host: {host})."),
    ("ShutdownVm", "vm"): Rule(73, "normal", "VM shutdown initiated by {user} on VM {vm}."),
    ("SuspendVm", "vm"): Rule(501, "normal", "Suspending VM {vm} was initiated by {user}."),
    ("PauseVm", "vm"): Rule(39, "normal", "VM {vm} was paused by {user} (Host: {host})."),
    ("MigrateVm", "vm"): Rule(
        62, "normal", "Migration started (VM: {vm}, Source: {host}, User: {user})."
    ),
    ("AddVmSnapshot", "vm"): Rule(
        45, "normal", "Snapshot '{description}' creation for VM '{vm}' was initiated by {user}."
    ),
    ("ActivateHost", "host"): Rule(16, "normal", "Host {host} was activated by {user}."),
    ("DeactivateHost", "host"): Rule(
        601, "normal", "Host {host} was switched to Maintenance mode by {user}."
    ),  # USER_VDS_MAINTENANCE_WITHOUT_REASON
}

# A command's entry when its event carries a reason (``status_detail``).
REASON_RULES: dict[tuple[str, str], Rule] = {
    ("DeactivateHost", "host"): Rule(
        600,
        "normal",
        "Host {host} was switched to Maintenance mode by {user} (reason: {status_detail}).",
    ),  # USER_VDS_MAINTENANCE
}

STATUS_RULES: dict[tuple[str, str], Rule] = {
    ("vm", "down"): Rule(61, "normal", "VM {vm} is down."),  # VM_DOWN
    ("vm", "up"): Rule(32, "normal", "VM {vm} started on Host {host}"),  # USER_RUN_VM
    ("vm", "migrating"): Rule(62, "normal", "Migration started (VM: {vm}, Source: {host})."),
    ("vm", "not_responding"): Rule(126, "warning", "VM {vm} is not responding."),
    ("vm", "unknown"): Rule(142, "warning", "VM {vm} was set to the Unknown status."),
    ("vm", "paused"): Rule(
        139, "error", "VM {vm} has been paused due to unknown storage error."
    ),  # VM_PAUSED_ERROR
    ("host", "up"): Rule(13, "normal", "Status of host {host} was set to Up."),  # VDS_DETECTED
    ("host", "maintenance"): Rule(15, "normal", "Host {host} was switched to Maintenance Mode."),
    ("host", "non_responsive"): Rule(12, "error", "Host {host} is non responsive."),  # VDS_FAILURE
    ("host", "non_operational"): Rule(
        517, "error", "Host {host} moved to Non-Operational state."
    ),  # VDS_SET_NONOPERATIONAL
    ("host", "install_failed"): Rule(505, "error", "Host {host} installation failed."),
    ("host", "error"): Rule(
        500, "error", "Host {host} will be switched to Error status."
    ),  # VDS_FAILED_TO_RUN_VMS
    ("storage_domain", "active"): Rule(
        966, "normal", "Storage Domain {sd} (Data Center {dc}) was activated{by}."
    ),
    ("storage_domain", "maintenance"): Rule(
        968, "normal", "Storage Domain {sd} (Data Center {dc}) was deactivated{by}."
    ),
    ("storage_domain", "inactive"): Rule(
        970, "warning", "Storage Domain {sd} (Data Center {dc}) was deactivated by system."
    ),
    ("data_center", "non_responsive"): Rule(
        986,
        "alert",
        "Data Center {dc} is Non Responsive; searching for a new Storage Pool Manager.",
    ),
}

# Statuses that are bad news even without a rule of their own.
_BAD = {
    "non_responsive": "error",
    "not_responding": "warning",
    "non_operational": "error",
    "error": "error",
    "install_failed": "error",
    "unknown": "warning",
    "inactive": "warning",
    "not_operational": "error",
}

_WORDS = re.compile(r"[A-Z]+(?=[A-Z][a-z])|[A-Z]?[a-z0-9]+|[A-Z]+")


def topic_phrase(topic: str, obj_cls: type | None) -> str:
    """'VmStartRequested' on a Vm -> 'start requested' (cached per topic and class)."""
    key = (topic, obj_cls)
    phrase = _PHRASES.get(key)
    if phrase is None:
        phrase = _PHRASES[key] = _topic_phrase(topic, obj_cls)
    return phrase


_PHRASES: dict[tuple[str, type | None], str] = {}


def _topic_phrase(topic: str, obj_cls: type | None) -> str:
    base = topic.split("/", 1)[0]
    prefixes = []
    if obj_cls is not None:
        prefixes = [obj_cls.__name__, str(getattr(obj_cls, "LABEL", "")).replace(" ", "")]
        kind = str(getattr(obj_cls, "KIND", ""))
        prefixes.append("".join(p.capitalize() for p in kind.split("_")))
    for p in sorted(filter(None, prefixes), key=len, reverse=True):
        if base.startswith(p) and len(base) > len(p):
            base = base[len(p) :]
            break
    return " ".join(w.lower() for w in _WORDS.findall(base)) or base.lower()


class _Fields(dict):
    def __missing__(self, key: str) -> str:
        return "N/A"


def _render(text: str, fields: dict[str, Any]) -> str:
    # str.format_map: the C formatter (string.Formatter.vformat is pure Python, ~20 %
    # of a feed catch-up); the same result, missing names through ``__missing__``.
    try:
        return text.format_map(_Fields(fields))
    except (IndexError, ValueError, AttributeError, KeyError):
        return text


def _name_of(engine: Engine, oid: Any) -> str | None:
    if oid is None:
        return None
    return object_name(engine.objects.get(oid))


FEED_COLUMNS = (
    "id",
    "position",
    "first_position",
    "code",
    "severity",
    "description",
    "time",
    "last_time",
    "repeat_count",
    "user_name",
    "user_id",
    "correlation_id",
    "command",
    "command_id",
    "topic",
    "object_kind",
    "object_id",
    "object_name",
    "vm_id",
    "vm_name",
    "host_id",
    "host_name",
    "cluster_id",
    "cluster_name",
    "data_center_id",
    "data_center_name",
    "storage_domain_id",
    "storage_domain_name",
    "template_id",
    "template_name",
)
_RELATED = ("vm", "host", "cluster", "data_center", "storage_domain", "template")


def describe(change: Change, engine: Engine) -> dict[str, Any] | None:
    """The feed entry for one change (without index), or None for no entry."""
    ev = change.event
    obj = change.after if change.after is not None else change.before
    if obj is None:
        return None
    cls = type(obj)
    kind = cls.KIND
    meta = ev.meta
    user = meta.actor
    payload = ev.payload()
    related: dict[str, Any] = {k: None for k in _RELATED}
    par = parent_ids(obj, engine)
    related["data_center"] = par["data_center_id"]
    related["cluster"] = par["cluster_id"]
    related["storage_domain"] = par["storage_domain_id"]
    related["template"] = par["template_id"]
    related["host"] = (
        payload.get("host_id")
        or par["host_id"]
        or getattr(obj, "placement_host_id", None)
        or getattr(change.before, "run_on_host_id", None)
    )
    if kind in related:
        related[kind] = obj.id
    names = {k: _name_of(engine, v) for k, v in related.items()}
    if kind in names:
        names[kind] = object_name(obj)
    name = object_name(obj) or str(obj.id)
    if ev.CREATES is not None:
        action = "add"
    elif ev.DELETES:
        action = "remove"
    else:
        action = "update"
    status = payload.get("status")
    status_s = str(status) if status is not None else None
    phrase = topic_phrase(ev.TOPIC, cls)
    ref_names = {}
    for k, v in payload.items():
        # "source_host_id" -> "source_host": the referenced object's name.
        if k.endswith("_id") and isinstance(v, UUID):
            ref = _name_of(engine, v)
            if ref is not None:
                ref_names[k[:-3]] = ref
    fields = {
        **{k: (str(v) if v is not None else "N/A") for k, v in payload.items()},
        **ref_names,
        "label": cls.LABEL,
        "name": name,
        "account": getattr(obj, "user_name", None) or name,  # a user's login name
        "user": user or "SYSTEM",
        "by": f" by {user}" if user else "",
        "vm": names["vm"] or "N/A",
        "host": names["host"] or "N/A",
        "cluster": names["cluster"] or "N/A",
        "dc": names["data_center"] or "N/A",
        "sd": names["storage_domain"] or "N/A",
        "template": names["template"] or "N/A",
        "status": status_s or "N/A",
        "command": meta.command or "N/A",
        "verb": "",
        "on_host": f" (Host: {names['host']})" if names["host"] else "",
    }
    rule = TOPIC_RULES.get(ev.TOPIC)
    if rule is None and meta.command:
        rule = COMMAND_RULES.get((meta.command, kind))
        if rule is not None and payload.get("status_detail"):
            rule = REASON_RULES.get((meta.command, kind), rule)
    if rule is None and status_s is not None and action == "update":
        rule = STATUS_RULES.get((kind, status_s))
        if rule is None:
            sev = _BAD.get(status_s, "normal")
            rule = Rule(ORRERY_STATUS, sev, "Status of {label} {name} was set to {status}{by}.")
    if rule is None:
        code = ACTION_CODES.get((kind, action))
        if action == "add":
            verb = "added"
        elif action == "remove":
            verb = "removed"
        elif phrase in ("updated", "changed", "edited", "modified"):
            verb = "updated"
        elif phrase.split(" ", 1)[0].endswith(("ed", "en")):
            verb = phrase  # "attached to cluster", "started", "taken"
        else:
            verb = f"changed ({phrase})"
            code = None
        if code is None:
            code = {"add": ORRERY_ADDED, "remove": ORRERY_REMOVED}.get(action, ORRERY_GENERIC)
            if action == "update" and verb == "updated":
                code = ORRERY_UPDATED
        fields["verb"] = verb
        rule = Rule(code, "normal", _BY)
    out: dict[str, Any] = {
        "code": rule.code,
        "severity": rule.severity if rule.severity in SEVERITIES else "normal",
        "description": _render(rule.text, fields),
        "time": ev.timestamp.isoformat(),
        "user_name": user,
        "user_id": str(meta.actor_id) if meta.actor_id else None,
        "correlation_id": meta.correlation_id,
        "command": meta.command,
        "command_id": meta.command_id,
        "topic": ev.TOPIC,
        "object_kind": kind,
        "object_id": str(obj.id),
        "object_name": object_name(obj),
    }
    for k in _RELATED:
        out[f"{k}_id"] = str(related[k]) if related[k] is not None else None
        out[f"{k}_name"] = names[k]
    return out


class AuditFeed(Projection):
    name = "audit_feed"
    tables = ("events",)
    digest_order = {"events": "id"}

    def __init__(self) -> None:
        super().__init__()
        self._next = 1
        self._new: dict[int, dict[str, Any]] = {}
        self._changed: dict[int, dict[str, Any]] = {}
        # fold key -> (entry id, last time, the entry); bounded.
        self._recent: OrderedDict[tuple[Any, ...], tuple[int, datetime, dict[str, Any]]] = (
            OrderedDict()
        )
        self._entries: OrderedDict[int, dict[str, Any]] = OrderedDict()
        self._by_command: OrderedDict[tuple[Any, ...], int] = OrderedDict()

    def create_tables(self, db: ViewDB) -> None:
        ints = {"id", "position", "first_position", "code", "repeat_count"}
        cols = ", ".join(
            f"{c} {'BIGINT' if c in ints else 'TEXT'}{' PRIMARY KEY' if c == 'id' else ''}"
            for c in FEED_COLUMNS
        )
        db.execute(f"CREATE TABLE IF NOT EXISTS {{events}} ({cols})")
        b = db.bare
        db.execute(f'CREATE INDEX IF NOT EXISTS "{b("events_object")}" ON {{events}} (object_id)')
        db.execute(f'CREATE INDEX IF NOT EXISTS "{b("events_time")}" ON {{events}} (time)')

    def load(self, db: ViewDB) -> None:
        self._new, self._changed = {}, {}
        self._recent.clear()
        self._entries.clear()
        self._by_command.clear()
        rows = db.query("SELECT MAX(id) FROM {events}")
        self._next = int(rows[0][0] or 0) + 1
        # Entries of the last fold window can still absorb repeats.
        last = db.query(
            f"SELECT {', '.join(FEED_COLUMNS)} FROM {{events}} ORDER BY id DESC LIMIT 500"
        )
        for row in reversed(last):
            entry = dict(zip(FEED_COLUMNS, row, strict=True))
            entry = {k: (int(v) if k in _INTS and v is not None else v) for k, v in entry.items()}
            self._remember(entry)

    def _remember(self, entry: dict[str, Any]) -> None:
        key = _fold_key(entry)
        self._recent[key] = (entry["id"], _ts(entry["last_time"]), entry)
        self._recent.move_to_end(key)
        if len(self._recent) > 5000:
            self._recent.popitem(last=False)
        self._entries[entry["id"]] = entry
        self._entries.move_to_end(entry["id"])
        if len(self._entries) > 5000:
            self._entries.popitem(last=False)
        if entry.get("command_id"):
            ck = (entry["command_id"], entry["object_id"], entry["code"])
            self._by_command[ck] = entry["id"]
            if len(self._by_command) > 5000:
                self._by_command.popitem(last=False)

    def _touch(self, entry: dict[str, Any]) -> None:
        if entry["id"] not in self._new:
            self._changed[entry["id"]] = entry

    def observe(self, change: Change, engine: Engine) -> None:
        d = describe(change, engine)
        if d is None:
            return
        when = change.event.timestamp
        # Events of one command on one object with one code share an entry.
        if d["command_id"]:
            eid = self._by_command.get((d["command_id"], d["object_id"], d["code"]))
            if eid is not None:
                entry = self._entry(eid)
                if entry is not None:
                    old_key = _fold_key(entry)
                    entry.update(description=d["description"], position=change.position)
                    for k in FEED_COLUMNS:
                        if k.endswith(("_id", "_name")) and d.get(k) is not None:
                            entry[k] = d[k]
                    entry["last_time"] = d["time"]
                    self._recent.pop(old_key, None)
                    self._remember(entry)
                    self._touch(entry)
                    return
        key = _fold_key(d)
        hit = self._recent.get(key)
        if hit is not None and when - hit[1] < timedelta(seconds=FOLD_SECONDS):
            entry = hit[2]
            entry["repeat_count"] += 1
            entry["last_time"] = d["time"]
            entry["position"] = change.position
            self._remember(entry)
            self._touch(entry)
            return
        entry = {
            **d,
            "id": self._next,
            "position": change.position,
            "first_position": change.position,
            "last_time": d["time"],
            "repeat_count": 1,
        }
        self._next += 1
        self._new[entry["id"]] = entry
        self._remember(entry)

    def _entry(self, eid: int) -> dict[str, Any] | None:
        return self._new.get(eid) or self._entries.get(eid)

    def prepare(self) -> Callable[[ViewDB], None]:
        new, changed = self._new, self._changed
        self._new, self._changed = {}, {}
        # Copy the values now: the entries stay mutable (folding) for later batches.
        upd = [c for c in FEED_COLUMNS if c != "id"]
        inserts = [tuple(e[c] for c in FEED_COLUMNS) for e in new.values()]
        updates = [(*(e[c] for c in upd), e["id"]) for e in changed.values()]

        def write(db: ViewDB) -> None:
            if inserts:
                cols = ", ".join(FEED_COLUMNS)
                marks = ", ".join("?" for _ in FEED_COLUMNS)
                db.executemany(f"INSERT INTO {{events}} ({cols}) VALUES ({marks})", inserts)
            if updates:
                sets = ", ".join(f"{c} = ?" for c in upd)
                db.executemany(f"UPDATE {{events}} SET {sets} WHERE id = ?", updates)

        return write


_INTS = {"id", "position", "first_position", "code", "repeat_count"}


def _fold_key(e: dict[str, Any]) -> tuple[Any, ...]:
    return (e["code"], e["object_id"], e["description"], e["user_name"])


def _utc_text(when: datetime | str) -> str:
    if isinstance(when, str):
        t = when.strip()
        when = datetime.fromisoformat(t[:-1] + "+00:00" if t.endswith(("Z", "z")) else t)
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return when.astimezone(UTC).isoformat()


def _ts(text: str) -> datetime:
    return datetime.fromisoformat(text)


# -- reading --------------------------------------------------------------------------
FEED_FILTERS = (
    "code",
    "severity",
    "user_name",
    "correlation_id",
    "object_id",
    "vm_id",
    "host_id",
    "cluster_id",
    "data_center_id",
    "storage_domain_id",
    "template_id",
    "object_kind",
)


def list_events(
    db: ViewDB,
    *,
    from_: int | None = None,
    max: int | None = 100,
    since: datetime | str | None = None,
    until: datetime | str | None = None,
    descending: bool = False,
    **filters: Any,
) -> list[dict[str, Any]]:
    """Feed entries with index > ``from_`` (oVirt's ``from``), oldest first unless
    ``descending``; filters are exact matches on FEED_FILTERS columns, and
    ``since``/``until`` bound the time (ISO-8601 or datetime)."""
    clauses, params = [], []
    if from_ is not None:
        clauses.append("id > ?")
        params.append(int(from_))
    for k, v in filters.items():
        if v is None:
            continue
        if k not in FEED_FILTERS:
            raise ValueError(f"unknown event filter {k!r}")
        if k == "code":
            v = int(v)
        elif isinstance(v, UUID):
            v = str(v)
        clauses.append(f"{k} = ?")
        params.append(v)
    # Stored times are UTC isoformat, which sorts as text once both sides share it.
    if since is not None:
        clauses.append("last_time >= ?")
        params.append(_utc_text(since))
    if until is not None:
        clauses.append("time <= ?")
        params.append(_utc_text(until))
    sql = f"SELECT {', '.join(FEED_COLUMNS)} FROM {{events}}"
    if clauses:
        sql += " WHERE " + " AND ".join(clauses)
    sql += " ORDER BY id" + (" DESC" if descending else "")
    if max is not None:
        sql += " LIMIT ?"
        params.append(int(max))
    out = []
    for row in db.query(sql, params):
        e = dict(zip(FEED_COLUMNS, row, strict=True))
        for k in _INTS:
            if e[k] is not None:
                e[k] = int(e[k])
        out.append(e)
    return out
