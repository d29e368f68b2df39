"""The OpenAPI description (github-checks-subset.json + github-maintainers-subset.json + two operations of
github-deployments-subset.json, merged and fixed in memory) and request/response validation."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

from werkzeug.wrappers import Request, Response

from .replies import JSON

SPEC_PATH = Path(__file__).with_name("github-checks-subset.json")
MAINTAINERS_PATH = Path(__file__).with_name("github-maintainers-subset.json")
DEPLOYMENTS_PATH = Path(__file__).with_name("github-deployments-subset.json")
# What the comment trigger reads of the deployments subset: the base branch's head (repos/get-branch) and the
# configuration files at a commit (repos/get-content). Only these: the rest of that subset disagrees with the checks
# subset on components/schemas/check-run (another cut of GitHub's description).
TRIGGER_PATHS = ("/repos/{owner}/{repo}/branches/{branch}", "/repos/{owner}/{repo}/contents/{path}")
_EXAMPLES: dict[str, JSON] = {}


def load_spec(path: Path = SPEC_PATH, more: Path | None = MAINTAINERS_PATH) -> JSON:
    """GitHub's description with the two changes openapi-core needs (see SOURCE.md); the files stay untouched.
    ``more``: a second subset cut from the same description, merged in (paths by method, components by name),
    and with it the trigger's operations of the deployments subset (TRIGGER_PATHS)."""
    spec: JSON = json.loads(path.read_text(encoding="utf-8"))
    if more is not None:
        merge(spec, json.loads(more.read_text(encoding="utf-8")))
        merge(spec, only(json.loads(DEPLOYMENTS_PATH.read_text(encoding="utf-8")), TRIGGER_PATHS))
    _fix_schemas(spec)
    # Match requests on any host: the stand-in answers on 127.0.0.1, not api.github.com.
    spec["servers"] = [{"url": "/"}]
    return spec


def merge(spec: JSON, other: JSON) -> None:
    """Both subsets come from one description: a name they share means the same thing (checked, not assumed)."""
    for path, methods in other["paths"].items():
        mine = spec["paths"].setdefault(path, {})
        for method, operation in methods.items():
            if mine.setdefault(method, operation) != operation:
                raise ValueError(f"the subsets disagree on {method.upper()} {path}")
    for section, entries in other.get("components", {}).items():
        target = spec.setdefault("components", {}).setdefault(section, {})
        for name, value in entries.items():
            if target.setdefault(name, value) != value:
                raise ValueError(f"the subsets disagree on components/{section}/{name}")


def only(spec: JSON, paths: tuple[str, ...]) -> JSON:
    """``spec`` cut down to ``paths`` and every component they reference (followed through components too)."""
    cut: JSON = {"paths": {p: spec["paths"][p] for p in paths}, "components": {}}
    todo, seen = list(_refs(cut["paths"])), set()
    while todo:
        ref = todo.pop()
        if ref in seen:
            continue
        seen.add(ref)
        _, _, section, name = ref.split("/", 3)
        value = spec["components"][section][name]
        cut["components"].setdefault(section, {})[name] = value
        todo += _refs(value)
    return cut


def _refs(node: Any) -> list[str]:
    if isinstance(node, dict):
        found = [node["$ref"]] if isinstance(node.get("$ref"), str) else []
        return found + [r for v in node.values() for r in _refs(v)]
    if isinstance(node, list):
        return [r for v in node for r in _refs(v)]
    return []


def example(name: str, source: Path = MAINTAINERS_PATH) -> JSON:
    """A fresh copy of one of GitHub's own examples (components/examples of the maintainers subset): the template
    a stand-in view starts from, so every field GitHub's schema requires is there."""
    if name not in _EXAMPLES:
        spec = json.loads(source.read_text(encoding="utf-8"))
        _EXAMPLES[name] = spec["components"]["examples"][name]["value"]
    value: JSON = copy.deepcopy(_EXAMPLES[name])
    return value


def _fix_schemas(node: Any) -> None:
    if isinstance(node, dict):
        # GitHub's inline `discriminator` (checks/create) names no schema; openapi-core resolves it as a schema
        # name and then rejects every valid body. The oneOf beside it still carries the rule.
        node.pop("discriminator", None)
        # OpenAPI 3.0 `nullable: true` with an `enum`: JSON Schema still checks null against the enum.
        if node.get("nullable") is True and isinstance(node.get("enum"), list) and None not in node["enum"]:
            node["enum"] = [*node["enum"], None]
        for value in node.values():
            _fix_schemas(value)
    elif isinstance(node, list):
        for value in node:
            _fix_schemas(value)


class Validator:
    """openapi-core request/response validation against the fixed description."""

    def __init__(self, spec: JSON) -> None:
        from openapi_core import OpenAPI

        self.openapi = OpenAPI.from_dict(spec)

    def request_errors(self, request: Request) -> list[str]:
        from openapi_core.contrib.werkzeug import WerkzeugOpenAPIRequest

        result = self.openapi.unmarshal_request(WerkzeugOpenAPIRequest(request))
        return [_describe(e) for e in result.errors]

    def response_errors(self, request: Request, response: Response) -> list[str]:
        from openapi_core.contrib.werkzeug import WerkzeugOpenAPIRequest, WerkzeugOpenAPIResponse
        from openapi_core.templating.responses.exceptions import ResponseNotFound

        result = self.openapi.unmarshal_response(
            WerkzeugOpenAPIRequest(request), WerkzeugOpenAPIResponse(response)
        )
        return [_describe(e) for e in result.errors if not isinstance(e, ResponseNotFound)]


def _describe(error: BaseException) -> str:
    """openapi-core nests the useful jsonschema messages in __cause__.schema_errors: keep those (short)."""
    details: list[str] = []
    cause: BaseException | None = error
    while cause is not None:
        for d in getattr(cause, "schema_errors", None) or []:
            details.append(_schema_error(d))
        cause = cause.__cause__
    head = type(error).__name__
    if details:
        return f"{head}: " + "; ".join(details)
    text = str(error)
    return text if len(text) <= 500 else text[:500] + "..."


def _schema_error(d: Any) -> str:
    """One jsonschema error as `path: what`, without echoing a huge value back."""
    where = "/".join(str(p) for p in d.absolute_path) or "(body)"
    message = str(d.message)
    if len(message) > 200:
        message = f"fails {d.validator} {json.dumps(d.validator_value, default=str)[:120]}"
    if d.context:  # oneOf / anyOf: say why each alternative failed
        message += " (" + "; ".join(str(c.message)[:200] for c in d.context[:6]) + ")"
    return f"{where}: {message}"
