"""The service layer's own rules, without a broker: fast, one in-memory database each."""

from __future__ import annotations

import hashlib
import re
import sqlite3
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from impfactory.cloud.errors import (
    ConflictError,
    DependentGroupsError,
    DuplicateNameError,
    FlaggedDeploymentsError,
    InvalidError,
    InvalidUrlError,
    NotFoundError,
    ResourceFlaggedError,
)
from impfactory.cloud.images import ImageCache, impos_blob, sha256
from impfactory.cloud.model import Device, GroupType, version_key
from impfactory.cloud.rules import DeviceRules
from impfactory.cloud.scenario import make_factory
from impfactory.cloud.service import CloudService
from impfactory.cloud.store import SCHEMA, open_store
from impfactory.errors import ImpFactoryError
from impfactory.protocol import cloudlink as cl

OWNER = "o1"


def exactly(text: str) -> str:
    """A ``match=`` pattern for exactly ``text`` (impCentral's details, word for word)."""
    return "^" + re.escape(text) + "$"


@pytest.fixture
def clock() -> list[float]:
    """The service's clock: ``clock[0]`` seconds, moved by the test."""
    return [1_700_000_000.0]


@pytest.fixture
def svc(clock: list[float]) -> CloudService:
    service = CloudService(open_store(":memory:"), now=lambda: clock[0])
    service.ensure_owner(OWNER)
    return service


def test_fixture_groups_need_both_targets_of_their_zone(svc: CloudService) -> None:
    p = svc.create_product(OWNER, "P")
    prod = svc.create_group(p.id, GroupType.PRE_PRODUCTION, "prod")
    dut = svc.create_group(p.id, GroupType.PRE_DUT, "dut")
    live_dut = svc.create_group(p.id, GroupType.DUT, "live dut")
    with pytest.raises(InvalidError, match="dut_target"):
        svc.create_group(p.id, GroupType.PRE_FACTORYFIXTURE, "f", production_target=prod.id)
    with pytest.raises(InvalidError, match="must be a pre_dut"):
        svc.create_group(p.id, GroupType.PRE_FACTORYFIXTURE, "f", production_target=prod.id,
                         dut_target=live_dut.id)
    other = svc.create_product(OWNER, "Q")
    other_dut = svc.create_group(other.id, GroupType.PRE_DUT, "q dut")
    with pytest.raises(InvalidError, match="same product"):
        svc.create_group(p.id, GroupType.PRE_FACTORYFIXTURE, "f", production_target=prod.id,
                         dut_target=other_dut.id)
    fixture = svc.create_group(p.id, GroupType.PRE_FACTORYFIXTURE, "f",
                               production_target=prod.id, dut_target=dut.id)
    assert (fixture.production_target, fixture.dut_target) == (prod.id, dut.id)
    with pytest.raises(InvalidError):
        svc.create_group(p.id, GroupType.PRE_DUT, "x", production_target=prod.id)
    with pytest.raises(InvalidError):
        svc.create_group(p.id, GroupType.PRE_DUT, "y", load_code_after_blessing=False)
    with pytest.raises(InvalidError):
        svc.update_group(dut.id, load_code_after_blessing=False)
    with pytest.raises(InvalidError):
        svc.create_group(p.id, "nonsense_devicegroup", "z")
    with pytest.raises(ConflictError):
        svc.create_group(p.id, GroupType.DEVELOPMENT, "prod")
    with pytest.raises(ConflictError):
        svc.delete_group(prod.id)  # a target of the fixture group
    updated = svc.update_group(prod.id, load_code_after_blessing=False)
    assert updated.load_code_after_blessing is False


def test_every_group_type_has_a_zone_and_role() -> None:
    roles = {(t.zone, t.role) for t in GroupType}
    assert len(GroupType) == 7 and len(roles) == 7
    assert GroupType.FACTORYFIXTURE.target_types() == (GroupType.PRODUCTION, GroupType.DUT)


def test_deployments_are_immutable_and_ordered(svc: CloudService, clock: list[float]) -> None:
    f = make_factory(svc, OWNER)
    # a group's first deployment is its min-supported one (impt's dg update needs one)
    assert svc.get_group(f.dut_group.id).min_supported_deployment == f.dut_build.id
    newer = svc.create_deployment(f.dut_group.id, "// v2", tags=["b", "a", "a"])
    assert newer.seq > f.dut_build.seq and newer.tags == ("a", "b")
    group = svc.get_group(f.dut_group.id)
    assert (group.current_deployment, group.min_supported_deployment) == (newer.id,
                                                                           f.dut_build.id)
    clock[0] += 5
    changed = svc.update_deployment(f.dut_build.id, description="old", flagged=True, tags=["x"])
    assert changed.device_code == f.dut_build.device_code and changed.sha == f.dut_build.sha
    assert changed.updated_at == f.dut_build.created_at + 5 == changed.created_at + 5
    with pytest.raises(ResourceFlaggedError, match=exactly(
            "You cannot delete flagged deployments; set the flagged attribute to false and "
            "try again.")):
        svc.delete_deployment(f.dut_build.id)
    with pytest.raises(ConflictError, match="min-supported"):
        svc.delete_deployment(newer.id)
    svc.set_min_supported_deployment(f.dut_group.id, newer.id)
    with pytest.raises(InvalidError, match="older"):
        svc.set_min_supported_deployment(f.dut_group.id, f.dut_build.id)
    with pytest.raises(InvalidError, match="another device group"):
        svc.set_min_supported_deployment(f.dut_group.id, f.app_build.id)
    svc.update_deployment(f.dut_build.id, flagged=False)
    with pytest.raises(ConflictError, match="min-supported"):
        svc.delete_deployment(newer.id)
    svc.delete_deployment(f.dut_build.id)
    with pytest.raises(NotFoundError):
        svc.get_deployment(f.dut_build.id)
    assert [d.id for d in svc.list_deployments(group_id=f.dut_group.id)] == [newer.id]
    assert svc.list_deployments(tag="a")[0].id == newer.id


def test_production_zone_groups_take_deployments_and_promotion_is_a_mark(
        svc: CloudService) -> None:
    """As Electric Imp's ProductionGuide does it (``impt build copy --build B --dg
    MyProductionDG``): a Production Zone group takes any deployment; ``promoted`` is
    only a mark, and a copy of a promoted build is not promoted itself."""
    live = make_factory(svc, OWNER, zone="production")
    assert live.production_group.type is GroupType.PRODUCTION
    assert not any(d.promoted for d in (live.fixture_build, live.dut_build, live.app_build))
    assert all(d.promoted for d in svc.list_deployments(product_id=live.product.id)
               if svc.get_group(d.group_id).type.zone == "test")
    fresh = svc.create_deployment(live.dut_group.id, "// not promoted anywhere")
    group = svc.get_group(live.dut_group.id)
    assert group.current_deployment == fresh.id and not fresh.promoted
    assert group.min_supported_deployment == live.dut_build.id
    with pytest.raises(ValueError):
        make_factory(svc, OWNER, name="Other", zone="moon")


def test_webhooks_are_validated_and_queued(svc: CloudService) -> None:
    f = make_factory(svc, OWNER)
    with pytest.raises(InvalidError):
        svc.create_webhook(f.dut_group.id, "blessing", "http://x/")
    with pytest.raises(InvalidError):
        svc.create_webhook(f.production_group.id, "exploded", "http://x/")
    for bad in ("ftp://x/", "http://", "not a url", "http://[::1"):
        with pytest.raises(InvalidUrlError, match=exactly("The provided URL is invalid.")):
            svc.create_webhook(f.production_group.id, "blessing", bad)
    hook = svc.create_webhook(f.production_group.id, "deployment", "http://127.0.0.1:1/h",
                              "application/x-www-form-urlencoded")
    build = svc.create_deployment(f.production_group.id, "// app 2")
    [delivery] = svc.pending_webhooks()
    assert delivery.webhook_id == hook.id and delivery.payload["deployment_id"] == build.id
    svc.mark_webhook(delivery.id, ok=True)
    # deployment webhooks fit any group: a development group's fire too
    dev = svc.create_group(f.product.id, GroupType.DEVELOPMENT, "dev")
    dev_hook = svc.create_webhook(dev.id, "deployment", "http://127.0.0.1:1/dev")
    dev_build = svc.create_deployment(dev.id, "// dev 1")
    [delivery] = svc.pending_webhooks()
    assert (delivery.webhook_id, delivery.payload["deployment_id"]) == (dev_hook.id,
                                                                         dev_build.id)
    svc.mark_webhook(delivery.id, ok=False, error="refused")
    assert svc.pending_webhooks()[0].attempts == 1
    svc.mark_webhook(delivery.id, ok=True)
    assert svc.pending_webhooks() == []



def test_deleting_a_webhook_keeps_its_queued_events_marked_abandoned(
        svc: CloudService, caplog: pytest.LogCaptureFixture) -> None:
    """impCentral sends nothing to a deleted hook, but a queued event must not vanish:
    it stays in the outbox, marked abandoned, and the cloud's log names it."""
    f = make_factory(svc, OWNER)
    doomed = svc.create_webhook(f.production_group.id, "deployment", "http://127.0.0.1:1/a")
    kept = svc.create_webhook(f.production_group.id, "deployment", "http://127.0.0.1:1/b")
    svc.create_deployment(f.production_group.id, "// app 2")
    delivered, _other = sorted(svc.pending_webhooks(), key=lambda d: d.webhook_id != doomed.id)
    svc.mark_webhook(delivered.id, ok=True)  # one of the doomed hook's events got through
    svc.create_deployment(f.production_group.id, "// app 3")
    waiting = [d for d in svc.pending_webhooks() if d.webhook_id == doomed.id]
    assert len(waiting) == 1
    with caplog.at_level("WARNING", logger="impfactory.cloud.services.webhooks"):
        svc.delete_webhook(doomed.id)
    assert all(d.webhook_id == kept.id for d in svc.pending_webhooks())
    assert svc.list_webhooks(f.production_group.id) == svc.list_webhooks() == [kept]
    assert len(svc.pending_webhooks()) == 2  # the surviving hook's events are untouched
    [lost] = svc.abandoned_webhooks()
    assert (lost.id, lost.webhook_id, lost.event) == (waiting[0].id, doomed.id, "deployment")
    assert lost.payload == waiting[0].payload and "http://127.0.0.1:1/a" in lost.reason
    assert f"evt-{lost.id}" in caplog.text and "deleted" in caplog.text
    svc.mark_webhook(lost.id, ok=True)  # its POST was under way and got through after all
    assert svc.abandoned_webhooks() == []


def test_deleting_a_group_abandons_its_webhooks_events(svc: CloudService) -> None:
    p = svc.create_product(OWNER, "Gone")
    prod = svc.create_group(p.id, GroupType.PRE_PRODUCTION, "short-lived")
    svc.create_webhook(prod.id, "deployment", "http://127.0.0.1:1/h")
    svc.create_deployment(prod.id, "// never shipped")
    svc.delete_group(prod.id)
    assert svc.pending_webhooks() == []
    [lost] = svc.abandoned_webhooks()
    assert "device group was deleted" in lost.reason


def test_an_older_database_gains_the_abandoned_column(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    old = sqlite3.connect(path)
    old.executescript(SCHEMA.replace(", abandoned_at REAL);", ");"))
    old.execute("INSERT INTO webhook_outbox (webhook_id, event, payload, created_at)"
                " VALUES ('w', 'blessing', '{}', 1.0)")
    old.commit()
    old.close()
    db = open_store(path)
    row = db.one("SELECT webhook_id, abandoned_at FROM webhook_outbox")
    assert tuple(row) == ("w", None)

def test_names_and_lookups_are_typed_errors(svc: CloudService) -> None:
    for call in (lambda: svc.get_product("nope"), lambda: svc.get_group("nope"),
                 lambda: svc.get_device("nope"), lambda: svc.owner("nobody")):
        with pytest.raises(NotFoundError) as caught:
            call()
        assert isinstance(caught.value, ImpFactoryError) and isinstance(caught.value, LookupError)
    with pytest.raises(InvalidError):
        svc.create_product(OWNER, "  ")
    svc.create_product(OWNER, "P")
    with pytest.raises(DuplicateNameError, match=exactly("Products must have unique names.")):
        svc.create_product(OWNER, "P")


def test_group_names_are_unique_per_product_not_per_account(svc: CloudService) -> None:
    one, two = svc.create_product(OWNER, "One"), svc.create_product(OWNER, "Two")
    svc.create_group(one.id, GroupType.DEVELOPMENT, "Lab")
    twin = svc.create_group(two.id, GroupType.DEVELOPMENT, "Lab")  # another product: fine
    other = svc.create_group(two.id, GroupType.DEVELOPMENT, "Other")
    for make in (lambda: svc.create_group(one.id, GroupType.PRE_DUT, "Lab"),
                 lambda: svc.update_group(other.id, name="Lab")):
        with pytest.raises(DuplicateNameError,
                           match=exactly("Devicegroups must have unique names.")):
            make()
    assert svc.get_group(twin.id).name == "Lab"


def test_what_blocks_deleting_a_product_or_a_group(svc: CloudService) -> None:
    p = svc.create_product(OWNER, "P")
    dev = svc.create_group(p.id, GroupType.DEVELOPMENT, "dev")
    with pytest.raises(DependentGroupsError,
                       match=exactly("Cannot delete a product with associated devicegroups.")):
        svc.delete_product(p.id)
    build = svc.create_deployment(dev.id, "// kept", flagged=True)
    with pytest.raises(FlaggedDeploymentsError, match=exactly(
            "Cannot delete a devicegroup with flagged deployments; delete those first.")):
        svc.delete_group(dev.id)
    svc.update_deployment(build.id, flagged=False)
    svc.delete_group(dev.id)
    svc.delete_product(p.id)


def test_a_release_1_database_gets_group_names_per_product(tmp_path: Path) -> None:
    """Release 1 made group names unique per account: opening such a file rebuilds the
    table, keeping its rows and what refers to them."""
    path = tmp_path / "old.db"
    old = sqlite3.connect(path)
    old.executescript(SCHEMA.replace("UNIQUE (product_id, name)", "UNIQUE (owner_id, name)"))
    for pid in ("p1", "p2"):
        old.execute("INSERT INTO products (id, owner_id, name, created_at, updated_at)"
                    " VALUES (?, 'o', ?, 1, 1)", (pid, pid))
    old.execute("INSERT INTO devicegroups (id, product_id, owner_id, type, name, created_at,"
                " updated_at) VALUES ('g1', 'p1', 'o', 'development_devicegroup', 'Lab', 1, 1)")
    old.execute("INSERT INTO webhooks VALUES ('w', 'g1', 'deployment', 'http://h/', 'x', 1)")
    old.commit()
    with pytest.raises(sqlite3.IntegrityError):  # what release 1 refused
        old.execute("INSERT INTO devicegroups (id, product_id, owner_id, type, name,"
                    " created_at, updated_at) VALUES ('g2', 'p2', 'o', 'x', 'Lab', 1, 1)")
    old.close()
    svc = CloudService(open_store(path))
    svc.ensure_owner("o")
    assert svc.get_group("g1").name == "Lab" and svc.get_webhook("w").group_id == "g1"
    assert svc.create_group("p2", GroupType.DEVELOPMENT, "Lab").name == "Lab"
    with pytest.raises(DuplicateNameError):
        svc.create_group("p1", GroupType.DEVELOPMENT, "Lab")
    assert svc.store.scalar("PRAGMA foreign_keys") == 1
    assert svc.store.query("PRAGMA foreign_key_check") == []


def test_rules_refuse_what_is_not_a_request(svc: CloudService) -> None:
    rules = DeviceRules(svc)
    [reply] = rules.handle(cl.Welcome(device_id="0123456789abcdef"))
    assert isinstance(reply, cl.ErrorReply) and reply.code is cl.ErrorCode.BAD_REQUEST
    [reply] = rules.handle(cl.Hello(device_id="0123456789abcdef", req=4, plan_id="0" * 16))
    assert isinstance(reply, cl.ErrorReply) and reply.req == 4
    assert reply.code is cl.ErrorCode.TOKEN_INVALID
    [answer] = rules.handle(cl.BlessRequest(device_id="0123456789abcdef", req=1))
    assert isinstance(answer, cl.BlessAnswer) and not answer.blessed


def test_impos_versions_order_numerically() -> None:
    assert version_key("43.1.10") > version_key("43.1.9") > version_key("43") > version_key("9")
    assert impos_blob("43.1") == impos_blob("43.1") != impos_blob("43.2")
    assert len(impos_blob("1", 1000)) == 1000


@settings(max_examples=60, deadline=None)
@given(st.binary(max_size=5000), st.integers(1, 700))
def test_blocks_reassemble_to_the_image(data: bytes, chunk_size: int) -> None:
    cache = ImageCache(lambda sha: None, chunk_size=chunk_size)
    ref = cache.ref(cl.ImageKind.DEVICE, data)
    assert ref.sha == sha256(data) and ref.total == -(-len(data) // chunk_size)
    blocks = [cache.chunk("0123456789abcdef", ref.sha, i) for i in range(ref.total)]
    assert all(b is not None and len(b.data) <= chunk_size for b in blocks)
    assert b"".join(b.data for b in blocks if b is not None) == data
    # the offer's block list: SHA-256 over the served blocks' digests, in order
    listed = b"".join(hashlib.sha256(b.data).digest() for b in blocks if b is not None)
    assert ref.blocks_sha == hashlib.sha256(listed).hexdigest()
    assert all(b is not None and b.block_sha == hashlib.sha256(b.data).hexdigest()
               for b in blocks)
    assert cache.chunk("0123456789abcdef", ref.sha, ref.total) is None
    assert cache.get("0" * 64) is None
    # one encoding of each block serves every device: only the topic names the device
    for device in ("0123456789abcdef", "fedcba9876543210", "0123456789abcdef"):
        for i in range(ref.total):
            chunk = cache.chunk(device, ref.sha, i)
            assert chunk is not None and cache.encoded(chunk) == cl.encode(chunk)


def test_image_cache_evicts_and_reloads(svc: CloudService) -> None:
    store = {sha256(b"a" * 100): b"a" * 100}
    cache = ImageCache(store.get, chunk_size=10, max_bytes=150)
    cache.put(b"b" * 100)
    assert cache.get(sha256(b"a" * 100)) == b"a" * 100  # loaded, evicting b
    store[sha256(b"forged")] = b"not forged"
    assert cache.get(sha256(b"forged")) is None  # a loader returning other bytes is refused


def _enrolled_dut(svc: CloudService, rules: DeviceRules, impos: str) -> list[cl.Message]:
    """Fixture and DUT walked through hello/enrolment by the rules alone (no broker)."""
    f = make_factory(svc, OWNER) if not svc.list_products() else None
    fixture_group = f.fixture_group if f else svc.list_groups(type=GroupType.PRE_FACTORYFIXTURE)[0]
    fx_id = "0c2a00000000f1c7"
    if svc.find_device(fx_id) is None:
        dev = svc.create_development_token(OWNER)
        rules.handle(cl.Hello(device_id=fx_id, plan_id=dev.plan_id, token=dev.token))
        svc.assign_devices(fixture_group.id, [fx_id])
    [token] = rules.handle(cl.FactoryTokenRequest(device_id=fx_id, req=1))
    assert isinstance(token, cl.FactoryToken)
    dut_id = "0c2a" + token.token[:12]
    return rules.handle(cl.Hello(device_id=dut_id, req=2, impos_version=impos,
                                 plan_id=token.plan_id, token=token.token))


def test_impos_blocks_go_to_known_devices_only_however_often_asked(svc: CloudService) -> None:
    rules = DeviceRules(svc)
    dut_id = _enrolled_dut(svc, rules, "40.0")[0].device_id
    release = svc.add_impos_release("41.1", size=1000)

    def ask(device_id: str) -> list[cl.Message]:
        return rules.handle(cl.ChunkRequest(device_id=device_id, sha=release.sha, blocks=(0,)))

    for _ in range(2):  # the second time the rules know the image is a release
        [chunk] = ask(dut_id)
        assert isinstance(chunk, cl.Chunk) and chunk.index == 0 and chunk.intact
    [refused] = ask("0c2a0000deadbeef")  # no module of ours: nothing, release or not
    assert isinstance(refused, cl.ErrorReply) and refused.code is cl.ErrorCode.UNKNOWN_IMAGE
    code = svc.images.ref(cl.ImageKind.DEVICE, b"device code nobody deployed")
    [refused] = rules.handle(cl.ChunkRequest(device_id=dut_id, sha=code.sha, blocks=(0,)))
    assert isinstance(refused, cl.ErrorReply) and refused.code is cl.ErrorCode.UNKNOWN_IMAGE


def test_group_minimum_impos_picks_the_newest_release(svc: CloudService) -> None:
    rules = DeviceRules(svc)
    replies = _enrolled_dut(svc, rules, "40.0")
    assert isinstance(replies[-1], cl.CodeOffer)  # no minimum yet: code at once
    dut_group = svc.list_groups(type=GroupType.PRE_DUT)[0]
    svc.update_group(dut_group.id, min_impos_version="41.2")
    svc.add_impos_release("41.1", size=1000)
    replies = _enrolled_dut(svc, rules, "40.0")
    assert [type(m) for m in replies] == [cl.Welcome, cl.Assignment, cl.ConfigParams]
    assert "impOS 41.2 required" in svc.device_logs(replies[0].device_id)[-1].msg
    svc.add_impos_release("41.10", size=1000)
    svc.add_impos_release("41.3", size=1000)
    replies = _enrolled_dut(svc, rules, "40.0")
    offer = replies[-1]
    assert isinstance(offer, cl.OsOffer) and offer.version == "41.10"
    assert offer.image.size == 1000
    replies = _enrolled_dut(svc, rules, "41.2")  # at the minimum already
    assert isinstance(replies[-1], cl.CodeOffer)


def _fleet(svc: CloudService, n: int) -> list[str]:
    """``n`` devices that said hello; the even ones claimed by ``OWNER``."""
    rules = DeviceRules(svc)
    ids = []
    for i in range(n):
        device_id = f"{i:016x}"
        rules.handle(cl.Hello(device_id=device_id, mac=f"{0x0c2a69000000 + i:012x}"))
        if i % 2 == 0:
            svc.claim_device(device_id, OWNER)
        ids.append(device_id)
    return ids


def test_device_lists_page_and_filter_in_sql(svc: CloudService,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    _fleet(svc, 23)
    everyone = svc.list_devices()
    mine = svc.list_devices(owner_id=OWNER)
    assert len(everyone) == 23 and len(mine) == 12 and svc.count_devices(owner_id=OWNER) == 12
    for limit, offset in [(5, 0), (5, 10), (5, 20), (100, 3), (0, 0), (None, 7)]:
        page = svc.list_devices(owner_id=OWNER, limit=limit, offset=offset)
        end = None if limit is None else offset + limit
        assert [d.id for d in page] == [d.id for d in mine[offset:end]]
    third = mine[2]
    assert svc.list_devices(mac=third.mac) == [third]
    assert svc.list_devices(owner_id=OWNER, agent_id=third.agent_id) == [third]
    assert svc.list_devices(owner_id="someone else", mac=third.mac) == []
    with pytest.raises(InvalidError):
        svc.list_devices(limit=-1)

    view = svc.device_view(owner_id=OWNER)
    assert len(view) == 12 and view[-1] == mine[-1] and list(view) == mine
    with pytest.raises(IndexError):
        view[12]
    built: list[object] = []
    from_row = Device.from_row
    monkeypatch.setattr(Device, "from_row", lambda row: built.append(row) or from_row(row))
    assert view[4:6] == mine[4:6] and len(built) == 2  # a page builds only its own rows
    with pytest.raises(TypeError):
        svc.device_view(colour="red")
