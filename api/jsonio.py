"""JSON in and out, in oVirt's JSON shape: an object is a JSON object (id and href as
plain keys), a collection is ``{"<item tag>": [...]}``; request bodies carry no root."""

from __future__ import annotations

from typing import Any

import msgspec

from api.faults import bad_request
from api.xmlio import Raw

_enc = msgspec.json.Encoder()


def _clean(val: Any) -> Any:
    t = type(val)
    if t is dict:
        return {k: _clean(v) for k, v in val.items() if v is not None}
    if t is list or t is tuple:
        return [_clean(v) for v in val]
    return val


def encode_value(val: Any) -> bytes:
    return _enc.encode(_clean(val))


def dumps(val: Any) -> bytes:
    return encode_value(val)


def collection(item_tag: str, items: list[Any]) -> bytes:
    """Items may be pre-encoded (Raw holding JSON text) or value trees."""
    parts = [it.text.encode() if isinstance(it, Raw) else encode_value(it) for it in items]
    return b'{"' + item_tag.encode() + b'":[' + b",".join(parts) + b"]}"


def loads(data: bytes) -> Any:
    try:
        val = msgspec.json.decode(data)
    except msgspec.DecodeError as e:
        raise bad_request(f"Malformed JSON: {e}.") from None
    if not isinstance(val, dict):
        raise bad_request("The request body must be a JSON object.")
    return _stringify(val)


def _stringify(val: Any) -> Any:
    """Scalars as text, the way XML delivers them, so one input path serves both."""
    if isinstance(val, dict):
        return {k: _stringify(v) for k, v in val.items()}
    if isinstance(val, list):
        return _Rep(_stringify(v) for v in val)
    if isinstance(val, bool):
        return "true" if val else "false"
    if val is None:
        return ""
    return str(val)


class _Rep(list):
    _rep = True
