"""The text a release installs: Lmod and Tcl modulefiles, the default-version file and the wrapper commands."""

from __future__ import annotations

from pathlib import Path

import pytest

from hpcci.config.load import load_cluster
from hpcci.config.models import Cluster
from hpcci.errors import ConfigError
from hpcci.modules import modulefile_name
from hpcci.stages.release.modulefile import (
    GPU_PRESENT,
    ModuleInfo,
    lua_modulefile,
    lua_string,
    modulefile_text,
    tcl_modulefile,
    tcl_string,
    version_file,
    wrapper_gpu_flag,
    wrapper_script,
    wrappers,
)

ROOT = Path(__file__).resolve().parents[2]
DIGEST = "sha256:" + "ab" * 32


def local(**runtime: object) -> Cluster:
    cluster = load_cluster(ROOT / "cluster-configs" / "local.yaml")
    return cluster.model_copy(update={"runtime": cluster.runtime.model_copy(update=runtime)})


def info(**changes: object) -> ModuleInfo:
    values: dict[str, object] = dict(
        name="fibonacci", version="0.1.0", tag="v0.1.0", commit="c0ffee" * 6 + "abcd",
        image="127.0.0.1:5000/octo-org/fibonacci", digest=DIGEST, sif="/p/apps/fibonacci/0.1.0/fibonacci.sif",
        bin_dir="/p/apps/fibonacci/0.1.0/bin", modules=("apptainer",),
        tested="smoke tests passed on cluster local (linux/amd64): fib (job 7)", run_url="https://gh/runs/1",
    )  # fmt: skip
    values.update(changes)
    return ModuleInfo(**values)  # type: ignore[arg-type]


def test_lua_modulefile_loads_the_runtime_puts_the_wrappers_on_path_and_sets_sif_and_version() -> None:
    text = lua_modulefile(info(), "apptainer")
    assert 'load("apptainer")' in text.splitlines()
    assert 'prepend_path("PATH", "/p/apps/fibonacci/0.1.0/bin")' in text
    assert 'setenv("FIBONACCI_SIF", "/p/apps/fibonacci/0.1.0/fibonacci.sif")' in text
    assert 'setenv("FIBONACCI_VERSION", "0.1.0")' in text


def test_help_and_whatis_name_tag_commit_digest_and_where_the_tests_ran() -> None:
    for text in (lua_modulefile(info(), "apptainer"), tcl_modulefile(info(), "apptainer")):
        assert "tag v0.1.0" in text and "c0ffee" in text and DIGEST in text
        assert "smoke tests passed on cluster local (linux/amd64): fib (job 7)" in text
        assert "fibonacci-run" in text and "https://gh/runs/1" in text


def test_tcl_modulefile_has_the_magic_cookie_and_the_same_environment() -> None:
    lines = tcl_modulefile(info(), "apptainer").splitlines()
    assert lines[0] == "#%Module1.0"
    assert 'module load "apptainer"' in lines
    assert 'prepend-path PATH "/p/apps/fibonacci/0.1.0/bin"' in lines
    assert 'setenv "FIBONACCI_SIF" "/p/apps/fibonacci/0.1.0/fibonacci.sif"' in lines


def test_modulefile_names_lua_for_lmod_and_plain_for_tcl() -> None:
    assert modulefile_name("lmod", "0.1.0") == "0.1.0.lua"
    assert modulefile_name("tcl", "0.1.0") == "0.1.0"


def test_values_are_quoted_for_the_language_they_land_in() -> None:
    hostile = 'a"b\\c$(rm -rf ~)[exec x]{y}\nz'
    assert lua_string(hostile) == '"a\\"b\\\\c$(rm -rf ~)[exec x]{y}\\nz"'
    assert tcl_string(hostile) == '"a\\"b\\\\c\\$(rm -rf ~)\\[exec x\\]\\{y\\}\\nz"'
    tcl = tcl_modulefile(info(sif=hostile), "apptainer")
    assert "\\[exec x\\]" in tcl and "[exec x]" not in tcl.replace("\\[exec x\\]", "")


def test_a_control_character_before_a_hex_digit_stays_two_characters_in_tcl() -> None:
    # Tcl 8.5 (still the tclsh of older environment-modules sites) reads every hex digit after \x: "\x01a" is one
    # character there; three octal digits are read the same by every Tcl
    assert tcl_string("\x01a\x7f") == '"\\001a\\177"'


def test_the_default_file_for_tcl_sets_modules_version() -> None:
    assert version_file("0.2.0") == '#%Module1.0\nset ModulesVersion "0.2.0"\n'


def test_environment_names_are_variable_names() -> None:
    assert info(name="my-app.v2").env_prefix == "MY_APP_V2"
    assert info(name="3d").env_prefix == "_3D"


def test_apptainer_wrappers_run_exec_and_shell_with_binds_but_the_users_environment() -> None:
    scripts = wrappers(local(binds=["/data:/data"]), info())
    assert set(scripts) == {"fibonacci-run", "fibonacci-exec", "fibonacci-shell"}
    sif = "/p/apps/fibonacci/0.1.0/fibonacci.sif"
    last = {name: text.splitlines()[-1] for name, text in scripts.items()}
    assert last["fibonacci-run"] == f'exec apptainer run --bind /data:/data {sif} "$@"'
    assert last["fibonacci-exec"] == f'exec apptainer exec --bind /data:/data {sif} "$@"'
    assert last["fibonacci-shell"] == f"exec apptainer shell --bind /data:/data {sif}"
    assert all(text.startswith("#!/bin/sh\n") and "--cleanenv" not in text for text in scripts.values())


def test_the_gpu_flag_is_passed_only_where_a_gpu_is_present_or_the_user_says_so() -> None:
    lines = wrappers(local(), info())["fibonacci-run"].splitlines()
    sif = "/p/apps/fibonacci/0.1.0/fibonacci.sif"
    assert lines[-2:] == [
        f'[ -z "$gpu" ] || exec apptainer run --nv {sif} "$@"',
        f'exec apptainer run {sif} "$@"',
    ]
    choice = "\n".join(lines)
    assert (
        'case "${FIBONACCI_GPU:-auto}" in' in choice
        and "  on) gpu=1 ;;" in choice
        and "  off) gpu= ;;" in choice
    )
    assert f"  auto) if {GPU_PRESENT['nvidia']}; then gpu=1; else gpu=; fi ;;" in choice
    assert "[ -e /dev/nvidiactl ]" in GPU_PRESENT["nvidia"] and "NoDevFiles" in GPU_PRESENT["nvidia"]
    assert "exit 2" in choice and "use auto, on or off" in choice


def test_amd_clusters_check_for_the_rocm_device() -> None:
    text = wrappers(local(gpu="amd"), info())["fibonacci-exec"]
    assert "--rocm" in text and "[ -e /dev/kfd ]" in text and "--nv" not in text


def test_the_module_help_says_when_the_gpu_flag_is_passed_and_how_to_choose() -> None:
    cluster = local()
    text = modulefile_text("lmod", info(), "apptainer", wrapper_gpu_flag(cluster))
    assert "the commands pass apptainer --nv only where a GPU is present" in text
    assert "FIBONACCI_GPU=on or off chooses (default auto)" in text
    assert "GPU:" not in modulefile_text("tcl", info(), "apptainer", None)


def test_no_gpu_flag_where_the_cluster_has_no_gpu_partition() -> None:
    cluster = local()
    parts = {k: v for k, v in cluster.scheduler.partitions.items() if k != "gpu"}
    cluster = cluster.model_copy(
        update={"scheduler": cluster.scheduler.model_copy(update={"partitions": parts})}
    )
    text = wrappers(cluster, info())["fibonacci-run"]
    assert "--nv" not in text and "FIBONACCI_GPU" not in text and wrapper_gpu_flag(cluster) is None


def test_charliecloud_has_no_runscript_or_shell_subcommand() -> None:
    scripts = wrappers(local(type="charliecloud"), info(sif="/p/x.sqfs"))
    assert scripts["fibonacci-run"].splitlines()[-1] == 'exec ch-run /p/x.sqfs -- "$@"'
    assert scripts["fibonacci-shell"].splitlines()[-1] == "exec ch-run /p/x.sqfs -- /bin/sh"


def test_podman_images_cannot_be_released_and_the_error_names_the_section() -> None:
    with pytest.raises(ConfigError, match=r"local\.yaml:\d+:\d+: release: runtime podman keeps images"):
        wrappers(local(type="podman"), info())


def test_a_path_with_spaces_and_quotes_stays_one_word_in_the_wrapper() -> None:
    odd = "/p/it's a dir/fib.sif"
    line = wrappers(local(), info(sif=odd))["fibonacci-exec"].splitlines()[-1]
    assert line.endswith("'/p/it'\"'\"'s a dir/fib.sif' \"$@\"")


def test_a_line_break_in_a_value_never_ends_a_comment_line() -> None:
    hostile = info(tag="v1\nos.execute('id')", version="0.1.0\n]] os.execute('id') --")
    for text in (lua_modulefile(hostile, "apptainer"), tcl_modulefile(hostile, "apptainer")):
        comment_lines = [line for line in text.splitlines() if line.startswith(("--", "##"))]
        assert len(comment_lines) == 1 and "os.execute" in comment_lines[0]
        assert not any(line.startswith(("os.", "]]")) for line in text.splitlines())
    script = wrapper_script(hostile, "run", ["apptainer", "run", "/x.sif"])
    assert script.splitlines()[0] == "#!/bin/sh" and len(script.splitlines()) == 4
    assert script.splitlines()[-1] == 'exec apptainer run /x.sif "$@"'
