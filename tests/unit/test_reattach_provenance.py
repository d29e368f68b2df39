"""A re-attached deploy reads the cached image's recorded sha256 (64 bytes with `cat`) instead of hashing the SIF.

`_deploy` runs on a fake login node (tests/unit/test_journal.py's), with the re-attach decision and the following
of jobs given: what is checked is which commands the deploy sends for the image's provenance.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest
from test_deploy_steps import SHA
from test_journal import RUN, Cluster
from test_sbatch_scripts import DIGEST, FIB, PATHS, local_cluster, pipeline

from hpcci.backends.schedulers import slurm
from hpcci.backends.schedulers.jobs import Found
from hpcci.process import Completed
from hpcci.stages import deploy, smoke
from hpcci.stages.execute import Deployer
from hpcci.stages.journal import Journal, Labelled
from hpcci.stages.outcomes import Progress
from hpcci.stages.plan import plan_cluster
from hpcci.stages.reattach import Reattached
from hpcci.stages.smoke import Followed
from hpcci.stages.sources import ImageSource


class Cached(Cluster):
    """A login node holding the converted image and its recorded sha256 (written by the earlier attempt)."""

    def __init__(self, image: str) -> None:
        super().__init__("")
        self.image = image

    def run(self, argv: Any, **kw: object) -> Completed:
        if list(argv) == ["cat", "--", f"{self.image}.sha256"]:
            self.done.append(["run", *argv])
            return Completed(tuple(argv), 0, f"{SHA}  {self.image}\n", "")
        return super().run(argv, **kw)

    def read_tail(self, remote: str, max_bytes: int) -> str:
        return "slept\n"


def _run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, attached: Reattached, **settings: str
) -> tuple[Progress, Cached, str]:
    pipe = pipeline(FIB, {**FIB, "name": "two"})
    cluster = local_cluster(**settings)
    source = ImageSource("linux/amd64", DIGEST, tar_sha256=SHA, local_tar="/t.tar")
    plan = plan_cluster(pipe, cluster, {"linux/amd64": source}, PATHS, "r1", Labelled(slurm, RUN, "local"))
    (image,) = plan.images.values()
    remote = Cached(image.image)
    d = Deployer(pipe, cluster, remote, slurm, run_id="r1", info=lambda _m: None,  # type: ignore[arg-type]
                 journal=Journal(tmp_path, RUN))  # fmt: skip
    monkeypatch.setattr(d, "plan", lambda _sources: plan)  # the paths as planned (no login shell to ask)
    monkeypatch.setattr(deploy, "find_reattached", lambda _d, _plan: attached)
    monkeypatch.setattr(smoke, "follow", lambda _jobs, _ids, **_kw: Followed(states={}))
    done = Progress()
    sources = {p: i.source for p, i in plan.images.items()}
    deploy._deploy(d, sources, done, deadline=time.monotonic() + 600, deadline_text="10m")
    return done, remote, image.image


def test_every_test_re_attached_reads_the_recorded_sha256_and_hashes_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    attached = Reattached(tests={0: Found("500", "fib", "completed"), 1: Found("501", "two", "completed")})
    done, remote, image = _run(tmp_path, monkeypatch, attached)
    assert done.sif_sha256 == {"linux/amd64": SHA}
    assert ["run", "cat", "--", f"{image}.sha256"] in remote.done
    hashed = [c for c in remote.done if c[:2] == ["run", "sha256sum"]]
    assert hashed == [], f"the cached image was hashed again: {hashed}"


def test_a_re_attached_conversion_still_running_is_hashed_once_it_ends(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:  # no recorded sha256 can be its: hpcci writes one only after hashing the finished image
    attached = Reattached(converts={"linux/amd64": Found("499", "hpcci-convert", "running")})
    done, remote, image = _run(tmp_path, monkeypatch, attached, **{"runtime.convert_on": "compute"})
    assert ["run", "sha256sum", "--", image] in remote.done
    assert ["write", f"{image}.sha256", f"{SHA}  {image}\n"] in remote.done and done.sif_sha256 == {
        "linux/amd64": SHA
    }
