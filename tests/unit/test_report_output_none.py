"""report.output none (issue 22 item 3): not a byte of a job's output leaves the cluster, expect.output is still
judged (on the login node, by a grep the deploy runs there), and the check run says where the output is."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import yaml

from hpcci import records
from hpcci.backends.schedulers import slurm
from hpcci.config.load import load_cluster
from hpcci.config.models import SmokeTest
from hpcci.errors import ConfigError
from hpcci.records import ClusterResult
from hpcci.records import TestResult as SmokeResult
from hpcci.stages.deploy.smoke import KeptOutput, judge, kept_output, output_match_argv
from hpcci.stages.report import text

REPO = Path(__file__).resolve().parents[2]
MARKER = "SITE-PRIVATE-7f3a"
PATH = "/scratch/hpcci/runs/gh-1-1/fib.out"
FIB = SmokeTest.model_validate({"name": "fib", "command": "fib 10", "expect": {"output": "^55$"}})


def cluster_file(tmp_path: Path, report: object) -> Path:
    data = yaml.safe_load((REPO / "cluster-configs" / "local.yaml").read_text())
    data["report"] = report
    path = tmp_path / "local.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def test_output_defaults_to_tail_and_takes_none(tmp_path: Path) -> None:
    assert load_cluster(REPO / "cluster-configs" / "local.yaml").report.output == "tail"
    assert load_cluster(cluster_file(tmp_path, {"output": "none"})).report.output == "none"


def test_a_bad_output_value_is_refused_with_its_position_and_the_choices(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as e:
        load_cluster(cluster_file(tmp_path, {"output": "nothing"}))
    msg = str(e.value)
    assert "report.output" in msg and "'tail' or 'none'" in msg and "local.yaml:" in msg, msg
    assert "\n" not in msg


def test_the_match_is_a_quiet_grep_with_the_pattern_and_path_as_arguments() -> None:
    argv = output_match_argv("a b; rm -rf ~ $(x)", "/p/with space.out")
    assert argv == ["grep", "-E", "-q", "-a", "-e", "a b; rm -rf ~ $(x)", "--", "/p/with space.out"]


@pytest.mark.parametrize(
    ("rc", "stderr", "want"),
    [
        (0, "", KeptOutput(PATH, matched=True)),
        (1, "", KeptOutput(PATH, matched=False)),
        (2, f"grep: {PATH}: No such file or directory\n", KeptOutput(PATH, error=f"grep: {PATH}: No such file or directory")),
        (255, "", KeptOutput(PATH, error="grep exited with code 255")),
    ],
)  # fmt: skip
def test_greps_exit_code_says_matched_not_matched_or_why_not(rc: int, stderr: str, want: KeptOutput) -> None:
    assert kept_output(PATH, rc, stderr) == want


def test_a_match_on_the_cluster_passes_and_a_miss_fails_naming_the_file_not_the_output() -> None:
    ok = judge(FIB, slurm.job("1", slurm.COMPLETED, exit_code=0), KeptOutput(PATH, matched=True))
    assert ok.verdict == "pass", ok
    miss = judge(FIB, slurm.job("1", slurm.COMPLETED, exit_code=0), KeptOutput(PATH, matched=False))
    assert miss.verdict == "fail" and PATH in miss.reason and "last output line" not in miss.reason, miss
    # the same job judged on its tail quotes the output: what none must never do
    tail = judge(FIB, slurm.job("1", slurm.COMPLETED, exit_code=0), f"{MARKER}\n54\n")
    assert tail.verdict == "fail" and "54" in tail.reason


def test_a_wrong_exit_code_names_the_file_instead_of_the_last_line() -> None:
    v = judge(FIB, slurm.job("1", slurm.FAILED, exit_code=3), KeptOutput(PATH, matched=True))
    assert v.verdict == "fail" and "code 3, expected 0" in v.reason and PATH in v.reason, v


def test_a_match_that_could_not_run_is_an_error_never_a_pass() -> None:
    v = judge(FIB, slurm.job("1", slurm.COMPLETED, exit_code=0), KeptOutput(PATH, error="grep: Unmatched ("))
    assert v.verdict == "error" and "Unmatched (" in v.reason, v
    no_expect = SmokeTest(name="t", command="true")
    assert judge(no_expect, slurm.job("1", slurm.COMPLETED, exit_code=0), KeptOutput(PATH)).verdict == "pass"


def kept(name: str, verdict: records.Verdict, reason: str) -> SmokeResult:
    return SmokeResult(cluster="local", test=name, platform="linux/amd64", job_id="7", state="COMPLETED",
                      exit_code=0, elapsed_s=1.0, verdict=verdict, reason=reason, output_on_cluster=PATH,
                      source_file="hpcci.yaml", source_line=12)  # fmt: skip


def test_the_check_run_says_where_the_output_is_and_shows_none_of_it() -> None:
    bad = kept("fib", "fail", f"the job exited with code 0 but its output does not match '^55$'; ... {PATH}")
    cr = ClusterResult(
        cluster="local", platform="linux/amd64", tests=[kept("ok", "pass", "exited with code 0"), bad]
    )
    summary, body = text.summary(cr), text.text(cr)
    assert (
        "**Job output:** stays on local (report.output none)" in summary
        and "/scratch/hpcci/runs/gh-1-1" in summary
    )
    assert body is not None and f"`{PATH}`" in body and "(no output)" not in body and "```" not in body, body
    (a,) = text.annotations_for(cr)
    assert "raw_details" not in a, a
    tail = ClusterResult(
        cluster="local",
        platform="linux/amd64",
        tests=[dataclasses.replace(bad, output_on_cluster="", output_tail="54\n")],
    )
    assert "Job output" not in text.summary(tail) and "54" in (text.text(tail) or "")
