"""Write a stage's record to $GITHUB_OUTPUT as step outputs, standard library only.

  outputs.py STAGE RECORDS_DIR     STAGE: build | publish | deploy

Every stage gets `record` (the JSON of RECORDS_DIR/STAGE.json, so the next job can carry on from it); build and
publish also get `image`, `tags` (one per line) and `digest` (the multi-arch manifest digest); deploy gets
`results` (results.json) and `conclusion` (success when every smoke test passed). A missing record writes nothing:
the stage failed before writing it, and its own error says why.
"""

from __future__ import annotations

import json
import os
import sys
import uuid
from pathlib import Path
from typing import Any


def outputs(stage: str, records: Path) -> dict[str, str]:
    """The step outputs for ``stage`` from the record files in ``records`` (empty when there is no record)."""
    path = records / f"{stage}.json"
    if not path.is_file():
        return {}
    text = path.read_text(encoding="utf-8")
    record: dict[str, Any] = json.loads(text)
    out = {"record": text.strip()}
    if stage == "build":
        out.update(image=record.get("image", ""), tags="\n".join(record.get("tags", [])))
        out["digest"] = record.get("manifest_digest") or ""
    elif stage == "publish":
        out.update(image=record.get("image", ""), tags="\n".join(record.get("tags", [])))
        out["digest"] = (record.get("registry") or {}).get("digest", "")
    elif stage == "deploy":
        results = records / "results.json"
        if results.is_file():
            out["results"] = results.read_text(encoding="utf-8").strip()
            out["conclusion"] = conclusion(json.loads(out["results"]))
    return out


def conclusion(results: dict[str, Any]) -> str:
    """success when every cluster ran without error and every test's verdict is pass (as Results.passed)."""
    clusters = results.get("clusters") or []
    passed = bool(clusters) and all(
        not c.get("error") and all(t.get("verdict") == "pass" for t in c.get("tests", [])) for c in clusters
    )
    return "success" if passed else "failure"


def github_output_text(values: dict[str, str]) -> str:
    """`name<<DELIM` blocks: safe for multi-line values and JSON."""
    lines = []
    for name, value in values.items():
        delim = f"hpcci_{uuid.uuid4().hex}"
        lines += [f"{name}<<{delim}", value, delim]
    return "".join(line + "\n" for line in lines)


def main(argv: list[str]) -> int:
    if len(argv) != 2 or argv[0] not in ("build", "publish", "deploy"):
        sys.exit(__doc__)
    values = outputs(argv[0], Path(argv[1]))
    target = os.environ.get("GITHUB_OUTPUT")
    if values and target:
        with open(target, "a", encoding="utf-8") as f:
            f.write(github_output_text(values))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
