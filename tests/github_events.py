"""Webhook payloads for the tests, checked against GitHub's own schemas (standins/github/github-webhooks-subset.json,
OpenAPI 3.1 `webhooks`, JSON Schema 2020-12).

``minimal(schema_name)`` builds the smallest payload the schema accepts (every required property, first enum value,
first workable alternative); ``event`` lays the test's values over it and ``validate`` refuses anything GitHub's
schema would refuse, so an event a test hands to act or to hpcci is one GitHub could send.
"""

from __future__ import annotations

import copy
import json
from functools import cache
from pathlib import Path
from typing import Any

WEBHOOKS = Path(__file__).resolve().parent / "standins" / "github" / "github-webhooks-subset.json"
JSON = dict[str, Any]
URI = "https://github.com/octo-org/fibonacci"
SAMPLES = {
    "uri": URI,
    "date-time": "2026-01-01T00:00:00Z",
    "email": "octocat@example.org",
    "uri-template": URI,
}


@cache
def document() -> JSON:
    doc: JSON = json.loads(WEBHOOKS.read_text(encoding="utf-8"))
    return doc


def _resolve(schema: JSON) -> JSON:
    while "$ref" in schema:
        name = schema["$ref"].rsplit("/", 1)[-1]
        schema = document()["components"]["schemas"][name]
    return schema


def _sample(schema: JSON, depth: int = 0) -> Any:
    schema = _resolve(schema)
    if depth > 40:
        raise ValueError("schema too deep for a sample")
    if "allOf" in schema:
        out: JSON = {}
        for part in schema["allOf"]:
            value = _sample(part, depth + 1)
            if isinstance(value, dict):
                out.update(value)
        return out
    for key in ("oneOf", "anyOf"):
        if key in schema:
            options = [s for s in schema[key] if _resolve(s).get("type") != "null"] or schema[key]
            return _sample(options[0], depth + 1)
    if "enum" in schema:
        return next((v for v in schema["enum"] if v is not None), None)
    if "const" in schema:
        return schema["const"]
    kind = schema.get("type", "object")
    if isinstance(kind, list):
        kind = next((k for k in kind if k != "null"), "null")
    if kind == "object":
        props = schema.get("properties", {})
        return {name: _sample(props.get(name, {}), depth + 1) for name in schema.get("required", [])}
    if kind == "array":
        return []
    if kind == "string":
        return SAMPLES.get(schema.get("format", ""), "x")
    if kind in ("integer", "number"):
        return max(1, int(schema.get("minimum", 1)))
    if kind == "boolean":
        return False
    return None


def minimal(schema_name: str) -> JSON:
    """The smallest payload ``components/schemas/<schema_name>`` accepts."""
    value: JSON = _sample({"$ref": f"#/components/schemas/{schema_name}"})
    return value


def validate(schema_name: str, payload: JSON) -> None:
    """Raise jsonschema.ValidationError when GitHub's schema refuses ``payload``."""
    import jsonschema
    from referencing import Registry, Resource
    from referencing.jsonschema import DRAFT202012

    root = Resource.from_contents(document(), default_specification=DRAFT202012)
    registry: Registry[Any] = Registry().with_resource("urn:webhooks", root)
    schema = {"$ref": f"urn:webhooks#/components/schemas/{schema_name}"}
    jsonschema.Draft202012Validator(schema, registry=registry).validate(payload)


def _merge(base: Any, over: Any) -> Any:
    if isinstance(base, dict) and isinstance(over, dict):
        out = dict(base)
        for k, v in over.items():
            out[k] = _merge(base.get(k), v)
        return out
    return copy.deepcopy(over)


def event(schema_name: str, values: JSON) -> JSON:
    """``values`` laid over the minimal payload, validated."""
    payload: JSON = _merge(minimal(schema_name), values)
    validate(schema_name, payload)
    return payload


def user(login: str, uid: int = 583231, kind: str = "User") -> JSON:
    return {"login": login, "id": uid, "type": kind, "html_url": f"https://github.com/{login}"}


def repository(full_name: str) -> JSON:
    owner, name = full_name.split("/")
    return {"full_name": full_name, "name": name, "owner": {"login": owner}, "default_branch": "main"}


def issue_comment_created(
    full_name: str, pr: int, comment_id: int, body: str, login: str, *, on_pr: bool = True
) -> JSON:
    """A comment on pull request ``pr`` (or on an issue: ``on_pr=False``), as GitHub sends it."""
    api = f"https://api.github.com/repos/{full_name}"
    issue: JSON = {"number": pr, "title": "Add a faster fib", "state": "open"}
    if on_pr:
        issue["pull_request"] = {
            "url": f"{api}/pulls/{pr}",
            "html_url": f"https://github.com/{full_name}/pull/{pr}",
            "diff_url": f"https://github.com/{full_name}/pull/{pr}.diff",
            "patch_url": f"https://github.com/{full_name}/pull/{pr}.patch",
        }
    comment = {
        "id": comment_id,
        "body": body,
        "user": user(login),
        "html_url": f"https://github.com/{full_name}/pull/{pr}#issuecomment-{comment_id}",
        "author_association": "CONTRIBUTOR",
    }
    values = {
        "action": "created",
        "issue": issue,
        "comment": comment,
        "repository": repository(full_name),
        "sender": user(login),
    }
    return event("webhook-issue-comment-created", values)
