"""Each repository of ``cloud/store`` on its own, on a throwaway store: what it keeps,
what it finds, and what it refuses."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from conftest import fresh_postgres

from impfactory.cloud.model import (
    Account,
    Deployment,
    DeviceGroup,
    GroupType,
    Owner,
    Token,
    TokenKind,
    Webhook,
)
from impfactory.cloud.store import IntegrityViolation, open_store
from impfactory.cloud.store.repositories import Repositories

ENGINES = {"sqlite": ":memory:", "postgres": "postgresql://"}
"""Where each engine's throwaway store is (every test below runs over each: one contract,
every back end). PostgreSQL's is a fresh database on the session's server."""


@pytest.fixture(params=sorted(ENGINES))
def repos(request: pytest.FixtureRequest) -> Iterator[Repositories]:
    where = ENGINES[request.param]
    if request.param == "postgres":
        where = fresh_postgres(request.getfixturevalue("postgres_url"), "repositories")
    store = open_store(where)
    yield Repositories(store)
    store.close()


def _group(repos: Repositories, gid: str = "g", name: str = "Lab",
           gtype: GroupType = GroupType.DEVELOPMENT) -> DeviceGroup:
    if repos.products.get("p") is None:
        repos.products.insert("p", "o", "Lamp", "", 1.0)
    group = DeviceGroup(gid, "p", "o", gtype, name, "", None, {"k": 1}, None, None, True,
                        None, None, None, 1.0, 1.0)
    repos.groups.insert(group)
    return group


def _deployment(repos: Repositories, did: str, group_id: str = "g", *,
                flagged: bool = False) -> Deployment:
    dep = Deployment(did, 0, group_id, "p", "o", f"sha-{did}", f"// {did}", "",
                     f"dsha-{did}", f"asha-{did}", "", None, ("a",), flagged, False, 1.0, 1.0)
    repos.deployments.insert(dep)
    return dep


def test_products_and_groups(repos: Repositories) -> None:
    group = _group(repos)
    assert repos.groups.get("g") == group
    with pytest.raises(IntegrityViolation):
        repos.products.insert("p2", "o", "Lamp", "", 1.0)  # a name once per owner
    with pytest.raises(IntegrityViolation):
        _group(repos, "g2", "Lab")  # a group name once per product
    _group(repos, "d", "Duts", GroupType.PRE_DUT)
    assert [g.id for g in repos.groups.list(type=GroupType.PRE_DUT.value)] == ["d"]
    assert repos.groups.any_in_product("p") and not repos.groups.is_target("d")
    repos.groups.update("g", {"name": "Lab2", "description": "x", "env_vars": {},
                              "load_code_after_blessing": False, "region": None,
                              "production_target": None, "dut_target": None,
                              "min_impos_version": "43.1"}, 2.0)
    changed = repos.groups.get("g")
    assert changed is not None and changed.name == "Lab2" and changed.min_impos_version == "43.1"
    assert not changed.load_code_after_blessing and changed.updated_at == 2.0
    repos.groups.delete("d")
    assert repos.groups.get("d") is None


def test_deployments_number_in_order_and_serve_their_code(repos: Repositories) -> None:
    _group(repos)
    assert _deployment(repos, "one") and repos.deployments.seq_of("one") == 1
    _deployment(repos, "two", flagged=True)
    assert repos.deployments.seq_of("two") == 2
    assert [d.id for d in repos.deployments.list(group_id="g")] == ["two", "one"]
    assert [d.id for d in repos.deployments.list(flagged=True)] == ["two"]
    assert repos.deployments.any_flagged("g")
    assert repos.deployments.code_by_sha("dsha-one") == b"// one"
    assert repos.deployments.code_by_sha("asha-one") == b""
    assert repos.deployments.code_by_sha("nothing") is None
    repos.groups.set_current("g", "one", 3.0)
    repos.groups.set_current("g", "two", 4.0)
    group = repos.groups.get("g")
    assert group is not None
    assert (group.current_deployment, group.min_supported_deployment) == ("two", "one")


def test_releases_keep_one_version_per_image(repos: Repositories) -> None:
    repos.releases.put("43.1", "sha-a", b"A", 1.0)
    repos.releases.put("43.1", "sha-b", b"BB", 2.0)  # a version's image replaced
    assert [(r.version, r.sha, r.size) for r in repos.releases.list()] == [("43.1", "sha-b", 2)]
    repos.releases.put("43.2", "sha-b", b"BB", 3.0)  # the image moves to the new version
    assert [r.version for r in repos.releases.list()] == ["43.2"]
    assert repos.releases.has("sha-b") and repos.releases.image("sha-b") == b"BB"


def test_devices_page_count_and_filter(repos: Repositories) -> None:
    group = _group(repos)
    for i in range(5):
        repos.devices.add(f"d{i}", f"mac{i}", float(i))
    repos.devices.assign("d1", group.id, "p")
    repos.devices.connected("d2", "imp005", "43.1", None, 9.0)
    assert [d.id for d in repos.devices.list({}, limit=2, offset=1)] == ["d1", "d2"]
    assert repos.devices.count({}) == 5
    assert repos.devices.count({"group_type": GroupType.DEVELOPMENT}) == 1
    assert [d.id for d in repos.devices.list({"online": True})] == ["d2"]
    assert [d.id for d in repos.devices.list({"mac": "mac4"})] == ["d4"]
    with pytest.raises(TypeError):
        repos.devices.list({"colour": "red"})
    assert repos.devices.any_in_group(group.id)


def test_a_device_is_blessed_once(repos: Repositories) -> None:
    _group(repos, "prod", "Prod", GroupType.PRE_PRODUCTION)
    repos.devices.add("d", "mac", 1.0)
    assert repos.devices.blessed("d", "prod", "p", 2.0)
    assert not repos.devices.blessed("d", "prod", "p", 3.0)
    device = repos.devices.get("d")
    assert device is not None and device.blessed and device.blessed_at == 2.0
    repos.devices.unassign("d")
    device = repos.devices.get("d")
    assert device is not None and not device.blessed and device.group_id is None


def test_logs_and_links(repos: Repositories) -> None:
    assert repos.logs.last_id() == 0
    for i in range(3):
        repos.logs.append("d", float(i), "status", f"line {i}")
    repos.logs.append("e", 9.0, "status", "other")
    assert [e.msg for e in repos.logs.page("d", 2, 0, newest_first=True)] == ["line 2", "line 1"]
    assert [e.msg for e in repos.logs.since(2, 10)] == ["line 2", "other"]
    assert repos.logs.last_id() == 4
    assert repos.links.get("d") is None and repos.links.registrations("d") == 0
    repos.links.save("d", b"\x01", 1.0)
    repos.links.set_session("d", "s1")
    assert repos.links.get("d") == (b"\x01", "s1")
    repos.links.save("d", b"\x02", 2.0)  # re-registration: new key, no session
    assert repos.links.get("d") == (b"\x02", None) and repos.links.registrations("d") == 2
    assert repos.links.count() == 1


def test_owners_and_enrolment_tokens(repos: Repositories) -> None:
    repos.owners.add(Owner("o", "plan", "key"))
    assert repos.owners.get("o") == Owner("o", "plan", "key")
    with pytest.raises(IntegrityViolation):
        repos.owners.add(Owner("o2", "plan", "key2"))  # a plan ID names one owner
    token = Token("t", TokenKind.FACTORY, "plan", "o", "fx", 10.0, None, None, 1.0)
    repos.tokens.add(token)
    assert repos.tokens.get("t") == token
    repos.tokens.used("t", "dut", 5.0)
    used = repos.tokens.get("t")
    assert used is not None and (used.used_at, used.used_by) == (5.0, "dut")
    assert repos.tokens.count(TokenKind.FACTORY) == 1
    assert repos.tokens.count(TokenKind.PRODUCTION) == 0


def test_api_accounts_tokens_and_login_keys(repos: Repositories) -> None:
    accounts = repos.accounts
    owner = Account("o", "alice", "a@x", "owner", "o", "u", "plan-o", 2.0)
    helper = Account("h", "bob", "b@x", "blinkup_device", "o", "u2", "plan-h", 1.0)
    accounts.add(helper, b"s", b"h")
    accounts.add(owner, b"salt", b"hash")
    assert accounts.find("alice") == owner and accounts.find("a@x") == owner
    assert accounts.by_plan("plan-o") == owner and accounts.password("o") == (b"salt", b"hash")
    assert [a.id for a in accounts.serving("o")] == ["o", "h"]  # the owner first
    accounts.add_tokens([("d1", "access", "o", 5.0, 1.0), ("r1", "refresh", "o", None, 1.0)],
                        now=1.0)
    assert accounts.token("d1", "access") == ("o", 5.0)
    accounts.add_tokens([("d2", "access", "o", 20.0, 10.0)], now=10.0)  # d1 expired: gone
    assert accounts.token("d1", "access") is None and accounts.token("d2", "access")
    assert accounts.refresh_tokens("o") == [("r1", 1.0)]
    assert not accounts.revoke_refresh("h", "r1") and accounts.revoke_refresh("o", "r1")
    accounts.add_login_key("k", "o", "kd", "laptop", 3.0)
    assert accounts.login_key("k", "o") == ("k", "laptop", 3.0)
    assert accounts.login_key("k", "h") is None and accounts.login_key_owner("kd") == "o"
    accounts.describe_login_key("k", "desk")
    assert accounts.login_key_ids("o") == ["k"] and accounts.login_key("k", "o") == (
        "k", "desk", 3.0)
    accounts.delete_login_key("k")
    assert accounts.login_key_ids("o") == []


def test_webhooks_and_the_outbox(repos: Repositories) -> None:
    _group(repos)
    hook = Webhook("w", "g", "deployment", "http://h/", "application/json", 1.0)
    repos.webhooks.add(hook)
    assert repos.webhooks.list("g") == [hook]
    assert repos.outbox.queue("g", "deployment", {"n": 1}, 2.0) == 1
    assert repos.outbox.queue("g", "blessing", {"n": 2}, 2.0) == 0  # no such hook
    [pending] = repos.outbox.pending(10)
    assert (pending.url, pending.payload, pending.attempts) == ("http://h/", {"n": 1}, 0)
    repos.outbox.attempted(pending.id, None, "refused")
    repos.outbox.retry_at(pending.id, 7.0, dead=False)
    assert repos.outbox.schedule() == {pending.id: (7.0, False)}
    assert repos.outbox.retry_state(pending.id) is False
    repos.outbox.retry_at(pending.id, 9.0, dead=True)
    assert repos.outbox.retry_state(pending.id) is True
    repos.outbox.retry_done(pending.id)
    assert repos.outbox.retry_state(pending.id) is None
    repos.outbox.queue("g", "deployment", {"n": 3}, 3.0)
    repos.outbox.attempted(pending.id, 4.0, None)  # the first one delivered
    assert [(i, e) for i, e in repos.outbox.undelivered("w")] == [(2, "deployment")]
    repos.outbox.abandon("w", "gone", 5.0)
    [lost] = repos.outbox.abandoned(10)
    assert (lost.id, lost.reason, lost.payload) == (2, "gone", {"n": 3})
    assert repos.outbox.pending(10) == []


def test_agent_storage(repos: Repositories) -> None:
    assert repos.agent_store.load("a") is None
    repos.agent_store.save("a", '{"n":1}', 1.0)
    repos.agent_store.save("a", '{"n":2}', 2.0)
    assert repos.agent_store.load("a") == '{"n":2}'
    repos.agent_store.clear("a")
    assert repos.agent_store.load("a") is None
