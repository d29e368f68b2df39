"""`hpcci plan` prints cluster paths so that a command pasted into a shell on the cluster means what the deploy runs."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from hpcci.backends.schedulers import SCHEDULERS
from hpcci.commands.plan import RESOLVED, pasteable, path_prefixes
from hpcci.config.load import load_cluster, load_pipeline
from hpcci.stages.deploy.paths import resolve_paths, unresolved_paths
from hpcci.stages.deploy.plan import plan_cluster
from hpcci.stages.sources import ImageSource
from hpcci.stages.steps import Command

ROOT = Path(__file__).resolve().parents[2]
ENV = {"SCRATCH": "/scratch/u 1", "HOME": "/home/u", "PROJECT": "/proj"}


def shell_words(line: str, env: dict[str, str]) -> list[str]:
    """The words a POSIX shell makes of ``line``: '...' literal, "..." with $VAR / ${VAR} expanded, blanks split
    (the only quoting shlex.join and pasteable write)."""
    words: list[str] = []
    word: str | None = None
    i = 0
    while i < len(line):
        c = line[i]
        if c in " \t":
            if word is not None:
                words.append(word)
            word, i = None, i + 1
            continue
        if c == "'":
            end = line.index("'", i + 1)
            word, i = (word or "") + line[i + 1 : end], end + 1
        elif c == '"':
            end = line.index('"', i + 1)
            inner = re.sub(r"\$\{?([A-Za-z_][A-Za-z0-9_]*)\}?", lambda m: env[m.group(1)], line[i + 1 : end])
            word, i = (word or "") + inner, end + 1
        else:
            assert c != "$", f"an unquoted variable would be split: {line}"
            word, i = (word or "") + c, i + 1
    return [*words, *([word] if word is not None else [])]


def plans() -> tuple[list[Command], list[Command]]:
    """The same deploy planned twice: paths as the plan prints them, and resolved as the deploy runs them."""
    pipe = load_pipeline(ROOT / "examples/fibonacci/hpcci.yaml")
    cluster = load_cluster(ROOT / "cluster-configs/local.yaml")
    sources = {p: ImageSource(p, "sha256:" + "0" * 64, local_tar="IMAGE.tar") for p in ["linux/amd64"]}
    out = []
    for paths in (unresolved_paths(cluster, "R"), resolve_paths(cluster, ENV, "R")):
        plan = plan_cluster(pipe, cluster, sources, paths, "R", SCHEDULERS["slurm"])
        out.append([s for s in plan.steps() if isinstance(s, Command) and s.argv[:2] != ["bash", "-lc"]])
    return out[0], out[1]


def test_every_planned_command_pasted_on_the_cluster_runs_the_deploys_words() -> None:
    cluster = load_cluster(ROOT / "cluster-configs/local.yaml")
    prefixes = path_prefixes([cluster])
    shown, ran = plans()
    assert len(shown) == len(ran) > 3
    for s, r in zip(shown, ran, strict=True):
        line = s.lines()[0].removeprefix("+ ").split("    # ")[0]
        assert shell_words(pasteable(line, prefixes), ENV) == r.argv, line


def test_a_path_inside_a_longer_word_keeps_the_rest_literal() -> None:
    line = "env 'TMPDIR=$SCRATCH/tmp' 'docker-archive://$SCRATCH/hpcci/images/x.tar' '$SCRATCH' 'echo $HOME'"
    out = pasteable(line, ["$SCRATCH/hpcci/images", "$SCRATCH/tmp"])
    assert out == (
        "env 'TMPDIR='\"$SCRATCH\"'/tmp' 'docker-archive://'\"$SCRATCH\"'/hpcci/images/x.tar' '$SCRATCH' 'echo $HOME'"
    )
    # only cluster paths: a test's own '$SCRATCH' or '$HOME' words stay literal, as the deploy passes them
    assert shell_words(out, ENV)[-2:] == ["$SCRATCH", "echo $HOME"]


def test_files_written_say_their_variables_are_resolved_at_deploy_and_directives_stay_as_written() -> None:
    prefixes = ["$WORK/hpcci/runs/R"]
    assert (
        pasteable("write $WORK/hpcci/runs/R/t.sbatch:", prefixes)
        == f"write $WORK/hpcci/runs/R/t.sbatch:{RESOLVED}"
    )
    directive = '#SBATCH --output="$WORK/hpcci/runs/R/t.out"'
    assert pasteable(directive, prefixes) == directive


@pytest.mark.parametrize(
    "line", ["+ mkdir -p -- /abs/path", "write /abs/t.sbatch:", "+ sbatch --parsable 'a b'"]
)
def test_lines_without_a_variable_path_are_unchanged(line: str) -> None:
    assert pasteable(line, ["$WORK/x"]) == line
