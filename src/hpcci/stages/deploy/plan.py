"""The deploy plan, pure data: the images to stage, the test jobs, and every step a deploy runs, in order.

Every remote command is a step object (stages/steps.py) holding its argv, and every batch script its text, so
`hpcci plan` prints the very steps `hpcci deploy` executes (stages/execute.py). This module reaches no cluster:
it imports no transport (a unit test walks its imports).
"""

from __future__ import annotations

from dataclasses import dataclass

from hpcci.backends.launchers import Layout, launch_argv, rank_env
from hpcci.backends.runtime import ExecOptions
from hpcci.backends.schedulers import Scheduler
from hpcci.backends.schedulers.model import JobSpec
from hpcci.config.models import Cluster, Partition, Pipeline, SmokeTest
from hpcci.errors import ConfigError, UsageError
from hpcci.modules import load_argv
from hpcci.platforms import machine_platform, platform_machine
from hpcci.shell import command_line
from hpcci.stages.cluster import automation, runtime, shell_modules, template
from hpcci.stages.deploy.identity import RunIdentity, labelled
from hpcci.stages.deploy.image_plan import ImagePlan, plan_image, setup_steps
from hpcci.stages.deploy.paths import Paths
from hpcci.stages.deploy.provenance import sif_checksums
from hpcci.stages.sources import ImageSource
from hpcci.stages.steps import Command, Step, Submit, WriteFile

# -- the plan ------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class TestJob:
    index: int
    test: SmokeTest
    platform: str
    partition: str
    output_path: str
    time_limit: str
    submit: Submit

    @property
    def script_path(self) -> str:
        return self.submit.script.path

    @property
    def script(self) -> str:
        return self.submit.script.text


@dataclass(frozen=True)
class ClusterPlan:
    cluster: Cluster
    paths: Paths
    images: dict[str, ImagePlan]  # platform -> plan
    tests: list[TestJob]
    modules: list[str]  # cluster.modules: loaded first by every remote step (e.g. slurm)
    scheduler: Scheduler
    setup: list[Command]  # the image cache and this run's folder

    def steps(self) -> list[Step]:
        """Every step in the order a deploy that stages every image runs them."""
        images = [s for i in self.images.values() for s in i.steps()]
        checksums = [s for c in sif_checksums(self).values() for s in c.steps()]
        return [*self.setup, *images, *(t.submit for t in self.tests), *checksums]


def tests_for(pipeline: Pipeline, cluster: str) -> list[tuple[int, SmokeTest]]:
    return [(i, t) for i, t in enumerate(pipeline.tests) if t.clusters is None or cluster in t.clusters]


def partition_key(cluster: Cluster, test: SmokeTest) -> str:
    """The cluster-config partition a test runs on; a GPU test on a cluster without one says how to fix it."""
    if test.resources.partition:
        return test.resources.partition
    if test.gpu and cluster.scheduler.gpu_partition not in cluster.scheduler.partitions:
        known = ", ".join(cluster.scheduler.partitions)
        raise ConfigError(
            f"test {test.name!r} needs a GPU partition but cluster {cluster.name} has none named "
            f"{cluster.scheduler.gpu_partition!r} (partitions: {known}); add one to {cluster.source.file} "
            f"(scheduler.partitions / scheduler.gpu_partition) or limit the test with `clusters:` in hpcci.yaml"
        )
    return cluster.scheduler.gpu_partition if test.gpu else cluster.scheduler.default_partition


def platforms_needed(pipeline: Pipeline, cluster: Cluster) -> list[str]:
    """The image platforms this cluster's tests need: aarch64 partitions run linux/arm64, and so on."""
    needed: list[str] = []
    tests = tests_for(pipeline, cluster.name) or [(0, SmokeTest(name="none", command="true"))]
    for _, test in tests:
        try:
            part = cluster.partition(partition_key(cluster, test))
        except ConfigError:  # plan_cluster names it, with the test's file:line (check_fits)
            continue
        platform = machine_platform(part.arch)
        if platform not in needed:
            needed.append(platform)
    return needed


def test_modules(cluster: Cluster, test: SmokeTest, partition: Partition) -> list[str]:
    """The modules a test's job loads, in order, each once: the cluster's, MPI's (MPI tests), the partition's, the
    runtime's, then the runtime's GPU modules (GPU tests: e.g. Riviera's cuda12.2/toolkit)."""
    mpi = cluster.mpi.modules if test.mpi else []
    gpu = cluster.runtime.gpu_modules if test.gpu else []
    return list(dict.fromkeys([*cluster.modules, *mpi, *partition.modules, *cluster.runtime.modules, *gpu]))


def test_body(cluster: Cluster, test: SmokeTest, image: str, partition: Partition) -> list[str]:
    """The script lines that run ``test`` in ``image``: module loads, then the (MPI-launched) container command."""
    opts = ExecOptions(
        gpu=cluster.runtime.gpu if test.gpu else None,
        binds=[*cluster.runtime.binds, *test.binds],
        cleanenv=cluster.runtime.cleanenv,
        env=test.env,
        exec_args=cluster.runtime.type_exec_args,
        pass_env=rank_env(cluster.mpi.launcher) if test.mpi else (),  # the ranks' wiring survives --cleanenv
    )
    try:
        argv = test.argv
    except ValueError as e:  # shlex: an unbalanced quote
        raise ConfigError(
            f"test {test.name}: command {test.command!r} cannot be split into words ({e}); "
            "balance its quotes or write it as a list"
        ) from e
    run = runtime(cluster).exec(image, argv, opts)
    if test.mpi:
        r = test.resources
        layout = Layout(r.task_count, r.nodes, r.tasks_per_node, cluster.mpi.plugin)
        run = launch_argv(cluster.mpi.launcher, layout, cluster.mpi.args, run)
    loads = [command_line(load_argv(m)) for m in test_modules(cluster, test, partition)]
    return [*loads, command_line(run)]


def fit_problem(cluster: Cluster, test: SmokeTest, partition: Partition) -> str | None:
    """Why ``test`` cannot fit a node of ``partition`` (its CPUs, where the cluster config says), or None."""
    r = test.resources
    cpus = r.most_tasks_per_node * (r.cpus_per_task or 1)
    if partition.cpus is None or cpus <= partition.cpus:
        return None
    return (
        f"test {test.name!r} asks for {cpus} CPUs on a node ({r.most_tasks_per_node} tasks x "
        f"{r.cpus_per_task or 1} CPUs) but a node of partition {partition.name!r} of cluster {cluster.name} has "
        f"{partition.cpus}; raise resources.nodes or lower tasks_per_node / cpus_per_task"
    )


def check_fits(pipeline: Pipeline, cluster: Cluster) -> list[str]:
    """Each problem of the pipeline's tests on ``cluster``, one line each with the test's file:line."""
    problems: list[str] = []
    for index, test in tests_for(pipeline, cluster.name):
        try:
            part = cluster.partition(partition_key(cluster, test))
        except ConfigError as e:  # no such partition: the test is where to look (or its `clusters:`)
            problems.append(f"{pipeline.source.where(('tests', index))}: {e}")
            continue
        if problem := fit_problem(cluster, test, part):
            problems.append(f"{pipeline.source.where(('tests', index, 'resources'))}: {problem}")
    return problems


def plan_test(
    cluster: Cluster,
    test_at: tuple[int, SmokeTest],
    images: dict[str, ImagePlan],
    paths: Paths,
    scheduler: Scheduler,
    identity: RunIdentity | None = None,
) -> TestJob:
    index, test = test_at
    part = cluster.partition(partition_key(cluster, test))
    platform = machine_platform(part.arch)
    r = test.resources
    spec = JobSpec(
        job_name=f"hpcci-{test.name}",
        output=f"{paths.run_dir}/{test.name}.out",
        partition=part.name,
        account=cluster.scheduler.account,
        reservation=cluster.scheduler.reservation,
        qos=cluster.scheduler.qos,
        nodes=r.nodes,
        tasks=r.task_count,
        tasks_per_node=r.tasks_per_node,
        cpus_per_task=r.cpus_per_task,
        time=r.time,
        memory=r.memory if cluster.scheduler.memory_per != "none" else None,
        memory_per_cpu=cluster.scheduler.memory_per == "cpu",
        gres=part.gres if test.gpu else None,
        chdir=paths.run_dir,
        extra=[*cluster.scheduler.directives, *part.directives],
        body=test_body(cluster, test, images[platform].image, part),
        comment=f"hpcci smoke test {test.name!r} on cluster {cluster.name}",
    )
    spec = labelled(spec, identity, cluster.name)
    script = WriteFile(f"{paths.run_dir}/{test.name}{scheduler.SCRIPT_SUFFIX}",
                       scheduler.render_script(spec, template(cluster)))  # fmt: skip
    after = platform if images[platform].convert_job else None
    submit = Submit(script, scheduler, shell_modules(cluster), after)
    return TestJob(index, test, platform, part.name, spec.output, r.time, submit)


def check_output_matching(pipeline: Pipeline, cluster: Cluster) -> None:
    """report.output none matches expect.output with grep on the login node (stages/deploy/smoke.py), a command an
    automation node's wrapper does not run: refused before anything is submitted, not judged an error after."""
    if cluster.report.output != "none" or not automation(cluster):
        return
    tests = [t.name for _, t in tests_for(pipeline, cluster.name) if t.expect.output is not None]
    if tests:
        raise ConfigError(
            f"{cluster.source.where(('report', 'output'))}: report.output none matches expect.output with grep on "
            f"the login node, which login.mode automation does not allow (tests {', '.join(tests)}); use "
            "login.mode shell, report.output tail, or no expect.output for this cluster's tests"
        )


def plan_cluster(
    pipeline: Pipeline,
    cluster: Cluster,
    sources: dict[str, ImageSource],
    paths: Paths,
    run_id: str,
    scheduler: Scheduler,
    identity: RunIdentity | None = None,
) -> ClusterPlan:
    """Every step a deploy of ``sources`` to ``cluster`` runs (pure); ``identity``: the run the jobs are named for."""
    if problems := check_fits(pipeline, cluster):
        raise ConfigError("\n".join(problems))
    check_output_matching(pipeline, cluster)
    images: dict[str, ImagePlan] = {}
    for platform in platforms_needed(pipeline, cluster):
        source = sources.get(platform)
        if source is None:
            have = ", ".join(sources) or "none"
            arch = platform_machine(platform) or platform
            raise UsageError(
                f"cluster {cluster.name}: its partitions are {arch} and need a {platform} image, but only "
                f"{have} were published; add {platform} to image.platforms in hpcci.yaml"
            )
        images[platform] = plan_image(pipeline, cluster, source, paths, run_id, scheduler, identity)
    tests = [
        plan_test(cluster, t, images, paths, scheduler, identity) for t in tests_for(pipeline, cluster.name)
    ]
    return ClusterPlan(cluster, paths, images, tests, list(cluster.modules), scheduler, setup_steps(paths))


def plan_lines(plan: ClusterPlan) -> list[str]:
    """What `hpcci plan` prints for one cluster: its paths, then every step of ``plan.steps()`` in order."""
    p = plan.paths
    out = [
        f"paths (variables resolved in a login shell at deploy time): scratch {p.scratch}, "
        f"image cache {p.cache}, tmpdir {p.tmpdir}, jobs {p.run_dir}",
        *[line for step in plan.setup for line in step.lines()],
    ]
    for platform, image in plan.images.items():
        machine = platform_machine(platform)
        out.append(f"\nimage {platform} ({machine or '?'}) {image.source.digest}: staging {image.staging}")
        if image.registry_creds_file:
            out.append(f"write {image.registry_creds_file} (mode 600): the registry credentials")
        out += [line for step in image.steps() for line in step.lines()]
    for job in plan.tests:
        out.append(f"\ntest {job.test.name} ({job.platform}, partition {job.partition}):")
        out += job.submit.lines()
    out += [line for c in sif_checksums(plan).values() for step in c.steps() for line in step.lines()]
    return out
