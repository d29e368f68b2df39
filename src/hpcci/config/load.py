"""Loading hpcci config files: bounded YAML reading, key positions, one-line errors with file:line:column.

Every input is bounded before it can cost much: bytes are capped as they are read (a pipe or /dev/stdin has no
size to check), nesting depth is capped while the YAML is scanned, before ruamel's composer recurses (and before
its scanner's look-ahead grows quadratic), and aliases are refused before anything expands. Validation errors
name the key, what is wrong and what would be right ("did you mean ...?").
"""

from __future__ import annotations

import difflib
import os
import re
import stat
import typing
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError
from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap, CommentedSeq
from ruamel.yaml.error import MarkedYAMLError, StreamMark, YAMLError
from ruamel.yaml.scanner import RoundTripScanner

from hpcci.config.models import Cluster, Pipeline
from hpcci.config.types import Loc, Source
from hpcci.errors import ConfigError

MAX_CONFIG_BYTES = 1 << 20
# Real configs nest 4-5 levels; 50 keeps ruamel's recursive composer far from Python's recursion limit.
MAX_DEPTH = 50
# The shipped configs are 100-250 tokens, a pipeline with a hundred tests a few thousand; ruamel's pure-Python
# scanner and composer spend 50-150 us a token, so this also bounds the CPU time to about a second.
MAX_TOKENS = 10_000

M = TypeVar("M", Pipeline, Cluster)


# -- reading: bytes, depth, aliases ------------------------------------------------------------------------------


def _read_text(path: Path) -> str:
    """The file's text, refusing more than MAX_CONFIG_BYTES without reading (or holding) more than that."""
    name = str(path)
    too_big = "hpcci config files are limited to 1 MiB: is this the right file?"
    try:
        with path.open("rb") as f:
            st = os.fstat(f.fileno())
            if stat.S_ISREG(st.st_mode) and st.st_size > MAX_CONFIG_BYTES:
                raise ConfigError(f"{name}:1:1: file is {st.st_size / 1e6:.1f} MB; {too_big}")
            # A pipe or device has no size: read one byte past the cap to know it is over.
            data = f.read(MAX_CONFIG_BYTES + 1)
    except OSError as e:
        raise ConfigError(f"{name}: cannot read: {e.strerror}") from e
    if len(data) > MAX_CONFIG_BYTES:
        raise ConfigError(f"{name}:1:1: more than 1 MiB to read; {too_big}")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise ConfigError(f"{name}: cannot read: not UTF-8 text") from e


class _Refused(Exception):
    """Input the scanner stops at; the message is completed with the file's name and this position."""

    def __init__(self, mark: StreamMark, problem: str) -> None:
        super().__init__(problem)
        self.mark = mark
        self.problem = problem


class _BoundedScanner(RoundTripScanner):
    """ruamel's scanner, stopping at the first alias, the first collection nested deeper than MAX_DEPTH and the
    MAX_TOKENS+1st token.

    The hooks run as each token is scanned: `[[[[...` stops after MAX_DEPTH brackets, before the scanner's
    look-ahead (quadratic in the depth) and before the composer (recursive); an alias stops before anything could
    expand it; and the token count bounds the CPU time (a 1 MiB flow sequence of one-letter items would take
    minutes).
    """

    _tokens = 0

    def fetch_more_tokens(self) -> Any:
        self._tokens += 1
        if self._tokens > MAX_TOKENS:
            raise _Refused(
                self.reader.get_mark(),
                f"more than {MAX_TOKENS} YAML tokens; hpcci config files are far smaller: is this the right file?",
            )
        return super().fetch_more_tokens()

    def fetch_alias(self) -> None:
        super().fetch_alias()
        alias = self.tokens[-1]
        raise _Refused(
            alias.start_mark,
            f"YAML aliases (*{alias.value}) are not allowed in hpcci config files; write the value out",
        )

    def add_indent(self, column: int) -> bool:
        added: bool = super().add_indent(column)
        self._check_depth()
        return added

    def fetch_flow_collection_start(self, TokenClass: Any, to_push: str) -> None:
        super().fetch_flow_collection_start(TokenClass, to_push)
        self._check_depth()

    def _check_depth(self) -> None:
        # Block collections push an indent, flow collections a flow level.
        if len(self.indents) + self.flow_level > MAX_DEPTH:
            raise _Refused(
                self.reader.get_mark(),
                f"collections nested more than {MAX_DEPTH} deep; hpcci config files need a few levels: "
                "is this the right file?",
            )


def _parse(text: str) -> Any:
    yaml = YAML(typ="rt")
    yaml.Scanner = _BoundedScanner
    return yaml.load(text)


def _read_yaml(path: Path) -> tuple[Any, Source]:
    name = str(path)
    text = _read_text(path)
    try:
        data = _parse(text)
    except _Refused as e:
        raise ConfigError(f"{name}:{e.mark.line + 1}:{e.mark.column + 1}: {e.problem}") from None
    except MarkedYAMLError as e:
        m = e.problem_mark or e.context_mark
        where = f"{name}:{m.line + 1}:{m.column + 1}" if m else name
        problem = (e.problem or e.context or "malformed YAML").strip()
        raise ConfigError(f"{where}: malformed YAML: {problem}") from e
    except YAMLError as e:
        raise ConfigError(f"{name}: malformed YAML: {str(e).splitlines()[0]}") from e
    positions: dict[Loc, tuple[int, int]] = {}
    _collect_positions(data, (), positions)
    return data, Source(name, positions)


def _collect_positions(node: Any, loc: Loc, out: dict[Loc, tuple[int, int]]) -> None:
    if isinstance(node, CommentedMap):
        for key in node:
            kl, kc, vl, vc = node.lc.data[key]
            out[loc + (str(key),)] = (vl + 1, vc + 1)
            out[loc + (str(key), "<key>")] = (kl + 1, kc + 1)
            _collect_positions(node[key], loc + (str(key),), out)
    elif isinstance(node, CommentedSeq):
        for i, item in enumerate(node):
            line, col = node.lc.data[i]
            out[loc + (i,)] = (line + 1, col + 1)
            _collect_positions(item, loc + (i,), out)


def _plain(node: Any) -> Any:
    """ruamel's round-trip types -> plain dicts/lists/scalars for validation."""
    if isinstance(node, dict):
        return {str(k): _plain(v) for k, v in node.items()}
    if isinstance(node, list):
        return [_plain(v) for v in node]
    if isinstance(node, str):
        return str(node)
    return node


# -- validation errors, one line each ----------------------------------------------------------------------------

_TYPE_TAGS = {
    "str",
    "int",
    "float",
    "bool",
    "FromEnv",
    "FromFile",
    "list[str]",
    "literal['auto']",
    "function-after",
}


def _clean_loc(loc: Sequence[str | int]) -> Loc:
    return tuple(
        p
        for p in loc
        if not (isinstance(p, str) and (p in _TYPE_TAGS or "[" in p or p.startswith("function")))
    )


def _dotted(loc: Loc) -> str:
    out = ""
    for p in loc:
        out += f"[{p}]" if isinstance(p, int) else (f".{p}" if out else p)
    return out or "(top level)"


def _fields_at(model: type[BaseModel], loc: Loc) -> list[str]:
    """The keys allowed at ``loc`` (for 'did you mean ...?')."""
    current: Any = model
    for part in loc:
        if isinstance(part, int):
            continue
        if not (isinstance(current, type) and issubclass(current, BaseModel)):
            return []
        field = current.model_fields.get(part)
        if field is None:
            return []
        tp = field.annotation
        # unwrap Optional / list / dict to the model inside
        for _ in range(4):
            args = [a for a in typing.get_args(tp) if a is not type(None)]
            if isinstance(tp, type) and issubclass(tp, BaseModel):
                break
            models = [a for a in args if isinstance(a, type) and issubclass(a, BaseModel)]
            tp = models[0] if models else (args[-1] if args else tp)
        current = tp
    if isinstance(current, type) and issubclass(current, BaseModel):
        return list(current.model_fields)
    return []


def _suggestion(model: type[BaseModel], loc: Loc) -> str | None:
    """The allowed key an unknown key at ``loc`` is closest to, if any ('did you mean ...?')."""
    hint = difflib.get_close_matches(str(loc[-1]), _fields_at(model, loc[:-1]), n=1)
    return hint[0] if hint else None


def _error_lines(model: type[BaseModel], err: ValidationError, source: Source) -> list[str]:
    lines: list[str] = []
    seen: set[Loc] = set()
    errors = err.errors()
    # A misspelt required key is one mistake: "unknown key; did you mean 'name'?" says it, "name: required key
    # is missing" would send the reader to the mapping's first key for the same one.
    misspelt = {
        (*loc[:-1], hint)
        for loc in (_clean_loc(e["loc"]) for e in errors if e["type"] == "extra_forbidden")
        if (hint := _suggestion(model, loc))
    }
    for e in errors:
        loc = _clean_loc(e["loc"])
        if loc in seen:
            continue
        seen.add(loc)
        key = _dotted(loc)
        if e["type"] == "extra_forbidden":
            hint = _suggestion(model, loc)
            allowed = _fields_at(model, loc[:-1])
            fix = f"did you mean '{hint}'?" if hint else f"allowed keys: {', '.join(allowed)}"
            where = source.where((*loc, "<key>"))
            lines.append(f"{where}: {key}: unknown key; {fix}")
            continue
        msg = e["msg"].removeprefix("Value error, ")
        if e["type"] == "missing" and loc in misspelt:
            continue
        if e["type"] == "missing":
            where = source.where(loc[:-1]) if loc[:-1] else f"{source.file}:1:1"
            lines.append(f"{where}: {key}: required key is missing; add it")
            continue
        got = e.get("input")
        shown = f" (got {got!r})" if isinstance(got, (str, int, float, bool)) and repr(got) not in msg else ""
        if e["type"] == "literal_error" and isinstance(got, str):
            allowed_vals = re.findall(r"'([^']+)'", msg)
            close = difflib.get_close_matches(got, allowed_vals, n=1)
            if close:
                shown += f"; did you mean '{close[0]}'?"
        lines.append(f"{source.where(loc)}: {key}: {msg}{shown}")
    return lines


# -- the loaders -------------------------------------------------------------------------------------------------


def _empty(path: Path, kind: str) -> ConfigError:
    """One wording for an empty (or comments-only) file, whichever command read it."""
    return ConfigError(f"{path}:1:1: file is empty; see the README for a minimal {kind} config")


def _validated(model: type[M], path: Path, data: Any, source: Source) -> M:
    if data is None:
        raise _empty(path, model.__name__.lower())
    if not isinstance(data, dict):
        raise ConfigError(
            f"{path}:1:1: expected a mapping of keys at the top level, got {type(data).__name__}"
        )
    try:
        obj = model.model_validate(_plain(data))
    except ValidationError as e:
        raise ConfigError("\n".join(_error_lines(model, e, source))) from None
    obj._source = source
    return obj


def _checked(cluster: Cluster) -> Cluster:
    """The checks across keys that the model alone cannot make."""
    parts = cluster.scheduler.partitions
    value = cluster.scheduler.default_partition
    if value not in parts:
        where = cluster.source.where(("scheduler", "default_partition"))
        raise ConfigError(
            f"{where}: scheduler.default_partition: {value!r} is not one of the partitions ({', '.join(parts)})"
        )
    return cluster


def load(model: type[M], path: Path | str) -> M:
    """Load and validate one config file; ConfigError lists every problem, one per line."""
    path = Path(path)
    data, source = _read_yaml(path)
    return _validated(model, path, data, source)


def _checked_pipeline(pipe: Pipeline) -> Pipeline:
    """Test names are unique: each is its job's script, output and job name in the run's folder."""
    first: dict[str, int] = {}
    for i, t in enumerate(pipe.tests):
        if t.name in first:
            where = pipe.source.where(("tests", i, "name"))
            at = pipe.source.where(("tests", first[t.name], "name")).rsplit(":", 2)[-2]
            raise ConfigError(
                f"{where}: tests[{i}].name: {t.name!r} is the name of tests[{first[t.name]}] too (line {at}); a "
                "test's name is its job script and output file on the cluster: give each test its own"
            )
        first[t.name] = i
    return pipe


def load_pipeline(path: Path | str = "hpcci.yaml") -> Pipeline:
    return _checked_pipeline(load(Pipeline, path))


def load_cluster(path: Path | str) -> Cluster:
    return _checked(load(Cluster, path))


def load_any(path: Path) -> Pipeline | Cluster:
    """A pipeline or a cluster config, told apart by its keys; read once, so /dev/stdin works too."""
    data, source = _read_yaml(path)
    if (
        data is None
    ):  # the kind its folder says: cluster configs live in cluster-configs/ (deploy.cluster_configs)
        raise _empty(path, "cluster" if path.parent.name == "cluster-configs" else "pipeline")
    if isinstance(data, dict) and "login" in data:
        return _checked(_validated(Cluster, path, data, source))
    if isinstance(data, dict) and "image" in data:
        return _checked_pipeline(_validated(Pipeline, path, data, source))
    raise ConfigError(
        f"{source.file}:1:1: neither a pipeline file (no 'image' key) nor a cluster config (no 'login' key)"
    )


def cluster_path(pipeline: Pipeline, name: str, base: Path) -> Path:
    return base / pipeline.deploy.cluster_configs / f"{name}.yaml"


def load_clusters(pipeline: Pipeline, names: Iterable[str], base: Path) -> dict[str, Cluster]:
    """The named clusters from the pipeline's cluster-configs folder."""
    out: dict[str, Cluster] = {}
    for name in names:
        path = cluster_path(pipeline, name, base)
        if not path.exists():
            folder = path.parent
            known = sorted(p.stem for p in folder.glob("*.yaml")) if folder.is_dir() else []
            hint = difflib.get_close_matches(name, known, n=1)
            extra = f"did you mean '{hint[0]}'?" if hint else f"known clusters: {', '.join(known) or 'none'}"
            raise ConfigError(f"{path}: no config for cluster '{name}'; {extra}")
        out[name] = load_cluster(path)
    return out


def json_schema(model: type[Pipeline] | type[Cluster]) -> dict[str, Any]:
    """The JSON schema editors use for ``model``'s files (shipped in src/hpcci/schemas/)."""
    schema = model.model_json_schema()
    schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    schema["$id"] = f"https://hpcci.dev/schemas/{'pipeline' if model is Pipeline else 'cluster'}.json"
    return schema
