"""results.junit.xml (issue 22 item 6): the results as JUnit XML, validated against the schema pytest's own junitxml
output follows (tests/unit/data/junit/junit-10.xsd, see its README), with each verdict as its element."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
import xmlschema

from hpcci.records import ClusterResult, Results, Verdict
from hpcci.records import TestResult as SmokeResult
from hpcci.stages.report.junit import junit_xml

XSD = Path(__file__).parent / "data" / "junit" / "junit-10.xsd"
SHA = "c0ffee" * 6 + "abcd"
DIGEST = "sha256:" + "ab" * 32


@pytest.fixture(scope="module")
def schema() -> xmlschema.XMLSchema:
    return xmlschema.XMLSchema(XSD)


def smoke(name: str, verdict: Verdict = "pass", *, cluster: str = "frontera", **kw: object) -> SmokeResult:
    fields: dict[str, object] = dict(cluster=cluster, test=name, platform="linux/amd64", job_id="42",
                                     state="COMPLETED", exit_code=0, elapsed_s=12.3456, verdict=verdict,
                                     reason=f"{name}: {verdict} because reasons", output_tail="55\n")  # fmt: skip
    fields.update(kw)
    return SmokeResult(**fields)  # type: ignore[arg-type]


def results() -> Results:
    frontera = ClusterResult(
        cluster="frontera",
        platform="linux/amd64",
        image_digest=DIGEST,
        tests=[
            smoke("ok"),
            smoke("bad", "fail", output_tail="Traceback\x1b[31m\x00 boom <&>\n"),
            smoke("slow", "timed_out", state="TIMEOUT", exit_code=None),
            smoke("node", "infra", state="NODE_FAIL"),
            smoke("never", "skipped", job_id=None, state="NOT_RUN", elapsed_s=None, output_tail=""),
        ],
    )
    broken = ClusterResult(
        cluster="vista", platform="linux/arm64", tests=[], error="cluster vista: ssh: connection refused"
    )
    return Results(image="ghcr.io/o/fib", clusters=[frontera, broken], ref="refs/tags/v1.2.3", sha=SHA)


def test_the_file_validates_against_junit_10_xsd(schema: xmlschema.XMLSchema) -> None:
    schema.validate(junit_xml(results()))  # raises on any violation


def test_the_schema_refuses_what_it_should(schema: xmlschema.XMLSchema) -> None:
    # the validation can fail: a testcase without a name and a suite without counts are refused
    assert not schema.is_valid('<testsuites><testsuite name="x"><testcase/></testsuite></testsuites>')


def test_one_suite_per_cluster_one_case_per_test_with_the_verdict_as_its_element() -> None:
    root = ET.fromstring(junit_xml(results()))
    frontera, vista = root.findall("testsuite")
    assert (frontera.get("name"), vista.get("name")) == ("frontera", "vista")
    cases = {c.get("name"): c for c in frontera.findall("testcase")}
    assert list(cases) == ["ok", "bad", "slow", "node", "never"]
    assert all(c.get("classname") == "frontera" for c in cases.values())
    assert cases["ok"].get("time") == "12.346"
    assert [e.tag for e in cases["ok"]] == ["system-out"]
    bad = cases["bad"].find("failure")
    assert bad is not None and bad.get("message") == "bad: fail because reasons" and bad.get("type") == "fail"
    assert cases["slow"].find("failure") is not None and cases["node"].find("error") is not None
    assert cases["never"].find("skipped") is not None and cases["never"].get("time") is None
    out = cases["bad"].find("system-out")
    assert out is not None and out.text is not None and "boom <&>" in out.text and "\x00" not in out.text
    counts = {k: frontera.get(k) for k in ("tests", "failures", "errors", "skipped")}
    assert counts == {"tests": "5", "failures": "2", "errors": "1", "skipped": "1"}
    props = {p.get("name"): p.get("value") for p in frontera.iter("property")}
    assert props["hpcci.image_digest"] == DIGEST and props["hpcci.commit"] == SHA
    assert props["hpcci.ref"] == "refs/tags/v1.2.3" and props["hpcci.image"] == "ghcr.io/o/fib"


def test_a_cluster_that_failed_around_its_tests_is_an_error_not_an_empty_pass() -> None:
    vista = ET.fromstring(junit_xml(results())).findall("testsuite")[1]
    (case,) = vista.findall("testcase")
    err = case.find("error")
    assert (
        case.get("name") == "deploy"
        and err is not None
        and "connection refused" in (err.get("message") or "")
    )
    assert (vista.get("tests"), vista.get("errors")) == ("1", "1")


def test_output_kept_on_the_cluster_never_reaches_the_file(schema: xmlschema.XMLSchema) -> None:
    kept = smoke(
        "t",
        "fail",
        output_tail="",
        output_on_cluster="/scratch/run/t.out",
        reason="no match; /scratch/run/t.out",
    )
    text = junit_xml(Results(image="i", clusters=[ClusterResult("local", "linux/amd64", [kept])]))
    schema.validate(text)
    assert "system-out" not in text and "/scratch/run/t.out" in text
