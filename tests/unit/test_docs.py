"""The documentation holds: docs/config.md is what the config models generate, and every relative link resolves."""

from __future__ import annotations

import functools
import importlib.util
import re
import sys
import types
import typing
from pathlib import Path

from pydantic import BaseModel

from hpcci.config.models import Cluster, Pipeline

REPO = Path(__file__).resolve().parents[2]
DOCS = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]


@functools.cache
def _generator() -> types.ModuleType:
    """scripts/config_docs.py, imported from its file (scripts/ is no package)."""
    path = REPO / "scripts" / "config_docs.py"
    spec = importlib.util.spec_from_file_location("config_docs", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up while being defined
    spec.loader.exec_module(module)
    return module


# -- docs/config.md ------------------------------------------------------------------------------------------------


def test_config_reference_is_what_the_models_generate() -> None:
    gen = _generator()
    current = (REPO / "docs" / "config.md").read_text(encoding="utf-8")
    assert current == gen.render(), (
        f"docs/config.md is stale (a config model changed); regenerate it: {gen.REGENERATE}"
    )


def _model_in(annotation: object) -> type[BaseModel] | None:
    """The one section model an annotation holds (Model, Model | None), if any; value models are not sections."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return None if annotation.__name__ in ("FromEnv", "FromFile") else annotation
    models = [m for a in typing.get_args(annotation) if (m := _model_in(a)) is not None]
    return models[0] if len(models) == 1 and typing.get_origin(annotation) not in (list, dict) else None


def _key_paths(model: type[BaseModel], prefix: str = "") -> set[str]:
    """Every key path, found from the models' fields (not from the schema the generator walks)."""
    out: set[str] = set()
    for name, field in model.model_fields.items():
        key, annotation = f"{prefix}{name}", field.annotation
        out.add(key)
        args = typing.get_args(annotation)
        nested = _model_in(annotation)
        if nested is not None:
            out |= _key_paths(nested, f"{key}.")
        elif typing.get_origin(annotation) is list and (item := _model_in(args[0])) is not None:
            out |= _key_paths(item, f"{key}[].")
        elif typing.get_origin(annotation) is dict and (value := _model_in(args[1])) is not None:
            out |= _key_paths(value, f"{key}.<name>.")
    return out


def test_config_reference_has_a_row_for_every_key_of_both_files() -> None:
    text = (REPO / "docs" / "config.md").read_text(encoding="utf-8")
    pipeline, cluster = text.split("\n## Cluster configs\n")
    rows = re.compile(r"^\| `([^`]+)` \|", re.MULTILINE)
    assert set(rows.findall(pipeline)) == _key_paths(Pipeline)
    assert set(rows.findall(cluster)) == _key_paths(Cluster)
    assert '`release.module_system` | string | `"lmod"` | `lmod`, `tcl` |' in cluster


def test_config_reference_shows_defaults_a_default_factory_makes() -> None:
    rows = {r.key: r for r in _generator().rows(Pipeline)}
    assert rows["`image.platforms`"].default == '`["linux/amd64", "linux/arm64"]`'
    assert rows["`deploy.triggers`"].default == '`["tag", "workflow_dispatch"]`'
    assert rows["`image.name`"].default == "required"


# -- links and anchors -----------------------------------------------------------------------------------------------

FENCE = re.compile(r"^```.*?^```", re.MULTILINE | re.DOTALL)
CODE = re.compile(r"`[^`\n]*`")
LINK = re.compile(r"\[[^\]\n]*\]\(([^)\s]+)\)")


def _prose(text: str) -> str:
    """The text without code blocks and code spans, where brackets are not links."""
    return CODE.sub("", FENCE.sub("", text))


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces to hyphens."""
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", heading).strip().lower()
    return re.sub(r"[^\w\- ]", "", text).replace(" ", "-")


def anchors(text: str) -> set[str]:
    seen: dict[str, int] = {}
    out: set[str] = set()
    for heading in re.findall(r"^#{1,6} (.+?) *#*$", FENCE.sub("", text), re.MULTILINE):
        base = slug(heading)
        n = seen.get(base, 0)
        seen[base] = n + 1
        out.add(base if n == 0 else f"{base}-{n}")
    return out


def broken_links(doc: Path) -> list[str]:
    """Each relative link of ``doc`` whose file or anchor does not exist, as 'doc: target (why)'."""
    out: list[str] = []
    for target in LINK.findall(_prose(doc.read_text(encoding="utf-8"))):
        if re.match(r"^[a-z][a-z0-9+.-]*:", target):
            continue  # https:, mailto: - not ours to check offline
        path, _, anchor = target.partition("#")
        dest = (doc.parent / path).resolve() if path else doc
        if not dest.exists():
            out.append(f"{doc.name}: {target} (no such file)")
        elif anchor and anchor not in anchors(dest.read_text(encoding="utf-8")):
            out.append(f"{doc.name}: {target} (no heading #{anchor} in {dest.name})")
    return out


def test_every_relative_link_and_anchor_in_the_docs_resolves() -> None:
    assert len(DOCS) >= 8, [d.name for d in DOCS]
    broken = [b for doc in DOCS for b in broken_links(doc)]
    assert not broken, "broken links: " + "; ".join(broken)


def test_link_check_finds_a_missing_file_and_a_missing_anchor(tmp_path: Path) -> None:
    (tmp_path / "other.md").write_text("# Other\n\n## Login modes: `shell`, automation\n", encoding="utf-8")
    doc = tmp_path / "doc.md"
    doc.write_text(
        "# Doc\n\n## Same heading\n\n## Same heading\n\n"
        "[ok](other.md#login-modes-shell-automation) [ok](#same-heading-1) [web](https://example.org/x)\n"
        "`[in code](nowhere.md)`\n\n```\n[in a block](nowhere.md)\n```\n"
        "[gone](missing.md) [bad](other.md#logins) [bad](#same-heading-2)\n",
        encoding="utf-8",
    )
    assert broken_links(doc) == [
        "doc.md: missing.md (no such file)",
        "doc.md: other.md#logins (no heading #logins in other.md)",
        "doc.md: #same-heading-2 (no heading #same-heading-2 in doc.md)",
    ]


def test_readme_stays_short() -> None:
    lines = (REPO / "README.md").read_text(encoding="utf-8").count("\n")
    assert lines <= 250, f"README.md has {lines} lines; move details to docs/ and link them"


def test_pr_deploys_quotes_the_comment_workflow_verbatim() -> None:
    """The comment workflow the docs show is the example's file, byte for byte (as the README's is hpcci.yml)."""
    text = (REPO / "docs" / "pr-deploys.md").read_text(encoding="utf-8")
    blocks = re.findall(r"```ya?ml\n(.*?)```", text, re.DOTALL)
    example = REPO / "examples" / "fibonacci" / ".github" / "workflows" / "hpcci-comment.yml"
    assert blocks and blocks[0] == example.read_text(encoding="utf-8"), (
        f"docs/pr-deploys.md's first yaml block differs from {example.relative_to(REPO)}"
    )
