"""Broker URLs: one parser, a default port, typed errors that never show a password."""

import pytest
from hypothesis import given
from hypothesis import strategies as st

from impfactory.brokerurl import DEFAULT_PORT, BrokerUrlError, login, parse_url, safe_url


@pytest.mark.parametrize(("url", "expected"), [
    ("mqtt://127.0.0.1:1884", ("127.0.0.1", 1884)),
    ("mqtt://broker.local", ("broker.local", DEFAULT_PORT)),  # once a crash: no port
    ("mqtt://cloud:s3cret@10.0.0.2:8883", ("10.0.0.2", 8883)),
    ("mqtt://[::1]:1883", ("::1", 1883)),
])
def test_parses(url: str, expected: tuple[str, int]) -> None:
    assert parse_url(url) == expected


@pytest.mark.parametrize("url", ["http://h:1", "mqtt://", "mqtt://h:notaport", "h:1883",
                                 "mqtt://u:hunter2@h:99999", "", "mqtt://[::1"])
def test_bad_urls_are_typed_errors_without_passwords(url: str) -> None:
    with pytest.raises(BrokerUrlError) as caught:
        parse_url(url)
    assert "hunter2" not in str(caught.value)


@given(st.text(max_size=80))
def test_anything_is_parsed_or_refused_with_a_typed_error(url: str) -> None:
    try:
        host, port = parse_url(url)
    except BrokerUrlError:
        return
    assert host and 0 <= port <= 65535


def test_safe_url_hides_only_the_password() -> None:
    assert safe_url("mqtt://cloud:s3cret@h:1") == "mqtt://cloud:***@h:1"
    assert safe_url("mqtt://h:1") == "mqtt://h:1"


def test_login_is_read_percent_decoded() -> None:
    assert login("mqtt://impcloud:p%40ss%3Aw@h:1883") == ("impcloud", "p@ss:w")
    assert login("mqtt://dev:@h:1") == ("dev", "")
    assert login("mqtt://h:1") is None
