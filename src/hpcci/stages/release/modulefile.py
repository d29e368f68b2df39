"""The text a release installs: its Lmod (Lua) or Tcl modulefile, the default-version file, the wrapper commands.

Pure text from values; every value is quoted for the language it lands in (Lua strings, Tcl strings, shell words
through hpcci.shell.command_line), so a tag, path or image name never runs as code. Loading ``<name>/<version>``
loads the runtime's modules, puts ``<name>-run``, ``<name>-exec`` and ``<name>-shell`` on PATH and sets
``<NAME>_SIF`` and ``<NAME>_VERSION``; its help and whatis name the tag, commit, image digest and where the tests ran.
On a cluster with GPUs the wrappers pass the runtime's GPU flag only where a GPU is present, or as ``<NAME>_GPU``
(auto, on, off) says; the help says so.
"""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass, replace

from hpcci.backends.runtime import ExecOptions, GpuKind, Runtime
from hpcci.config.models import Cluster
from hpcci.config.release import ModuleSystem
from hpcci.errors import ConfigError
from hpcci.shell import command_line
from hpcci.stages.cluster import runtime

WRAPPERS = ("run", "exec", "shell")


@dataclass(frozen=True)
class ModuleInfo:
    """What a release's modulefile and wrappers say and point at."""

    name: str  # the module's name, e.g. fibonacci
    version: str  # from the tag, e.g. 0.1.0
    tag: str
    commit: str
    image: str  # repository, e.g. docker.io/org/fibonacci
    digest: str  # the image's digest (sha256:...)
    sif: str  # the installed SIF, absolute
    bin_dir: str  # the wrappers' folder, absolute
    modules: tuple[str, ...]  # the runtime's modules, loaded by the modulefile
    tested: str  # where the smoke tests ran, one sentence
    run_url: str = ""  # the workflow run that installed it

    @property
    def env_prefix(self) -> str:
        """FIBONACCI for fibonacci (a variable name: letters, digits, '_', not starting with a digit)."""
        word = re.sub(r"[^A-Za-z0-9_]", "_", self.name).upper()
        return word if not word[0].isdigit() else f"_{word}"

    def environment(self) -> dict[str, str]:
        return {f"{self.env_prefix}_SIF": self.sif, f"{self.env_prefix}_VERSION": self.version}

    @property
    def gpu_variable(self) -> str:
        """FIBONACCI_GPU: a user's choice of the GPU flag (auto, on, off)."""
        return f"{self.env_prefix}_GPU"

    def help_lines(self, runtime_name: str, gpu_flag: str | None = None) -> list[str]:
        image = f"{self.image}@{self.digest}" if self.image else self.digest
        lines = [
            f"{self.name} {self.version}, installed by hpcci from tag {self.tag} (commit {self.commit or 'unknown'})",
            f"Image: {image}",
            f"SIF: {self.sif}",
            f"Tested: {self.tested}",
        ]
        if self.run_url:
            lines.append(f"Installed by: {self.run_url}")
        n = self.name
        lines += [
            f"Commands: {n}-run [ARGS] ({runtime_name} run), {n}-exec COMMAND [ARGS] ({runtime_name} exec), "
            f"{n}-shell (a shell in the image)",
            f"Environment: {self.env_prefix}_SIF (the image file), {self.env_prefix}_VERSION",
        ]
        if gpu_flag:
            lines.append(
                f"GPU: the commands pass {runtime_name} {gpu_flag} only where a GPU is present (a GPU device file, "
                f"or a GPU the scheduler gave the job); {self.gpu_variable}=on or off chooses (default auto)"
            )
        return lines

    def whatis(self) -> str:
        return f"{self.name} {self.version}: tag {self.tag}, commit {self.commit[:12] or '?'}, image {self.digest}"


# -- modulefiles ----------------------------------------------------------------------------------------------------


def _quoted(s: str, special: str, control: str) -> str:
    """``s`` between double quotes: each ``special`` character backslash-escaped, a line break as \\n, other control
    characters as ``control`` formats their code."""
    out = []
    for c in s:
        if c in special:
            out.append("\\" + c)
        elif c == "\n":
            out.append("\\n")
        elif ord(c) < 32 or ord(c) == 127:
            out.append(control.format(ord(c)))
        else:
            out.append(c)
    return '"' + "".join(out) + '"'


def lua_string(s: str) -> str:
    """A Lua string literal holding exactly ``s`` (control characters as \\ddd, three decimal digits)."""
    return _quoted(s, '\\"', "\\{:03d}")


def tcl_string(s: str) -> str:
    """A Tcl double-quoted word holding exactly ``s``: every character Tcl substitutes is backslash-escaped; control
    characters as three octal digits (Tcl 8.5 reads every hex digit after \\x)."""
    return _quoted(s, '\\$[]"{}', "\\{:03o}")


def comment(text: str) -> str:
    """``text`` for a comment line (Lua ``--``, Tcl ``##``, sh ``#``): a line break would end the comment and start
    code, so every control character becomes '?'."""
    return "".join("?" if ord(c) < 32 or ord(c) == 127 else c for c in text)


def lua_modulefile(info: ModuleInfo, runtime_name: str, gpu_flag: str | None = None) -> str:
    """Lmod's Lua modulefile (https://lmod.readthedocs.io/en/latest/050_lua_modulefiles.html)."""
    help_text = "\n".join(info.help_lines(runtime_name, gpu_flag))
    lines = [
        comment(
            f"-- {info.name}/{info.version}: written by hpcci; the release's files are replaced, never edited"
        ),
        f"help({lua_string(help_text)})",
        f"whatis({lua_string('Name: ' + info.name)})",
        f"whatis({lua_string('Version: ' + info.version)})",
        f"whatis({lua_string('Description: ' + info.whatis())})",
        *[f"load({lua_string(m)})" for m in info.modules],
        f'prepend_path("PATH", {lua_string(info.bin_dir)})',
        *[f"setenv({lua_string(k)}, {lua_string(v)})" for k, v in info.environment().items()],
    ]
    return "\n".join(lines) + "\n"


def tcl_modulefile(info: ModuleInfo, runtime_name: str, gpu_flag: str | None = None) -> str:
    """A Tcl modulefile, read by environment-modules and by Lmod (modulefile(4))."""
    help_lines = [f"    puts stderr {tcl_string(line)}" for line in info.help_lines(runtime_name, gpu_flag)]
    lines = [
        "#%Module1.0",
        comment(
            f"## {info.name}/{info.version}: written by hpcci; the release's files are replaced, never edited"
        ),
        "proc ModulesHelp { } {",
        *help_lines,
        "}",
        f"module-whatis {tcl_string(info.whatis())}",
        *[f"module load {tcl_string(m)}" for m in info.modules],
        f"prepend-path PATH {tcl_string(info.bin_dir)}",
        *[f"setenv {tcl_string(k)} {tcl_string(v)}" for k, v in info.environment().items()],
    ]
    return "\n".join(lines) + "\n"


def modulefile_text(
    system: ModuleSystem, info: ModuleInfo, runtime_name: str, gpu_flag: str | None = None
) -> str:
    """The modulefile; ``gpu_flag`` (wrapper_gpu_flag) puts the wrappers' GPU choice in its help."""
    make = lua_modulefile if system == "lmod" else tcl_modulefile
    return make(info, runtime_name, gpu_flag)


def version_file(version: str) -> str:
    """environment-modules' default pointer: a `.version` file setting ModulesVersion, as modulefile(4)'s
    "Locating Modulefiles" section describes (Lmod reads it too, after a `default` symlink and .modulerc)."""
    return f"#%Module1.0\nset ModulesVersion {tcl_string(version)}\n"


# -- wrapper commands -----------------------------------------------------------------------------------------------


def check_file_runtime(cluster: Cluster) -> Runtime:
    """The cluster's runtime, if its images are files another user can read (not podman's private store)."""
    rt = runtime(cluster)
    if not rt.is_file():
        raise ConfigError(
            f"{cluster.source.where(('release',))}: release: runtime {cluster.runtime.type} keeps images in the "
            "deploying user's own store, which other users cannot load; releases need an image file (apptainer, "
            "singularity or charliecloud) - remove the release section or change runtime.type"
        )
    return rt


def wrapper_options(cluster: Cluster) -> ExecOptions:
    """The runtime options of every wrapper: the configured binds and the site's exec_args, no GPU flag (see
    wrapper_gpu). No --cleanenv: a user's command runs with the user's environment, as the runtime's own default (the
    smoke tests clean it to be reproducible)."""
    return ExecOptions(
        binds=list(cluster.runtime.binds), cleanenv=False, exec_args=cluster.runtime.type_exec_args
    )


def wrapper_gpu(cluster: Cluster) -> GpuKind | None:
    """The GPU kind the wrappers may pass a flag for: the cluster's, where it has a GPU partition and the runtime a
    flag (ch-run has none)."""
    kind = cluster.runtime.gpu
    has_gpu = cluster.scheduler.gpu_partition in cluster.scheduler.partitions
    return kind if has_gpu and runtime(cluster).gpu(kind) else None


def wrapper_gpu_flag(cluster: Cluster) -> str | None:
    """The wrappers' GPU option as the module help shows it (``--nv``), or None when they pass none."""
    kind = wrapper_gpu(cluster)
    return " ".join(runtime(cluster).gpu(kind)) if kind else None


# A GPU is present, as Apptainer users check before --nv/--rocm (whose libraries and devices the runtime binds in,
# https://apptainer.org/docs/user/main/gpu.html): the driver's device files, or a GPU the scheduler allocated to
# this job (Slurm's gres sets CUDA_VISIBLE_DEVICES, "NoDevFiles" when the gres has no device file:
# https://slurm.schedmd.com/gres.html). The local stack's GPU is such a gres (ENVIRONMENT.md, "A fake GPU").
GPU_PRESENT: dict[GpuKind, str] = {
    "nvidia": '[ -e /dev/nvidiactl ] || { [ -n "${CUDA_VISIBLE_DEVICES:-}" ] && '
    '[ "$CUDA_VISIBLE_DEVICES" != NoDevFiles ]; }',
    "amd": '[ -e /dev/kfd ] || [ -n "${ROCR_VISIBLE_DEVICES:-}" ]',
}


def gpu_choice(info: ModuleInfo, kind: str, gpu: GpuKind) -> list[str]:
    """Lines that set ``gpu`` non-empty when the GPU flag is to be passed: ``<NAME>_GPU`` on, off or auto (the
    default: a GPU is present); any other value stops the wrapper with exit code 2."""
    var = info.gpu_variable
    bad = shlex.join(["printf", r"%s: %s is %s: use auto, on or off\n", f"{info.name}-{kind}", var])
    return [
        f'case "${{{var}:-auto}}" in',
        "  on) gpu=1 ;;",
        "  off) gpu= ;;",
        f"  auto) if {GPU_PRESENT[gpu]}; then gpu=1; else gpu=; fi ;;",
        f'  *) {bad} "${var}" >&2; exit 2 ;;',
        "esac",
    ]


def wrapper_script(info: ModuleInfo, kind: str, argv: list[str], gpu_argv: list[str] | None = None,
                   gpu: GpuKind | None = None) -> str:  # fmt: skip
    """``<name>-<kind>``: a POSIX sh script that becomes the runtime (exec), passing its arguments on; with
    ``gpu_argv`` (the command line with the GPU flag) it runs that one where a GPU is present (gpu_choice)."""
    args = "" if kind == "shell" else ' "$@"'
    what = f"{info.name} {info.version} (tag {info.tag}, image {info.digest})"
    lines = [
        "#!/bin/sh",
        comment(f"# {info.name}-{kind}: {what}, installed by hpcci."),
        comment(
            f"# `module load {info.name}/{info.version}` puts this on PATH and loads the runtime it calls."
        ),
    ]
    if gpu_argv and gpu:
        lines += [
            f"# The GPU flag only where a GPU is present: {info.gpu_variable}=auto (default), on or off.",
            *gpu_choice(info, kind, gpu),
            f'[ -z "$gpu" ] || exec {command_line(gpu_argv)}{args}',
        ]
    lines.append(f"exec {command_line(argv)}{args}")
    return "\n".join(lines) + "\n"


def wrappers(cluster: Cluster, info: ModuleInfo) -> dict[str, str]:
    """File name -> text of the three wrapper commands."""
    rt = check_file_runtime(cluster)
    opts = wrapper_options(cluster)
    gpu = wrapper_gpu(cluster)
    with_gpu = replace(opts, gpu=gpu)
    return {
        f"{info.name}-{k}": wrapper_script(
            info,
            k,
            rt.wrapper_argv(k, info.sif, opts),
            rt.wrapper_argv(k, info.sif, with_gpu) if gpu else None,
            gpu,
        )
        for k in WRAPPERS
    }
