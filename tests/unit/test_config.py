"""The config loader: shipped configs pass, and every kind of bad input is one line with file:line:column."""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import pytest
import yaml

from hpcci.config import load as config_load
from hpcci.config import models as config
from hpcci.config import types as config_types
from hpcci.durations import duration_seconds
from hpcci.errors import ConfigError

ROOT = Path(__file__).resolve().parents[2]
CLUSTER_CONFIGS = sorted((ROOT / "cluster-configs").glob("*.yaml"))
PIPELINES = sorted(ROOT.glob("examples/*/hpcci.yaml"))


def write(tmp_path: Path, text: str, name: str = "hpcci.yaml") -> Path:
    p = tmp_path / name
    p.write_text(text)
    return p


def error_of(path: Path, model: type = config.Pipeline) -> str:
    with pytest.raises(ConfigError) as e:
        config_load.load(model, path)
    return str(e.value)


@pytest.mark.parametrize("path", CLUSTER_CONFIGS, ids=lambda p: p.stem)
def test_shipped_cluster_configs_load(path: Path) -> None:
    cluster = config_load.load_cluster(path)
    assert cluster.name == path.stem


@pytest.mark.parametrize("path", PIPELINES, ids=lambda p: p.parent.name)
def test_shipped_pipelines_load(path: Path) -> None:
    assert config_load.load_pipeline(path).tests


def test_seed_clusters_are_all_shipped() -> None:
    names = {p.stem for p in CLUSTER_CONFIGS}
    assert {"frontera", "stampede2", "riviera", "discovery", "training", "local"} <= names


@pytest.mark.parametrize("kind", ["pipeline", "cluster"])
def test_shipped_json_schema_is_current(kind: str) -> None:
    model = config.Pipeline if kind == "pipeline" else config.Cluster
    shipped = json.loads((ROOT / "src/hpcci/schemas" / f"{kind}.json").read_text())
    assert shipped == config_load.json_schema(model), "regenerate with: hpcci validate --schema " + kind


@pytest.mark.parametrize("path", CLUSTER_CONFIGS + PIPELINES, ids=lambda p: f"{p.parent.name}/{p.stem}")
def test_shipped_configs_pass_the_json_schema(path: Path) -> None:
    kind = "cluster" if path.parent.name == "cluster-configs" else "pipeline"
    schema = json.loads((ROOT / "src/hpcci/schemas" / f"{kind}.json").read_text())
    jsonschema.validate(yaml.safe_load(path.read_text()), schema)


def test_unknown_key_suggests_the_right_one(tmp_path: Path) -> None:
    p = write(tmp_path, "image:\n  name: org/app\n  platfroms: [linux/amd64]\n")
    assert error_of(p) == f"{p}:3:3: image.platfroms: unknown key; did you mean 'platforms'?"


def test_human_time_is_rejected_with_the_slurm_form(tmp_path: Path) -> None:
    p = write(
        tmp_path,
        "image: {name: a}\ntests:\n  - name: t\n    command: x\n    resources:\n      time: 10 minutes\n",
    )
    msg = error_of(p)
    assert msg.startswith(f"{p}:6:13: tests[0].resources.time: '10 minutes' is not a Slurm time")
    assert "HH:MM:SS" in msg


def test_unknown_runtime_names_the_allowed_ones(tmp_path: Path) -> None:
    p = write(
        tmp_path,
        "name: c\nlogin: {host: h, user: u, key: {env: K}, known_hosts: {env: KH}}\n"
        "scheduler: {partitions: {cpu: {name: c}}}\nruntime: {type: apptainr}\n",
        "c.yaml",
    )
    msg = error_of(p, config.Cluster)
    assert msg.startswith(f"{p}:4:17: runtime.type:")
    assert "did you mean 'apptainer'?" in msg


def test_wrong_type_names_key_and_value(tmp_path: Path) -> None:
    p = write(
        tmp_path, "image:\n  name: app\ntests:\n  - name: t\n    command: x\n    resources: {nodes: many}\n"
    )
    assert error_of(p).startswith(f"{p}:6:24: tests[0].resources.nodes: Input should be a valid integer")


def test_missing_key_is_named(tmp_path: Path) -> None:
    p = write(tmp_path, "image:\n  context: .\n")
    assert error_of(p) == f"{p}:2:3: image.name: required key is missing; add it"


def test_malformed_yaml_is_one_line_with_position(tmp_path: Path) -> None:
    p = write(tmp_path, "image: [\n")
    msg = error_of(p)
    assert msg.startswith(f"{p}:2:1: malformed YAML:")
    assert "\n" not in msg


def test_duplicate_key_is_malformed(tmp_path: Path) -> None:
    p = write(tmp_path, "image: {name: a}\nimage: {name: b}\n")
    assert "malformed YAML" in error_of(p)


def test_alias_bomb_is_refused_before_expansion(tmp_path: Path) -> None:
    lines = ['a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    for i in range(1, 9):
        prev = chr(ord("a") + i - 1)
        lines.append(f"{chr(ord('a') + i)}: &{chr(ord('a') + i)} [" + ",".join([f"*{prev}"] * 9) + "]")
    p = write(tmp_path, "\n".join(lines) + "\nimage: {name: x}\n")
    assert "YAML aliases (*a) are not allowed" in error_of(p)


def test_huge_file_is_refused_without_parsing(tmp_path: Path) -> None:
    p = tmp_path / "hpcci.yaml"
    with p.open("wb") as f:
        f.truncate(50 * 1000 * 1000)
    assert (
        error_of(p)
        == f"{p}:1:1: file is 50.0 MB; hpcci config files are limited to 1 MiB: is this the right file?"
    )


def test_empty_file_says_so(tmp_path: Path) -> None:
    assert "file is empty" in error_of(write(tmp_path, ""))


def test_every_problem_is_reported_one_per_line(tmp_path: Path) -> None:
    p = write(tmp_path, "image: {name: a, platforms: [windows/amd64]}\ntagz: {}\n")
    lines = error_of(p).splitlines()
    assert len(lines) == 2
    assert all(line.startswith(f"{p}:") for line in lines)


def test_test_lines_point_at_the_test(tmp_path: Path) -> None:
    p = write(
        tmp_path, "image: {name: a}\ntests:\n  - name: one\n    command: x\n  - name: two\n    command: y\n"
    )
    pipe = config_load.load_pipeline(p)
    assert [pipe.test_line(0), pipe.test_line(1)] == [3, 5]


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("30", 1800), ("05:30", 330), ("01:02:03", 3723), ("1-00", 86400), ("2-01:00:00", 176400)],
)
def test_slurm_time_forms(text: str, seconds: int) -> None:
    assert duration_seconds(text) == seconds


def test_secret_from_missing_env_says_which_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("HPCCI_NOPE", raising=False)
    with pytest.raises(ConfigError, match="environment variable HPCCI_NOPE is not set"):
        config_types.FromEnv(env="HPCCI_NOPE").resolve("login.key")


def test_unknown_cluster_suggests_a_known_one(tmp_path: Path) -> None:
    (tmp_path / "cluster-configs").mkdir()
    (tmp_path / "cluster-configs" / "frontera.yaml").write_text("name: frontera\n")
    pipe = config.Pipeline.model_validate({"image": {"name": "a"}})
    with pytest.raises(ConfigError, match="did you mean 'frontera'"):
        config_load.load_clusters(pipe, ["fronterra"], tmp_path)


MINIMAL = "image: {name: reg/org/fib}\ntests:\n  - name: mpi\n    command: hello\n    resources: "


def test_tasks_that_contradict_nodes_times_tasks_per_node_are_an_error_at_the_test(tmp_path: Path) -> None:
    path = write(tmp_path, MINIMAL + "{nodes: 2, tasks_per_node: 3, tasks: 4}\n")
    assert error_of(path) == (
        f"{path}:5:16: tests[0].resources: tasks 4 is not nodes x tasks_per_node (2 x 3 = 6); drop tasks (it "
        "follows from the other two) or make them agree"
    )


def test_fewer_tasks_than_nodes_is_an_error(tmp_path: Path) -> None:
    assert "Slurm would shrink the job to 1 node(s)" in error_of(
        write(tmp_path, MINIMAL + "{nodes: 2, tasks: 1}\n")
    )


@pytest.mark.parametrize(
    ("resources", "tasks", "most"),
    [
        ({}, 1, 1),
        ({"nodes": 2}, 2, 1),
        ({"nodes": 2, "tasks_per_node": 3}, 6, 3),
        ({"nodes": 2, "tasks": 5}, 5, 3),
    ],
)
def test_the_task_count_follows_nodes_and_tasks_per_node(
    resources: dict[str, int], tasks: int, most: int
) -> None:
    r = config.Resources.model_validate(resources)
    assert (r.task_count, r.most_tasks_per_node) == (tasks, most)


def test_a_scratch_path_with_a_line_break_is_refused(tmp_path: Path) -> None:
    data = yaml.safe_load((ROOT / "cluster-configs" / "local.yaml").read_text())
    data["paths"]["scratch"] = "/scratch/a\nb"
    path = write(tmp_path, yaml.safe_dump(data), "local.yaml")
    assert "paths.scratch: '/scratch/a\\nb' holds a line break or NUL" in error_of(path, config.Cluster)


def test_validate_checks_tests_against_the_partitions_cpus(tmp_path: Path) -> None:
    from hpcci.commands.validate import cross_problems

    data = yaml.safe_load((ROOT / "cluster-configs" / "local.yaml").read_text())
    data["scheduler"]["partitions"]["cpu"]["cpus"] = 4
    cluster = config_load.load_cluster(write(tmp_path, yaml.safe_dump(data), "local.yaml"))
    pipe = config_load.load_pipeline(
        write(
            tmp_path,
            MINIMAL + "{nodes: 2, tasks_per_node: 3, cpus_per_task: 2}\ndeploy: {clusters: [local]}\n",
        )
    )
    assert cross_problems([pipe, cluster]) == [
        f"{tmp_path / 'hpcci.yaml'}:5:16: test 'mpi' asks for 6 CPUs on a node (3 tasks x 2 CPUs) but a node of "
        "partition 'cpu' of cluster local has 4; raise resources.nodes or lower tasks_per_node / cpus_per_task"
    ]
    assert cross_problems([pipe]) == []  # the cluster's file was not among those checked


def test_validate_names_a_gpu_test_on_a_cluster_without_a_gpu_partition(tmp_path: Path) -> None:
    from hpcci.commands.validate import cross_problems

    pipe = config_load.load_pipeline(PIPELINES[0])
    training = config_load.load_cluster(ROOT / "cluster-configs" / "training.yaml")
    assert cross_problems([pipe, training]) == []  # the example deploys to local only
    local = config_load.load_cluster(ROOT / "cluster-configs" / "local.yaml")
    assert cross_problems([pipe, local]) == []


def test_validate_names_the_gpu_test_a_target_cluster_cannot_run(tmp_path: Path) -> None:
    from hpcci.commands.validate import cross_problems

    text = PIPELINES[0].read_text().replace("clusters: [local]", "clusters: [local, training]")
    pipe = config_load.load_pipeline(write(tmp_path, text))
    training = config_load.load_cluster(ROOT / "cluster-configs" / "training.yaml")
    (problem,) = cross_problems([pipe, training])
    gpu_line = text.splitlines().index("  - name: gpu") + 1
    assert problem.startswith(f"{tmp_path / 'hpcci.yaml'}:{gpu_line}:5: test 'gpu' needs a GPU partition")


def test_an_account_with_a_line_break_is_refused_before_anything_moves(tmp_path: Path) -> None:
    data = yaml.safe_load((ROOT / "cluster-configs" / "local.yaml").read_text())
    data["scheduler"]["account"] = "hpcci\n#SBATCH --qos=high"
    path = write(tmp_path, yaml.safe_dump(data), "local.yaml")
    assert "scheduler.account: 'hpcci\\n#SBATCH --qos=high' holds a line break" in error_of(
        path, config.Cluster
    )


def test_a_misspelt_required_key_is_one_error_not_also_missing(tmp_path: Path) -> None:
    p = write(tmp_path, "image:\n  nmae: org/app\ntests:\n  - nmae: t\n    command: x\n")
    assert error_of(p).splitlines() == [
        f"{p}:2:3: image.nmae: unknown key; did you mean 'name'?",
        f"{p}:4:5: tests[0].nmae: unknown key; did you mean 'name'?",
    ]


def test_a_missing_key_beside_an_unrelated_unknown_one_is_still_named(tmp_path: Path) -> None:
    p = write(tmp_path, "image:\n  context: .\n  colour: red\n")
    assert f"{p}:2:3: image.name: required key is missing; add it" in error_of(p).splitlines()


@pytest.mark.parametrize("text", ["", "# nothing yet\n"])
def test_an_empty_pipeline_gets_one_wording_from_validate_and_from_build(tmp_path: Path, text: str) -> None:
    p = write(tmp_path, text)
    with pytest.raises(ConfigError) as by_validate:
        config_load.load_any(p)
    with pytest.raises(ConfigError) as by_build:
        config_load.load_pipeline(p)
    assert str(by_validate.value) == str(by_build.value)
    assert str(by_build.value) == f"{p}:1:1: file is empty; see the README for a minimal pipeline config"


def test_an_empty_cluster_config_is_called_one(tmp_path: Path) -> None:
    (tmp_path / "cluster-configs").mkdir()
    p = write(tmp_path, "", "cluster-configs/c.yaml")
    with pytest.raises(ConfigError) as by_validate:
        config_load.load_any(p)
    assert str(by_validate.value) == error_of(p, config.Cluster)


def test_a_non_ascii_test_name_is_refused_saying_what_is_allowed_and_why(tmp_path: Path) -> None:
    p = write(tmp_path, "image: {name: a}\ntests:\n  - name: fib é\n    command: x\n")
    msg = error_of(p)
    assert msg.startswith(
        f"{p}:3:11: tests[0].name: 'fib é' is not a valid test name: ' ', 'é' are not allowed;"
    )
    assert "file name of the test's job script and output on the cluster and its Slurm job name" in msg
    assert "ASCII letters, digits" in msg and "use letters" not in msg
    assert msg.endswith("; e.g. 'fib-e'")


@pytest.mark.parametrize("name", ["fib", "MPI_ring.2", "a-b", "0"])
def test_existing_ascii_test_names_stay_valid_and_unchanged(name: str) -> None:
    assert config.SmokeTest.model_validate({"name": name, "command": "x"}).name == name


def test_two_tests_of_one_name_are_refused_they_would_share_files(tmp_path: Path) -> None:
    p = write(tmp_path, "image: {name: a}\ntests:\n  - {name: t, command: x}\n  - {name: t, command: y}\n")
    with pytest.raises(ConfigError) as e:
        config_load.load_pipeline(p)
    assert str(e.value).startswith(f"{p}:4:12: tests[1].name: 't' is the name of tests[0] too (line 3);")
    with pytest.raises(ConfigError) as by_validate:
        config_load.load_any(p)
    assert str(by_validate.value) == str(e.value)
