"""XML in and out: the value trees the API renders, and request bodies parsed into dicts.

A value tree is plain data: a dict is an element (its ``id`` and ``href`` keys, and a
link's ``rel``, become attributes, the rest child elements in order), a list repeats its
tag, ``None`` is left out, booleans are ``true``/``false``, anything else is text.

Request bodies go through defusedxml with document type declarations, entities and
external references refused, whatever the body's encoding (expat reads UTF-8, UTF-16 and
the single-byte encodings; UTF-32, which expat cannot read, is decoded here first; any
other multi-byte encoding is refused).
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from typing import Any

import defusedxml
import defusedxml.ElementTree as SafeET

from api.faults import bad_request

ATTRS = ("href", "id")
_ESC = str.maketrans({"&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;"})


def esc(s: str) -> str:
    if "&" in s or "<" in s or ">" in s or '"' in s:
        return s.translate(_ESC)
    return s


def write(tag: str, val: Any, out: list[str]) -> None:
    """Appends the XML of ``val`` as element ``tag`` to ``out`` (the pieces to join)."""
    if val is None:
        return
    t = type(val)
    if t is dict:
        head = "<" + tag
        href = val.get("href")
        if href is not None:
            head += ' href="' + esc(href) + '"'
        oid = val.get("id")
        if oid is not None:
            head += ' id="' + esc(str(oid)) + '"'
        rel = val.get("rel") if tag == "link" else None
        if rel is not None:
            head += ' rel="' + esc(rel) + '"'
        n = len(out)
        out.append(head + ">")
        for k, v in val.items():
            if k == "href" or k == "id" or (k == "rel" and rel is not None):
                continue
            write(k, v, out)
        if len(out) == n + 1:
            out[n] = head + "/>"
        else:
            out.append("</" + tag + ">")
    elif t is list or t is tuple:
        for v in val:
            write(tag, v, out)
    elif t is bool:
        out.append(f"<{tag}>{'true' if val else 'false'}</{tag}>")
    elif t is str:
        out.append(f"<{tag}>{esc(val)}</{tag}>")
    elif t is Raw:
        out.append(val.text)
    else:
        out.append(f"<{tag}>{esc(str(val))}</{tag}>")


class Raw:
    """Already serialized XML, spliced in as is (cached renderings)."""

    __slots__ = ("text",)

    def __init__(self, text: str) -> None:
        self.text = text


def element(tag: str, val: Any) -> str:
    out: list[str] = []
    write(tag, val, out)
    return "".join(out)


def dumps(tag: str, val: Any) -> bytes:
    return element(tag, val).encode()


def collection(tag: str, item_tag: str, items: list[Any]) -> bytes:
    """<tag> with one <item_tag> per item; items may be Raw strings or value trees."""
    out = [f"<{tag}>"]
    for it in items:
        write(item_tag, it, out)
    out.append(f"</{tag}>")
    return "".join(out).encode()


def _local(tag: str) -> str:
    return tag.rsplit("}", 1)[-1]


def _to_value(el: ET.Element) -> Any:
    children = list(el)
    if not children and not el.attrib:
        return (el.text or "").strip()
    out: dict[str, Any] = {}
    for k, v in el.attrib.items():
        out[_local(k)] = v
    for c in children:
        tag = _local(c.tag)
        v = _to_value(c)
        if tag in out:
            prev = out[tag]
            if isinstance(prev, list) and getattr(prev, "_rep", False):
                prev.append(v)
            else:
                out[tag] = _Rep([prev, v])
        else:
            out[tag] = v
    text = (el.text or "").strip()
    if text and not children:
        out["$text"] = text
    return out


class _Rep(list):
    _rep = True


_UTF32 = (
    (b"\x00\x00\xfe\xff", "utf-32"),
    (b"\xff\xfe\x00\x00", "utf-32"),
    (b"\x00\x00\x00<", "utf-32-be"),
    (b"<\x00\x00\x00", "utf-32-le"),
)

_REFUSED = (
    (defusedxml.DTDForbidden, "XML document type declarations are not allowed."),
    (defusedxml.EntitiesForbidden, "XML entity declarations are not allowed."),
    (defusedxml.ExternalReferenceForbidden, "XML external references are not allowed."),
)


def _readable(data: bytes) -> bytes | str:
    """The body as expat can read it: UTF-32 (by BOM or by its first ``<``) decoded."""
    for head, codec in _UTF32:
        if data.startswith(head):
            try:
                return data.decode(codec)
            except UnicodeDecodeError as e:
                raise bad_request(f"Malformed XML: not {codec.upper()} ({e.reason}).") from None
    return data


def loads(data: bytes) -> tuple[str, Any]:
    """Parses a request body: (root tag, value). Malformed or hostile XML -> 400 fault."""
    try:
        root = SafeET.fromstring(
            _readable(data), forbid_dtd=True, forbid_entities=True, forbid_external=True
        )
    except defusedxml.DefusedXmlException as e:
        reason = next((msg for cls, msg in _REFUSED if isinstance(e, cls)), None)
        raise bad_request(reason or f"XML construct not allowed: {type(e).__name__}.") from None
    except ET.ParseError as e:
        raise bad_request(f"Malformed XML: {e}.") from None
    except (ValueError, LookupError) as e:  # a declared encoding expat cannot read
        raise bad_request(f"Malformed XML: unsupported encoding ({e}).") from None
    return _local(root.tag), _to_value(root)
