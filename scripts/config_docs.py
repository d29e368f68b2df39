"""Generates docs/config.md, the reference of every key of hpcci.yaml and cluster configs, from the config models.

The source is the JSON schema the models produce (``model_json_schema``): key paths, types, defaults, allowed values
and the fields' descriptions. Defaults made by a ``default_factory`` are filled in by calling the factory, through
pydantic's documented hook ``GenerateJsonSchema.get_default_value``. Only ``hpcci.config``'s top-level names are
imported, so moving the models between modules changes nothing here.

    .venv/bin/python scripts/config_docs.py           write docs/config.md
    .venv/bin/python scripts/config_docs.py --check   exit 1 when docs/config.md is stale
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic.json_schema import GenerateJsonSchema, JsonSchemaValue
from pydantic_core import core_schema

from hpcci.config.models import Cluster, Pipeline

ROOT = Path(__file__).resolve().parent.parent
OUTPUT = ROOT / "docs" / "config.md"
REGENERATE = ".venv/bin/python scripts/config_docs.py"

# Models that are values, not sections: a secret or a value named by reference (config_types' FromEnv, FromFile).
VALUE_MODELS = {"FromEnv": "{env: VAR}", "FromFile": "{file: PATH}"}

Schema = dict[str, Any]


class _WithFactoryDefaults(GenerateJsonSchema):
    """The models' JSON schema, with the defaults a ``default_factory`` makes (pydantic leaves those out)."""

    def get_default_value(self, schema: core_schema.WithDefaultSchema) -> Any:
        factory = schema.get("default_factory")
        if factory is not None and not schema.get("default_factory_takes_data"):
            return factory()  # type: ignore[call-arg]
        return super().get_default_value(schema)


def model_schema(model: type[Pipeline] | type[Cluster]) -> JsonSchemaValue:
    return model.model_json_schema(schema_generator=_WithFactoryDefaults)


@dataclass(frozen=True)
class Row:
    key: str
    type: str
    default: str
    allowed: str
    description: str


class _Walker:
    """Turns one model's JSON schema into rows, one per key path (``a.b``, ``list[].c``, ``mapping.<name>.d``)."""

    def __init__(self, schema: Schema) -> None:
        self.defs: dict[str, Schema] = schema.get("$defs", {})
        self.rows: list[Row] = []

    def ref_name(self, node: Schema) -> str | None:
        ref = node.get("$ref")
        return str(ref).rsplit("/", 1)[-1] if ref else None

    def target(self, node: Schema) -> Schema:
        """The node itself, or the model it refers to; a nullable single option counts as that option."""
        options = [o for o in node.get("anyOf", []) if o.get("type") != "null"]
        if len(options) == 1:
            node = options[0]
        name = self.ref_name(node)
        return self.defs[name] if name else node

    def section(self, node: Schema) -> Schema | None:
        """The model whose keys get their own rows, if this node is one (not a value model)."""
        options = [o for o in node.get("anyOf", []) if o.get("type") != "null"]
        name = self.ref_name(options[0] if len(options) == 1 else node)
        if name is None or name in VALUE_MODELS:
            return None
        return self.defs[name]

    def type_of(self, node: Schema) -> str:
        name = self.ref_name(node)
        if name:
            return f"`{VALUE_MODELS[name]}`" if name in VALUE_MODELS else "mapping"
        if "anyOf" in node:
            return " \\| ".join(self.type_of(o) for o in node["anyOf"])
        kind = node.get("type")
        if kind == "array":
            return f"list of {self.type_of(node.get('items', {}))}"
        if kind == "object" and "properties" not in node:
            keys = node.get("propertyNames", {}).get("enum")
            values = node.get("additionalProperties")
            value = self.type_of(values) if isinstance(values, dict) else "any"
            return f"mapping of {'key' if keys else 'name'} to {value}"
        return str(kind) if kind else "any"

    def allowed(self, node: Schema) -> str:
        parts: list[str] = []
        if "enum" in node:
            parts.append(", ".join(f"`{v}`" for v in node["enum"]))
        if "const" in node:
            parts.append(f"`{node['const']}`")
        for option in node.get("anyOf", []):
            if "enum" in option or "const" in option:
                parts.append(", ".join(f"`{v}`" for v in option.get("enum", [option.get("const")])))
        if node.get("type") == "array" and "enum" in node.get("items", {}):
            parts.append("each one of " + ", ".join(f"`{v}`" for v in node["items"]["enum"]))
        keys = node.get("propertyNames", {}).get("enum") if node.get("type") == "object" else None
        if keys:
            parts.append("keys: " + ", ".join(f"`{k}`" for k in keys))
        for option in [node, *node.get("anyOf", [])]:
            parts.extend(self.bounds(option))
        return "; ".join(parts)

    def bounds(self, node: Schema) -> list[str]:
        out: list[str] = []
        if "pattern" in node:
            out.append(f"matches `{node['pattern']}`")
        for key, word in (
            ("minimum", ">="),
            ("exclusiveMinimum", ">"),
            ("maximum", "<="),
            ("exclusiveMaximum", "<"),
        ):
            if key in node:
                out.append(f"{word} {node[key]}")
        if "minItems" in node:
            out.append(f"at least {node['minItems']} item(s)")
        if "minProperties" in node:
            out.append(f"at least {node['minProperties']} entry(ies)")
        return out

    def default(self, node: Schema, required: bool) -> str:
        if required:
            return "required"
        if "default" not in node:
            return ""
        value = node["default"]
        if isinstance(value, dict) and value and self.section(node) is not None:
            return "its keys' defaults"
        return f"`{json.dumps(value)}`"

    def description(self, node: Schema) -> str:
        text = node.get("description") or self.target(node).get("description") or ""
        spans = " ".join(str(text).split()).replace("|", "\\|").split("`")
        # Outside code spans, <root> would be read as an HTML tag.
        return "`".join(
            s if i % 2 else s.replace("<", "&lt;").replace(">", "&gt;") for i, s in enumerate(spans)
        )

    def walk(self, model: Schema, prefix: str) -> None:
        required = set(model.get("required", []))
        for name, node in model.get("properties", {}).items():
            key = f"{prefix}{name}"
            row = Row(
                f"`{key}`",
                self.type_of(node),
                self.default(node, name in required),
                self.allowed(node),
                self.description(node),
            )
            self.rows.append(row)
            self.descend(node, key)

    def descend(self, node: Schema, key: str) -> None:
        section = self.section(node)
        if section is not None:
            self.walk(section, f"{key}.")
            return
        node = self.target(node)
        if node.get("type") == "array":
            items = self.section(node.get("items", {}))
            if items is not None:
                self.walk(items, f"{key}[].")
        elif node.get("type") == "object" and isinstance(node.get("additionalProperties"), dict):
            values = self.section(node["additionalProperties"])
            if values is not None:
                self.walk(values, f"{key}.<name>.")


def rows(model: type[Pipeline] | type[Cluster]) -> list[Row]:
    walker = _Walker(model_schema(model))
    walker.walk(model_schema(model), "")
    return walker.rows


def _table(rows: list[Row]) -> list[str]:
    out = ["| key | type | default | allowed | description |", "|---|---|---|---|---|"]
    out += [f"| {r.key} | {r.type} | {r.default} | {r.allowed} | {r.description} |" for r in rows]
    return out


def _grouped(title: str, rows: list[Row]) -> list[str]:
    """One table for the top-level values, then one heading and table per top-level section."""
    groups: dict[str, list[Row]] = {}
    top: list[Row] = []
    sections = {r.key.strip("`").split(".")[0].split("[")[0] for r in rows if "." in r.key}
    for r in rows:
        head = r.key.strip("`").split(".")[0].split("[")[0]
        (groups.setdefault(head, []) if head in sections else top).append(r)
    out = [f"### Top level of {title}", "", *_table(top), ""]
    for head, members in groups.items():
        out += [f"### {head}", "", *_table(members), ""]
    return out


HEADER = """\
# Configuration reference

<!-- Generated by scripts/config_docs.py from the config models: do not edit; run
     .venv/bin/python scripts/config_docs.py -->

Every key of the two kinds of config file, generated from the config models' JSON schema (the one
`hpcci validate --schema pipeline|cluster` prints). `hpcci validate` checks both kinds; every error names
`file:line:column`, the key, what is wrong and what would be right. Unknown keys are refused ("did you mean ...?").

How to read the tables: `a.b` is key `b` inside mapping `a`; `tests[].name` is `name` in each item of the list
`tests`; `scheduler.partitions.<name>.cpus` is `cpus` in each entry of the mapping `scheduler.partitions`, under a
name you choose. A secret is never written inline: `{env: VAR}` reads environment variable VAR (a CI secret),
`{file: PATH}` reads a local file (`~` and `$VARS` expanded). Slurm times are `MM`, `MM:SS`, `HH:MM:SS` or
`D-HH:MM:SS`; memory sizes are like `512M` or `4G`; names are letters, digits, `.`, `_` and `-`.
"""


def render() -> str:
    """The text of docs/config.md."""
    lines = [HEADER]
    lines += ["## hpcci.yaml", "", "The pipeline, next to the Dockerfile.", ""]
    lines += _grouped("hpcci.yaml", rows(Pipeline))
    lines += ["## Cluster configs", "", "One file per cluster, `cluster-configs/NAME.yaml`.", ""]
    lines += _grouped("a cluster config", rows(Cluster))
    return "\n".join(lines).rstrip("\n") + "\n"


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument(
        "--check", action="store_true", help="exit 1 when docs/config.md is stale; write nothing"
    )
    args = parser.parse_args(argv)
    text = render()
    if args.check:
        current = OUTPUT.read_text(encoding="utf-8") if OUTPUT.exists() else ""
        if current != text:
            print(f"{OUTPUT.relative_to(ROOT)} is stale; regenerate it: {REGENERATE}", file=sys.stderr)
            return 1
        return 0
    OUTPUT.parent.mkdir(parents=True, exist_ok=True)
    OUTPUT.write_text(text, encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
