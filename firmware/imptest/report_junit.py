"""JUnit XML for a test run, so a CI system shows each test method.

Layout (the common Jenkins/GitLab dialect)::

    <testsuites name="impfactory test" tests=N failures=F errors=E skipped=S time=T>
      <testsuite name="tests/Basic.device.test.nut" tests=n failures=f errors=e ...>
        <properties> board, device_id, session, kind, wall_s </properties>
        <testcase classname="BasicTestCase" name="testSyncRead" file="tests/..." time=t>
          <failure message="..." type="assertion">at tests/Basic.device.test.nut:59</failure>
          <system-out>this.info() messages</system-out>
        </testcase>
        <error message="..."/>          a session that could not run its tests
        <system-out>the device log</system-out>

Every method run is a test case (``setUp`` and ``tearDown`` too: their failures
count, as impUnit counts them). ``time`` is device-clock seconds, the time the
test took on the emulated imp; the wall time is a property. A session that
could not run its tests has an ``<error>`` test case named after the session, a
skipped one a ``<skipped>`` one.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from pathlib import Path

from impfactory.firmware.imptest.results import RunResult, SessionResult


def _suite(root: ET.Element, session: SessionResult) -> None:
    errors = 1 if session.error is not None else 0
    skipped = 1 if session.skipped is not None else 0
    suite = ET.SubElement(root, "testsuite", {
        "name": session.file, "tests": str(len(session.steps) + errors + skipped),
        "failures": str(session.failures), "errors": str(errors), "skipped": str(skipped),
        "time": f"{session.device_s:.3f}"})
    props = ET.SubElement(suite, "properties")
    for name, value in (("session", session.name), ("kind", session.kind),
                        ("board", session.board or ""), ("device_id", session.device_id or ""),
                        ("partner", session.partner or ""), ("wall_s", f"{session.wall_s:.3f}")):
        ET.SubElement(props, "property", {"name": name, "value": value})
    for step in session.steps:
        case = ET.SubElement(suite, "testcase", {
            "classname": step.case, "name": step.method, "file": session.file,
            "time": f"{step.device_s:.3f}"})
        if not step.passed:
            failure = ET.SubElement(case, "failure", {"message": step.message or "",
                                                      "type": "failure"})
            failure.text = f"at {step.location or session.file}"
        if step.info:
            ET.SubElement(case, "system-out").text = "\n".join(step.info)
    if session.error is not None:
        case = ET.SubElement(suite, "testcase", {"classname": session.name,
                                                 "name": "session", "file": session.file,
                                                 "time": "0"})
        ET.SubElement(case, "error", {"message": session.error, "type": "session"}).text = (
            f"at {session.error_location or session.file}")
    if session.skipped is not None:
        case = ET.SubElement(suite, "testcase", {"classname": session.name,
                                                 "name": "session", "file": session.file,
                                                 "time": "0"})
        ET.SubElement(case, "skipped", {"message": session.skipped})
    if session.logs:
        ET.SubElement(suite, "system-out").text = "\n".join(session.logs)


def junit_tree(result: RunResult) -> ET.ElementTree[ET.Element]:
    """The XML tree (kept apart from writing so tests can inspect it)."""
    root = ET.Element("testsuites", {
        "name": "impfactory test",
        "tests": str(sum(len(s.steps) + (s.error is not None) + (s.skipped is not None)
                         for s in result.sessions)),
        "failures": str(result.failures),
        "errors": str(sum(1 for s in result.sessions if s.error is not None)),
        "skipped": str(sum(1 for s in result.sessions if s.skipped is not None)),
        "time": f"{sum(s.device_s for s in result.sessions):.3f}"})
    for session in result.sessions:
        _suite(root, session)
    ET.indent(root)
    return ET.ElementTree(root)


def write_junit(path: Path, result: RunResult) -> Path:
    junit_tree(result).write(path, encoding="utf-8", xml_declaration=True)
    return path
