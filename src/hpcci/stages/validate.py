"""What later stages refuse about a config's own values, checked up front by `hpcci validate` with file:line:column.

Each check calls the function the later stage calls (tags, references, the runtime's binds and env, the planner's
automation, template and release checks), so the wording is the stage's own; only the position is added here. Last,
the deploy plan itself is made (pure, placeholder images, paths unresolved) for each pipeline and cluster checked
together: whatever it still refuses is refused here too.
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Callable, Sequence
from functools import partial

from hpcci.backends.runtime import _check_bind, _check_env
from hpcci.backends.schedulers.model import JobSpec, render_template
from hpcci.backends.schedulers.slurm_directives import quoted
from hpcci.config.models import Cluster, Pipeline
from hpcci.config.types import Loc, Source
from hpcci.errors import HpcciError
from hpcci.records import S3Object
from hpcci.references import normalize_repository
from hpcci.tags import check_extra, check_semver

_Check = tuple[Loc, Callable[[], object]]


def _run(source: Source, checks: list[_Check]) -> list[str]:
    """Each failing check as `file:line:column: the stage's message`."""
    problems: list[str] = []
    for loc, check in checks:
        try:
            check()
        except (HpcciError, ValueError) as e:
            problems.append(f"{source.where(loc)}: {e}")
    return problems


def split_command(name: str, command: str | list[str]) -> list[str]:
    """A test's command as the planner splits it (stages/plan.py test_body): the same refusal for unbalanced quotes."""
    if not isinstance(command, str):
        return list(command)
    try:
        return shlex.split(command)
    except ValueError as e:
        raise ValueError(
            f"test {name}: command {command!r} cannot be split into words ({e}); "
            "balance its quotes or write it as a list"
        ) from e


def check_pattern(pattern: str) -> None:
    """expect.output as the judge reads it (stages/smoke.py): a pattern that does not compile judges every run an
    error."""
    try:
        re.compile(pattern, re.MULTILINE)
    except re.error as e:
        raise ValueError(f"expect.output {pattern!r} is not a valid regular expression: {e}") from e


def pipeline_problems(pipe: Pipeline) -> list[str]:
    """What build (image.name, tags) and deploy (test commands, env, binds, expected output) would refuse."""
    checks: list[_Check] = [(("image", "name"), lambda: normalize_repository(pipe.image.name))]
    checks += [(("tags", "extra", i), partial(check_extra, p)) for i, p in enumerate(pipe.tags.extra)]
    checks += [(("tags", "semver", i), partial(check_semver, p)) for i, p in enumerate(pipe.tags.semver)]
    for i, t in enumerate(pipe.tests):
        at = ("tests", i)
        checks.append(((*at, "command"), partial(split_command, t.name, t.command)))
        checks += [((*at, "env", k, "<key>"), partial(_check_env, {k: v})) for k, v in t.env.items()]
        checks += [((*at, "binds", j), partial(_check_bind, b)) for j, b in enumerate(t.binds)]
        if t.expect.output is not None:
            checks.append(((*at, "expect", "output"), partial(check_pattern, t.expect.output)))
    return _run(pipe.source, checks)


def cluster_problems(cluster: Cluster) -> list[str]:
    """What a deploy or release install on ``cluster`` would refuse before contacting it."""
    from hpcci.stages.cluster import runtime, template
    from hpcci.stages.deploy.image_plan import _check_automation
    from hpcci.stages.deploy.paths import require_absolute_paths
    from hpcci.stages.release.modulefile import check_file_runtime
    from hpcci.stages.release.plan import require_absolute

    checks: list[_Check] = [
        (("runtime", "binds", j), partial(_check_bind, b)) for j, b in enumerate(cluster.runtime.binds)
    ]
    checks += [
        (("scheduler", "partitions", key, "gres"), partial(quoted, p.gres))
        for key, p in cluster.scheduler.partitions.items()
        if p.gres is not None
    ]
    if cluster.scheduler.template:
        checks.append((("scheduler", "template"), lambda: _check_template(cluster, template(cluster))))
    problems = _run(cluster.source, checks)
    # these name their own position already
    own: list[Callable[[], object]] = []
    if cluster.login.mode == "automation":
        own += [lambda: require_absolute_paths(cluster), lambda: _check_automation(cluster, runtime(cluster))]
        if cluster.release:
            own.append(lambda: require_absolute(cluster))
    if cluster.release:
        own.append(lambda: check_file_runtime(cluster))
    for check in own:
        try:
            check()
        except HpcciError as e:
            problems.append(str(e))
    return problems


def _check_template(cluster: Cluster, text: str | None) -> None:
    if text is not None:
        render_template(text, [], JobSpec(job_name="hpcci-validate", output="validate.out"))


def pair_problems(pipe: Pipeline, cluster: Cluster, known: Sequence[str]) -> list[str]:
    """What deploying ``pipe`` to ``cluster`` would refuse beyond ``known`` (the problems found already): the test
    fits (resources, partitions), then whatever the planner itself still refuses."""
    from hpcci.backends.schedulers import SCHEDULERS
    from hpcci.stages.deploy.paths import unresolved_paths
    from hpcci.stages.deploy.plan import check_fits, plan_cluster, platforms_needed
    from hpcci.stages.sources import ImageSource

    problems = check_fits(pipe, cluster)
    if problems or known:
        return problems
    # the images the build would publish, as placeholders reachable every way (whichever staging the cluster
    # wants); a platform image.platforms lacks stays missing
    zero = "0" * 64
    sources = {
        p: ImageSource(
            p,
            f"sha256:{zero}",
            tar_sha256=zero,
            s3=S3Object("BUCKET", "KEY", 0, zero, p, f"sha256:{zero}"),
            local_tar="IMAGE.tar",
            registry_ref=f"{pipe.image.name}@sha256:{zero}",
        )
        for p in platforms_needed(pipe, cluster)
        if p in pipe.image.platforms
    }
    try:
        plan_cluster(
            pipe,
            cluster,
            sources,
            unresolved_paths(cluster, "RUN_ID"),
            "RUN_ID",
            SCHEDULERS[cluster.scheduler.type],
        )
    except HpcciError as e:
        problems += [
            f"{cluster.source.file}: deploying {pipe.source.file}: {line}" for line in str(e).splitlines()
        ]
    return problems
