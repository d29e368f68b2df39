"""The keep-list for installed releases (stages/release_keep.py) and the image blob list layer staging leaves for
it (stages/blobstore.py): pure text in, text out, and the steps that write them."""

from __future__ import annotations

from test_sbatch_scripts import DIGEST, FIB, PATHS, local_cluster, pipeline

from hpcci.backends.schedulers import slurm
from hpcci.stages.deploy.plan import plan_cluster
from hpcci.stages.layers import store as bs
from hpcci.stages.layers.index import PLAIN_LAYER, Blob
from hpcci.stages.release.keep import image_blobs, keep_steps, keep_text, layered
from hpcci.stages.sources import ImageSource
from hpcci.stages.steps import Command, WriteFile

A, B, C, D = (f"sha256:{c * 64}" for c in "abcd")
HAND = f"# pinned by the admins\n{D}\n"  # lines nobody but a person wrote


def test_a_release_adds_its_blobs_marked_with_its_name_and_version() -> None:
    text = keep_text(HAND, "fib", {"0.1.0"}, "0.1.0", [A, B])
    assert text == f"{HAND}{A}  # fib/0.1.0\n{B}  # fib/0.1.0\n"
    assert bs.parse_keep(text) == {x.removeprefix("sha256:") for x in (A, B, D)}  # the comments are ignored


def test_installing_a_version_again_replaces_its_lines_and_is_idempotent() -> None:
    first = keep_text("", "fib", {"0.1.0"}, "0.1.0", [A, B])
    again = keep_text(first, "fib", {"0.1.0"}, "0.1.0", [A, C])  # --replace-release from another image
    assert again == f"{A}  # fib/0.1.0\n{C}  # fib/0.1.0\n"
    assert keep_text(again, "fib", {"0.1.0"}, "0.1.0", [A, C]) == again


def test_versions_retention_removed_lose_their_lines_other_names_and_hand_lines_stay() -> None:
    text = HAND + f"{A}  # fib/0.1.0\n{B}  # fib/0.2.0\n{C}  # other/0.1.0\n"
    out = keep_text(text, "fib", {"0.2.0", "0.3.0"}, "0.3.0", [D])
    assert out == HAND + f"{B}  # fib/0.2.0\n{C}  # other/0.1.0\n{D}  # fib/0.3.0\n"


def test_an_image_without_a_blob_list_adds_nothing_but_removals_still_happen() -> None:
    text = f"{A}  # fib/0.1.0\n"
    assert keep_text(text, "fib", {"0.1.0", "0.2.0"}, "0.2.0", []) == text
    assert keep_text(text, "fib", {"0.2.0"}, "0.2.0", []) == ""
    assert keep_text("", "fib", {"0.1.0"}, "0.1.0", []) == ""


def test_a_hand_written_line_that_only_looks_similar_is_never_touched() -> None:
    text = f"{A}  # fib/0.1.0 pinned for a paper\n{B} # fib/0.1.0\n"
    assert keep_text(text, "fib", set(), "0.2.0", []) == text


def test_the_image_blob_list_is_read_in_order_once_each_and_junk_ignored() -> None:
    assert image_blobs(f"{B}\n{A}\n{B}\nnot a digest\nsha256:xyz\n") == [B, A]
    blobs = [Blob(A, 0, 1, PLAIN_LAYER), Blob(B, 1, 1, PLAIN_LAYER)]
    assert image_blobs(bs.image_list_text(blobs)) == [A, B]


def test_lists_are_written_under_a_temporary_name_in_the_same_folder_then_renamed() -> None:
    store = bs.store_for("/s/images")
    tmp, move = keep_steps(store, "x\n", "r1")
    assert isinstance(tmp, WriteFile) and isinstance(move, Command)
    assert tmp.path == "/s/images/blobs/.keep.r1" and tmp.text == "x\n"
    assert move.argv == ["mv", "-T", "--", tmp.path, "/s/images/blobs/keep"]
    mkdir, write, rename = bs.image_list_steps(store, DIGEST, "y\n", "r1")
    assert isinstance(mkdir, Command) and mkdir.argv == ["mkdir", "-p", "--", "/s/images/blobs/images"]
    assert isinstance(write, WriteFile) and write.path == f"/s/images/blobs/images/.{'ab' * 32}.r1"
    assert isinstance(rename, Command)
    assert rename.argv == ["mv", "-T", "--", write.path, f"/s/images/blobs/images/{'ab' * 32}"]


def test_the_plan_shows_the_image_blob_list_written_after_the_layout() -> None:
    source = ImageSource("linux/amd64", DIGEST, local_tar="/tmp/fib.tar")
    cluster = local_cluster(**{"staging.layers": True})
    image = plan_cluster(pipeline(FIB), cluster, {"linux/amd64": source}, PATHS, "r1", slurm).images[
        "linux/amd64"
    ]
    assert image.layers is not None and image.layers.image == DIGEST
    lines = [line for step in image.steps() for line in step.lines()]
    final = f"{PATHS.cache}/blobs/images/{'ab' * 32}"
    at = next(i for i, line in enumerate(lines) if line.startswith("+ mv -T") and line.endswith(final))
    assert lines.index(f"write {image.layers.layout}/index.json:") < at
    assert layered(cluster) and not layered(local_cluster())
