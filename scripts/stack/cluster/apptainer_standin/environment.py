"""The container environment of the hpcci apptainer STAND-IN (not the real Apptainer), as Apptainer builds it.

The host's environment passes in (all of it, or with --cleanenv/--containall only a few basics), PATH is reset, the
image's own ENV applies, then APPTAINERENV_X / SINGULARITYENV_X become X, then --env-file and --env. --nv and --rocm
pass the GPUs Slurm allocated (CUDA_VISIBLE_DEVICES, ROCR_VISIBLE_DEVICES) and set HPCCI_STANDIN_GPU so a test can
see which GPU the container got.
"""

from __future__ import annotations

import os

from apptainer_standin.console import PROG, UsageError, fatal, warning
from apptainer_standin.image import Meta
from apptainer_standin.options import Options

DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
CLEANENV_KEEP = ("HOME", "USER", "LOGNAME", "TERM", "LANG", "LC_ALL", "TZ")
PASS_PREFIXES = ("APPTAINERENV_", "SINGULARITYENV_")


def container_env(opts: Options, meta: Meta, image: str) -> dict[str, str]:
    """The environment a program in ``image`` starts with."""
    host = dict(os.environ)
    if opts.on("cleanenv") or opts.on("containall"):
        env = {k: v for k, v in host.items() if k in CLEANENV_KEEP or k.startswith(PASS_PREFIXES)}
    else:
        env = {k: v for k, v in host.items() if k not in ("PATH", "LD_LIBRARY_PATH", "PS1")}
    for k in [k for k in env if k.startswith(("APPTAINER_", "SINGULARITY_"))]:
        del env[k]
    env["PATH"] = DEFAULT_PATH
    for e in meta.get("env", []):
        k, _, v = e.partition("=")
        env[k] = v
    for k, v in list(env.items()):
        for pre in PASS_PREFIXES:
            if k.startswith(pre):
                del env[k]
                env[k[len(pre) :]] = v
    env_file = opts.value("env_file")
    if env_file:
        env.update(_read_env_file(env_file))
    for item in opts.values("env"):
        env.update(_env_option(item))
    env.update(_gpu_env(opts, host))
    name = os.path.basename(image)
    env.update(
        {
            "APPTAINER_CONTAINER": os.path.abspath(image),
            "APPTAINER_NAME": name,
            "SINGULARITY_CONTAINER": os.path.abspath(image),
            "SINGULARITY_NAME": name,
            "APPTAINER_STANDIN": "hpcci",
            "PS1": f"{PROG.capitalize()}> ",
        }
    )
    return env


def _read_env_file(path: str) -> dict[str, str]:
    """KEY=VALUE lines of an --env-file (``export`` and quotes allowed, # comments skipped)."""
    env: dict[str, str] = {}
    try:
        with open(path) as f:
            for line in f:
                line = line.strip()
                if line and not line.startswith("#") and "=" in line:
                    k, _, v = line.removeprefix("export ").partition("=")
                    env[k.strip()] = v.strip().strip('"').strip("'")
    except OSError as e:
        fatal(f"could not read --env-file {path}: {e.strerror}")
    return env


def _env_option(item: str) -> dict[str, str]:
    """The variables of one --env value: KEY=VALUE[,KEY=VALUE...]."""
    env: dict[str, str] = {}
    for kv in item.split(","):
        if "=" not in kv:
            raise UsageError(f"invalid --env value '{kv}': use KEY=VALUE")
        k, _, v = kv.partition("=")
        env[k] = v
    return env


def _gpu_env(opts: Options, host: dict[str, str]) -> dict[str, str]:
    env: dict[str, str] = {}
    if opts.on("nv"):
        cvd = host.get("CUDA_VISIBLE_DEVICES", "")
        if cvd and cvd != "NoDevFiles":
            env.update(CUDA_VISIBLE_DEVICES=cvd, NVIDIA_VISIBLE_DEVICES=cvd, HPCCI_STANDIN_GPU=f"nv:{cvd}")
        else:
            warning("Could not find any nv files on this host!")
    if opts.on("rocm"):
        dev = host.get("ROCR_VISIBLE_DEVICES") or host.get("GPU_DEVICE_ORDINAL") or ""
        if dev:
            env.update(ROCR_VISIBLE_DEVICES=dev, HPCCI_STANDIN_GPU=f"rocm:{dev}")
        else:
            warning("Could not find any rocm files on this host!")
    return env
