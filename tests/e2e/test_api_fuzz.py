"""Hypothesis fuzz of the live API: random paths, methods, query strings and bodies.

Every answer must be a client error or success, never a 5xx; every error body is a
<fault> (or JSON error); and a refused request writes nothing to the log.
"""

from __future__ import annotations

import http.client
import json
import urllib.parse

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.e2e.api_server import connection, running_server

pytestmark = pytest.mark.e2e

COLLECTIONS = [
    "history",
    "status",
    "datacenters",
    "clusters",
    "hosts",
    "storagedomains",
    "networks",
    "vnicprofiles",
    "vms",
    "disks",
    "templates",
    "vmpools",
    "users",
    "groups",
    "roles",
    "permissions",
    "tags",
    "events",
    "jobs",
    "clusterlevels",
    "operatingsystems",
    "nosuch",
    "",
]
WORDS = [
    "start",
    "stop",
    "clusters",
    "nics",
    "snapshots",
    "diskattachments",
    "permissions",
    "activate",
    "deactivate",
    "numanodes",
    "..",
    "%00",
    "search",
    "x" * 300,
    "12",
    "-1",
]
KEYS = [
    "search",
    "max",
    "follow",
    "all_content",
    "case_sensitive",
    "filter",
    "from",
    "as_of",
    "force",
    "async",
    "zz",
]
TEXT = st.text(alphabet=st.characters(codec="utf-8", exclude_categories=("Cs",)), max_size=40)
XML_BODIES = st.sampled_from(
    [
        b"",
        b"<data_center><name>fz</name></data_center>",
        b"<data_center><name></name></data_center>",
        b"<data_center><name>fz2</name><version><major>x</major></version></data_center>",
        b"<cluster><name>fzc</name><data_center><name>nosuch</name></data_center></cluster>",
        b"<cluster><name>fzc</name></cluster>",
        b"<vm><name>v</name><cluster><name>Default</name></cluster></vm>",
        b"<action><force>maybe</force></action>",
        b"<action/>",
        b"<a:b xmlns:a='u'/>",
        b"<!DOCTYPE x [<!ENTITY a 'b'>]><x>&a;</x>",
        b"<<<",
        b'{"name": 1}',
        b'{"name": "fj", "version": {"major": 4, "minor": 7}}',
        b"[1,2]",
        b"\xff\xfe",
        b"<data_center><name>fz</name><name>fz</name></data_center>",
        b"<data_center><local>perhaps</local><name>q</name></data_center>",
    ]
)


@pytest.fixture(scope="module")
def live(tmp_path_factory):
    with running_server(tmp_path_factory.mktemp("fuzz")) as srv:
        c = connection(srv)
        token = c.authenticate()
        dc = c.system_service().data_centers_service().list(search="name=Default")[0]
        yield srv, token, dc.id
        c.close()


@settings(
    max_examples=400,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(
    method=st.sampled_from(["GET", "POST", "PUT", "DELETE", "PATCH", "HEAD", "OPTIONS"]),
    coll=st.sampled_from(COLLECTIONS),
    rest=st.lists(st.one_of(st.sampled_from([*WORDS, "<dc>", "<uuid>"]), TEXT), max_size=3),
    query=st.dictionaries(st.sampled_from(KEYS), TEXT, max_size=3),
    body=st.one_of(XML_BODIES, st.binary(max_size=64)),
    ctype=st.sampled_from(["application/xml", "application/json", "text/plain", ""]),
    accept=st.sampled_from(["application/xml", "application/json", "*/*"]),
    auth=st.sampled_from(["good", "good", "good", "none", "bad"]),
    prefix=st.sampled_from(["/ovirt-engine/api/"] * 6 + ["/orrery/", "/", "/ovirt-engine/"]),
)
def test_fuzz_never_5xx_and_refusals_write_nothing(
    live, method, coll, rest, query, body, ctype, accept, auth, prefix
):
    srv, token, dc_id = live
    segs = [coll] + [
        str(dc_id)
        if r == "<dc>"
        else "00000000-0000-0000-0000-0000000000aa"
        if r == "<uuid>"
        else r
        for r in rest
    ]
    path = prefix + "/".join(urllib.parse.quote(s, safe="") for s in segs)
    if query:
        path += "?" + urllib.parse.urlencode(query)
    headers = {"Accept": accept, "Version": "4"}
    if ctype:
        headers["Content-Type"] = ctype
    if auth == "good":
        headers["Authorization"] = f"Bearer {token}"
    elif auth == "bad":
        headers["Authorization"] = "Bearer nope"
    head_before = srv.bus.log.head()
    conn = http.client.HTTPConnection("127.0.0.1", srv.port, timeout=30)
    try:
        conn.request(
            method, path, body=body if method not in ("GET", "HEAD") else None, headers=headers
        )
        resp = conn.getresponse()
        data = resp.read()
    finally:
        conn.close()
    assert resp.status < 500, (method, path, body, resp.status, data[:300])
    if resp.status >= 400:
        assert srv.bus.log.head() == head_before, (method, path, body, resp.status)
        if method != "HEAD":
            ct = resp.headers.get("Content-Type", "")
            if "json" in ct:
                err = json.loads(data)
                assert "reason" in err or "fault" in err
            else:
                assert ct.startswith("application/xml"), ct
                assert data.startswith((b"<fault>", b"<action>")), data[:200]
                assert b"<reason>" in data
