"""The seams hold: scheduler words only in the scheduler backends, runtime names only in the runtime seam, module
loads rendered in one place, and every module says what it holds in its first line. (Reads the source; no processes.)"""

from __future__ import annotations

import ast
import re
import typing
from pathlib import Path

from hpcci.config.release import ModuleSystem
from hpcci.modules import MODULE_SYSTEMS

SRC = Path(__file__).resolve().parents[2] / "src" / "hpcci"


def sources(*suffixes: str) -> list[Path]:
    return sorted(
        p for p in SRC.rglob("*") if p.is_file() and p.suffix in suffixes and "schemas" not in p.parts
    )


def rel(p: Path) -> str:
    return p.relative_to(SRC).as_posix()


def test_scheduler_commands_are_named_only_in_the_scheduler_backends() -> None:
    words = re.compile(r"sbatch|squeue|sacct|sinfo|#SBATCH")
    outside = [
        f"{rel(p)}:{n}"
        for p in sources(".py", ".sbatch", "")
        if not rel(p).startswith("backends/schedulers/")
        for n, line in enumerate(p.read_text(encoding="utf-8").splitlines(), 1)
        if words.search(line)
    ]
    assert outside == [], "say it in the Scheduler seam (backends/schedulers/), not here"


def test_runtime_names_appear_only_in_the_runtime_seam() -> None:
    names = re.compile(r"""["'](apptainer|singularity|charliecloud|podman)["']""")
    outside = [
        f"{rel(p)}:{n}"
        for p in sources(".py")
        if rel(p) != "backends/runtime.py"
        for n, line in enumerate(p.read_text(encoding="utf-8").splitlines(), 1)
        if names.search(line)
    ]
    assert outside == [], "ask the runtime for a capability (backends/runtime.py) instead of testing its name"


def test_module_loads_are_rendered_in_one_place() -> None:
    load = re.compile(r"""["']module["'],\s*["']load["']""")
    places = [rel(p) for p in sources(".py") if load.search(p.read_text(encoding="utf-8"))]
    assert places == ["modules.py"]


def test_the_module_systems_table_names_every_configurable_system() -> None:
    assert set(MODULE_SYSTEMS) == set(typing.get_args(ModuleSystem))


def test_every_module_names_its_responsibility_in_its_first_line() -> None:
    missing = []
    for p in sources(".py"):
        doc = ast.get_docstring(ast.parse(p.read_text(encoding="utf-8")))
        if not doc or len(doc.splitlines()[0]) < 15:
            missing.append(rel(p))
    assert missing == [], "open each module with a docstring whose first line says what it holds"


def test_github_and_hpcci_variables_are_read_only_in_context() -> None:
    read = re.compile(r"""environ(?:\.get)?[\[(]\s*["'](?:GITHUB|HPCCI)_""")
    outside = [
        f"{rel(p)}:{n}"
        for p in sources(".py")
        if rel(p) != "context.py"
        for n, line in enumerate(p.read_text(encoding="utf-8").splitlines(), 1)
        if read.search(line)
    ]
    assert outside == [], "name the variable in hpcci.context.VARIABLES and read it with context.var"
