"""The config loader is bounded on every input: bytes, nesting depth, tokens and aliases, each a one-line error, fast."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from hpcci.config import load as config_load
from hpcci.config.models import Cluster, Pipeline
from hpcci.errors import ConfigError

ROOT = Path(__file__).resolve().parents[2]
FAST = 1.0  # seconds; each refusal takes about 0.01 s, and 1000 levels used to take 5 s and a RecursionError


@contextmanager
def pipe_of(data: bytes) -> Iterator[Path]:
    """A path that reads ``data`` from a pipe (as `-c /dev/stdin` does): no size to stat, written as it is read."""
    r, w = os.pipe()
    failed: list[BaseException] = []

    def write() -> None:
        try:
            with os.fdopen(w, "wb") as f:
                f.write(data)
        except BrokenPipeError:  # the reader stopped early: what a bounded reader does
            pass
        except BaseException as e:  # surfaced by the test, not lost in the thread
            failed.append(e)

    writer = threading.Thread(target=write, daemon=True)
    writer.start()
    try:
        yield Path(f"/dev/fd/{r}")
    finally:
        os.close(r)  # the last reader: the writer gets EPIPE if it is still writing
        writer.join(timeout=5)
    assert not writer.is_alive() and not failed


def refusal(load: Callable[[], object], within: float = FAST) -> str:
    start = time.monotonic()
    with pytest.raises(ConfigError) as e:
        load()
    assert time.monotonic() - start < within
    message = str(e.value)
    assert "\n" not in message
    return message


def write(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "hpcci.yaml"
    p.write_text(text)
    return p


def test_two_mib_from_a_pipe_is_refused_after_the_first_mib() -> None:
    with pipe_of(b"# padding\n" * (2 * 1024 * 1024 // 10)) as path:
        msg = refusal(lambda: config_load.load_pipeline(path))
    assert (
        msg
        == f"{path}:1:1: more than 1 MiB to read; hpcci config files are limited to 1 MiB: is this the right file?"
    )


def test_an_endless_device_is_refused() -> None:
    assert "more than 1 MiB to read" in refusal(lambda: config_load.load_pipeline("/dev/zero"))


def test_a_config_from_a_pipe_loads() -> None:
    with pipe_of((ROOT / "cluster-configs" / "local.yaml").read_bytes()) as path:
        assert isinstance(config_load.load_any(path), Cluster)


@pytest.mark.parametrize(
    "text",
    [
        "image: " + "[" * 1000 + "]" * 1000,
        "image: " + "[" * 20000 + "]" * 20000,
        "image: " + "[" * 20000,  # unclosed: stops before the parser notices
        "image: " + "{a: " * 20000 + "1" + "}" * 20000,
        "image:\n" + "- " * 20000 + "x\n",
        "".join(" " * i + "k:\n" for i in range(1000)),
    ],
    ids=["flow-1000", "flow-20000", "flow-unclosed", "flow-mapping", "block-sequence", "block-mapping"],
)
def test_deep_nesting_is_refused_before_composing(tmp_path: Path, text: str) -> None:
    p = write(tmp_path, text)
    msg = refusal(lambda: config_load.load_pipeline(p))
    assert msg.startswith(f"{p}:") and f"nested more than {config_load.MAX_DEPTH} deep" in msg


def test_nesting_up_to_the_cap_is_read(tmp_path: Path) -> None:
    depth = config_load.MAX_DEPTH - 1  # under the top-level mapping
    p = write(tmp_path, "image: {name: a}\nx: " + "[" * depth + "]" * depth + "\n")
    assert "x: unknown key" in refusal(lambda: config_load.load_pipeline(p))


def test_a_flat_flood_of_tokens_is_refused(tmp_path: Path) -> None:
    p = write(tmp_path, "image: [" + "a, " * 300_000 + "]\n")  # 900 KB: it used to take minutes
    msg = refusal(lambda: config_load.load_pipeline(p), within=5 * FAST)  # the 10000 tokens take about 0.5 s
    assert f"more than {config_load.MAX_TOKENS} YAML tokens" in msg


def test_an_alias_bomb_is_refused_at_the_first_alias(tmp_path: Path) -> None:
    lines = ["a: &a [lol, lol, lol, lol, lol, lol, lol, lol, lol]"]
    lines += [
        f"{c}: &{c} [" + ", ".join([f"*{p}"] * 9) + "]" for p, c in zip("abcdefgh", "bcdefghi", strict=True)
    ]
    p = write(tmp_path, "\n".join(lines) + "\nimage: {name: x}\n")
    msg = refusal(lambda: config_load.load_pipeline(p))
    assert msg.startswith(f"{p}:2:8: YAML aliases (*a) are not allowed")


@pytest.mark.parametrize("path", sorted((ROOT / "cluster-configs").glob("*.yaml")), ids=lambda p: p.stem)
def test_shipped_cluster_configs_are_within_every_bound(path: Path) -> None:
    assert isinstance(config_load.load_any(path), Cluster)


def test_the_example_pipeline_is_within_every_bound() -> None:
    assert isinstance(config_load.load_any(ROOT / "examples" / "fibonacci" / "hpcci.yaml"), Pipeline)
