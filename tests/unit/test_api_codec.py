"""The XML/JSON value trees and request parsing."""

from __future__ import annotations

import json
from uuid import UUID

import pytest
from hypothesis import given
from hypothesis import strategies as st

from api import jsonio, render, xmlio
from api.collections.compute import VM
from api.collections.infra import DC
from api.faults import ApiError
from api.resources import build
from api.schema import flag, number, ref, text, version_in

pytestmark = pytest.mark.unit


def test_xml_attributes_children_lists_and_escaping():
    tree = {
        "href": "/ovirt-engine/api/x/1",
        "id": "1",
        "name": 'a<b>&"c"',
        "local": False,
        "memory": 1024,
        "link": [{"href": "/l1", "rel": "a"}, {"href": "/l2", "rel": "b"}],
        "empty": {},
        "skip": None,
    }
    out = xmlio.element("thing", tree)
    assert out.startswith('<thing href="/ovirt-engine/api/x/1" id="1">')
    assert "<name>a&lt;b&gt;&amp;&quot;c&quot;</name>" in out
    assert "<local>false</local>" in out and "<memory>1024</memory>" in out
    assert out.count("<link ") == 2 and "<empty/>" in out and "skip" not in out


def test_xml_body_parsing_round_trip():
    tag, val = xmlio.loads(
        b'<?xml version="1.0"?><vm xmlns="urn:x"><name>v</name><cluster id="c1"/>'
        b"<cpu><topology><cores>2</cores></topology></cpu><nics><nic><name>a</name></nic>"
        b"<nic><name>b</name></nic></nics></vm>"
    )
    assert tag == "vm"
    assert val["name"] == "v" and val["cluster"] == {"id": "c1"}
    assert val["cpu"]["topology"]["cores"] == "2"
    assert [n["name"] for n in val["nics"]["nic"]] == ["a", "b"]


@pytest.mark.parametrize("bad", [b"<a>", b"<<", b"<!DOCTYPE x [<!ENTITY a 'b'>]><x>&a;</x>"])
def test_malformed_xml_is_a_400(bad):
    with pytest.raises(ApiError) as err:
        xmlio.loads(bad)
    assert err.value.status == 400


HOSTILE = [
    '<?xml version="1.0" encoding="{e}"?><!DOCTYPE x [<!ENTITY a "lol">'
    '<!ENTITY b "&a;&a;&a;&a;">]><x>&b;</x>',
    '<?xml version="1.0" encoding="{e}"?><!DOCTYPE x [<!ENTITY a SYSTEM "file:///etc/passwd">]>'
    "<x>&a;</x>",
    '<?xml version="1.0" encoding="{e}"?><!DOCTYPE x SYSTEM "http://127.0.0.1:1/x.dtd"><x/>',
]


@pytest.mark.parametrize(
    "codec,declared",
    [
        ("utf-8", "UTF-8"),
        ("utf-16", "UTF-16"),
        ("utf-16-le", "UTF-16"),
        ("utf-16-be", "UTF-16"),
        ("utf-32", "UTF-32"),
        ("utf-32-le", "UTF-32"),
        ("utf-32-be", "UTF-32"),
    ],
)
@pytest.mark.parametrize("doc", HOSTILE)
def test_doctype_refused_in_every_encoding(doc, codec, declared):
    with pytest.raises(ApiError) as err:
        xmlio.loads(doc.format(e=declared).encode(codec))
    assert err.value.status == 400
    assert err.value.detail == "XML document type declarations are not allowed."


@pytest.mark.parametrize(
    "codec,declared",
    [("utf-8", "UTF-8"), ("utf-16", "UTF-16"), ("utf-16-le", "UTF-16LE"), ("utf-32", "UTF-32")],
)
def test_plain_xml_parses_in_every_encoding(codec, declared):
    doc = f'<?xml version="1.0" encoding="{declared}"?><vm><name>é✓</name></vm>'
    assert xmlio.loads(doc.encode(codec)) == ("vm", {"name": "é✓"})


@pytest.mark.parametrize(
    "declared,codec", [("Shift_JIS", "shift_jis"), ("UTF-16-LE", "utf-16-le"), ("nosuch", "ascii")]
)
def test_unreadable_declared_encoding_is_a_400(declared, codec):
    with pytest.raises(ApiError) as err:
        xmlio.loads(f'<?xml version="1.0" encoding="{declared}"?><vm/>'.encode(codec))
    assert err.value.status == 400 and "encoding" in err.value.detail


def test_truncated_utf32_is_a_400():
    with pytest.raises(ApiError) as err:
        xmlio.loads("<vm/>".encode("utf-32-be")[:-1])
    assert err.value.status == 400 and "UTF-32" in err.value.detail


@given(st.binary(max_size=200))
def test_any_bytes_parse_or_400(data):
    for fn in (xmlio.loads, jsonio.loads):
        try:
            fn(data)
        except ApiError as e:
            assert e.status == 400


def test_json_collection_and_body():
    body = jsonio.collection("vm", [{"id": "1", "name": "a", "x": None}])
    assert json.loads(body) == {"vm": [{"id": "1", "name": "a"}]}
    assert jsonio.loads(b'{"name": "x", "local": false, "memory": 5}') == {
        "name": "x",
        "local": "false",
        "memory": "5",
    }


class _Env:
    user_name = "admin@internal"
    user_id = None
    correlation_id = None

    class reads:
        @staticmethod
        def by_name(cls, name):
            return None

        @staticmethod
        def get(cls, oid):
            return None


def test_extractors():
    env = _Env()
    assert text("a.b")({"a": {"b": "x"}}, env) == "x"
    assert flag("f")({"f": "true"}, env) is True
    assert number("n")({"n": "42"}, env) == 42
    assert version_in("v")({"v": {"major": "4", "minor": "7"}}, env) == "4.7"
    with pytest.raises(ApiError) as err:
        flag("f")({"f": "maybe"}, env)
    assert err.value.field == "f"
    with pytest.raises(ApiError) as err:
        number("n")({"n": "1G"}, env)
    assert err.value.status == 400
    with pytest.raises(ApiError) as err:
        ref("cluster", "clusters")({"cluster": {"name": "nope"}}, env)
    assert err.value.status == 404


def test_input_builds_the_command_and_names_xml_fields():
    env = _Env()
    cmd = build(DC.add, {"name": "dc", "version": {"major": "4", "minor": "6"}}, env)
    assert cmd.name == "dc" and cmd.version == "4.6" and cmd.actor == "admin@internal"
    with pytest.raises(ApiError) as err:
        build(DC.add, {"name": ""}, env)
    assert err.value.status == 400 and err.value.field == "name"
    upd = build(DC.update, {"description": "d"}, env, obj_id=UUID(int=5))
    assert upd.data_center_id == UUID(int=5) and upd.description == "d"


def test_render_has_href_actions_and_links():
    from domain.datacenter import DataCenter

    dc = DataCenter(id=UUID(int=7), name="dc")
    tree = render.tree(DC, dc)
    assert tree["href"] == f"/ovirt-engine/api/datacenters/{UUID(int=7)}"
    assert tree["version"] == {"major": "4", "minor": "7"}
    assert {link["rel"] for link in tree["link"]} >= {"clusters", "storagedomains", "networks"}


def test_links_carry_rel_as_attribute_and_fast_xml_matches_tree():
    from domain.base import AGGREGATE_TYPES

    vm = AGGREGATE_TYPES["Vm"](
        id=UUID(int=9), name="v", cluster_id=UUID(int=1), template_id=UUID(int=0), memory=1
    )
    out = render.xml(VM, vm)
    assert out == xmlio.element("vm", render.tree(VM, vm))
    assert f'<link href="/ovirt-engine/api/vms/{UUID(int=9)}/nics" rel="nics"/>' in out
    assert f'<link href="/ovirt-engine/api/vms/{UUID(int=9)}/start" rel="start"/>' in out


def test_sdk_reads_links_and_actions():
    import ovirtsdk4.reader as sdk_reader
    import ovirtsdk4.readers  # noqa: F401  (the SDK registers its readers there)

    from domain.base import AGGREGATE_TYPES

    vm = AGGREGATE_TYPES["Vm"](
        id=UUID(int=9), name="v", cluster_id=UUID(int=1), template_id=UUID(int=0), memory=1
    )
    got = sdk_reader.Reader.read(render.xml(VM, vm).encode())
    assert got.nics.href.endswith("/nics")
    assert got.name == "v" and got.cluster.id == str(UUID(int=1))
