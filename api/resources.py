"""The API's collections as declarations: element names, fields, sub-collections, and the
commands that add, update, remove and act on them.

A ``Resource`` names its REST path (``datacenters``), its XML/JSON element (``data_center``),
the aggregate class it shows (by class name, so an area that has not landed yet is simply
absent), how each field renders (``fields``), and ``Input`` mappings from request bodies to
command classes (by command name). Adding an area is adding one declaration below.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from datetime import datetime
from typing import Any
from uuid import UUID

import msgspec

from api.faults import ApiError, bad_request, not_found
from api.telemetry import HOST_NIC_FIELDS, STATISTIC_FIELDS, host_nic_items, statistics_items

BASE = "/ovirt-engine/api"
MISSING: Any = msgspec.UNSET
BLANK_TEMPLATE_ID = "00000000-0000-0000-0000-000000000000"

# -- reading request bodies ---------------------------------------------------------


def dig(body: Any, path: str) -> Any:
    cur = body
    for part in path.split("."):
        if not isinstance(cur, dict) or part not in cur:
            return MISSING
        cur = cur[part]
    return cur


def text(path: str) -> Callable[[Any, Any], Any]:
    def get(body: Any, env: Any) -> Any:
        v = dig(body, path)
        if isinstance(v, dict):
            v = v.get("$text", MISSING)
        if isinstance(v, list):
            raise bad_request(f"Element '{path}' given more than once.", path)
        return v

    get.path = path  # type: ignore[attr-defined]
    return get


def flag(path: str) -> Callable[[Any, Any], Any]:
    def get(body: Any, env: Any) -> Any:
        v = text(path)(body, env)
        if v is MISSING:
            return v
        low = str(v).strip().lower()
        if low in ("true", "1"):
            return True
        if low in ("false", "0"):
            return False
        raise bad_request(f"Invalid value '{v}' of '{path}': expected true or false.", path)

    get.path = path  # type: ignore[attr-defined]
    return get


def number(path: str) -> Callable[[Any, Any], Any]:
    def get(body: Any, env: Any) -> Any:
        v = text(path)(body, env)
        if v is MISSING:
            return v
        try:
            return int(str(v).strip())
        except ValueError:
            raise bad_request(
                f"Invalid value '{v}' of '{path}': expected an integer.", path
            ) from None

    get.path = path  # type: ignore[attr-defined]
    return get


def ref(path: str, resource: str) -> Callable[[Any, Any], Any]:
    """A reference given as <path id=".."/> or <path><name>..</name></path>."""

    def get(body: Any, env: Any) -> Any:
        v = dig(body, path)
        if v is MISSING or v == "":
            return MISSING
        if not isinstance(v, dict):
            raise bad_request(f"Element '{path}' must carry an id or a name.", path)
        res = RESOURCES[resource]
        if v.get("id"):
            oid = parse_id(v["id"], path)
            if res.cls and env.reads.get(res.cls, oid) is None:
                raise not_found(f"Entity not found: {res.label}: id={oid}")
            return oid
        name = v.get("name")
        if isinstance(name, str) and name:
            obj = env.reads.by_name(res.cls, name) if res.cls else None
            if obj is None:
                raise not_found(f"Entity not found: {res.label}: name={name}")
            return obj.id
        raise bad_request(f"Element '{path}' must carry an id or a name.", path)

    get.path = path  # type: ignore[attr-defined]
    return get


def ident(path: str) -> Callable[[Any, Any], Any]:
    """The id of <path id=".."/> (or <path><id>..</id></path>) as a UUID."""

    def get(body: Any, env: Any) -> Any:
        v = dig(body, path)
        if v is MISSING or v == "":
            return MISSING
        raw = v.get("id") if isinstance(v, dict) else v
        if not raw:
            raise bad_request(f"Element '{path}' must carry an id.", path)
        return parse_id(raw, path)

    get.path = path  # type: ignore[attr-defined]
    return get


def first_of(*extractors: Callable[[Any, Any], Any]) -> Callable[[Any, Any], Any]:
    """The first extractor that finds something (``alias``, else ``name``)."""

    def get(body: Any, env: Any) -> Any:
        for ex in extractors:
            v = ex(body, env)
            if v is not MISSING:
                return v
        return MISSING

    get.path = getattr(extractors[0], "path", "")  # type: ignore[attr-defined]
    return get


def current_user(body: Any, env: Any) -> Any:
    return env.user_id if env.user_id is not None else MISSING


def version_in(path: str) -> Callable[[Any, Any], Any]:
    def get(body: Any, env: Any) -> Any:
        v = dig(body, path)
        if v is MISSING:
            return v
        if isinstance(v, dict):
            major, minor = v.get("major", ""), v.get("minor", "")
            if not all(str(v).isascii() and str(v).isdigit() for v in (major, minor)):
                raise bad_request(f"Element '{path}' needs integer major and minor.", path)
            return f"{int(major)}.{int(minor)}"
        return v

    get.path = path  # type: ignore[attr-defined]
    return get


def listed(path: str, item: str, sub: Callable[[Any, Any], Any]) -> Callable[[Any, Any], Any]:
    """A list <path><item>..</item>...</path>, each item read by ``sub``."""

    def get(body: Any, env: Any) -> Any:
        v = dig(body, path)
        if v is MISSING:
            return v
        if not isinstance(v, dict):
            return []
        items = v.get(item, [])
        if not isinstance(items, list):
            items = [items]
        out = [sub(i, env) for i in items]
        if any(x is MISSING or x is None for x in out):
            raise bad_request(f"Every <{item}> of '{path}' needs a value.", path)
        return out

    get.path = path  # type: ignore[attr-defined]
    return get


def const(value: Any) -> Callable[[Any, Any], Any]:
    return lambda body, env: value


def texts(*paths: str) -> dict[str, Callable[[Any, Any], Any]]:
    """Command fields read as text from the elements of the same names."""
    return {p: text(p) for p in paths}


def flags(*paths: str) -> dict[str, Callable[[Any, Any], Any]]:
    return {p: flag(p) for p in paths}


def numbers(*paths: str) -> dict[str, Callable[[Any, Any], Any]]:
    return {p: number(p) for p in paths}


def parse_id(v: Any, field: str = "id") -> UUID:
    try:
        return UUID(str(v))
    except ValueError:
        raise bad_request(f"Invalid id '{v}' of '{field}'.", field) from None


NOOP = ""  # an action that succeeds without a command


class Input:
    """Turns a request (body, path ids, query) into a command.

    ``fields`` maps command field -> extractor(body, env). ``id_field`` receives the
    object's id from the path, ``parent_field`` the parent's id for sub-collections,
    ``query`` maps command fields to query parameters (``force``, ``async``...).
    """

    def __init__(
        self,
        command: str,
        fields: dict[str, Callable[[Any, Any], Any]] | None = None,
        *,
        id_field: str | None = None,
        parent_field: str | None = None,
        query: dict[str, str] | None = None,
        item_field: str | None = None,
        result: Callable[[Any], dict[str, Any]] | None = None,
        choose: Callable[[Any], Input | None] | None = None,
    ) -> None:
        self.command = command
        self.result = result
        self.choose = choose
        self.fields = fields or {}
        self.id_field = id_field
        self.parent_field = parent_field
        self.item_field = item_field
        self.query = query or {}

    def command_class(self) -> type | None:
        import commands.all  # noqa: F401
        from commands.messages import COMMAND_TYPES

        return COMMAND_TYPES.get(self.command)

    def xml_name(self, field: str | None) -> str | None:
        if field is None:
            return None
        head = field.split(".", 1)[0]
        ex = self.fields.get(head)
        return getattr(ex, "path", None) or field

    def build(
        self,
        body: Any,
        env: Any,
        *,
        obj_id: UUID | None = None,
        parent_id: UUID | None = None,
        item_id: UUID | None = None,
        query: dict[str, str] | None = None,
        extra: dict[str, Any] | None = None,
    ) -> Any:
        from commands.messages import parse_command

        if self.choose is not None:
            other = self.choose(body if isinstance(body, dict) else {})
            if other is not None:
                return other.build(
                    body,
                    env,
                    obj_id=obj_id,
                    parent_id=parent_id,
                    item_id=item_id,
                    query=query,
                    extra=extra,
                )
        if self.command == NOOP:
            return None
        cls = self.command_class()
        if cls is None:
            raise ApiError(405, "Not Supported", f"{self.command} is not available yet.")
        known = set(cls.__struct_fields__)
        data: dict[str, Any] = {}
        for field, ex in self.fields.items():
            if field not in known:
                continue
            v = ex(body if isinstance(body, dict) else {}, env)
            if v is not MISSING:
                data[field] = v
        for field, param in self.query.items():
            if field in known and query and param in query:
                data[field] = query[param].lower() in ("true", "1")
        for field, v in (
            (self.id_field, obj_id),
            (self.parent_field, parent_id),
            (self.item_field, item_id),
        ):
            if field and v is not None and field in known:
                data[field] = v
        for field, v in (extra or {}).items():
            if field in known:
                data[field] = v
        if "actor" in known:
            data["actor"] = env.user_name
            data["actor_id"] = env.user_id
            data["correlation_id"] = env.correlation_id
        from domain.base import InvalidInput

        try:
            return parse_command(cls, data)
        except InvalidInput as e:
            name = self.xml_name(e.field)
            detail = e.message
            if name and e.field and name != e.field:
                detail = detail.replace(f"'{e.field}'", f"'{name}'").replace(
                    f"`{e.field}`", f"`{name}`"
                )
            raise bad_request(detail, name) from None


# -- rendering ------------------------------------------------------------------------


def attr(name: str) -> Callable[[Any], Any]:
    def get(o: Any) -> Any:
        v = getattr(o, name, None)
        if isinstance(v, UUID):
            return str(v)
        if isinstance(v, datetime):
            return v.isoformat()
        return v

    return get


def when(name: str) -> Callable[[Any], Any]:
    def get(o: Any) -> Any:
        v = getattr(o, name, None)
        if v is None or v == "":
            return None
        if isinstance(v, datetime):
            return v.isoformat()
        return str(v)

    return get


def link_to(resource: str, name: str) -> Callable[[Any], Any]:
    def get(o: Any) -> Any:
        v = getattr(o, name, None)
        if v is None:
            return None
        return {"href": f"{BASE}/{resource}/{v}", "id": str(v)}

    return get


def version_of(name: str) -> Callable[[Any], Any]:
    def get(o: Any) -> Any:
        v = getattr(o, name, None)
        if not v:
            return None
        major, _, minor = str(v).partition(".")
        return {"major": major, "minor": minor or "0"}

    return get


def nested(**parts: Callable[[Any], Any]) -> Callable[[Any], Any]:
    def get(o: Any) -> Any:
        d = {k: fn(o) for k, fn in parts.items()}
        d = {k: v for k, v in d.items() if v is not None}
        return d or None

    return get


def fixed(value: Any) -> Callable[[Any], Any]:
    return lambda o: value


def names_list(name: str, outer: str, inner: str) -> Callable[[Any], Any]:
    def get(o: Any) -> Any:
        v = getattr(o, name, None)
        if v is None:
            return None
        return {inner: [str(x) for x in v]}

    return get


def attrs(*names: str) -> list[tuple[str, Callable[[Any], Any]]]:
    """Fields shown as the object's attributes of the same names."""
    return [(n, attr(n)) for n in names]


def links_to(resource: str, tag: str, name: str) -> Callable[[Any], Any]:
    """A one-item list of references, ``{tag: [{href, id}]}``, while ``name`` is set."""
    one = link_to(resource, name)

    def get(o: Any) -> Any:
        return {tag: [one(o)]} if getattr(o, name, None) else None

    return get


class Sub:
    """A sub-collection of an object.

    kind ``child``: another resource's objects whose ``attr`` is the parent's id
    (clusters of a data center); ``embedded``: items held inside the parent aggregate
    (a VM's nics); ``empty``: always an empty list (numanodes while there are none).
    """

    def __init__(
        self,
        path: str,
        kind: str,
        *,
        resource: str | None = None,
        attr: str | None = None,
        tag: str | None = None,
        tags: str | None = None,
        items: Callable[[Any, Any], Iterable[Any]] | None = None,
        fields: list[tuple[str, Callable[[Any], Any]]] | None = None,
        add: Input | None = None,
        update: Input | None = None,
        remove: Input | None = None,
        actions: dict[str, Input] | None = None,
        match: Callable[[Any, Any], bool] | None = None,
    ) -> None:
        self.path = path
        self.kind = kind
        self.resource = resource
        self.attr = attr
        self.tag = tag
        self.tags = tags or path
        self.items = items
        self.fields = fields or []
        self.add = add
        self.update = update
        self.remove = remove
        self.actions = actions or {}
        self.match = match


def child(path: str, attr_name: str, **kw: Any) -> Sub:
    """The objects of resource ``path`` whose ``attr_name`` is the parent's id."""
    return Sub(path, "child", resource=path, attr=attr_name, **kw)


def statistics_sub() -> Sub:
    return Sub(
        "statistics",
        "embedded",
        tag="statistic",
        items=statistics_items,
        fields=STATISTIC_FIELDS,
    )


class Resource:
    def __init__(
        self,
        path: str,
        tag: str,
        cls: str | None,
        fields: list[tuple[str, Callable[[Any], Any]]],
        *,
        tags: str | None = None,
        label: str | None = None,
        add: Input | None = None,
        update: Input | None = None,
        remove: Input | None = None,
        actions: dict[str, Input] | None = None,
        subs: list[Sub] | None = None,
        search: dict[str, Callable[[Any, Any], list[str]]] | None = None,
        searchable: bool = True,
        source: Callable[[Any, Any], list[Any]] | None = None,
        lookup: Callable[[Any, str], Any] | None = None,
        cache: bool = True,
    ) -> None:
        self.path = path
        self.tag = tag
        self.tags = tags or tag + "s"
        self.cls = cls
        self.label = label or tag.replace("_", " ").title()
        self.fields = fields
        self.add = add
        self.update = update
        self.remove = remove
        self.actions = actions or {}
        self.subs = {s.path: s for s in subs or []}
        self.search = search or {}
        self.searchable = searchable
        self.source = source
        self.lookup = lookup
        self.cache = cache and source is None
        self._actions_tpl = (
            "<actions>"
            + "".join(f'<link href="\x00/{v}" rel="{v}"/>' for v in sorted(self.actions))
            + "</actions>"
            if self.actions
            else ""
        )
        self._links_tpl = "".join(f'<link href="\x00/{p}" rel="{p}"/>' for p in self.subs)

    def render_xml(self, obj: Any) -> str:
        """The same as ``xmlio.element(tag, render(obj))``, faster: the action and link
        lists are pre-serialized templates with the object's href spliced in."""
        from api.xmlio import _write

        href = f"{BASE}/{self.path}/{obj.id}"
        tag = self.tag
        out = [f'<{tag} href="{href}" id="{obj.id}">']
        if self._actions_tpl:
            out.append(self._actions_tpl.replace("\x00", href))
        for ftag, fn in self.fields:
            v = fn(obj)
            if v is None:
                continue
            if ftag == "+":
                for k, vv in v.items():
                    _write(k, vv, out)
            else:
                _write(ftag, v, out)
        if self._links_tpl:
            out.append(self._links_tpl.replace("\x00", href))
        out.append(f"</{tag}>")
        return "".join(out)

    def available(self) -> bool:
        if self.source is not None:
            return True
        from api.reads import aggregate_class

        return self.cls is not None and aggregate_class(self.cls) is not None

    def href(self, obj: Any) -> str:
        return f"{BASE}/{self.path}/{obj.id}"

    def render(self, obj: Any) -> dict[str, Any]:
        href = self.href(obj)
        d: dict[str, Any] = {"href": href, "id": str(obj.id)}
        if self.actions:
            d["actions"] = {
                "link": [{"href": f"{href}/{verb}", "rel": verb} for verb in sorted(self.actions)]
            }
        for tag, fn in self.fields:
            v = fn(obj)
            if v is not None:
                if tag == "+":
                    d.update(v)
                else:
                    d[tag] = v
        if self.subs:
            d["link"] = [{"href": f"{href}/{p}", "rel": p} for p in self.subs]
        return d

    # What a search key reads on an object.
    def search_values(self, obj: Any, key: str, reads: Any) -> list[str]:
        fn = self.search.get(key)
        if fn is not None:
            return [str(v) for v in fn(obj, reads)]
        for cand in (key, f"{key}_id"):
            if hasattr(obj, cand):
                v = getattr(obj, cand)
                if cand.endswith("_id") and v is not None:
                    target = reads.any(v)
                    names = [str(v)]
                    if target is not None and hasattr(target, "name"):
                        names.append(target.name)
                    return names
                if isinstance(v, bool):
                    return ["true" if v else "false"]
                if v is None:
                    return []  # no value: matches no pattern (oVirt's NULL)
                if isinstance(v, tuple):
                    return [str(x) for x in v]
                return [str(v)]
        raise bad_request(f"Invalid search key '{key}' for {self.tags}.", "search")


def _ref_name(attr_name: str) -> Callable[[Any, Any], list[str]]:
    def get(o: Any, reads: Any) -> list[str]:
        v = getattr(o, attr_name, None)
        if v is None:
            return []
        t = reads.any(v)
        return [str(v), getattr(t, "name", "")] if t is not None else [str(v)]

    return get


def _dc_of_cluster(o: Any, reads: Any) -> list[str]:
    c = reads.any(getattr(o, "cluster_id", None)) if getattr(o, "cluster_id", None) else None
    dc_id = getattr(o, "data_center_id", None) or getattr(c, "data_center_id", None)
    if dc_id is None:
        if str(o.id) == BLANK_TEMPLATE_ID:  # Blank belongs to every data center
            return [x for d in reads.list("DataCenter") for x in (str(d.id), d.name)]
        return []
    dc = reads.any(dc_id)
    return [str(dc_id), getattr(dc, "name", "")]


# -- the collections ------------------------------------------------------------------

# What adding and updating a data center read (adding also takes an "id").
_DC_INPUT = {
    **texts("name", "description"),
    "local": flag("local"),
    "version": version_in("version"),
    "quota_mode": text("quota_mode"),
}

DC = Resource(
    "datacenters",
    "data_center",
    "DataCenter",
    [
        *attrs("name", "description", "local", "quota_mode", "status"),
        ("storage_format", fixed("v5")),
        ("version", version_of("compatibility_version")),
        (
            "supported_versions",
            fixed({"version": [{"major": "4", "minor": m} for m in "234567"]}),
        ),
    ],
    label="Data Center",
    add=Input("AddDataCenter", {**_DC_INPUT, "id": text("id")}),
    update=Input("UpdateDataCenter", _DC_INPUT, id_field="data_center_id"),
    remove=Input("RemoveDataCenter", id_field="data_center_id", query={"force": "force"}),
    subs=[
        child("clusters", "data_center_id"),
        child("networks", "data_center_id"),
        child(
            "storagedomains",
            "data_center_id",
            add=Input(
                "AttachStorageDomain",
                {"storage_domain_id": ref("", "storagedomains"), "activate": const(True)},
                parent_field="data_center_id",
            ),
            remove=Input(
                "DetachStorageDomain",
                parent_field="data_center_id",
                item_field="storage_domain_id",
                query={"force": "force"},
            ),
            actions={
                "activate": Input(
                    "ActivateStorageDomain",
                    parent_field="data_center_id",
                    item_field="storage_domain_id",
                ),
                "deactivate": Input(
                    "DeactivateStorageDomain",
                    {"force": flag("force")},
                    parent_field="data_center_id",
                    item_field="storage_domain_id",
                ),
            },
        ),
        child("quotas", "data_center_id"),
        child("permissions", "object_id"),
    ],
)

# What adding and updating a cluster read after its name and description.
_CLUSTER_SETTINGS = {
    "cpu_type": text("cpu.type"),
    "memory_overcommit": number("memory_policy.over_commit.percent"),
    "scheduling_policy": text("scheduling_policy.name"),
    "ha_reservation": flag("ha_reservation"),
    "migration_policy": text("migration.policy.id"),
    "version": version_in("version"),
}

CLUSTER = Resource(
    "clusters",
    "cluster",
    "Cluster",
    [
        *attrs("name", "description"),
        ("data_center", link_to("datacenters", "data_center_id")),
        ("cpu", nested(type=attr("cpu_type"), architecture=fixed("x86_64"))),
        (
            "memory_policy",
            nested(
                over_commit=nested(percent=attr("memory_overcommit")),
            ),
        ),
        ("scheduling_policy", nested(name=attr("scheduling_policy"))),
        ("migration", nested(policy=nested(id=attr("migration_policy")))),
        ("ha_reservation", attr("ha_reservation")),
        ("version", version_of("compatibility_version")),
    ],
    label="Cluster",
    add=Input(
        "AddCluster",
        {
            **texts("name", "description"),
            "data_center_id": ref("data_center", "datacenters"),
            **_CLUSTER_SETTINGS,
            "id": text("id"),
        },
    ),
    update=Input(
        "UpdateCluster",
        {**texts("name", "description"), **_CLUSTER_SETTINGS},
        id_field="cluster_id",
    ),
    remove=Input("RemoveCluster", id_field="cluster_id"),
    search={"datacenter": _ref_name("data_center_id"), "data_center": _ref_name("data_center_id")},
    subs=[
        child("hosts", "cluster_id"),
        child(
            "networks",
            "cluster_ids",
            add=Input(
                "AttachNetworkToCluster",
                {"network_id": ref("", "networks")},
                parent_field="cluster_id",
            ),
            remove=Input(
                "DetachNetworkFromCluster", parent_field="cluster_id", item_field="network_id"
            ),
        ),
        child("affinitygroups", "cluster_id"),
        child("permissions", "object_id"),
    ],
)

HOST = Resource(
    "hosts",
    "host",
    "Host",
    [
        *attrs("name", "description", "address", "port"),
        ("cluster", link_to("clusters", "cluster_id")),
        *attrs("status", "status_detail"),
        ("spm", nested(priority=attr("spm_priority"))),
        (
            "cpu",
            nested(
                name=attr("cpu_model"),
                topology=nested(cores=attr("cpu_cores"), sockets=fixed(1), threads=fixed(1)),
            ),
        ),
        ("memory", attr("memory_total")),
        ("hardware_information", nested(uuid=attr("hardware_uuid"))),
        (
            "version",
            nested(full_version=attr("libvirt_version")),
        ),
        ("type", fixed("rhel")),
    ],
    label="Host",
    add=Input(
        "AddHost",
        {
            **texts("name", "description", "address"),
            "port": number("port"),
            "cluster_id": ref("cluster", "clusters"),
            "root_password": text("root_password"),
            "spm_priority": number("spm.priority"),
            "id": text("id"),
        },
        query={"activate": "activate"},
    ),
    update=Input(
        "UpdateHost",
        {
            **texts("name", "description", "address"),
            "spm_priority": number("spm.priority"),
            "port": number("port"),
            "cluster_id": ref("cluster", "clusters"),
        },
        id_field="host_id",
    ),
    remove=Input("RemoveHost", id_field="host_id", query={"force": "force"}),
    actions={
        "activate": Input("ActivateHost", id_field="host_id"),
        "deactivate": Input("DeactivateHost", {"reason": text("reason")}, id_field="host_id"),
        "install": Input("InstallHost", id_field="host_id"),
        # Capabilities arrive from hostd on their own; upgrades are not managed here.
        "refresh": Input(NOOP),
        "upgradecheck": Input(NOOP),
        # Only manual fencing ("confirm the host has been rebooted") exists so far.
        "fence": Input(
            "ConfirmHostRebooted",
            id_field="host_id",
            choose=lambda body: (
                None
                if str(dig(body, "fence_type")).lower() == "manual"
                else Input("FenceHost", texts("fence_type"), id_field="host_id")
            ),
        ),
    },
    search={"cluster": _ref_name("cluster_id"), "datacenter": _dc_of_cluster},
    subs=[
        Sub("nics", "embedded", tag="host_nic", items=host_nic_items, fields=HOST_NIC_FIELDS),
        statistics_sub(),
        child("permissions", "object_id"),
    ],
)

SD = Resource(
    "storagedomains",
    "storage_domain",
    "StorageDomain",
    [
        *attrs("name", "description"),
        ("type", attr("domain_type")),
        *attrs("status", "master"),
        (
            "storage",
            nested(type=attr("storage_type"), address=attr("address"), path=attr("path")),
        ),
        *attrs("available", "used"),
        ("warning_low_space_indicator", attr("warning_low_space")),
        ("critical_space_action_blocker", attr("critical_space_blocker")),
        ("storage_format", fixed("v5")),
        (
            "data_centers",
            links_to("datacenters", "data_center", "data_center_id"),
        ),
    ],
    label="Storage Domain",
    add=Input(
        "AddStorageDomain",
        {
            **texts("name", "description"),
            "domain_type": text("type"),
            "storage_type": text("storage.type"),
            "address": text("storage.address"),
            "path": text("storage.path"),
            "host_id": ref("host", "hosts"),
            **numbers("available", "used"),
            "warning_low_space": number("warning_low_space_indicator"),
            "critical_space_blocker": number("critical_space_action_blocker"),
            "id": text("id"),
        },
    ),
    update=Input(
        "UpdateStorageDomain",
        {
            **texts("name", "description"),
            "warning_low_space": number("warning_low_space_indicator"),
            "critical_space_blocker": number("critical_space_action_blocker"),
        },
        id_field="storage_domain_id",
    ),
    remove=Input(
        "RemoveStorageDomain",
        {"host_id": ref("host", "hosts")},
        id_field="storage_domain_id",
        query={"force": "destroy"},
    ),
    search={"datacenter": _ref_name("data_center_id")},
    subs=[
        child("disks", "storage_domain_id"),
        child("permissions", "object_id"),
    ],
)

# What adding and updating a network read after its name and description.
_NETWORK_SETTINGS = {
    "vlan_id": number("vlan.id"),
    "mtu": number("mtu"),
    "required": flag("required"),
    "usages": listed("usages", "usage", lambda v, env: v),
}

NETWORK = Resource(
    "networks",
    "network",
    "LogicalNetwork",
    [
        *attrs("name", "description"),
        ("data_center", link_to("datacenters", "data_center_id")),
        ("usages", names_list("usages", "usages", "usage")),
        ("vlan", nested(id=attr("vlan_id"))),
        *attrs("mtu", "required"),
    ],
    label="Network",
    add=Input(
        "AddNetwork",
        {
            **texts("name", "description"),
            "data_center_id": ref("data_center", "datacenters"),
            **_NETWORK_SETTINGS,
            "id": text("id"),
        },
    ),
    update=Input(
        "UpdateNetwork",
        {**texts("name", "description"), **_NETWORK_SETTINGS},
        id_field="network_id",
    ),
    remove=Input("RemoveNetwork", id_field="network_id"),
    search={"datacenter": _ref_name("data_center_id")},
    subs=[
        child(
            "vnicprofiles",
            "network_id",
            add=Input(
                "AddVnicProfile",
                {"name": text("name"), "description": text("description")},
                parent_field="network_id",
            ),
        ),
        child("permissions", "object_id"),
    ],
)

VNIC_PROFILE = Resource(
    "vnicprofiles",
    "vnic_profile",
    "VnicProfile",
    [
        *attrs("name", "description"),
        ("network", link_to("networks", "network_id")),
    ],
    label="VNIC Profile",
    add=Input(
        "AddVnicProfile",
        {
            **texts("name", "description"),
            "network_id": ref("network", "networks"),
            "id": text("id"),
        },
    ),
    update=Input(
        "UpdateVnicProfile",
        {
            **texts("name", "description"),
            "port_mirroring": flag("port_mirroring"),
        },
        id_field="vnic_profile_id",
    ),
    remove=Input("RemoveVnicProfile", id_field="vnic_profile_id"),
    searchable=False,
)


def _vm_items(name: str) -> Callable[[Any, Any], Iterable[Any]]:
    return lambda o, reads: getattr(o, name, ()) or ()


def _disk_attachment_href(o: Any) -> Any:
    return {"href": f"{BASE}/disks/{o.disk_id}", "id": str(o.disk_id)}


_NIC_INPUT = {
    **texts("name", "interface"),
    "mac": text("mac.address"),
    "vnic_profile_id": ref("vnic_profile", "vnicprofiles"),
    "linked": flag("linked"),
}

VM_NICS = Sub(
    "nics",
    "embedded",
    tag="nic",
    items=_vm_items("nics"),
    fields=[
        *attrs("name", "interface"),
        ("mac", nested(address=attr("mac"))),
        ("vnic_profile", link_to("vnicprofiles", "vnic_profile_id")),
        *attrs("plugged", "linked"),
    ],
    add=Input("AddVmNic", _NIC_INPUT, parent_field="vm_id"),
    update=Input("UpdateVmNic", _NIC_INPUT, parent_field="vm_id", item_field="nic_id"),
    remove=Input("RemoveVmNic", parent_field="vm_id", item_field="nic_id"),
)

# How a disk is attached (given when attaching, creating-and-attaching, or updating).
_ATTACHMENT_INPUT = {"interface": text("interface"), **flags("bootable", "active")}

VM_DISK_ATTACHMENTS = Sub(
    "diskattachments",
    "embedded",
    tag="disk_attachment",
    tags="disk_attachments",
    items=lambda o, reads: [_Keyed(a, a.disk_id) for a in getattr(o, "disk_attachments", ())],
    fields=[
        ("disk", _disk_attachment_href),
        *attrs("interface", "bootable", "active"),
        ("pass_discard", fixed(False)),
        ("read_only", fixed(False)),
        ("uses_scsi_reservation", fixed(False)),
    ],
    add=Input(
        "AttachDisk",
        {"disk_id": ref("disk", "disks"), **_ATTACHMENT_INPUT},
        parent_field="vm_id",
        choose=lambda body: (
            _ADD_VM_DISK
            if isinstance(dig(body, "disk"), dict) and not dig(body, "disk").get("id")
            else None
        ),
    ),
    update=Input(
        "UpdateDiskAttachment",
        _ATTACHMENT_INPUT,
        parent_field="vm_id",
        item_field="disk_id",
    ),
    remove=Input("DetachDisk", parent_field="vm_id", item_field="disk_id"),
)


def _in_disk(ex: Callable[[Any, Any], Any]) -> Callable[[Any, Any], Any]:
    def get(body: Any, env: Any) -> Any:
        d = dig(body, "disk")
        return ex(d, env) if isinstance(d, dict) else MISSING

    get.path = "disk." + getattr(ex, "path", "")  # type: ignore[attr-defined]
    return get


def _first_sd(d: Any, env: Any) -> Any:
    sds = dig(d, "storage_domains.storage_domain")
    if isinstance(sds, list):
        sds = sds[0] if sds else MISSING
    if sds is MISSING:
        return MISSING
    return ref("sd", "storagedomains")({"sd": sds}, env)


def _first_sd_of_disks(body: Any, env: Any) -> Any:
    """A VM's target storage domain: from its first disk attachment's disk."""
    das = dig(body, "disk_attachments.disk_attachment")
    if isinstance(das, list):
        das = das[0] if das else MISSING
    if not isinstance(das, dict):
        return MISSING
    return _first_sd(das.get("disk", {}), env)


# A disk given inline (no id) in a disk attachment: created and attached in one command.
_ADD_VM_DISK = Input(
    "AddVmDisk",
    {
        "name": _in_disk(first_of(text("alias"), text("name"))),
        "description": _in_disk(text("description")),
        "provisioned_size": _in_disk(number("provisioned_size")),
        "format": _in_disk(text("format")),
        "sparse": _in_disk(flag("sparse")),
        "shareable": _in_disk(flag("shareable")),
        "storage_domain_id": lambda body, env: _first_sd(dig(body, "disk"), env),
        **_ATTACHMENT_INPUT,
    },
    parent_field="vm_id",
)


class _Keyed:
    """An embedded item whose id is another field (disk attachments by disk id)."""

    __slots__ = ("id", "item")

    def __init__(self, item: Any, item_id: Any) -> None:
        self.item = item
        self.id = item_id

    def __getattr__(self, name: str) -> Any:
        return getattr(self.item, name)


VM_SNAPSHOTS = Sub(
    "snapshots",
    "embedded",
    tag="snapshot",
    items=_vm_items("snapshots"),
    fields=[
        *attrs("description", "snapshot_type"),
        ("snapshot_status", attr("status")),
        ("persist_memorystate", attr("persist_memory")),
        ("date", when("created_at")),
    ],
    add=Input(
        "AddSnapshot",
        {"description": text("description"), "persist_memory": flag("persist_memorystate")},
        parent_field="vm_id",
    ),
    remove=Input("RemoveSnapshot", parent_field="vm_id", item_field="snapshot_id"),
)


def _ticket_result(v: Any) -> dict[str, Any]:
    """<ticket><value/><expiry/></ticket>: expiry in seconds from now, as oVirt gives it."""
    if not isinstance(v, dict):
        return {}
    expiry = None
    at = v.get("expires_at")
    if at:
        from datetime import UTC

        try:
            when = datetime.fromisoformat(str(at))
            expiry = max(0, int((when - datetime.now(UTC)).total_seconds()))
        except (TypeError, ValueError):
            expiry = None
    return {"ticket": {"value": v.get("ticket"), "expiry": expiry}}


# The CPU as VMs and templates show it.
_CPU = nested(
    mode=fixed("custom"),
    architecture=fixed("x86_64"),
    topology=nested(
        cores=attr("cpu_cores"), sockets=attr("cpu_sockets"), threads=attr("cpu_threads")
    ),
)

# What adding and updating a VM, and updating a template, read of its settings.
_VM_SETTINGS = {
    "memory": number("memory"),
    "cpu_sockets": number("cpu.topology.sockets"),
    "cpu_cores": number("cpu.topology.cores"),
    "cpu_threads": number("cpu.topology.threads"),
    "os_type": text("os.type"),
    "vm_type": text("type"),
    "stateless": flag("stateless"),
    "highly_available": flag("high_availability.enabled"),
    "ha_priority": number("high_availability.priority"),
}

_VM_FIELDS: list[tuple[str, Callable[[Any], Any]]] = [
    *attrs("name", "description"),
    ("cluster", link_to("clusters", "cluster_id")),
    ("template", link_to("templates", "template_id")),
    ("cpu", _CPU),
    ("memory", attr("memory")),
    ("os", nested(type=attr("os_type"))),
    ("type", attr("vm_type")),
    ("stateless", attr("stateless")),
    ("high_availability", nested(enabled=attr("highly_available"), priority=attr("ha_priority"))),
    ("status", attr("status")),
    ("creation_time", when("created_at")),
    ("host", link_to("hosts", "run_on_host_id")),
    ("vm_pool", link_to("vmpools", "pool_id")),
]

VM = Resource(
    "vms",
    "vm",
    "Vm",
    _VM_FIELDS,
    label="VM",
    add=Input(
        "AddVm",
        {
            **texts("name", "description"),
            "cluster_id": ref("cluster", "clusters"),
            "template_id": ref("template", "templates"),
            **_VM_SETTINGS,
            "placement_host_id": ref("placement_policy.hosts.host", "hosts"),
            "storage_domain_id": _first_sd_of_disks,
            "graphics": text("display.type"),
            "id": text("id"),
        },
        query={"clone": "clone"},
    ),
    update=Input(
        "UpdateVm",
        {
            **texts("name", "description"),
            **_VM_SETTINGS,
            "cluster_id": ref("cluster", "clusters"),
            "placement_host_id": ref("placement_policy.hosts.host", "hosts"),
            "graphics": text("display.type"),
        },
        id_field="vm_id",
    ),
    remove=Input("RemoveVm", id_field="vm_id", query={"detach_only": "detach_only"}),
    actions={
        "start": Input(
            "StartVm",
            {"host_id": ref("vm.placement_policy.hosts.host", "hosts"), "paused": flag("pause")},
            id_field="vm_id",
        ),
        "stop": Input("StopVm", {"reason": text("reason")}, id_field="vm_id"),
        "shutdown": Input("ShutdownVm", {"reason": text("reason")}, id_field="vm_id"),
        "reboot": Input("RebootVm", id_field="vm_id"),
        "suspend": Input("SuspendVm", id_field="vm_id"),
        "migrate": Input("MigrateVm", {"host_id": ref("host", "hosts")}, id_field="vm_id"),
        "cancelmigration": Input("CancelVmMigration", id_field="vm_id"),
        "ticket": Input(
            "SetVmConsoleTicket",
            {"expiry": number("ticket.expiry")},
            id_field="vm_id",
            result=_ticket_result,
        ),
        "previewsnapshot": Input(
            "PreviewSnapshot", {"snapshot_id": ident("snapshot")}, id_field="vm_id"
        ),
        "commitsnapshot": Input("CommitSnapshot", id_field="vm_id"),
        "undosnapshot": Input("UndoSnapshot", id_field="vm_id"),
    },
    search={
        "cluster": _ref_name("cluster_id"),
        "host": _ref_name("run_on_host_id"),
        "template": _ref_name("template_id"),
        "datacenter": _dc_of_cluster,
    },
    subs=[
        VM_DISK_ATTACHMENTS,
        VM_NICS,
        VM_SNAPSHOTS,
        Sub(
            "cdroms",
            "embedded",
            tag="cdrom",
            items=lambda o, reads: [_Cdrom(o)],
            fields=[("file", nested(id=attr("file")))],
            update=Input("UpdateVm", {"cdrom_file": text("file.id")}, parent_field="vm_id"),
        ),
        Sub(
            "graphicsconsoles",
            "embedded",
            tag="graphics_console",
            tags="graphics_consoles",
            items=lambda o, reads: [_Console(o, p) for p in _graphics(o)],
            fields=[("protocol", attr("protocol"))],
        ),
        Sub("numanodes", "empty", tag="vm_numa_node", tags="vm_numa_nodes"),
        Sub("watchdogs", "empty", tag="watchdog"),
        statistics_sub(),
        child("permissions", "object_id"),
    ],
)


class _Cdrom:
    def __init__(self, vm: Any) -> None:
        self.id = UUID(int=0)
        self.file = getattr(vm, "cdrom_file", None) or None


def _graphics(vm: Any) -> list[str]:
    g = getattr(vm, "graphics", None)
    if not g:
        return []
    if isinstance(g, str):
        return [g]
    return [str(x) for x in g]


class _Console:
    def __init__(self, vm: Any, protocol: str) -> None:
        import uuid

        self.id = uuid.uuid5(vm.id, protocol)
        self.protocol = protocol


DISK = Resource(
    "disks",
    "disk",
    "Disk",
    [
        ("name", attr("name")),
        ("alias", attr("name")),
        *attrs(
            "description",
            "provisioned_size",
            "actual_size",
            "format",
            "sparse",
            "status",
            "shareable",
            "bootable",
        ),
        ("content_type", fixed("data")),
        ("storage_type", fixed("image")),
        (
            "storage_domains",
            links_to("storagedomains", "storage_domain", "storage_domain_id"),
        ),
    ],
    label="Disk",
    add=Input(
        "AddDisk",
        {
            "name": first_of(text("alias"), text("name")),
            "description": text("description"),
            "provisioned_size": number("provisioned_size"),
            "format": text("format"),
            **flags("sparse", "shareable"),
            "storage_domain_id": _first_sd,
            "id": text("id"),
        },
    ),
    update=Input(
        "UpdateDisk",
        {
            "name": first_of(text("alias"), text("name")),
            "description": text("description"),
            "provisioned_size": number("provisioned_size"),
            **flags("shareable", "bootable"),
        },
        id_field="disk_id",
    ),
    remove=Input("RemoveDisk", id_field="disk_id"),
    actions={
        "move": Input(
            "MoveDisk",
            {"storage_domain_id": ref("storage_domain", "storagedomains")},
            id_field="disk_id",
        ),
    },
    search={
        "alias": lambda o, r: [getattr(o, "name", "")],
        "storage": _ref_name("storage_domain_id"),
    },
    subs=[child("permissions", "object_id")],
)

TEMPLATE = Resource(
    "templates",
    "template",
    "Template",
    [
        *attrs("name", "description"),
        ("cluster", link_to("clusters", "cluster_id")),
        ("memory", attr("memory")),
        ("cpu", _CPU),
        ("os", nested(type=attr("os_type"))),
        ("status", attr("status")),
        (
            "version",
            nested(
                version_number=attr("version_number"),
                version_name=attr("version_name"),
                base_template=link_to("templates", "base_template_id"),
            ),
        ),
        ("creation_time", when("created_at")),
    ],
    label="Template",
    add=Input(
        "AddTemplate",
        {
            **texts("name", "description"),
            "vm_id": ref("vm", "vms"),
            "version_name": text("version.version_name"),
            "base_template_id": ref("version.base_template", "templates"),
            "storage_domain_id": ref("storage_domain", "storagedomains"),
            "id": text("id"),
        },
    ),
    update=Input(
        "UpdateTemplate",
        {
            **texts("name", "description"),
            "version_name": text("version.version_name"),
            **_VM_SETTINGS,
        },
        id_field="template_id",
    ),
    remove=Input("RemoveTemplate", id_field="template_id"),
    search={"cluster": _ref_name("cluster_id"), "datacenter": _dc_of_cluster},
    subs=[
        Sub("diskattachments", "empty", tag="disk_attachment", tags="disk_attachments"),
        Sub("nics", "empty", tag="nic"),
        child("permissions", "object_id"),
    ],
)

VMPOOL = Resource(
    "vmpools",
    "vm_pool",
    "VmPool",
    [
        *attrs("name", "description"),
        ("cluster", link_to("clusters", "cluster_id")),
        ("template", link_to("templates", "template_id")),
        *attrs("size", "prestarted_vms", "max_user_vms", "stateless"),
        ("type", attr("pool_type")),
    ],
    label="VM Pool",
    add=Input(
        "AddVmPool",
        {
            **texts("name", "description"),
            "cluster_id": ref("cluster", "clusters"),
            "template_id": ref("template", "templates"),
            **numbers("size", "prestarted_vms", "max_user_vms"),
            "pool_type": text("type"),
            "stateless": flag("stateless"),
            "id": text("id"),
        },
    ),
    update=Input(
        "UpdateVmPool",
        {
            **texts("name", "description"),
            **numbers("size", "prestarted_vms", "max_user_vms"),
        },
        id_field="vm_pool_id",
    ),
    remove=Input("RemoveVmPool", id_field="vm_pool_id"),
    actions={
        "allocatevm": Input(
            "AllocateVm",
            {"user_id": current_user},
            id_field="vm_pool_id",
            result=lambda v: (
                {"vm": {"href": f"{BASE}/vms/{v}", "id": str(v)}} if isinstance(v, UUID) else {}
            ),
        )
    },
    subs=[child("permissions", "object_id")],
)


def _user_name(body: Any, env: Any) -> Any:
    """user_name, else principal, with @domain when a <domain><name> is given."""
    name = text("user_name")(body, env)
    if name is MISSING:
        name = text("principal")(body, env)
    if name is MISSING:
        return MISSING
    domain = text("domain.name")(body, env)
    if domain is not MISSING and "@" not in str(name):
        name = f"{name}@{domain}"
    return name


USER = Resource(
    "users",
    "user",
    "User",
    [
        *attrs("name", "last_name", "user_name", "principal", "email"),
        ("domain", nested(name=attr("domain"))),
    ],
    label="User",
    add=Input(
        "AddUser",
        {
            "user_name": _user_name,
            **texts("last_name", "name", "email"),
            "domain": text("domain.name"),
            **texts("password", "id"),
        },
    ),
    remove=Input("RemoveUser", id_field="user_id"),
    search={"usrname": lambda o, r: [getattr(o, "user_name", "")]},
    subs=[
        child("permissions", "user_id"),
        Sub("roles", "empty", tag="role"),
        Sub("tags", "empty", tag="tag"),
    ],
)

GROUP = Resource(
    "groups",
    "group",
    "Group",
    [("name", attr("name")), ("domain", nested(name=attr("domain")))],
    label="Group",
    add=Input(
        "AddGroup",
        {
            "name": text("name"),
            "domain": text("domain.name"),
            **texts("description", "id"),
        },
    ),
    remove=Input("RemoveGroup", id_field="group_id"),
    subs=[child("permissions", "group_id")],
)

ROLE = Resource(
    "roles",
    "role",
    "Role",
    [
        *attrs("name", "description", "administrative"),
        ("mutable", lambda o: not getattr(o, "builtin", False)),
    ],
    label="Role",
    add=Input(
        "AddRole",
        {
            **texts("name", "description"),
            "administrative": flag("administrative"),
            "permits": listed("permits", "permit", lambda v, env: dig(v, "name")),
            "id": text("id"),
        },
    ),
    update=Input(
        "UpdateRole",
        {
            **texts("name", "description"),
            "administrative": flag("administrative"),
        },
        id_field="role_id",
    ),
    remove=Input("RemoveRole", id_field="role_id"),
    searchable=False,
    subs=[
        Sub(
            "permits",
            "embedded",
            tag="permit",
            items=lambda o, reads: [_Permit(o, p) for p in getattr(o, "permits", ())],
            fields=[("name", attr("name"))],
        )
    ],
)


class _Permit:
    def __init__(self, role: Any, name: str) -> None:
        import uuid

        self.id = uuid.uuid5(role.id, name)
        self.name = name


def _permission_object(o: Any) -> dict[str, Any] | None:
    kind = getattr(o, "object_kind", None)
    oid = getattr(o, "object_id", None)
    if oid is None or not kind:
        return None
    res = BY_TAG.get(kind)
    if res is None:
        return None
    return {kind: {"href": f"{BASE}/{res.path}/{oid}", "id": str(oid)}}


_PERM_KINDS = (
    "data_center",
    "cluster",
    "host",
    "vm",
    "vm_pool",
    "storage_domain",
    "disk",
    "template",
    "network",
    "vnic_profile",
    "quota",
    "affinity_group",
)


def _perm_target(body: Any) -> tuple[str, Any] | None:
    for kind in _PERM_KINDS:
        v = dig(body, kind)
        if isinstance(v, dict) and v.get("id"):
            return kind, v["id"]
    return None


def _perm_kind(body: Any, env: Any) -> Any:
    t = _perm_target(body)
    return t[0] if t else MISSING


def _perm_object_id(body: Any, env: Any) -> Any:
    t = _perm_target(body)
    return parse_id(t[1], t[0]) if t else MISSING


PERMISSION = Resource(
    "permissions",
    "permission",
    "Permission",
    [
        ("role", link_to("roles", "role_id")),
        ("user", link_to("users", "user_id")),
        ("group", link_to("groups", "group_id")),
        ("+", _permission_object),
    ],
    label="Permission",
    add=Input(
        "AddPermission",
        {
            "role_id": ref("role", "roles"),
            "user_id": ref("user", "users"),
            "group_id": ref("group", "groups"),
            "object_kind": _perm_kind,
            "object_id": _perm_object_id,
        },
    ),
    remove=Input("RemovePermission", id_field="permission_id"),
    searchable=False,
)

TAG = Resource(
    "tags",
    "tag",
    "Tag",
    [
        *attrs("name", "description"),
        ("parent", link_to("tags", "parent_id")),
    ],
    label="Tag",
    add=Input(
        "AddTag",
        {
            **texts("name", "description"),
            "parent_id": ref("parent", "tags"),
        },
    ),
    update=Input(
        "UpdateTag", {"name": text("name"), "description": text("description")}, id_field="tag_id"
    ),
    remove=Input("RemoveTag", id_field="tag_id"),
    searchable=False,
)

QUOTA = Resource(
    "quotas",
    "quota",
    "Quota",
    [
        *attrs("name", "description"),
        ("data_center", link_to("datacenters", "data_center_id")),
        ("cluster_hard_limit_pct", attr("grace")),
        ("cluster_soft_limit_pct", attr("threshold")),
    ],
    label="Quota",
    searchable=False,
)

AFFINITY_GROUP = Resource(
    "affinitygroups",
    "affinity_group",
    "AffinityGroup",
    [
        *attrs("name", "description"),
        ("cluster", link_to("clusters", "cluster_id")),
        *attrs("positive", "enforcing"),
    ],
    label="Affinity Group",
    searchable=False,
)

RESOURCES: dict[str, Resource] = {}
BY_TAG: dict[str, Resource] = {}


def register(*resources: Resource) -> None:
    for r in resources:
        RESOURCES[r.path] = r
        BY_TAG[r.tag] = r


register(
    DC,
    CLUSTER,
    HOST,
    SD,
    NETWORK,
    VNIC_PROFILE,
    VM,
    DISK,
    TEMPLATE,
    VMPOOL,
    USER,
    GROUP,
    ROLE,
    PERMISSION,
    TAG,
    QUOTA,
    AFFINITY_GROUP,
)
