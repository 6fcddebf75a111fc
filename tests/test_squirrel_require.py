"""``#require`` from library folders, version checks, and errors that name the
library file and line they happened in."""

from __future__ import annotations

from pathlib import Path

import pytest

from impfactory.devicecode import LIB_PATH_ENV, library_dirs
from impfactory.libraries import LIBRARY_DIR
from impfactory.squirrel import (
    Frame,
    LibraryError,
    SquirrelCompileError,
    SquirrelRuntimeError,
    Vm,
    format_error,
    resolve,
)
from impfactory.squirrel.require import search_dirs

SHARED = Path(__file__).resolve().parents[2] / "shared" / "imp-libraries"
EXAMPLE = SHARED / "FactoryTools" / "examples" / "FactoryExampleAsync.device.nut"


def write(folder: Path, name: str, text: str) -> Path:
    path = folder / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


@pytest.fixture(autouse=True)
def _no_env_folders(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(LIB_PATH_ENV, raising=False)


def test_electric_imps_factory_example_resolves_and_compiles() -> None:
    if not EXAMPLE.is_file():
        pytest.skip("the shared imp-libraries are not next to this checkout")
    resolved = resolve(EXAMPLE.read_text(), EXAMPLE.name, [SHARED])
    assert [(lib.name, lib.requested, lib.declared) for lib in resolved.libraries] == [
        ("FactoryTools.lib.nut", "2.2.0", "2.2.0"),
        ("CFAx33KL.device.lib.nut", "2.0.0", None),
        ("HTS221.device.lib.nut", "2.0.1", "2.0.2"),
    ]
    with Vm() as vm:
        vm.compile(resolved.source, "device.nut", resolved.line_map)
        with pytest.raises(SquirrelRuntimeError) as info:
            vm.run(resolved.source, "device.nut", resolved.line_map)
    # The libraries' top levels ran; the example's own code then needs the imp API.
    assert info.value.message == "the index 'server' does not exist"
    assert info.value.stack[-1].file == EXAMPLE.name


def test_the_shipped_libraries_resolve_compile_and_run_their_top_level() -> None:
    source = ('#require "FactoryTools.lib.nut:2.2.0"\n'
              '#require "CFAx33KL.device.lib.nut:2.0.0"\n'
              '#require "HTS221.device.lib.nut:2.0.1"\n'
              "enum Mode { IDLE, RUN }\n"
              "const LIMIT = 3;\n"
              "class Probe {\n"
              "    _mode = null;\n"
              "    constructor() { _mode = Mode.RUN; }\n"
              "    function tick() {\n"
              "        return function() { return _mode + LIMIT; }.bindenv(this)();\n"
              "    }\n"
              "}\n"
              "return [Probe().tick(), FactoryTools.VERSION, HTS221.VERSION];\n")
    resolved = resolve(source, "device.nut", [LIBRARY_DIR])
    with Vm() as vm:
        assert vm.run(resolved.source, "device.nut", resolved.line_map) == [4, "2.2.0", "2.0.2"]


def test_a_library_of_another_major_version_is_refused_naming_both(tmp_path: Path) -> None:
    write(tmp_path, "Foo.lib.nut", 'class Foo {\n    static VERSION = "3.1.0";\n}\n')
    with pytest.raises(LibraryError) as info:
        resolve('#require "Foo.lib.nut:2.0.0"\n', "device.nut", [tmp_path])
    assert "2.0.0" in str(info.value) and "3.1.0" in str(info.value)
    assert "device.nut:1" in str(info.value)
    resolved = resolve('#require "Foo.lib.nut:3.0.9"\n', "device.nut", [tmp_path])
    assert resolved.libraries[0].declared == "3.1.0"


def test_a_missing_library_is_refused_naming_it_and_the_folders(tmp_path: Path) -> None:
    other = tmp_path / "other"
    other.mkdir()
    with pytest.raises(LibraryError) as info:
        resolve('x <- 1;\n#require "Nowhere.device.lib.nut:1.0.0"\n', "device.nut",
                [tmp_path, other])
    text = str(info.value)
    assert "Nowhere.device.lib.nut" in text and "device.nut:2" in text
    assert str(tmp_path) in text and str(other) in text


@pytest.mark.parametrize("spec", ["Foo.lib.nut", "Foo.lib.nut:2", "Foo:1.0.0", ""])
def test_a_require_without_a_name_and_version_is_refused(tmp_path: Path, spec: str) -> None:
    write(tmp_path, "Foo.lib.nut", "x <- 1;\n")
    with pytest.raises(LibraryError, match="must name a library and its version"):
        resolve(f'#require "{spec}"\n', "device.nut", [tmp_path])


def test_the_first_folder_wins_then_the_shallowest_path(tmp_path: Path) -> None:
    first, second = tmp_path / "first", tmp_path / "second"
    write(second, "Lib.lib.nut", "which <- \"second\";\n")
    write(first, "deep/er/Lib.lib.nut", "which <- \"first-deep\";\n")
    write(first, "deep/Lib.lib.nut", "which <- \"first-shallow\";\n")
    resolved = resolve('#require "Lib.lib.nut:1.0.0"\nreturn which;\n', "d.nut", [first, second])
    assert resolved.libraries[0].path == first / "deep" / "Lib.lib.nut"
    with Vm() as vm:
        assert vm.run(resolved.source, "d.nut", resolved.line_map) == "first-shallow"


def test_the_environment_folders_come_after_the_given_ones(tmp_path: Path,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    given, env_a, env_b = tmp_path / "given", tmp_path / "a", tmp_path / "b"
    for folder in (given, env_a, env_b):
        folder.mkdir()
    monkeypatch.setenv(LIB_PATH_ENV, f"{env_a}:{env_b}:{given}")
    assert search_dirs(library_dirs([given])) == [given, env_a, env_b, LIBRARY_DIR]
    write(env_b, "Env.lib.nut", "from <- \"b\";\n")
    write(env_a, "Env.lib.nut", "from <- \"a\";\n")
    resolved = resolve('#require "Env.lib.nut:0.1.0"\n', "d.nut", library_dirs([given]))
    assert resolved.libraries[0].path == env_a / "Env.lib.nut"


def test_errors_name_the_library_file_and_line(tmp_path: Path) -> None:
    write(tmp_path, "Sensor.device.lib.nut", 'class Sensor {\n'
                                             '    static VERSION = "1.2.3";\n'
                                             '    function read() {\n'
                                             '        return missingRegister;\n'
                                             '    }\n'
                                             '}\n')
    source = ("// app\n"
              '#require "Sensor.device.lib.nut:1.0.0"\n'
              "\n"
              "local s = Sensor();\n"
              "local value = s.read();\n")
    resolved = resolve(source, "device.nut", [tmp_path])
    with Vm() as vm, pytest.raises(SquirrelRuntimeError) as info:
        vm.run(resolved.source, "device.nut", resolved.line_map)
    assert info.value.stack == [Frame("read", "Sensor.device.lib.nut", 4),
                                Frame("main", "device.nut", 5)]
    assert format_error(info.value)[1:] == ["  in read Sensor.device.lib.nut:4",
                                            "  from main device.nut:5"]


def test_compile_errors_name_the_library_file_and_line(tmp_path: Path) -> None:
    write(tmp_path, "Broken.lib.nut", "function ok() {}\nfunction bad( {\n")
    resolved = resolve('local a = 1;\n#require "Broken.lib.nut:1.0.0"\n', "device.nut",
                       [tmp_path])
    with Vm() as vm, pytest.raises(SquirrelCompileError) as info:
        vm.compile(resolved.source, "device.nut", resolved.line_map)
    assert (info.value.file, info.value.line) == ("Broken.lib.nut", 2)


def test_libraries_may_require_libraries_and_each_comes_once(tmp_path: Path) -> None:
    write(tmp_path, "Base.lib.nut", "first <- 1;\n")
    write(tmp_path, "Top.lib.nut", '#require "Base.lib.nut:1.0.0"\ntop <- first + 1;\n')
    source = ('#require "Base.lib.nut:1.0.0"\n#require "Top.lib.nut:1.0.0"\n'
              "return [first, top, fail()];\n")
    resolved = resolve(source, "device.nut", [tmp_path])
    assert [lib.name for lib in resolved.libraries] == ["Base.lib.nut", "Top.lib.nut"]
    with Vm() as vm, pytest.raises(SquirrelRuntimeError) as info:
        vm.run(resolved.source, "device.nut", resolved.line_map)
    assert info.value.stack == [Frame("main", "device.nut", 3)]


def test_a_library_requiring_itself_is_refused(tmp_path: Path) -> None:
    write(tmp_path, "Loop.lib.nut", '#require "Loop.lib.nut:1.0.0"\n')
    with pytest.raises(LibraryError, match="requires itself"):
        resolve('#require "Loop.lib.nut:1.0.0"\n', "device.nut", [tmp_path])


def test_source_without_require_is_unchanged() -> None:
    source = "local x = 1;\n// #require in a comment\nreturn x;"
    resolved = resolve(source, "device.nut")
    assert resolved.source == source
    lines = [resolved.line_map.lookup(n) for n in (1, 2, 3)]
    assert lines == [("device.nut", n) for n in (1, 2, 3)]
    assert resolved.libraries == ()


def test_parts_join_into_one_unit_and_each_line_keeps_its_file(tmp_path: Path) -> None:
    from impfactory.squirrel.require import Part, require_lines, resolve_parts

    write(tmp_path, "Lib.lib.nut", 'class Lib { static VERSION = "1.0.0"; }\n'
                                   "function libBoom() { throw \"from the lib\"; }")
    test_text = 'local x = 1;\n#require "Lib.lib.nut:1.0.0"\nfunction boom() { libBoom(); }'
    assert require_lines(test_text) == [2]
    resolved = resolve_parts([
        Part('#require "Lib.lib.nut:1.0.0"\nfunction first() {}', "framework.nut"),
        Part("function module() {", "wrapper"),
        Part("local y = 2;\nfunction boom() { libBoom(); }", "tests/x.test.nut", 4),
        Part("}\nmodule();", "wrapper"),
    ], [tmp_path])
    assert [lib.name for lib in resolved.libraries] == ["Lib.lib.nut"]  # once
    assert resolved.line_map.lookup(1) == ("Lib.lib.nut", 1)
    assert resolved.line_map.lookup(3) == ("framework.nut", 2)
    assert resolved.line_map.lookup(6) == ("tests/x.test.nut", 5)  # from its first line, 4
    assert resolved.line_map.lookup(8) == ("wrapper", 2)
    with Vm() as vm:
        vm.run(resolved.source, "unit.nut", resolved.line_map)
        with pytest.raises(SquirrelRuntimeError) as info:
            vm.run("boom();", "call.nut")
    assert info.value.stack[:2] == [Frame("libBoom", "Lib.lib.nut", 2),
                                    Frame("boom", "tests/x.test.nut", 5)]
