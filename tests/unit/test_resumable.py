"""The pure parts of the resumable S3 upload: parts, the retry schedule, the outage clock, the error wording, the
progress lines (and a resume against a server object in memory)."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import ClientError, ConnectionClosedError, EndpointConnectionError, ReadTimeoutError

from hpcci.backends.objectstore import (
    MiB,
    Progress,
    S3Settings,
    S3Store,
    closing_line,
    retry_cause,
    retry_line,
)
from hpcci.backends.resumable import Outage, Part, Resumable, backoff, cause_of, is_transient, plan_parts
from hpcci.commands.publish import outage_window
from hpcci.errors import ConfigError
from hpcci.log import Log


def test_parts_cover_the_file_once_in_order() -> None:
    assert plan_parts(25, 10) == [Part(1, 0, 10), Part(2, 10, 10), Part(3, 20, 5)]
    assert plan_parts(20, 10) == [Part(1, 0, 10), Part(2, 10, 10)]
    assert plan_parts(0, 10) == [Part(1, 0, 0)]


def test_backoff_doubles_then_stays_at_the_cap() -> None:
    assert [backoff(n) for n in range(6)] == [0.5, 1.0, 2.0, 4.0, 4.0, 4.0]
    assert backoff(10_000) == 4.0


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_outage_clock_runs_from_the_first_failure_and_stops_at_a_success() -> None:
    clock = Clock()
    outage = Outage(60, clock)
    assert not outage.over() and outage.elapsed == 0
    outage.failed("connection refused")
    clock.now += 59
    outage.failed("connection refused")
    assert not outage.over()
    outage.recovered()
    clock.now += 30
    assert not outage.over(), "a success ends the outage: the next one gets a whole window"
    outage.failed("read timed out")
    clock.now += 60
    assert outage.over()


def test_retry_delays_never_overshoot_the_window_by_more_than_a_second() -> None:
    clock = Clock()
    outage = Outage(3, clock)
    outage.failed("connection refused")
    delays = []
    while not outage.over():
        delays.append(outage.next_delay())
        clock.now += delays[-1]
    assert delays == [0.5, 1.0, 2.0]
    assert outage.retries == 3


def test_summary_names_the_cause_retries_and_time() -> None:
    clock = Clock()
    outage = Outage(60, clock)
    outage.failed("connection refused")
    for _ in range(9):
        outage.next_delay()
    clock.now += 61.4
    assert outage.summary() == "connection refused after 9 retries over 61 s"


def refused() -> EndpointConnectionError:
    try:
        raise ConnectionRefusedError(111, "Connection refused")
    except ConnectionRefusedError as inner:
        try:
            raise EndpointConnectionError(endpoint_url="http://s3.example:8080/b", error=inner) from inner
        except EndpointConnectionError as e:
            return e


def client_error(status: int, code: str) -> ClientError:
    return ClientError(
        {
            "Error": {"Code": code},
            "ResponseMetadata": {
                "HTTPStatusCode": status, "HTTPHeaders": {}, "HostId": "", "RequestId": "", "RetryAttempts": 0
            },
        },
        "UploadPart",
    )  # fmt: skip


def test_causes_are_named_without_the_endpoint() -> None:
    assert cause_of(refused()) == "connection refused"
    assert "s3.example" not in cause_of(refused())
    assert cause_of(ReadTimeoutError(endpoint_url="http://x")) == "read timed out"
    assert cause_of(ConnectionClosedError(endpoint_url="http://x")) == "connection closed by the server"
    assert cause_of(client_error(503, "ServiceUnavailable")) == "HTTP 503 ServiceUnavailable"


@pytest.mark.parametrize(
    ("error", "transient"),
    [
        (refused(), True),
        (ReadTimeoutError(endpoint_url="http://x"), True),
        (client_error(503, "ServiceUnavailable"), True),
        (client_error(500, "InternalError"), True),
        (client_error(400, "RequestTimeout"), True),
        (client_error(403, "SignatureDoesNotMatch"), False),
        (client_error(404, "NoSuchUpload"), False),
        (ValueError("a bug"), False),
    ],
)
def test_only_network_and_server_failures_are_retried(error: Exception, transient: bool) -> None:
    assert is_transient(error) is transient


def test_outage_window_env_overrides_the_config() -> None:
    assert outage_window(120.0, {}) == 120.0
    assert outage_window(120.0, {"HPCCI_S3_OUTAGE_WINDOW": "5"}) == 5.0
    with pytest.raises(ConfigError, match="not a number"):
        outage_window(120.0, {"HPCCI_S3_OUTAGE_WINDOW": "soon"})
    with pytest.raises(ConfigError, match="negative"):
        outage_window(120.0, {"HPCCI_S3_OUTAGE_WINDOW": "-1"})


# -- the progress lines of an upload ---------------------------------------------------------------------------


def test_a_complete_upload_s_last_line_counts_the_whole_object_and_what_the_server_held() -> None:
    line = closing_line("s3://b/k.tar", 1633 * MiB, 1633 * MiB, 21.9, failed=False, resumed=320 * MiB)
    assert line.startswith("  s3://b/k.tar: 1633 MiB in 21.9s (75 MiB/s); resumed after an outage: ")
    assert "the server held 320 MiB of it" in line and "1313 MiB acknowledged as sent" in line
    plain = closing_line("s3://b/k.tar", 128 * MiB, 128 * MiB, 2.0, failed=False)
    assert plain == "  s3://b/k.tar: 128 MiB in 2.0s (64 MiB/s)"


def test_a_failed_upload_s_last_line_reads_as_a_failure_with_how_far_it_got() -> None:
    line = closing_line("s3://b/k.tar", 1633 * MiB, 128 * MiB, 30.2, failed=True, resumed=0)
    assert line == "  s3://b/k.tar: upload failed after 128 of 1633 MiB in 30.2s"


class Server:
    """A multipart upload's server side: part 2's first reply is lost (the server keeps the part)."""

    def __init__(self) -> None:
        self.parts: dict[int, int] = {}
        self.lost = False

    def create_multipart_upload(self, **kw: Any) -> dict[str, str]:
        return {"UploadId": "u1"}

    def upload_part(self, **kw: Any) -> dict[str, str]:
        body = kw["Body"].read()
        self.parts[int(kw["PartNumber"])] = len(body)
        if kw["PartNumber"] == 2 and not self.lost:
            self.lost = True
            raise ConnectionClosedError(endpoint_url="http://x")
        return {"ETag": f"e{kw['PartNumber']}"}

    def get_paginator(self, name: str) -> Any:
        server = self

        class Pages:
            def paginate(self, **kw: Any) -> list[dict[str, Any]]:
                return [
                    {
                        "Parts": [
                            {"PartNumber": n, "Size": s, "ETag": f"e{n}"} for n, s in server.parts.items()
                        ]
                    }
                ]

        return Pages()

    def complete_multipart_upload(self, **kw: Any) -> dict[str, str]:
        return {}


def test_parts_the_server_held_at_a_resume_count_in_the_progress(tmp_path: Path) -> None:
    src = tmp_path / "f.tar"
    src.write_bytes(b"x" * 30)
    out = io.StringIO()
    progress = Progress("s3://b/k.tar", 30, Log(out, github=False), tty=False)
    upload = Resumable(Server(), "b", "k.tar", src, 10, 1, 60.0, Log(out, github=False), progress,
                       sleep=lambda _s: None)  # fmt: skip
    upload.run({})
    assert upload.stats.sent == [1, 2, 3] and upload.stats.held == 10  # part 2 was not sent again
    assert progress.done == 30


def test_a_botocore_retry_is_one_line_with_its_operation_cause_and_count() -> None:
    assert (
        retry_line("HeadObject", "read timed out", 2, 9)
        == "  S3 HeadObject: read timed out; botocore retry 1 of 8"
    )
    assert retry_cause(ReadTimeoutError(endpoint_url="http://x"), None) == "read timed out"

    class Reply:
        status_code = 503

    assert retry_cause(None, (Reply(), {"Error": {"Code": "SlowDown"}})) == "HTTP 503 SlowDown"


def test_the_upload_client_is_tried_once_and_the_main_client_retries_as_configured() -> None:
    settings = S3Settings(bucket="b", endpoint_url="http://127.0.0.1:9", region="us-east-1", retries=3,
                          access_key="k", secret_key="s3cret")  # fmt: skip
    store = S3Store(settings)
    assert store.upload_client.meta.config.retries["total_max_attempts"] == 1
    assert store.client.meta.config.retries["total_max_attempts"] == 4
