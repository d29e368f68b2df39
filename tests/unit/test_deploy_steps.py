"""`hpcci plan` and `hpcci deploy` share one list of steps, and the plan reaches no transport."""

from __future__ import annotations

import ast
import importlib.util
from collections.abc import Sequence
from pathlib import Path

import pytest
from test_sbatch_scripts import DIGEST, FIB, PATHS, local_cluster, pipeline

from hpcci.backends.schedulers import slurm
from hpcci.process import Completed
from hpcci.records import S3Object
from hpcci.stages.deploy.execute import Deployer
from hpcci.stages.deploy.plan import ClusterPlan, plan_cluster, plan_lines
from hpcci.stages.deploy.provenance import read_sif_checksums
from hpcci.stages.sources import ImageSource
from hpcci.stages.steps import Command, Submit, Upload, WriteFile

TRANSPORT = ("paramiko", "hpcci.backends.ssh.remote", "hpcci.process", "subprocess", "socket")
SHA = "ef" * 32
PLAN_MODULES = (
    "hpcci.stages.deploy.plan",
    "hpcci.stages.deploy.image_plan",
    "hpcci.stages.steps",
    "hpcci.stages.deploy.paths",
)


def hpcci_imports(module: str) -> set[str]:
    """Every module ``module`` imports (read with ast, not run), followed through hpcci's own modules."""
    seen: set[str] = set()
    todo = [module]
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        spec = importlib.util.find_spec(name)
        if not name.startswith("hpcci") or spec is None or spec.origin is None:
            continue
        tree = ast.parse(Path(spec.origin).read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                todo += [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                todo.append(node.module)
                todo += [
                    f"{node.module}.{a.name}" for a in node.names if _is_module(f"{node.module}.{a.name}")
                ]
    return seen


def _is_module(name: str) -> bool:
    try:
        return importlib.util.find_spec(name) is not None
    except ModuleNotFoundError:
        return False


def test_the_deploy_plan_imports_no_transport() -> None:
    for module in PLAN_MODULES:
        reached = hpcci_imports(module)
        bad = sorted(m for m in reached if any(m == t or m.startswith(t + ".") for t in TRANSPORT))
        assert not bad, f"{module} reaches {bad}"


def test_the_import_walk_does_find_a_transport() -> None:  # the test above could not pass by finding nothing
    assert "hpcci.backends.ssh.remote" in hpcci_imports("hpcci.stages.deploy.execute")


class RecordingRemote:
    """A login node where every command succeeds (and no image is cached): records what the deployer does."""

    host = "login"

    def __init__(self) -> None:
        self.done: list[list[str]] = []

    def run(self, argv: Sequence[str], **kw: object) -> Completed:
        self.done.append(["run", *argv])
        if argv[:2] == ["test", "-s"]:
            return Completed(tuple(argv), 1, "", "")  # no image cached
        uploaded = argv[0] == "sha256sum" and argv[-1].endswith((".tar.part", ".sif"))
        pulled = "curl" in argv[-1]  # curl | tee | sha256sum
        out = f"{SHA}  -\n" if uploaded or pulled else "4242\n" if "sbatch" in argv[-1] else ""
        return Completed(tuple(argv), 0, out, "")

    def put(self, local: Path, remote: str, **kw: object) -> None:
        self.done.append(["put", str(local), remote])

    def write_text(self, remote: str, text: str, **kw: object) -> None:
        self.done.append(["write", remote, text])


def expected(plan: ClusterPlan) -> list[list[str]]:
    """The plan's steps as the remote would see them."""
    out: list[list[str]] = []
    for step in plan.steps():
        if isinstance(step, Command):
            out.append(["run", *step.argv])
        elif isinstance(step, Upload):
            out.append(["put", step.local, step.remote])
        elif isinstance(step, Submit):
            after = ["4242"] if step.after else []  # the conversion job's id, known once it is submitted
            out += [["write", step.script.path, step.script.text], ["run", *step.argv(after)]]
        elif isinstance(step, WriteFile):  # the converted image's sha256, known once computed
            out.append(["write", step.path, step.text.replace("SHA256", SHA)])
    return out


S3 = S3Object("hpcci", "fib/linux-amd64.tar", 100, SHA, "linux/amd64", DIGEST, "http://s3:8080")


@pytest.mark.parametrize(
    ("source", "settings"),
    [
        (ImageSource("linux/amd64", DIGEST, tar_sha256=SHA, local_tar="/tmp/fib.tar"), {}),
        (ImageSource("linux/amd64", DIGEST, tar_sha256=SHA, s3=S3), {}),
        (
            ImageSource("linux/amd64", DIGEST, tar_sha256=SHA, local_tar="/tmp/fib.tar"),
            {"runtime.convert_on": "compute"},
        ),
    ],
    ids=["sftp", "s3", "convert-on-compute"],
)
def test_deploy_runs_exactly_the_steps_plan_prints(source: ImageSource, settings: dict[str, str]) -> None:
    cluster = local_cluster(**settings)
    pipe = pipeline(FIB, {**FIB, "name": "two"})
    plan = plan_cluster(pipe, cluster, {"linux/amd64": source}, PATHS, "r1", slurm)
    remote = RecordingRemote()
    deployer = Deployer(pipe, cluster, remote, slurm, run_id="r1", info=lambda _m: None,  # type: ignore[arg-type]
                        presign=lambda _obj, _endpoint: "http://s3:8080/hpcci/fib?X-Amz-Signature=x")  # fmt: skip
    deployer.setup(plan)
    staged = {p: deployer.stage_image(image) for p, image in plan.images.items()}
    jobs, refused = deployer.submit_tests(plan, staged)
    assert jobs == {0: "4242", 1: "4242"} and not refused
    assert read_sif_checksums(remote, plan, staged) == {"linux/amd64": SHA}  # once the jobs ended
    assert remote.done == expected(plan)  # nothing cached: the deploy takes every step, in the plan's order
    printed = "\n".join(plan_lines(plan))
    for step in plan.steps():
        assert "\n".join(step.lines()) in printed
