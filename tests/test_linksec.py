"""protocol/linksec.py and impfactory/maker.py: module keys, registration, seals.

Pure functions, so these tests need no broker: a proof checks only for the module
that made it, a seal only for its key, session, topic and bytes, and every
malformed registration is a typed error.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from impfactory import maker
from impfactory.protocol import cloudlink as cl
from impfactory.protocol import linksec

SECRET = bytes(range(32))
DEVICE = "0123456789abcdef"
NONCE = "ab" * 16
PASSWORD = "p" * 32


def test_module_keys_differ_by_device_and_by_maker() -> None:
    key = linksec.module_key(SECRET, DEVICE)
    assert len(key) == 32 and key == linksec.module_key(SECRET, DEVICE)
    # independently of the code under test: HMAC-SHA256 over the documented text
    expected = hmac.new(SECRET, b"impfactory module key\0" + DEVICE.encode(),
                        hashlib.sha256).digest()
    assert key == expected
    assert key != linksec.module_key(SECRET, "1123456789abcdef")
    assert key != linksec.module_key(bytes(32), DEVICE)


def _request(**change: str) -> linksec.RegisterRequest:
    key = linksec.module_key(SECRET, DEVICE)
    proof = linksec.registration_proof(key, DEVICE, NONCE, PASSWORD)
    fields = {"slot": "enrol-007", "nonce": NONCE, "device_id": DEVICE, "password": PASSWORD,
              "proof": proof} | change
    return linksec.RegisterRequest(**fields)


def test_a_proof_checks_only_for_the_module_that_made_it() -> None:
    assert _request().verify(SECRET)
    assert not _request().verify(bytes(32))  # another maker
    assert not _request(device_id="1123456789abcdef").verify(SECRET)  # another device
    assert not _request(nonce="cd" * 16).verify(SECRET)  # replayed with another nonce
    assert not _request(password="q" * 32).verify(SECRET)  # someone else's password
    assert not _request(proof="0" * 64).verify(SECRET)


def test_registration_messages_round_trip() -> None:
    request = _request()
    topic, payload = linksec.encode_request(request)
    assert topic == "imp/1/enrol/enrol-007/register"
    assert linksec.decode_request(topic, payload) == request
    answer = linksec.RegisterAnswer("enrol-007", NONCE, False, "bad_proof", "no")
    topic, payload = linksec.encode_answer(answer)
    assert topic == "imp/1/enrol/enrol-007/registered"
    assert linksec.decode_answer(topic, payload) == answer


@pytest.mark.parametrize("topic", [
    "imp/1/enrol/enrol-07/register", "imp/1/enrol/0123456789abcdef/register",
    "imp/1/enrol/enrol-007/registered", "imp/2/enrol/enrol-007/register", "imp/1/enrol/enrol-007",
])
def test_registration_topics_name_a_slot(topic: str) -> None:
    _, payload = linksec.encode_request(_request())
    with pytest.raises(cl.TopicError):
        linksec.decode_request(topic, payload)


@pytest.mark.parametrize("payload", [
    b"", b"[]", b"not json", b'{"v":1}', b'{"v":true,"nonce":"x"}',
    json.dumps({"v": 2, "nonce": NONCE, "device_id": DEVICE, "password": PASSWORD,
                "proof": "0" * 64}).encode(),
    json.dumps({"v": 1, "nonce": NONCE, "device_id": DEVICE, "password": "short",
                "proof": "0" * 64}).encode(),
    json.dumps({"v": 1, "nonce": NONCE, "device_id": "X" * 16, "password": PASSWORD,
                "proof": "0" * 64}).encode(),
    json.dumps({"v": 1, "nonce": NONCE, "device_id": DEVICE, "password": PASSWORD,
                "proof": "0" * 64, "extra": 1}).encode(),
    b'{"v":1,"pad":"' + b"x" * 2000 + b'"}',
    b"[" * 100_000,
])
def test_malformed_registrations_are_typed_errors(payload: bytes) -> None:
    with pytest.raises(cl.CloudLinkError):
        linksec.decode_request("imp/1/enrol/enrol-000/register", payload)


def test_slots_are_named_and_bounded() -> None:
    assert linksec.slot_names()[0] == "enrol-000" and len(linksec.slot_names()) == 128
    with pytest.raises(ValueError):
        linksec.slot_name(linksec.ENROL_SLOTS)


KEY = linksec.link_key(linksec.module_key(SECRET, DEVICE), NONCE)
TOPIC = cl.topic(DEVICE, cl.Direction.DOWN, "code_offer")
SESSION = "cd" * 16


def test_a_seal_opens_only_for_its_key_session_and_topic() -> None:
    payload = b'{"v":1,"deployment":"x"}'
    sealed = linksec.seal(KEY, SESSION, TOPIC, payload)
    assert linksec.unseal(KEY, SESSION, TOPIC, sealed) == payload
    for key, session, topic in ((bytes(32), SESSION, TOPIC), (KEY, "ef" * 16, TOPIC),
                                (KEY, SESSION, cl.topic(DEVICE, cl.Direction.DOWN, "restart")),
                                (KEY, SESSION, TOPIC.replace(DEVICE, "1123456789abcdef"))):
        with pytest.raises(linksec.SealError):
            linksec.unseal(key, session, topic, sealed)
    for unsealed in (payload, b"", payload + b"\n", payload + b"\n" + b"0" * 64):
        with pytest.raises(linksec.SealError):
            linksec.unseal(KEY, SESSION, TOPIC, unsealed)


@given(st.binary(max_size=300), st.data())
def test_any_changed_byte_breaks_the_seal(payload: bytes, data: st.DataObject) -> None:
    sealed = bytearray(linksec.seal(KEY, SESSION, TOPIC, payload))
    i = data.draw(st.integers(0, len(sealed) - 1))
    sealed[i] ^= data.draw(st.integers(1, 255))
    with pytest.raises(linksec.SealError):
        linksec.unseal(KEY, SESSION, TOPIC, bytes(sealed))


def test_chunks_name_the_sha_of_their_block() -> None:
    block = b"\x00block\xff"
    good = cl.Chunk(DEVICE, sha="0" * 64, index=0, total=1,
                    block_sha=hashlib.sha256(block).hexdigest(), data=block)
    assert good.intact
    assert cl.decode(*cl.encode(good)) == good
    assert not cl.Chunk(DEVICE, sha="0" * 64, index=0, total=1, block_sha=good.block_sha,
                        data=block[:-1]).intact


# ---------------------------------------------------------------- the maker's secret


def test_the_secret_comes_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(maker.ENV, "11" * 32)
    assert maker.maker_secret() == b"\x11" * 32
    monkeypatch.setenv(maker.ENV, "not hex")
    with pytest.raises(maker.MakerSecretError, match="64 hex digits"):
        maker.maker_secret()


def test_the_secret_file_is_made_once_and_private(monkeypatch: pytest.MonkeyPatch,
                                                    tmp_path: Path) -> None:
    monkeypatch.delenv(maker.ENV, raising=False)
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path))
    first = maker.maker_secret()
    path = tmp_path / "impfactory" / "module-secret"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert maker.maker_secret() == first and len(first) == 32
    # other processes of the same user agree, even when they race to make it
    env = {k: v for k, v in os.environ.items() if k != maker.ENV}
    env["XDG_STATE_HOME"] = str(tmp_path / "race")
    code = "from impfactory.maker import maker_secret; print(maker_secret().hex())"
    procs = [subprocess.Popen([sys.executable, "-c", code], env=env, stdout=subprocess.PIPE,
                              text=True) for _ in range(4)]
    outputs = {p.communicate(timeout=60)[0].strip() for p in procs}
    assert len(outputs) == 1 and len(outputs.pop()) == 64
    assert [f.name for f in (tmp_path / "race" / "impfactory").iterdir()] == ["module-secret"]
