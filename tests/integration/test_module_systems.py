"""Both module systems of the local cluster, as its users meet them: through the SSH login node (host key verified),
each command in a fresh login shell, for the kit's user (hpcci) and a second user (hpcci-user2) who shares the
group hpcci-users with it. Lmod (Debian's lmod) is the default `module`; the Tcl environment-modules is one
`source /usr/share/modules/init/bash` away; the site modulefiles load with both.

Needs `scripts/local-stack up cluster`; skips without it (fails under CI=true, and a cluster without Lmod fails).
"""

from __future__ import annotations

import os
import re
import shlex
from collections.abc import Callable, Iterator

import pytest
from deploy_support import unique

from hpcci.backends.ssh.remote import SSHRemote
from hpcci.config.models import LoginConfig
from hpcci.process import Completed
from hpcci.wiring import ssh_target
from stack_env import skip_or_fail

TCL_INIT = ". /usr/share/modules/init/bash"
LUA_MODULEFILE = 'setenv("HPCCI_MODTEST", "lua")\nprepend_path("PATH", "{bin}")\n'
TCL_MODULEFILE = "#%Module1.0\nsetenv HPCCI_MODTEST tcl\nprepend-path PATH {bin}\n"
USERS = {  # which user: the local-stack env names of its login name and key file
    "hpcci": ("HPCCI_LOCAL_SSH_USER", "HPCCI_LOCAL_SSH_KEY_FILE"),
    "user2": ("HPCCI_LOCAL_SSH_USER2", "HPCCI_LOCAL_SSH_USER2_KEY_FILE"),
}


def connect(user_var: str, key_var: str) -> SSHRemote:
    names = ("HPCCI_LOCAL_SSH_HOST", "HPCCI_LOCAL_SSH_PORT", "HPCCI_LOCAL_KNOWN_HOSTS", user_var, key_var)
    missing = [n for n in names if not os.environ.get(n)]
    if missing:
        skip_or_fail(
            f"`scripts/local-stack env` gives no {', '.join(missing)}; run: scripts/local-stack up cluster"
        )
    e = os.environ
    login = LoginConfig.model_validate(
        {
            "host": e["HPCCI_LOCAL_SSH_HOST"],
            "port": int(e["HPCCI_LOCAL_SSH_PORT"]),
            "user": e[user_var],
            "key": {"file": e[key_var]},
            "known_hosts": {"file": e["HPCCI_LOCAL_KNOWN_HOSTS"]},
            "connect_timeout": 10,
        }
    )
    return SSHRemote(ssh_target("local", login))


@pytest.fixture(params=sorted(USERS))
def remote(request: pytest.FixtureRequest, require: Callable[..., None]) -> Iterator[SSHRemote]:
    require("cluster")
    r = connect(*USERS[request.param])
    yield r
    r.close()


@pytest.fixture
def owner(require: Callable[..., None]) -> Iterator[SSHRemote]:
    require("cluster")
    r = connect(*USERS["hpcci"])
    yield r
    r.close()


@pytest.fixture
def second(require: Callable[..., None]) -> Iterator[SSHRemote]:
    require("cluster")
    r = connect(*USERS["user2"])
    yield r
    r.close()


def sh(remote: SSHRemote, script: str, timeout: float = 120) -> Completed:
    """``script`` in a fresh login shell of the remote's user (the site profile: `module`, $SCRATCH, $PROJECT)."""
    return remote.run(["bash", "-lc", script], timeout=timeout)


def ok(remote: SSHRemote, script: str, timeout: float = 120) -> str:
    done = sh(remote, script, timeout)
    assert done.ok, f"{script!r} as {remote.user}: rc {done.returncode}\n{done.stdout}\n{done.stderr}"
    return done.stdout


@pytest.fixture
def workdir(remote: SSHRemote) -> Iterator[str]:
    """A fresh folder in the user's $SCRATCH (the shared file system the login and compute nodes see)."""
    scratch = ok(remote, 'printf %s "$SCRATCH"')
    path = f"{scratch}/{unique('modules-test')}"
    remote.run(["mkdir", "-p", f"{path}/bin"], check=True)
    yield path
    remote.run(["rm", "-rf", "--", path])


def modulefiles(remote: SSHRemote, folder: str) -> None:
    """x/1.0 in Lua (.lua) and y/1.0 in Tcl, each setting HPCCI_MODTEST and putting ``folder``/bin on PATH."""
    remote.run(["mkdir", "-p", f"{folder}/mf/x", f"{folder}/mf/y"], check=True)
    remote.write_text(f"{folder}/mf/x/1.0.lua", LUA_MODULEFILE.format(bin=f"{folder}/bin"))
    remote.write_text(f"{folder}/mf/y/1.0", TCL_MODULEFILE.format(bin=f"{folder}/bin"))


def test_lmod_is_the_default_module_of_a_login_shell(remote: SSHRemote) -> None:
    done = sh(remote, 'printf "%s\\n" "$LMOD_VERSION"; module --version')
    assert done.ok, done
    assert re.fullmatch(r"\d+\.\d+\.\d+", done.stdout.strip()), f"no Lmod in a login shell: {done}"
    assert "Modules based on Lua" in done.stderr, done.stderr


def test_the_site_apptainer_module_loads_with_lmod(remote: SSHRemote) -> None:
    out = ok(remote, 'module load apptainer && apptainer --version && printf "%s\\n" "$LMOD_VERSION"')
    assert out.splitlines()[0].startswith("apptainer version "), out
    assert out.splitlines()[1], "apptainer was loaded by something else than Lmod"


def test_the_site_apptainer_module_loads_with_environment_modules(remote: SSHRemote) -> None:
    done = sh(remote, f"{TCL_INIT} && module --version && module load apptainer && apptainer --version")
    assert done.ok, done
    assert "Modules Release" in done.stderr, f"`module` is not environment-modules' after {TCL_INIT}: {done}"
    assert done.stdout.startswith("apptainer version "), done


def test_a_lua_modulefile_loads_with_lmod_only(remote: SSHRemote, workdir: str) -> None:
    modulefiles(remote, workdir)
    use = f"module use {shlex.quote(workdir)}/mf && module load x/1.0"
    out = ok(remote, f'{use} && printf "%s %s\\n" "$HPCCI_MODTEST" "${{PATH%%:*}}" && module list')
    assert out.splitlines()[0] == f"lua {workdir}/bin", out
    tcl = sh(remote, f"{TCL_INIT} && {use}")
    assert not tcl.ok, f"environment-modules loaded a Lua modulefile: `module` did not switch: {tcl}"


def test_a_tcl_modulefile_loads_with_both(remote: SSHRemote, workdir: str) -> None:
    modulefiles(remote, workdir)
    use = f"module use {shlex.quote(workdir)}/mf && module load y/1.0"
    show = 'printf "%s %s\\n" "$HPCCI_MODTEST" "${PATH%%:*}"'
    assert ok(remote, f"{use} && {show}").strip() == f"tcl {workdir}/bin"
    assert ok(remote, f"{TCL_INIT} && {use} && {show}").strip() == f"tcl {workdir}/bin"


def test_the_site_modules_load_with_lmod_inside_a_batch_job(remote: SSHRemote, workdir: str) -> None:
    job = f"{workdir}/job.sh"
    remote.write_text(
        job, '#!/bin/bash\nmodule load apptainer && apptainer --version\necho "lmod=$LMOD_VERSION"\n'
    )
    out = ok(
        remote,
        f"sbatch --wait -Q --export=NONE -t 00:02:00 -D {shlex.quote(workdir)} -o job.out {shlex.quote(job)}"
        f" && cat {shlex.quote(workdir)}/job.out",
        timeout=300,
    )
    assert out.startswith("apptainer version ") and re.search(r"^lmod=\d", out, re.M), out


def test_both_users_are_in_the_release_group(remote: SSHRemote) -> None:
    groups = ok(remote, "id -nG").split()
    assert os.environ["HPCCI_LOCAL_RELEASE_GROUP"] in groups, groups


def test_the_second_user_reads_what_the_first_made_group_readable(
    owner: SSHRemote, second: SSHRemote
) -> None:
    group = os.environ["HPCCI_LOCAL_RELEASE_GROUP"]
    project = ok(owner, 'printf %s "$PROJECT"')
    assert project == ok(second, 'printf %s "$PROJECT"') != "", "no shared $PROJECT for both users"
    folder = f"{project}/{unique('group-read')}"
    q = shlex.quote(folder)
    ok(owner, f"mkdir -m 750 {q} && chgrp {group} {q} && umask 077 && echo shared > {q}/open && echo own > {q}/closed"
              f" && chmod g+r {q}/open && stat -c '%G %A' {q}/open")  # fmt: skip
    try:
        assert ok(second, f"cat {q}/open").strip() == "shared"
        refused = sh(second, f"cat {q}/closed")
        assert not refused.ok and "Permission denied" in refused.stderr, refused
    finally:
        owner.run(["rm", "-rf", "--", folder])
