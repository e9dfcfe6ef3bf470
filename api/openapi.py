"""The OpenAPI description of Orrery's extensions, built from the resource table, served at
/orrery/openapi.json (and written to docs/openapi.json by ``python -m api.openapi``)."""

from __future__ import annotations

from typing import Any

from api.resources import BASE, RESOURCES


def document() -> dict[str, Any]:
    paths: dict[str, Any] = {
        "/orrery/events/stream": {
            "get": {
                "summary": "Live event stream (server-sent events); replaces polling /events.",
                "parameters": [
                    {
                        "name": "from",
                        "in": "query",
                        "schema": {"type": "integer"},
                        "description": "First replay the events with a larger id "
                        "(or send Last-Event-ID).",
                    }
                ],
                "responses": {
                    "200": {
                        "description": "text/event-stream: 'event: orrery', 'id: <event id>', "
                        "'data: <the /events entry as JSON>'; comment keep-alives every 15 s.",
                        "content": {"text/event-stream": {}},
                    }
                },
            }
        },
        "/orrery/status": {
            "get": {
                "summary": "Log position, feed position, start time, render cache warm.",
                "responses": {
                    "200": {
                        "description": "{position, feed_position, prewarmed, started}",
                        "content": {"application/json": {}},
                    }
                },
            }
        },
        "/orrery/history/{collection}/{id}": {
            "get": {
                "summary": "Every change of one object, with actor, command and field diffs.",
                "parameters": [
                    {
                        "name": "collection",
                        "in": "path",
                        "required": True,
                        "schema": {"type": "string", "enum": sorted(RESOURCES)},
                    },
                    {
                        "name": "id",
                        "in": "path",
                        "required": True,
                        "schema": {"type": "string", "format": "uuid"},
                    },
                ],
                "responses": {
                    "200": {
                        "description": "{id, collection, history: [{version, event, time, actor, "
                        "actor_id, command, correlation_id, diff: {field: [before, after]}}]}",
                        "content": {"application/json": {}},
                    },
                    "404": {
                        "description": "No such object of that collection in the log, or "
                        "one the user may not see (a removed one: through the containers it "
                        "last named)."
                    },
                },
            }
        },
    }
    as_of = {
        "name": "as_of",
        "in": "query",
        "schema": {"type": "string"},
        "description": "Time travel (reads only; a 400 fault on any write): the state after "
        "this log position (integer) or at this ISO-8601 time, shown with the permissions of "
        "now. A moment at or past the log's end is the current state. A replay that does not "
        "finish within the Manager's limit (serve --as-of-timeout), or waits for the same "
        "user's previous one that long, is a 503 fault.",
    }
    for path, res in sorted(RESOURCES.items()):
        params = [
            as_of,
            {"name": "search", "in": "query", "schema": {"type": "string"}},
            {"name": "max", "in": "query", "schema": {"type": "integer"}},
            {"name": "follow", "in": "query", "schema": {"type": "string"}},
            {"name": "filter", "in": "query", "schema": {"type": "boolean"}},
        ]
        paths[f"{BASE}/{path}"] = {
            "get": {
                "summary": f"List {res.tags} (oVirt v4); as_of is an Orrery extension.",
                "parameters": params,
                "responses": {"200": {"description": f"<{res.tags}>"}},
            }
        }
        paths[f"{BASE}/{path}/{{id}}"] = {
            "get": {
                "summary": f"One {res.tag}.",
                "parameters": [
                    as_of,
                    {"name": "id", "in": "path", "required": True, "schema": {"type": "string"}},
                ],
                "responses": {"200": {"description": f"<{res.tag}>"}},
            }
        }
    return {
        "openapi": "3.0.3",
        "info": {
            "title": "Orrery API extensions",
            "version": "1.0",
            "description": "Orrery speaks oVirt's REST API v4 under /ovirt-engine/api "
            "(XML by default, JSON with Accept: application/json; bearer tokens from "
            "/ovirt-engine/sso/oauth/token). These are its additions.",
        },
        "components": {"securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}}},
        "security": [{"bearer": []}],
        "paths": paths,
    }


if __name__ == "__main__":
    import json
    import sys

    json.dump(document(), sys.stdout, indent=1)
