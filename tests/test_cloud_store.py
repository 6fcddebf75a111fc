"""The cloud's store: migrations from a store main made, refusal of a newer one, the
unit of work, and that no SQL lives outside ``cloud/store``."""

from __future__ import annotations

import ast
import contextlib
import re
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from impfactory.cloud.errors import StoreError
from impfactory.cloud.model import GroupType
from impfactory.cloud.service import CloudService
from impfactory.cloud.store import LATEST, IntegrityViolation, StoreVersionError, open_store
from impfactory.cloud.store.migrations import MIGRATIONS

ROOT = Path(__file__).resolve().parents[1]
MAIN_SCHEMA = (Path(__file__).parent / "cloud_store_v1.sql").read_text()
"""The schema as the cloud made it before its store kept a version (version 1)."""


def _user_version(path: Path) -> int:
    with contextlib.closing(sqlite3.connect(path)) as db:
        return int(db.execute("PRAGMA user_version").fetchone()[0])


def _main_store(path: Path) -> None:
    """A store as main's cloud left it: its schema, a factory's worth of rows, no version."""
    with contextlib.closing(sqlite3.connect(path)) as old:
        old.executescript(MAIN_SCHEMA)
        old.executescript("""
INSERT INTO cloud_meta VALUES ('schema_version', '3');
INSERT INTO owners VALUES ('o', 'plan-o', 'unbond-o');
INSERT INTO products (id, owner_id, name, created_at, updated_at) VALUES ('p', 'o', 'Lamp', 1, 1);
INSERT INTO devicegroups (id, product_id, owner_id, type, name, created_at, updated_at)
    VALUES ('prod', 'p', 'o', 'pre_production_devicegroup', 'Prod', 1, 1);
INSERT INTO devices (id, mac, owner_id, group_id, product_id, blessed, created_at)
    VALUES ('0c2a000000000001', '000000000001', 'o', 'prod', 'p', 1, 2);
INSERT INTO webhooks VALUES ('w', 'prod', 'blessing', 'http://127.0.0.1:1/h',
    'application/json', 1);
INSERT INTO webhook_outbox (webhook_id, event, payload, created_at)
    VALUES ('w', 'blessing', '{"device_id": "0c2a000000000001"}', 3);
INSERT INTO logs (device_id, ts, type, msg) VALUES ('0c2a000000000001', 2, 'status', 'Blessed');
INSERT INTO api_accounts VALUES ('o', 'alice', 'a@x', x'00', x'00', 'owner', 'o', 'u', 'plan-o', 1);
""")
        old.commit()


def test_a_store_made_by_main_is_migrated_keeping_its_rows(tmp_path: Path) -> None:
    path = tmp_path / "main.db"
    _main_store(path)
    assert _user_version(path) == 0
    store = open_store(path)
    assert store.dialect.get_version(store.conn) == LATEST
    svc = CloudService(store)
    svc.ensure_owner("o")
    assert svc.get_group("prod").name == "Prod"
    assert svc.get_device("0c2a000000000001").blessed
    [pending] = svc.pending_webhooks()
    assert pending.id == 1 and pending.payload == {"device_id": "0c2a000000000001"}
    assert [e.msg for e in svc.device_logs("0c2a000000000001")] == ["Blessed"]
    # migration 2's work: its indexes exist, the old version key is gone
    indexes = {r[0] for r in store.query("SELECT name FROM sqlite_master WHERE type='index'")}
    assert {"webhook_outbox_hook", "api_tokens_account"} <= indexes
    assert store.query("SELECT * FROM cloud_meta WHERE key='schema_version'") == []
    # and the store works as a new one: a deployment queues nothing for a blessing hook
    svc.create_deployment("prod", "// v2")
    assert len(svc.pending_webhooks()) == 1
    store.close()
    assert _user_version(path) == LATEST
    open_store(path).close()  # opening again migrates nothing and fails on nothing
    assert _user_version(path) == LATEST


def test_each_migration_brings_the_version_one_step(tmp_path: Path) -> None:
    assert [m.version for m in MIGRATIONS] == list(range(1, LATEST + 1))
    path = tmp_path / "steps.db"
    _main_store(path)
    store = open_store(path)
    store.close()
    # a store stopped after migration 1 (version 1) resumes at migration 2
    with contextlib.closing(sqlite3.connect(path)) as db:
        db.execute("DROP INDEX webhook_outbox_hook")
        db.execute("PRAGMA user_version=1")
    open_store(path).close()
    with contextlib.closing(sqlite3.connect(path)) as db:
        assert db.execute("SELECT 1 FROM sqlite_master WHERE name='webhook_outbox_hook'"
                          ).fetchone() is not None


def test_a_store_from_a_newer_version_is_refused_untouched(tmp_path: Path) -> None:
    path = tmp_path / "newer.db"
    open_store(path).close()
    with contextlib.closing(sqlite3.connect(path)) as db:
        db.execute(f"PRAGMA user_version={LATEST + 1}")
    with pytest.raises(StoreVersionError) as caught:
        open_store(path)
    assert isinstance(caught.value, StoreError) and isinstance(caught.value, OSError)
    assert f"schema version {LATEST + 1}" in str(caught.value)
    assert "newer impfactory" in str(caught.value)
    assert _user_version(path) == LATEST + 1
    for command in (["cloud", "devices", "--db", str(path)],
                    ["cloud", "serve", "--broker", "embedded", "--db", str(path)]):
        result = subprocess.run([sys.executable, "-m", "impfactory.tools.cli", *command],
                                capture_output=True, text=True, timeout=60)
        assert result.returncode == 2, result.stderr
        assert "made by a newer impfactory" in result.stderr
        assert "Traceback" not in result.stderr and result.stderr.count("\n") == 1


def test_a_database_url_of_an_unknown_engine_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(StoreError, match="unsupported database URL"):
        open_store("mysql://localhost/cloud")
    store = open_store(f"sqlite:///{tmp_path / 'url.db'}")
    assert store.dialect.name == "sqlite"
    store.close()
    assert (tmp_path / "url.db").is_file()


# ---------------------------------------------------------------- the unit of work


def test_a_transaction_commits_whole_or_not_at_all() -> None:
    svc = CloudService(open_store(":memory:"))
    svc.ensure_owner("o")
    product = svc.create_product("o", "P")
    with pytest.raises(RuntimeError), svc.tx():
        svc.create_group(product.id, GroupType.DEVELOPMENT, "one")
        with svc.tx():  # joins the outer one
            svc.create_group(product.id, GroupType.DEVELOPMENT, "two")
        raise RuntimeError("stop")
    assert svc.list_groups() == []
    with svc.tx():
        svc.create_group(product.id, GroupType.DEVELOPMENT, "one")
    assert [g.name for g in svc.list_groups()] == ["one"]
    assert not svc.store.in_transaction


def test_a_blessing_that_fails_half_way_leaves_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    """Bless = group move + log line + webhook outbox row, one transaction."""
    from impfactory.cloud.rules import DeviceRules
    from impfactory.cloud.scenario import make_factory
    from impfactory.protocol import cloudlink as cl

    svc = CloudService(open_store(":memory:"))
    svc.ensure_owner("o")
    setup = make_factory(svc, "o")
    rules = DeviceRules(svc)
    fixture_id, dut_id = "0c2a00000000f1c7", "0c2a00000000d007"
    token = svc.create_development_token("o")
    rules.handle(cl.Hello(device_id=fixture_id, mac="00000000f1c7", plan_id=token.plan_id,
                          token=token.token))
    svc.assign_devices(setup.fixture_group.id, [fixture_id])
    factory = svc.create_factory_token(svc.get_device(fixture_id))
    rules.handle(cl.Hello(device_id=dut_id, mac="00000000d007", plan_id=factory.plan_id,
                          token=factory.token))
    svc.create_webhook(setup.fixture_group.production_target or "", "blessing",
                       "http://127.0.0.1:1/h")
    logs_before = len(svc.device_logs(dut_id))

    def broken(*args: object) -> int:
        raise StoreError("disk full")

    monkeypatch.setattr(svc.ctx.repos.outbox, "queue", broken)
    with pytest.raises(StoreError):
        svc.blessing.bless(dut_id, True)
    dut = svc.get_device(dut_id)
    assert not dut.blessed and dut.group_id == setup.fixture_group.dut_target
    assert len(svc.device_logs(dut_id)) == logs_before and svc.pending_webhooks() == []
    monkeypatch.undo()
    [answer, *_] = rules.handle(cl.BlessRequest(device_id=dut_id, req=1, passed=True))
    assert isinstance(answer, cl.BlessAnswer) and answer.blessed
    assert len(svc.pending_webhooks()) == 1
    [again] = rules.handle(cl.BlessRequest(device_id=dut_id, req=2, passed=True))
    assert isinstance(again, cl.BlessAnswer) and not again.blessed
    assert len(svc.pending_webhooks()) == 1  # blessed once, one event


def test_the_store_keeps_wal_and_normal_sync(tmp_path: Path) -> None:
    """What makes a SIGKILLed cloud lose no committed change, at a cheap commit."""
    store = open_store(tmp_path / "wal.db")
    assert store.scalar("PRAGMA journal_mode") == "wal"
    assert store.scalar("PRAGMA synchronous") == 1  # NORMAL
    assert store.scalar("PRAGMA foreign_keys") == 1
    store.close()


def test_a_constraint_is_a_typed_error_not_a_driver_one() -> None:
    store = open_store(":memory:")
    store.execute("INSERT INTO owners (id, plan_id, unbond_key) VALUES ('a', 'p', 'k')")
    with pytest.raises(IntegrityViolation):
        store.execute("INSERT INTO owners (id, plan_id, unbond_key) VALUES ('b', 'p', 'k')")


# ---------------------------------------------------------------- no SQL elsewhere

PACKAGE_DIRS = ("cloud", "tools", "impfactory", "protocol", "hw", "fixture", "firmware")
SQL = re.compile(r"\b(SELECT\s.+\sFROM|INSERT\s+(OR\s+\w+\s+)?INTO|UPDATE\s+\w+\s+SET|"
                 r"DELETE\s+FROM|CREATE\s+(TABLE|INDEX)|DROP\s+(TABLE|INDEX)|ALTER\s+TABLE|"
                 r"PRAGMA\s+\w+)\b", re.DOTALL)
"""SQL keywords as the project writes them (upper case), so prose ("select a product
from the list") is not SQL."""


def sql_strings(source: str) -> list[tuple[int, str]]:
    """(line, text) of every string literal in ``source`` that reads as SQL (f-strings
    by their literal parts, joined, so a split statement is still seen)."""
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.JoinedStr):
            text = "".join(v.value for v in node.values
                           if isinstance(v, ast.Constant) and isinstance(v.value, str))
        elif isinstance(node, ast.Constant) and isinstance(node.value, str):
            text = node.value
        else:
            continue
        if SQL.search(text):
            found.append((node.lineno, text))
    return found


def test_the_sql_detector_sees_sql_in_every_spelling() -> None:
    for source in ('q = "SELECT id FROM devices WHERE x=?"',
                   'q = ("UPDATE devices SET online=0"\n     " WHERE id=?")',
                   'q = f"DELETE FROM {table} WHERE id=?"',
                   'q = "INSERT OR REPLACE INTO t VALUES (1)"',
                   'db.execute("PRAGMA user_version")'):
        assert sql_strings(source), source
    for source in ('router.add("DELETE", "/devices/{id}", delete, "Remove a device")',
                   'print("select a product from the list")', 'x = "UPDATE"'):
        assert not sql_strings(source), source


def test_no_sql_outside_cloud_store() -> None:
    """Rules, REST handlers, services and tools reach tables only through
    ``cloud/store``'s repositories; nothing else imports a database driver."""
    offenders = []
    for top in PACKAGE_DIRS:
        for path in sorted((ROOT / top).rglob("*.py")):
            rel = path.relative_to(ROOT).as_posix()
            if rel.startswith("cloud/store/") or "node_modules" in rel:
                continue
            source = path.read_text()
            offenders += [f"{rel}:{line}: {text[:60]!r}" for line, text in sql_strings(source)]
            offenders += [f"{rel}: imports sqlite3" for _ in
                          re.finditer(r"^\s*(import sqlite3|from sqlite3 )", source, re.M)]
    assert offenders == []
