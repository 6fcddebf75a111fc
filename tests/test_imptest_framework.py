"""impfactory's impUnit: ImpTestCase, its assertions, setUp/tearDown, promises,
timeouts, and what impt prints for each.

Each test writes a small test project (``.impt.test`` and Squirrel test files)
into a temporary folder and runs ``impfactory test`` on it; the expected
messages are impUnit's own wording (its ImpTestCase source and the impt Testing
Guide), the expected layout impt's.
"""

from __future__ import annotations

import json
import textwrap
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import pytest

from impfactory.tools.cli import main


def project(root: Path, files: dict[str, str], config: dict[str, Any] | None = None) -> Path:
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text).lstrip("\n"), encoding="utf-8")
    if config is not None:
        (root / ".impt.test").write_text(json.dumps(config))
    return root


def run(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, home: Path,
        *args: str) -> tuple[int, str]:
    monkeypatch.chdir(home)
    code = main(["test", *args])
    captured = capsys.readouterr()
    return code, captured.out + captured.err


def run_json(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, home: Path,
             *args: str) -> tuple[int, dict[str, Any]]:
    code, out = run(capsys, monkeypatch, home, "--json", *args)
    return code, json.loads(out)


def steps(report: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {s["name"]: s for session in report["sessions"] for s in session["steps"]}


def has_line(out: str, text: str) -> bool:
    return any(line.endswith(f"test] {text}") for line in out.splitlines())


ASSERTIONS = """
class Assertions extends ImpTestCase {
    function testTrue()        { this.assertTrue(1 == 2); }
    function testTrueMessage() { assertTrue(false, "my message"); }
    function testEqual()       { this.assertEqual(1, 2); }
    function testEqualOk()     { this.assertEqual(1000 * 0.01, 100 * 0.1); }
    function testGreater()     { this.assertGreater(1, 2); }
    function testLess()        { this.assertLess(2, 2); }
    function testClose()       { this.assertClose(10, 9, 0.5); }
    function testCloseOk()     { this.assertClose(10, 9, 2); }
    function testBetween()     { this.assertBetween(10, 11, 12); }
    function testBetweenSwap() { this.assertBetween(10, 12, 9); }
    function testDeepMissing() { this.assertDeepEqual({"a" : { "b" : 1 }}, {"a" : { "_b" : 0 }}); }
    function testDeepExtra()   { this.assertDeepEqual({a = {b = 1}}, {a = {b = 1, c = 2}}); }
    function testDeepValue()   { this.assertDeepEqual({"a" : { "b" : 1 }}, {"a" : { "b" : 0 }}); }
    function testDeepType()    { this.assertDeepEqual([1], {}); }
    function testDeepOk()      { this.assertDeepEqual([1, {"x": [2, 3]}], [1, {"x": [2, 3]}]); }
    function testDeepBlob() {
        local a = blob(2); local b = blob(2); b[1] = 7;
        this.assertDeepEqual(a, b);
    }
    function testThrows() {
        local e = this.assertThrowsError(function (a) { throw a; }, this, ["abc"]);
        return e;
    }
    function testThrowsNot()   { this.assertThrowsError(function () { }, this); }
}
"""

EXPECTED = {
    "testTrue": "Failed to assert that condition is true",
    "testTrueMessage": "my message",
    "testEqual": "Expected value: 1, got: 2",
    "testGreater": "Failed to assert that 1 > 2",
    "testLess": "Failed to assert that 2 < 2",
    "testClose": "Expected value: 10±0.5, got: 9",
    "testBetween": "Expected value the range of 11..12, got 10",
    "testDeepMissing": "Comparison failed on 'a.b': expected 1, got none",
    "testDeepExtra": "Comparison failed on 'a.c': expected none, got 2",
    "testDeepValue": "Comparison failed on 'a.b': expected 1, got 0",
    "testDeepType": "Values are not the same type, typeof lhs = array, typeof rhs = table",
    "testDeepBlob": "Blobs are the same length (2 bytes), but the contents are not identical.",
    "testThrowsNot": "Function was expected to throw an error",
}


def test_assertions_pass_and_fail_with_impunits_messages_and_lines(
        tmp_path: Path, capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    home = project(tmp_path, {"tests/Assertions.device.test.nut": ASSERTIONS}, {})
    code, report = run_json(capsys, monkeypatch, home)
    assert code == 1
    got = {name.split("::")[1][:-2]: s for name, s in steps(report).items()}
    failed = {m: s["message"] for m, s in got.items() if s["status"] == "failed"}
    assert failed == EXPECTED
    assert got["testThrows"]["status"] == "passed" and got["testThrows"]["message"] == "abc"
    assert got["testBetweenSwap"]["status"] == "passed"  # min and max may come either way
    lines = ASSERTIONS.lstrip("\n").splitlines()
    for method in EXPECTED:
        line = next(n for n, text in enumerate(lines, 1) if f"function {method}()" in text)
        if method == "testDeepBlob":
            line += 2
        assert got[method]["location"] == {"file": "tests/Assertions.device.test.nut",
                                           "line": line}, method
    session = report["sessions"][0]
    assert session["tests"] == len(got) and session["failures"] == len(EXPECTED)
    assert session["assertions"] == len(got)  # one each


LIFECYCLE = """
order <- [];
class A extends ImpTestCase {
    function setUp()    { ::order.push("A.setUp"); return "ready"; }
    function testTwo()  { ::order.push("A.testTwo"); }
    function testOne()  { ::order.push("A.testOne"); return {"answer": 42}; }
    function helper()   { ::order.push("helper"); }
    testData = "not a test: a field";
    function tearDown() { ::order.push("A.tearDown"); this.info(::order); }
}
class B extends ImpTestCase {
    function testOnly() { ::order.push("B.testOnly"); this.info("plain " + typeof this); }
}
class NotATestCase { function testNothing() { throw "never run"; } }
"""


def test_setup_tests_by_name_teardown_once_per_case_as_impt_prints_them(
        tmp_path: Path, capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    home = project(tmp_path, {"Lifecycle.test.nut": LIFECYCLE}, {})
    code, out = run(capsys, monkeypatch, home)
    assert code == 0
    lines = [line.split("] ", 1)[1] for line in out.splitlines() if "test] " in line]
    assert lines == [
        'Starting test session "Lifecycle.test"',
        "A::setUp()", "Success: ready",
        "A::testOne()", 'Success: {"answer": 42}',
        "A::testTwo()", "Success",
        "A::tearDown()", '["A.setUp", "A.testOne", "A.testTwo", "A.tearDown"]', "Success",
        "B::testOnly()", '"plain instance"', "Success",
        "Tests: 3, Assertions: 0, Failures: 0",
        'Session "Lifecycle.test" succeeded',
    ]
    assert "info] Found 1 test file(s):\n\tLifecycle.test.nut\n" in out
    assert "info] Have no device source file, using blank" in out


PROMISES = """
class Async extends ImpTestCase {
    function testResolves() {
        return Promise(function(resolve, reject) {
            imp.wakeup(2, function() { resolve("something useful"); });
        });
    }
    function testRejects() {
        return Promise(function(resolve, reject) {
            imp.wakeup(1, function() { reject("it broke"); });
        });
    }
    function testAssertsInAHandler() {
        return Promise.resolve(5).then(function(v) { this.assertEqual(6, v); }.bindenv(this));
    }
    function testNeverSettles() {
        return Promise(function(resolve, reject) {});
    }
    function testSlowSync() {
        imp.sleep(4);
    }
}
"""


def test_promises_resolve_reject_and_time_out_on_the_device_clock(
        tmp_path: Path, capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    home = project(tmp_path, {"tests/Async.device.test.nut": PROMISES}, {"timeout": 3})
    code, report = run_json(capsys, monkeypatch, home)
    assert code == 1
    got = steps(report)
    assert got["Async::testResolves()"]["status"] == "passed"
    assert got["Async::testResolves()"]["message"] == "something useful"
    assert got["Async::testResolves()"]["device_s"] == pytest.approx(2.0)
    assert got["Async::testRejects()"]["message"] == "it broke"
    handler = got["Async::testAssertsInAHandler()"]
    assert handler["message"] == "Expected value: 6, got: 5"
    lines = PROMISES.lstrip("\n").splitlines()
    line = next(n for n, text in enumerate(lines, 1) if "assertEqual(6, v)" in text)
    assert handler["location"] == {"file": "tests/Async.device.test.nut", "line": line}
    assert got["Async::testNeverSettles()"]["message"] == "Test timed out after 3s"
    assert got["Async::testNeverSettles()"]["device_s"] == pytest.approx(3.0)
    assert got["Async::testSlowSync()"]["message"] == "Test took 4s, longer than timeout of 3s"
    assert report["wall_s"] < 5  # seven seconds of device time, no wall time


def test_timeout_on_the_command_line_overrides_the_configuration(
        tmp_path: Path, capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    home = project(tmp_path, {"tests/Async.device.test.nut": PROMISES}, {"timeout": 3})
    code, out = run(capsys, monkeypatch, home, "--timeout", "10", "--tests", "::testNeverSettles")
    assert code == 1 and has_line(out, "Failure: Test timed out after 10s")


def test_stop_on_fail_ends_the_session_and_the_run(
        tmp_path: Path, capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    files = {"tests/A.test.nut": """
                 class A extends ImpTestCase {
                     function testA1() { this.assertTrue(false); }
                     function testA2() { }
                 }""",
             "tests/B.test.nut": "class B extends ImpTestCase { function testB() {} }"}
    home = project(tmp_path, files, {"stopOnFail": True})
    code, report = run_json(capsys, monkeypatch, home)
    assert code == 1
    assert list(steps(report)) == ["A::testA1()"]
    assert report["sessions"][0]["stopped_on_failure"] and len(report["sessions"]) == 1
    home = project(tmp_path, {}, {"stopOnFail": False})
    code, report = run_json(capsys, monkeypatch, home)
    assert list(steps(report)) == ["A::testA1()", "A::testA2()", "B::testB()"]


def test_a_runtime_error_names_its_line_and_the_run_goes_on(
        tmp_path: Path, capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    home = project(tmp_path, {"Errors.test.nut": """
        class Errors extends ImpTestCase {
            function testIndex() {
                local t = {};
                return t.missing;
            }
            function testCallbackThrows() {
                imp.wakeup(0, function() { throw "from a timer"; });
            }
            function testAfter() { return "still running"; }
        }"""}, {})
    code, out = run(capsys, monkeypatch, home)
    assert code == 1
    assert has_line(out, "Failure: the index 'missing' does not exist")
    assert "info] at Errors.test.nut:4\n" in out
    assert has_line(out, "Device Runtime Error: from a timer")
    assert has_line(out, "Success: still running")
    assert has_line(out, "Tests: 3, Assertions: 0, Failures: 1")


def test_a_build_that_does_not_compile_fails_its_session_naming_the_line(
        tmp_path: Path, capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    home = project(tmp_path, {"lib.nut": "function ok() {}\n",
                              "tests/Bad.test.nut": "class Bad extends ImpTestCase {\n"
                                                    "  function testX() { local = 1; }\n}\n",
                              "tests/Good.test.nut": "class Good extends ImpTestCase "
                                                     "{ function testY() {} }\n"},
                   {"deviceFile": "lib.nut"})
    code, report = run_json(capsys, monkeypatch, home)
    assert code == 1
    bad, good = report["sessions"]
    assert bad["status"] == "failed" and "tests/Bad.test.nut:2:" in bad["error"]
    assert bad["error_location"] == "tests/Bad.test.nut:2"
    assert good["status"] == "passed"


def test_a_library_through_require_and_lib(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    libs = project(tmp_path / "libs", {"Adder.lib.nut": """
        class Adder {
            static VERSION = "1.2.0";
            function add(a, b) { return a + b; }
        }"""})
    home = project(tmp_path / "proj", {
        "device.nut": '#require "Adder.lib.nut:1.0.0"\nadder <- Adder();\n',
        "tests/Adder.device.test.nut": """
            #require "Adder.lib.nut:1.0.0"
            class AdderTest extends ImpTestCase {
                function testAdds() { this.assertEqual(5, ::adder.add(2, 3)); }
                function testClass() { this.assertEqual("1.2.0", Adder.VERSION); }
            }"""}, {"deviceFile": "device.nut"})
    code, out = run(capsys, monkeypatch, home)
    assert code == 1 and "library Adder.lib.nut (1.0.0) not found" in out
    code, out = run(capsys, monkeypatch, home, "--lib", str(libs))
    assert code == 0, out
    assert has_line(out, "Tests: 2, Assertions: 2, Failures: 0")


def test_select_files_cases_and_methods_as_impt_does(
        tmp_path: Path, capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    home = project(tmp_path, {
        "tests/One.test.nut": """
            class First extends ImpTestCase { function testMe() {} function testMe_1() {} }
            class Second extends ImpTestCase { function testMe() {} function tearDown() {} }""",
        "tests/Two.test.nut": "class First extends ImpTestCase { function testMe() {} }"}, {})
    cases = {
        "One:First::testMe": ["First::testMe()"],
        ":First::testMe": ["First::testMe()", "First::testMe()"],
        ":Second": ["Second::testMe()", "Second::tearDown()"],
        "Two": ["First::testMe()"],
        "::testMe_1": ["First::testMe_1()"],
    }
    for pattern, expected in cases.items():
        code, report = run_json(capsys, monkeypatch, home, "--tests", pattern)
        names = [s["name"] for session in report["sessions"] for s in session["steps"]]
        assert code == 0 and names == expected, pattern
    code, report = run_json(capsys, monkeypatch, home, "--tests", ":Second")
    assert [s["status"] for s in report["sessions"]] == ["passed", "skipped"]
    assert report["sessions_skipped"] == 1 and report["passed"]
    code, out = run(capsys, monkeypatch, home, "--tests", ":Second")
    assert code == 0
    assert 'info] Skip "tests/Two.test.nut" testing: no test case or method here matches ' \
        "--tests\n" in out


def test_explicit_files_json_and_junit(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                       monkeypatch: pytest.MonkeyPatch) -> None:
    home = project(tmp_path, {"a/X.test.nut": """
        class X extends ImpTestCase {
            function testPass() { this.info("hello"); }
            function testFail() { this.assertEqual(1, 2); }
        }""", "b/Ignored.test.nut": "this does not compile"})
    junit = tmp_path / "report.xml"
    code, report = run_json(capsys, monkeypatch, home, "a/X.test.nut", "--junit", str(junit))
    assert code == 1 and [s["file"] for s in report["sessions"]] == ["a/X.test.nut"]
    root = ET.parse(junit).getroot()
    assert (root.get("tests"), root.get("failures"), root.get("errors")) == ("2", "1", "0")
    cases = {c.get("name"): c for c in root.iter("testcase")}
    assert cases["testFail"].find("failure").get("message") == "Expected value: 1, got: 2"
    assert cases["testFail"].find("failure").text == "at a/X.test.nut:3"
    assert cases["testPass"].find("system-out").text == '"hello"'
    assert cases["testPass"].get("classname") == "X"


def test_builder_directives_are_refused_by_name(tmp_path: Path,
                                                capsys: pytest.CaptureFixture[str],
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    home = project(tmp_path, {"tests/B.test.nut": '@include "github:x/y/z.nut"\n'}, {})
    code, report = run_json(capsys, monkeypatch, home)
    assert code == 1
    assert "tests/B.test.nut:1: Builder's @include is not supported" in \
        report["sessions"][0]["error"]


def test_run_command_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                monkeypatch: pytest.MonkeyPatch) -> None:
    home = project(tmp_path, {"C.test.nut": 'class C extends ImpTestCase {\n'
                                            '  function testCmd() { this.runCommand("ls"); }\n}'},
                   {})
    code, report = run_json(capsys, monkeypatch, home)
    assert code == 1
    assert "does not run host commands" in steps(report)["C::testCmd()"]["message"]


@pytest.mark.parametrize(("files", "config", "args", "message"), [
    ({}, None, ["--config", "nowhere/.impt.test"], "cannot read the test configuration"),
    ({".impt.test": "{not json"}, None, [], "not JSON"),
    ({}, {"timeout": -1}, [], "timeout must be a positive number"),
    ({}, {"stopOnFail": "yes"}, [], "stopOnFail must be true or false"),
    ({}, {"testFiles": 3}, [], "testFiles must be a list"),
    ({}, {"deviceFile": "missing.nut"}, [], 'Device source file "missing.nut" not found'),
    ({}, {}, [], "No test files found"),
    ({"T.test.nut": ""}, {}, ["--timeout", "0"], "--timeout: timeout must be a positive"),
    ({"T.test.nut": ""}, {}, ["--board", "no-such-board"], "no-such-board"),
    ({"T.test.nut": ""}, {}, ["--fault", "sensor.on_fire"], "unknown fault 'on_fire'"),
    ({"T.test.nut": ""}, {}, ["--lib", "nowhere"], "--lib nowhere: not a folder"),
    ({"T.test.nut": ""}, {}, ["--tests", "(:A"], "not a regular expression"),
    ({"T.test.nut": ""}, {}, ["Missing.test.nut"], "test file Missing.test.nut not found"),
])
def test_bad_input_is_one_line_and_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                          monkeypatch: pytest.MonkeyPatch,
                                          files: dict[str, str], config: dict[str, Any] | None,
                                          args: list[str], message: str) -> None:
    home = project(tmp_path, files, config)
    code, out = run(capsys, monkeypatch, home, *args)
    assert code == 2
    assert out.count("\n") == 1 and out.startswith("impfactory: error: ") and message in out


def test_the_runners_promise_passes_its_own_impunit_tests(
        capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    """then/fail/finally, resolve/reject, all/race/serial/loop, as Electric Imp's
    Promise library documents them (tests/imptest_data/promise)."""
    home = Path(__file__).resolve().parent / "imptest_data" / "promise"
    code, report = run_json(capsys, monkeypatch, home)
    assert code == 0, [s for s in steps(report).values() if s["status"] != "passed"]
    assert report["tests"] == 18 and report["failures"] == 0
    assert report["sessions"][0]["log"] == ["Unhandled promise rejection: nobody listens"]


def _session(home: Path, **options: Any) -> Any:
    from impfactory.firmware.imptest.build import build
    from impfactory.firmware.imptest.config import config_from_dict, find_test_files
    from impfactory.firmware.imptest.session import Session, SessionOptions

    config = config_from_dict({}, home)
    return Session(build(config, find_test_files(config)[0]), SessionOptions(**options)).run()


def test_a_runaway_test_is_stopped_and_ends_its_session(tmp_path: Path) -> None:
    home = project(tmp_path, {"R.test.nut": """
        class R extends ImpTestCase {
            function testA() { while (true) {} }
            function testB() { }
        }"""})
    result = _session(home, time_limit_s=0.2)
    assert [s.name for s in result.steps] == ["R::testA()"]
    assert result.steps[0].message == ("the code ran longer than its time limit of 0.2 s "
                                       "and was stopped")
    assert str(result.steps[0].location) == "R.test.nut:2"
    assert result.error.endswith("no more tests can run in this session")


def test_a_runaway_callback_stops_the_device_code_and_the_session(tmp_path: Path) -> None:
    home = project(tmp_path, {"R.test.nut": """
        class R extends ImpTestCase {
            function testA() {
                return Promise(function(ok, fail) { imp.wakeup(1, function() { while (1) {} }); });
            }
            function testB() { }
        }"""})
    result = _session(home, time_limit_s=0.2, timeout_s=5)
    assert result.steps[0].message == "Test timed out after 5s"
    assert result.logs[0] == ("ERROR: the code ran longer than its time limit of 0.2 s and "
                              "was stopped")
    assert result.error == ("the device code was stopped (see the device log): no more tests "
                            "can run in this session")
    assert not result.passed


def test_a_test_device_is_in_a_development_group(tmp_path: Path) -> None:
    home = project(tmp_path, {"D.test.nut": """
        class D extends ImpTestCase {
            function testBless() {
                return Promise(function(ok, fail) { server.bless(true, ok); });
            }
            function testFactoryBlinkUp() {
                server.factoryblinkup("ssid", "pw", hardware.pin1, 0);
                return server.isconnected();
            }
            function testRestart() { server.restart(); }
        }"""})
    result = _session(home)
    got = {s.method: s for s in result.steps}
    assert got["testBless"].passed and got["testBless"].message == "false"
    assert got["testFactoryBlinkUp"].message == "true"
    assert "Factory BlinkUp request failed. This is not a factory imp." in result.logs
    assert "server.restart would reboot the imp" in (got["testRestart"].message or "")


DISCONNECT = """
class D extends ImpTestCase {
    function testDrop() {
        server.disconnect();
        local offline = !server.isconnected();
        return Promise(function(ok, fail) {
            imp.wakeup(1, function() { server.connect(function(reason) { ok(offline); }); });
        });
    }
    function testAfter() { return server.isconnected(); }
}"""


@pytest.mark.parametrize("allowed", [False, True])
def test_a_disconnect_fails_the_session_unless_allowed(tmp_path: Path, allowed: bool) -> None:
    home = project(tmp_path, {"D.test.nut": DISCONNECT})
    result = _session(home, allow_disconnect=allowed)
    if allowed:
        assert result.passed and [s.message for s in result.steps] == ["true", "true"]
    else:
        assert result.error == "Device disconnected" and not result.passed


def test_impts_watchdog_ends_a_session_that_makes_no_progress(tmp_path: Path) -> None:
    home = project(tmp_path, {"W.test.nut": """
        class W extends ImpTestCase {
            function testA_SleepsForAWeek() { imp.sleep(604800); }
            function testB_NeverReached() { }
        }"""})
    result = _session(home, timeout_s=3)
    assert result.steps[0].message == "Test took 604800s, longer than timeout of 3s"
    assert result.error == "Testing timeout"  # 3 + 5 s without a word from the device
    assert [s.method for s in result.steps] == ["testA_SleepsForAWeek"]


def test_a_case_that_cannot_be_created_fails_once_and_the_others_run(tmp_path: Path) -> None:
    home = project(tmp_path, {"C.test.nut": """
        class A extends ImpTestCase {
            constructor() { throw "no thanks"; }
            function setUp() { }
            function testOne() { }
            function testTwo() { }
        }
        class B extends ImpTestCase { function testB() { } }"""})
    result = _session(home)
    assert [(s.name, s.passed) for s in result.steps] == [("A::setUp()", False),
                                                          ("B::testB()", True)]
    assert result.steps[0].message == "A could not be created: no thanks"
    assert str(result.steps[0].location) == "C.test.nut:2"
