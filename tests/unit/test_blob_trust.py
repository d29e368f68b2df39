"""The blob store trusts a verified blob's recorded size and mtime and hashes again only what changed (pure)."""

from __future__ import annotations

from test_layer_staging import _plan

from hpcci.stages import blobstore as bs
from hpcci.stages.layers import PLAIN_LAYER, Blob
from hpcci.stages.steps import Command, WriteFile

STORE = bs.store_for("/s/my images")
A, B, C, D = (Blob(f"sha256:{c * 64}", 0, 100, PLAIN_LAYER) for c in "abcd")
NOW = 1_800_000_000.0
DAY = 86400


def test_stat_lists_mtime_size_and_path_of_each_blob_and_reads_back_paths_with_spaces() -> None:
    assert bs.stat_argv(STORE, [A]) == [
        "stat",
        "--format=%Y %s %n",
        "--",
        f"/s/my images/blobs/sha256/{'a' * 64}",
    ]
    out = f"1700000000 100 {STORE.path(A)}\n1700000001 99 {STORE.path(B)}\n"  # C, D: missing (stderr)
    assert bs.parse_stat(out, STORE, [A, B, C]) == {"a" * 64: (1700000000, 100), "b" * 64: (1700000001, 99)}


def test_only_a_blob_changed_in_size_or_mtime_unrecorded_or_hashed_long_ago_is_hashed_again() -> None:
    found = {"a" * 64: (500, 100), "b" * 64: (501, 100), "c" * 64: (502, 100), "d" * 64: (503, 100)}
    record = {
        "a" * 64: bs.Verified(100, 500, NOW - DAY),  # as recorded, hashed yesterday: trusted
        "b" * 64: bs.Verified(100, 400, NOW - DAY),  # mtime changed (written since)
        "c" * 64: bs.Verified(
            100, 502, NOW - (bs.REHASH_DAYS + 1) * DAY
        ),  # unchanged, but hashed too long ago
    }  # d: never recorded
    trusted, again = bs.to_hash([A, B, C, D], found, record, NOW)
    assert trusted == [A] and again == [B, C, D]
    shrunk = {"a" * 64: (500, 99)}  # same mtime, other size: the index's size is checked too
    assert bs.to_hash([A], shrunk, {"a" * 64: bs.Verified(99, 500, NOW)}, NOW) == ([], [A])
    assert bs.to_hash([A], {}, record, NOW) == (
        [],
        [],
    )  # not in the store: fetched, neither trusted nor hashed


def test_the_record_keeps_a_trusted_blob_s_hash_time_and_stamps_hashed_ones_now() -> None:
    record = {"a" * 64: bs.Verified(100, 500, NOW - DAY), "c" * 64: bs.Verified(100, 7, NOW - 2 * DAY),
              "d" * 64: bs.Verified(100, 8, NOW - DAY)}  # fmt: skip
    after_touch = {"a" * 64: (900, 100), "b" * 64: (901, 100)}
    out = bs.recorded(record, after_touch, trusted=[A], checked=[B], dropped={"d" * 64}, now=NOW)
    assert out == {"a" * 64: bs.Verified(100, 900, NOW - DAY), "b" * 64: bs.Verified(100, 901, NOW),
                   "c" * 64: bs.Verified(100, 7, NOW - 2 * DAY)}  # fmt: skip
    assert bs.parse_record(bs.record_text(out)) == out
    assert bs.parse_record(f"{'a' * 64} 100 900\nnot a line\n{'b' * 64} x 1 2\n") == {}


def test_the_record_is_written_under_a_temporary_name_then_renamed() -> None:
    (write, rename) = bs.record_steps(STORE, "text\n", "r1")
    assert isinstance(write, WriteFile) and write.path == "/s/my images/blobs/.verified.r1"
    assert isinstance(rename, Command) and rename.argv == ["mv", "-f", "-T", "--", write.path, STORE.verified]


def test_the_plan_shows_the_stat_the_record_and_hashing_only_untrusted_blobs() -> None:
    image = _plan()
    assert image.layers is not None
    lines = [ln for step in image.layers.steps() for ln in step.lines()]
    text = "\n".join(lines)
    assert text.index("stat '--format") < text.index("xargs -0") < text.rindex("stat '--format")
    assert (
        f"cat -- {image.layers.store.verified}" in text
        and f"-T -- {image.layers.store.root}/.verified." in text
    )
    assert "each blob not trusted so" in text
