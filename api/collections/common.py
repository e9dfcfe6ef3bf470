"""What several areas' collection tables share: the Blank template's id, search keys
that name a referenced object, the first storage domain of a body, statistics, the tags
sub-collection of taggable objects."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from api.schema import MISSING, Input, Sub, child, dig, ref
from api.telemetry import STATISTIC_FIELDS, statistics_items
from commands.tag import AttachTag, DetachTag
from domain.datacenter import DataCenter
from domain.tag import Tag

BLANK_TEMPLATE_ID = "00000000-0000-0000-0000-000000000000"


def ref_name(attr_name: str) -> Callable[[Any, Any], list[str]]:
    """A search key matching a referenced object by id or by name (``cluster=c1``)."""

    def get(o: Any, reads: Any) -> list[str]:
        v = getattr(o, attr_name, None)
        if v is None:
            return []
        t = reads.any(v)
        return [str(v), getattr(t, "name", "")] if t is not None else [str(v)]

    return get


def dc_of_cluster(o: Any, reads: Any) -> list[str]:
    """The ``datacenter`` search key of objects placed in a cluster (or a data center)."""
    c = reads.any(getattr(o, "cluster_id", None)) if getattr(o, "cluster_id", None) else None
    dc_id = getattr(o, "data_center_id", None) or getattr(c, "data_center_id", None)
    if dc_id is None:
        if str(o.id) == BLANK_TEMPLATE_ID:  # Blank belongs to every data center
            return [x for d in reads.list(DataCenter.__name__) for x in (str(d.id), d.name)]
        return []
    dc = reads.any(dc_id)
    return [str(dc_id), getattr(dc, "name", "")]


def first_sd(d: Any, env: Any) -> Any:
    """The first of a disk's <storage_domains><storage_domain/>... as an id."""
    sds = dig(d, "storage_domains.storage_domain")
    if isinstance(sds, list):
        sds = sds[0] if sds else MISSING
    if sds is MISSING:
        return MISSING
    return ref("sd", "storagedomains")({"sd": sds}, env)


def statistics_sub() -> Sub:
    """A host's or VM's statistics, from the samples hostd sends."""
    return Sub(
        "statistics",
        "embedded",
        tag="statistic",
        items=statistics_items,
        fields=STATISTIC_FIELDS,
    )


def tags_sub() -> Sub:
    """``{object}/tags``: the tags attached to the object; adding one (by id or name)
    attaches it, removing it detaches it (the tag itself stays)."""
    return child(
        "tags",
        "object_ids",
        add=Input(AttachTag, {"tag_id": ref("", "tags")}, parent_field="object_id"),
        remove=Input(DetachTag, parent_field="object_id", item_field="tag_id"),
    )


def tag_names(o: Any, reads: Any) -> list[str]:
    """The ``tag`` search key of a taggable object: the names of the tags attached to it."""
    return [t.name for t in reads.list(Tag.__name__) if o.id in t.object_ids]
