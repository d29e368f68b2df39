"""Releases installed as modules on the local stack's cluster, for both module systems, seen from the SSH login node
in fresh login shells: a release tag of examples/fibonacci whose smoke test passes becomes fibonacci/0.1.0, which
prints 55 for the deploying user and for a second user in the release group; `module load fibonacci` loads the
default, `hpcci rollback` moves it, a failing release installs nothing, a re-run is a no-op and another image under
an installed version is refused unless --replace-release.

Tcl modulefiles are loaded with environment-modules (sourced from /usr/share/modules/init/bash), Lua ones with Lmod
(the login shells' default `module`). A missing module system, second user or group fails under CI=true.
Needs `scripts/local-stack up docker registry cluster`.
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import json
import os
import shutil
import sys
import tarfile
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import pytest
from deploy_support import Project, cluster_config, login, make_project, unique
from test_access_modes import automation_cluster

from hpcci.backends.ssh.remote import SSHRemote
from hpcci.process import Completed, run
from hpcci.shell import login_argv
from stack_env import skip_or_fail

# pytest-timeout: the module's story fixture plays a dozen deploys and commands (each up to 900 s) in the first
# test's set-up, for each module system
pytestmark = pytest.mark.timeout(3600)

FIB = {"name": "fib", "command": "python3 /app/fib.py 10", "expect": {"output": "^55$"},
       "resources": {"time": "00:05:00", "memory": "512M"}}  # fmt: skip
WRONG = {**FIB, "name": "fib-wrong", "expect": {"output": "^56$"}}  # fails: a failing release
ENV_MODULES_INIT = "/usr/share/modules/init/bash"


@dataclass
class Story:
    """What one module system's run of the release story saw, step by step."""

    system: str
    modulefiles: str
    deploys: dict[str, Completed] = field(default_factory=dict)
    records: dict[str, dict[str, Any]] = field(default_factory=dict)  # step -> the cluster's release record
    shells: dict[str, Completed] = field(default_factory=dict)  # what a user's login shell printed
    commands: dict[str, Completed] = field(default_factory=dict)  # hpcci releases / rollback
    manifests: dict[str, dict[str, Any]] = field(default_factory=dict)


def hpcci(project: Project, *args: str, tag: str | None = None) -> Completed:
    """`hpcci ARGS` in the project folder, as a tag push's workflow runs it when ``tag`` is given."""
    env = {"GITHUB_EVENT_NAME": "push", "GITHUB_REF": f"refs/tags/{tag}", "GITHUB_SHA": "ab" * 20,
           "GITHUB_REPOSITORY": "octo-org/fibonacci", "GITHUB_RUN_ID": str(uuid.uuid4().int % 10**9)} if tag else {}  # fmt: skip
    return run(
        [sys.executable, "-m", "hpcci", *args], timeout=900, check=False, cwd=str(project.root), env=env
    )


def release_record(project: Project) -> dict[str, Any]:
    (cluster,) = project.results()["clusters"]
    return cluster["release"]  # type: ignore[no-any-return]


def module_shell(remote: SSHRemote, story: Story, *steps: list[str]) -> Completed:
    """``steps`` in a fresh login shell with the module system under test: which `module` it is, then `module use`."""
    init = [["source", ENV_MODULES_INIT]] if story.system == "tcl" else []
    argv = login_argv([*init, ["module", "--version"], ["module", "use", story.modulefiles], *steps])
    return remote.run(argv, timeout=300)


def second_user() -> SSHRemote:
    """The stack's second cluster user (in the release group), over the same login node."""
    key, user = os.environ.get("HPCCI_LOCAL_SSH_USER2_KEY_FILE"), os.environ.get("HPCCI_LOCAL_SSH_USER2")
    if not key or not user or not os.environ.get("HPCCI_LOCAL_RELEASE_GROUP"):
        skip_or_fail(
            "the second cluster user is not in `scripts/local-stack env` (HPCCI_LOCAL_SSH_USER2, HPCCI_LOCAL_SSH_USER2_KEY_FILE, "
            "HPCCI_LOCAL_RELEASE_GROUP); run `scripts/local-stack up cluster`"
        )
    first = login()
    try:
        target = first.login  # the first user's SSH target: same host, port and known hosts
    finally:
        first.close()
    key_text = Path(key).read_text(encoding="utf-8")
    return SSHRemote(dataclasses.replace(target, user=user, key=lambda: key_text))


def require_module_system(remote: SSHRemote, system: str) -> None:
    probe = ["test", "-f", ENV_MODULES_INIT] if system == "tcl" else ["module", "--version"]
    done = remote.run(login_argv([probe]), timeout=60)
    said = done.stdout + done.stderr
    if not done.ok or (system == "lmod" and "Lua" not in said):
        skip_or_fail(f"{system}: the login node has no such module system ({said.strip()[:200]}); run "
                     "`scripts/local-stack up cluster`")  # fmt: skip


def other_image(fib_tar: Path, folder: Path) -> Path:
    """The fibonacci image with one more label: the same program under another digest. Written from the tar itself
    (a new config, named by its sha256), not built FROM a docker tag that other test sessions may move."""
    out = folder / "other.tar"
    with tarfile.open(fib_tar) as src, tarfile.open(out, "w") as dst:
        manifest = json.load(_member(src, "manifest.json"))
        old = manifest[0]["Config"]
        config = json.load(_member(src, old))
        config["config"]["Labels"] = {**(config["config"].get("Labels") or {}), "hpcci.test": unique("rel")}
        data = json.dumps(config).encode()
        manifest[0]["Config"] = f"{hashlib.sha256(data).hexdigest()}.json"
        manifest[0]["RepoTags"] = [f"hpcci-test/fibonacci:{unique('rel')}"]
        for member in src.getmembers():
            if member.name not in (old, "manifest.json", "repositories"):
                dst.addfile(member, src.extractfile(member) if member.isfile() else None)
        for name, body in ((manifest[0]["Config"], data), ("manifest.json", json.dumps(manifest).encode())):
            info = tarfile.TarInfo(name)
            info.size = len(body)
            dst.addfile(info, io.BytesIO(body))
    return out


def _member(tar: tarfile.TarFile, name: str) -> IO[bytes]:
    f = tar.extractfile(name)
    assert f is not None, f"{name} is not a file in the tar"
    return f


@pytest.fixture(scope="module", params=["tcl", "lmod"])
def story(
    request: pytest.FixtureRequest, fib_tar: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Story]:
    system: str = request.param
    remote = login()
    require_module_system(remote, system)
    # the group's project space (setgid, group-only), like the example's config; $HOME where a stack has none
    space = remote.run(login_argv([["sh", "-c", 'echo "${PROJECT:-$HOME}"']]), timeout=60).stdout.strip()
    base = f"{space}/hpcci-release-tests/{unique(system)}"
    st = Story(system, f"{base}/modulefiles")
    release = {"root": f"{base}/apps", "modulefiles": st.modulefiles, "module_system": system, "keep": 3}
    if group := os.environ.get("HPCCI_LOCAL_RELEASE_GROUP"):
        release["group"] = group
    folder = tmp_path_factory.mktemp(f"release-{system}")
    good = make_project(folder / "good", [FIB], cluster=cluster_config(release=release))
    bad = make_project(folder / "bad", [WRONG], cluster=cluster_config(release=release))
    tar = str(fib_tar)
    try:
        _play(st, remote, good, bad, tar, other_image(fib_tar, folder))
        yield st
    finally:
        remote.run(["rm", "-rf", "--", base], timeout=120)
        remote.run(
            ["rmdir", "--", base.rsplit("/", 1)[0]], timeout=60
        )  # the last story out removes the folder
        remote.close()


def _play(st: Story, remote: SSHRemote, good: Project, bad: Project, tar: str, other: Path) -> None:
    def deploy(step: str, project: Project, tag: str, *args: str) -> None:
        st.deploys[step] = hpcci(project, "deploy", "--image-tar", tar, *args, tag=tag)
        st.records[step] = release_record(project)

    def manifest(step: str) -> None:
        done = remote.run(["cat", "--", f"{good_root(st)}/fibonacci/releases.json"], timeout=60)
        st.manifests[step] = json.loads(done.stdout) if done.ok else {}

    def good_root(s: Story) -> str:
        return s.modulefiles.rsplit("/", 1)[0] + "/apps"

    run_it = [["module", "load", "fibonacci/0.1.0"], ["fibonacci-run", "10"]]
    deploy("first", good, "v0.1.0")
    st.shells["first"] = module_shell(remote, st, *run_it)
    st.shells["env"] = module_shell(remote, st, ["module", "load", "fibonacci/0.1.0"],
                                    ["printenv", "FIBONACCI_VERSION", "FIBONACCI_SIF"],
                                    ["fibonacci-exec", "python3", "/app/fib.py", "11"])  # fmt: skip
    load = ["module", "load", "fibonacci/0.1.0"]
    gpu_job = ["srun", "--partition=gpu", "--gres=gpu:1", "--time=1", "--account=hpcci"]
    show_gpu = ["sh", "-c", 'echo "gpu=${HPCCI_STANDIN_GPU:-none}"']  # the stand-in's record of --nv/--rocm
    st.shells["gpu job"] = module_shell(remote, st, load, [*gpu_job, "fibonacci-exec", *show_gpu])
    st.shells["gpu job, off"] = module_shell(
        remote, st, load, [*gpu_job, "env", "FIBONACCI_GPU=off", "fibonacci-exec", *show_gpu]
    )
    st.shells["login, on"] = module_shell(
        remote, st, load, ["env", "FIBONACCI_GPU=on", "fibonacci-run", "10"]
    )
    st.shells["login, typo"] = module_shell(
        remote, st, load, ["env", "FIBONACCI_GPU=yes", "fibonacci-run", "10"]
    )
    st.shells["help"] = module_shell(remote, st, ["module", "help", "fibonacci/0.1.0"])
    if os.environ.get("HPCCI_LOCAL_SSH_USER2"):
        user2 = second_user()
        try:
            st.shells["user2"] = module_shell(user2, st, *run_it)
        finally:
            user2.close()
    manifest("first")
    deploy("again", good, "v0.1.0")
    deploy("second", good, "v0.2.0")
    st.shells["default after 0.2.0"] = module_shell(remote, st, ["module", "load", "fibonacci"],
                                                    ["printenv", "FIBONACCI_VERSION"])  # fmt: skip
    cluster = ("--cluster", "local")
    st.commands["rollback"] = hpcci(good, "rollback", *cluster, "--to", "0.1.0")
    st.shells["default after rollback"] = module_shell(remote, st, ["module", "load", "fibonacci"],
                                                       ["printenv", "FIBONACCI_VERSION"])  # fmt: skip
    st.commands["rollback to nothing"] = hpcci(good, "rollback", *cluster, "--to", "9.9.9")
    st.commands["releases"] = hpcci(good, "releases", *cluster)
    manifest("after rollback")
    deploy("failing", bad, "v0.3.0")
    st.shells["failing"] = remote.run(
        login_argv([["ls", "-a", good_root(st) + "/fibonacci", st.modulefiles + "/fibonacci"]]), timeout=60
    )
    st.deploys["other image"] = hpcci(good, "deploy", "--image-tar", str(other), tag="v0.1.0")
    st.records["other image"] = release_record(good)
    manifest("after refusal")
    st.deploys["replace"] = hpcci(
        good, "deploy", "--image-tar", str(other), "--replace-release", tag="v0.1.0"
    )
    st.records["replace"] = release_record(good)
    st.shells["replaced"] = module_shell(remote, st, *run_it)
    manifest("after replace")


def last_line(done: Completed) -> str:
    lines = done.stdout.strip().splitlines()
    return lines[-1] if lines else ""


# -- install ---------------------------------------------------------------------------------------------------------


def test_a_passing_release_is_installed_as_the_default_module(story: Story) -> None:
    done, rec = story.deploys["first"], story.records["first"]
    assert done.returncode == 0, done.stdout + done.stderr
    assert rec["status"] == "installed" and rec["module"] == "fibonacci/0.1.0" and rec["default"], rec
    assert "installed as module fibonacci/0.1.0 on local (default)" in done.stdout + done.stderr


def test_module_load_then_run_prints_55_with_the_module_system_under_test(story: Story) -> None:
    shell = story.shells["first"]
    assert shell.ok, shell.stdout + shell.stderr
    assert last_line(shell) == "55"
    # `module --version` (stderr for both) names the implementation that loaded it
    assert ("Lua" if story.system == "lmod" else "Modules Release") in shell.stdout + shell.stderr


NO_GPU_WARNING = "Could not find any nv files"


def test_on_the_cpu_login_node_run_passes_no_gpu_flag_and_prints_no_warning(story: Story) -> None:
    shell = story.shells["first"]
    assert last_line(shell) == "55" and NO_GPU_WARNING not in shell.stdout + shell.stderr


def test_in_a_job_given_a_gpu_the_wrappers_pass_the_gpu_flag(story: Story) -> None:
    shell = story.shells["gpu job"]
    assert shell.ok, shell.stdout + shell.stderr
    assert last_line(shell) == "gpu=nv:0"  # --nv reached the runtime, which gave the container the job's GPU


def test_the_users_choice_overrides_the_gpu_check_both_ways(story: Story) -> None:
    off, on = story.shells["gpu job, off"], story.shells["login, on"]
    assert off.ok and last_line(off) == "gpu=none", off.stdout + off.stderr
    assert last_line(on) == "55" and NO_GPU_WARNING in on.stdout + on.stderr  # --nv, as asked, on a CPU node


def test_a_gpu_choice_that_is_not_auto_on_or_off_stops_with_one_line(story: Story) -> None:
    typo = story.shells["login, typo"]
    assert typo.returncode == 2 and "fibonacci-run: FIBONACCI_GPU is yes: use auto, on or off" in typo.stderr
    assert "55" not in typo.stdout


def test_module_help_documents_the_gpu_choice(story: Story) -> None:
    shell = story.shells["help"]
    said = shell.stdout + shell.stderr
    assert shell.ok and "only where a GPU is present" in said and "FIBONACCI_GPU=on or off" in said, said


def test_the_module_sets_the_sif_and_version_and_its_exec_wrapper_runs_commands(story: Story) -> None:
    shell = story.shells["env"]
    assert shell.ok, shell.stdout + shell.stderr
    version, sif, fib11 = shell.stdout.strip().splitlines()[-3:]
    assert version == "0.1.0" and sif.endswith("/apps/fibonacci/0.1.0/fibonacci.sif") and fib11 == "89"


def test_a_second_user_in_the_release_group_runs_it_too(story: Story) -> None:
    if "user2" not in story.shells:
        second_user()  # skips (fails under CI) naming what is missing
    shell = story.shells["user2"]
    assert shell.ok and last_line(shell) == "55", shell.stdout + shell.stderr


def test_the_manifest_records_tag_commit_digests_and_the_default(story: Story) -> None:
    m = story.manifests["first"]
    (entry,) = m["releases"]
    assert m["default"] == "0.1.0"
    assert entry["tag"] == "v0.1.0" and entry["commit"] == "ab" * 20
    assert entry["image_digest"].startswith("sha256:") and len(entry["sif_sha256"]) == 64
    assert "fib (job " in entry["tested"]


# -- re-runs, new versions, rollback ---------------------------------------------------------------------------------


def test_rerunning_an_installed_release_changes_nothing_and_says_so(story: Story) -> None:
    done, rec = story.deploys["again"], story.records["again"]
    assert done.returncode == 0 and rec["status"] == "unchanged", rec
    assert (
        rec["reason"].startswith("installed already from this image (sha256:")
        and "nothing changed" in rec["reason"]
    )


def test_a_newer_release_becomes_the_default_that_module_load_picks(story: Story) -> None:
    assert story.records["second"]["default"], story.records["second"]
    shell = story.shells["default after 0.2.0"]
    assert shell.ok and last_line(shell) == "0.2.0", shell.stdout + shell.stderr


def test_rollback_moves_the_default_and_nothing_else(story: Story) -> None:
    done = story.commands["rollback"]
    assert (
        done.returncode == 0 and "fibonacci/0.1.0 is the default on local now (was 0.2.0)" in done.stdout
    ), done
    shell = story.shells["default after rollback"]
    assert shell.ok and last_line(shell) == "0.1.0", shell.stdout + shell.stderr
    assert [e["version"] for e in story.manifests["after rollback"]["releases"]] == ["0.1.0", "0.2.0"]
    assert story.manifests["after rollback"]["default"] == "0.1.0"


def test_rollback_to_a_version_not_installed_is_refused_in_one_line(story: Story) -> None:
    done = story.commands["rollback to nothing"]
    assert done.returncode == 91, done.stdout + done.stderr
    errors = [ln for ln in done.stderr.splitlines() if ln.startswith("hpcci: error:")]
    assert errors == [errors[0]] and "fibonacci/9.9.9 is not installed (installed: 0.1.0, 0.2.0)" in errors[0]


def test_releases_lists_the_installed_versions_and_the_default(story: Story) -> None:
    done = story.commands["releases"]
    assert done.returncode == 0, done.stdout + done.stderr
    assert "fibonacci on local: 2 installed, default 0.1.0" in done.stdout
    rows = {ln.split()[0]: ln for ln in done.stdout.splitlines()[2:]}
    assert set(rows) == {"0.1.0", "0.2.0"} and " * " in rows["0.1.0"] and "v0.2.0" in rows["0.2.0"]


# -- what is not installed --------------------------------------------------------------------------------------------


def test_a_failing_release_installs_nothing_and_says_why(story: Story) -> None:
    rec = story.records["failing"]
    assert story.deploys["failing"].returncode == 70
    assert rec["status"] == "not_installed" and "fib-wrong (fail)" in rec["reason"], rec
    listing = story.shells["failing"].stdout
    assert "0.3.0" not in listing, listing  # no folder, no modulefile, not even a hidden temporary one


def test_another_image_under_an_installed_version_is_refused_saying_how_to_replace(story: Story) -> None:
    done, rec = story.deploys["other image"], story.records["other image"]
    assert done.returncode == 92 and rec["status"] == "refused", rec
    assert "--replace-release" in rec["reason"]
    before, after = story.manifests["after rollback"], story.manifests["after refusal"]
    assert before["releases"] == after["releases"]


def test_replace_release_installs_the_other_image_over_the_version(story: Story) -> None:
    rec = story.records["replace"]
    assert story.deploys["replace"].returncode == 0 and rec["status"] == "installed", rec
    entry = next(e for e in story.manifests["after replace"]["releases"] if e["version"] == "0.1.0")
    first = next(e for e in story.manifests["first"]["releases"] if e["version"] == "0.1.0")
    assert entry["image_digest"] != first["image_digest"]
    shell = story.shells["replaced"]
    assert shell.ok and last_line(shell) == "55", shell.stdout + shell.stderr


# -- through an automation node -----------------------------------------------------------------------------------


def test_an_automation_node_installs_lists_and_rolls_back_with_its_allowed_commands(
    fib_tar: Path, tmp_path: Path, require: Callable[..., None]
) -> None:
    """Plain file commands and SFTP only (no login shell): install, `hpcci releases`, `hpcci rollback`."""
    require("access")
    base = f"{os.environ['HPCCI_AUTO_SCRATCH']}/hpcci-{unique('rel')}"
    cluster = automation_cluster(base)
    cluster["release"] = {
        "root": f"{base}/apps",
        "modulefiles": f"{base}/modulefiles",
        "module_system": "tcl",
    }
    proj = make_project(tmp_path / "proj", [FIB], cluster=cluster)
    try:
        first = hpcci(proj, "deploy", "--image-tar", str(fib_tar), tag="v0.1.0")
        second = hpcci(proj, "deploy", "--image-tar", str(fib_tar), tag="v0.2.0")
        listed = hpcci(proj, "releases", "--cluster", "local")
        back = hpcci(proj, "rollback", "--cluster", "local", "--to", "0.1.0")
        version_file = Path(base, "modulefiles", "fibonacci", ".version").read_text()
        sif = Path(base, "apps", "fibonacci", "0.1.0", "fibonacci.sif")
        installed = sif.stat().st_size > 0 and Path(base, "modulefiles", "fibonacci", "0.2.0").is_file()
    finally:
        shutil.rmtree(base, ignore_errors=True)  # the tests run as root; the robot's files are its own
    log = first.stdout + first.stderr
    assert first.returncode == 0 and "installed as module fibonacci/0.1.0 on local (default)" in log, log
    assert "bash -lc" not in log and "env -0" not in log
    assert second.returncode == 0 and release_record(proj)["default"], second.stdout + second.stderr
    assert "fibonacci on local: 2 installed, default 0.2.0" in listed.stdout, listed.stdout + listed.stderr
    assert back.returncode == 0 and 'set ModulesVersion "0.1.0"' in version_file, back.stdout + back.stderr
    assert installed
