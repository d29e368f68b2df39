"""`scripts/local-stack prune` removes only orphaned multipart segments of the S3 test bucket (the pure rule)."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType


def _prune() -> ModuleType:
    path = Path(__file__).resolve().parents[2] / "scripts" / "stack" / "s3_prune.py"
    spec = importlib.util.spec_from_file_location("s3_prune", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


OLD, FRESH, NEW = "2026-01-01T00:00:00.000000", "2026-01-02T10:00:00.000000", "2026-01-02T11:59:00.000000"
ABANDONED, RECENT = "2026-01-01T12:00:00.000000", "2026-01-02T11:00:00.000000"


def test_only_parts_no_manifest_names_and_no_live_upload_owns_go() -> None:
    segments = [
        ("k/live.tar/U1/1", OLD),  # named by the object's manifest: kept
        ("k/live.tar/U0/1", OLD),  # the same key's earlier upload, overwritten: orphan
        ("k/gone.tar/U2/1", OLD),  # its object was deleted (s3api's async delete never ran): orphan
        ("k/busy.tar/U3", FRESH),  # an upload in progress: its marker and parts stay
        ("k/busy.tar/U3/1", OLD),
        ("k/stuck.tar/U4", OLD),  # interrupted a day ago: marker and parts go
        ("k/stuck.tar/U4/1", OLD),
        ("k/new.tar/U5/1", NEW),  # too young to judge: kept whatever it is
    ]
    out = _prune().orphans(segments, {"k/live.tar/U1/1"}, ABANDONED, RECENT)
    assert out == ["k/live.tar/U0/1", "k/gone.tar/U2/1", "k/stuck.tar/U4", "k/stuck.tar/U4/1"]


def test_a_key_ending_in_digits_is_still_read_as_key_upload_part() -> None:
    segments = [("v/2024/U9", FRESH), ("v/2024/U9/3", OLD)]
    assert _prune().orphans(segments, set(), ABANDONED, RECENT) == []
