"""The test tree itself: pytest imports test modules by basename (rootdir imports, no packages), so two test files
with one name in different folders stop the whole run at collection."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

TESTS = Path(__file__).resolve().parents[1]


def test_every_test_file_has_a_name_of_its_own() -> None:
    names = Counter(p.name for p in TESTS.rglob("test_*.py"))
    assert len(names) > 20  # the walk found the tree
    assert [n for n, count in names.items() if count > 1] == []
