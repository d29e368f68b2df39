"""runtime.compression auto through a deploy: the runtime's version asked once, the conversion packed for it, the
choice kept in the deploy record, and `hpcci doctor` and `hpcci plan` saying which and why."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from test_deploy_steps import RecordingRemote
from test_sbatch_scripts import DIGEST, FIB, local_cluster, pipeline

from hpcci import records
from hpcci.backends.runtime import ZSTD_LEVEL
from hpcci.backends.schedulers import slurm
from hpcci.commands import common, deploy
from hpcci.commands.doctor import _compression
from hpcci.context import GitEvent
from hpcci.process import Completed
from hpcci.stages.deploy.execute import Deployer
from hpcci.stages.deploy.outcome import Progress, outcome
from hpcci.stages.sources import ImageSource

ZSTD = f"-comp zstd -Xcompression-level {ZSTD_LEVEL}"
SOURCE = {"linux/amd64": ImageSource("linux/amd64", DIGEST, local_tar="/tmp/fib.tar")}


ENV = "SCRATCH=/scratch/hpcci\0HOME=/home/hpcci\0"


class VersionedRemote(RecordingRemote):
    """A login node with $SCRATCH whose runtime, after its modules load, prints ``printed`` for `apptainer --version`
    (None: its module does not load there)."""

    def __init__(self, printed: str | None) -> None:
        super().__init__()
        self.printed = printed

    def run(self, argv: Sequence[str], **kw: object) -> Completed:
        if argv[:2] == ["bash", "-lc"] and argv[-1].endswith("\nenv -0\napptainer --version"):
            self.done.append(["run", *argv])
            if self.printed is None:
                return Completed(tuple(argv), 1, "", "ERROR: Unable to locate a modulefile for 'apptainer'")
            return Completed(tuple(argv), 0, ENV + self.printed, "")
        if argv[:2] == ["bash", "-lc"] and argv[-1].endswith("\nenv -0"):
            self.done.append(["run", *argv])
            return Completed(tuple(argv), 0, ENV, "")
        return super().run(argv, **kw)


def planned(printed: str | None, **changes: object) -> tuple[str, records.ClusterDeploy, VersionedRemote]:
    """(the conversion's login-shell script, the deploy record, the remote) of a deploy to the local cluster."""
    cluster = local_cluster(**{"runtime.compression": "auto", **changes})
    remote = VersionedRemote(printed)
    deployer = Deployer(pipeline(FIB), cluster, remote, slurm, run_id="r1", info=lambda _m: None)  # type: ignore[arg-type]
    plan = deployer.plan(SOURCE)
    image = plan.images["linux/amd64"]
    record = outcome(pipeline(FIB), cluster, SOURCE, Progress(plan=plan)).deploy
    if image.convert is None:  # runtime.convert_on: compute, a conversion job
        assert image.convert_job is not None
        return image.convert_job.script.text, record, remote
    return image.convert.argv[-1], record, remote


def test_auto_on_apptainer_1_4_converts_with_zstd_and_records_the_version() -> None:
    script, record, remote = planned("apptainer version 1.4.1+hpcci-standin\n")
    assert f" apptainer build --force --mksquashfs-args '{ZSTD}' " in script
    assert (record.runtime_version, record.compression) == ("1.4.1+hpcci-standin", ZSTD)
    shells = [d for d in remote.done if d[1:3] == ["bash", "-lc"] and d[-1].startswith("set -e")]
    asked = [d for d in shells if "env -0" in d[-1]]
    assert (
        len(asked) == 1 and "module load apptainer\nenv -0\napptainer --version" in asked[0][-1]
    )  # one shell


def test_auto_on_apptainer_1_3_converts_with_gzip_and_no_mksquashfs_args() -> None:
    script, record, _ = planned("apptainer version 1.3.6\n", **{"runtime.convert_cpus": 2})
    assert "--mksquashfs-args" not in script and " apptainer build --force /" in script
    assert (record.runtime_version, record.compression) == ("1.3.6", "gzip")


def test_a_runtime_that_does_not_answer_is_packed_with_gzip() -> None:
    script, record, _ = planned("")
    assert "--mksquashfs-args" not in script
    assert (record.runtime_version, record.compression) == (None, "gzip")


def test_a_login_node_without_the_runtime_asks_the_environment_alone() -> None:
    script, record, remote = planned(None, **{"runtime.convert_on": "compute"})
    assert "apptainer build --force" in script and "--mksquashfs-args" not in script
    assert record.runtime_version is None
    asked = [
        d[-1].rsplit("\n", 1)[-1] for d in remote.done if d[1:3] == ["bash", "-lc"] and "env -0" in d[-1]
    ]
    assert asked == ["apptainer --version", "env -0"]  # the paths still resolve from the login shell


def test_doctor_says_which_compression_and_why() -> None:
    cluster = local_cluster(**{"runtime.compression": "auto"})
    check = _compression(cluster, "1.4.1")
    assert (check.status, check.detail) == (
        "ok",
        f"auto: zstd level {ZSTD_LEVEL}, apptainer 1.4.1 takes --mksquashfs-args (apptainer >= 1.4)",
    )
    assert _compression(cluster, "1.3.6").detail.startswith(
        "auto: gzip (the runtime's default), apptainer 1.3.6"
    )
    refused = _compression(local_cluster(**{"runtime.compression": "zstd"}), "1.3.6")
    assert refused.status == "FAIL" and "set runtime.compression to auto or gzip" in refused.detail
    assert refused.exit_code == 2  # a ConfigError's, as a deploy exits for it


def test_plan_says_which_compression_from_the_last_deploy_record(tmp_path: Path) -> None:
    cluster = local_cluster(**{"runtime.compression": "auto"})
    event = GitEvent(ref="refs/heads/main", sha="c0ffee00" * 5, repository="o/fib")
    ctx = common.PlanContext(pipeline(FIB), {"local": cluster}, event, tmp_path, tmp_path)
    text = deploy.plan_section(ctx)
    assert "image packing: auto: gzip, the runtime's version is not known" in text
    assert "(a deploy asks the runtime for its version first)" in text
    last = records.ClusterDeploy("local", "h", "linux/amd64", "sftp", None, None, "/x.sif", DIGEST,
                                 runtime_version="1.4.1")  # fmt: skip
    records.write(records.DeployRecord("reg/org/fib", [last]), tmp_path / "deploy.json")
    text = deploy.plan_section(ctx)
    assert f"image packing: auto: zstd level {ZSTD_LEVEL}, apptainer 1.4.1 takes --mksquashfs-args" in text
    assert "apptainer 1.4.1 is the last deploy's; a deploy asks the runtime again" in text
    assert f"--mksquashfs-args '{ZSTD}'" in text  # the conversion step printed is the one a deploy runs
