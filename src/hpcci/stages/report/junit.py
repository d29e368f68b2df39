"""JUnit XML of the results (results.junit.xml beside results.json), for CI systems and test dashboards that read it.

The layout is the one pytest's junitxml output follows (Jenkins' junit-10.xsd): one <testsuite> per cluster, one
<testcase> per smoke test (classname the cluster, name the test, time its run time), a <failure>, <error> or
<skipped> from the verdict with the verdict's reason as message, the suite's properties for the image and commit,
and the test's output tail as <system-out> where the cluster's report.output lets it leave the site (with `none`
the records hold no output, so neither does this file). A cluster that failed around its tests gets a testcase
`deploy` with that error, so a failed deploy never reads as an empty, passing suite.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET

from hpcci.records import ClusterResult, Results, TestResult, Verdict

FILE = "results.junit.xml"

# Verdict -> the element that says it; a pass has none. A test stopped by time is a failure (as its check run's
# timed_out conclusion); a test the cluster or the scheduler kept from ending is an error, not the code's failure.
ELEMENT: dict[Verdict, str] = {
    "fail": "failure",
    "timed_out": "failure",
    "error": "error",
    "cancelled": "error",
    "infra": "error",
    "action_required": "error",
    "skipped": "skipped",
}

# XML 1.0 forbids most control characters even escaped: a job's output may hold them.
_NOT_XML = re.compile("[^\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")


def _text(s: str) -> str:
    return _NOT_XML.sub("\ufffd", s)


def _seconds(s: float | None) -> str:
    return f"{max(0.0, s or 0.0):.3f}"  # junit-10.xsd's SUREFIRE_TIME: digits, at most 3 decimals


def _case(suite: ET.Element, cluster: str, t: TestResult) -> str | None:
    case = ET.SubElement(suite, "testcase", classname=_text(cluster), name=_text(t.test))
    if t.elapsed_s is not None:
        case.set("time", _seconds(t.elapsed_s))
    kind = ELEMENT.get(t.verdict, "error" if t.verdict != "pass" else "")  # an unknown verdict never passes
    if kind:
        ET.SubElement(case, kind, type=t.verdict, message=_text(t.reason))
    if t.output_tail and not t.output_on_cluster:
        ET.SubElement(case, "system-out").text = _text(t.output_tail)
    return kind or None


def _suite(root: ET.Element, cr: ClusterResult, results: Results) -> None:
    suite = ET.SubElement(root, "testsuite", name=_text(cr.cluster))
    props = ET.SubElement(suite, "properties")
    values = {
        "image": results.image,
        "image_digest": cr.image_digest,
        "image_ref": cr.image_ref,
        "platform": cr.platform,
        "commit": results.sha,
        "ref": results.ref,
        "sif_sha256": cr.sif_sha256 or "",
    }
    for name, value in values.items():
        if value:
            ET.SubElement(props, "property", name=f"hpcci.{name}", value=_text(value))
    kinds = [_case(suite, cr.cluster, t) for t in cr.tests]
    if cr.error is not None:
        case = ET.SubElement(suite, "testcase", classname=_text(cr.cluster), name="deploy")
        ET.SubElement(case, "error", type="deploy", message=_text(cr.error))
        kinds.append("error")
    suite.set("tests", str(len(kinds)))
    for attr, kind in (("failures", "failure"), ("errors", "error"), ("skipped", "skipped")):
        suite.set(attr, str(kinds.count(kind)))
    suite.set("time", _seconds(sum(t.elapsed_s or 0.0 for t in cr.tests)))


def junit_xml(results: Results) -> str:
    """The whole file: <testsuites> with one <testsuite> per cluster, in the results' order."""
    root = ET.Element("testsuites", name="hpcci")
    for cr in results.clusters:
        _suite(root, cr, results)
    suites = list(root)
    for attr in ("tests", "failures", "errors"):
        root.set(attr, str(sum(int(s.get(attr, "0")) for s in suites)))
    root.set("time", _seconds(sum(float(s.get("time", "0")) for s in suites)))
    ET.indent(root)
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(root, encoding="unicode") + "\n"
