"""tests/support/loopback.py: traffic from tests goes to 127.0.0.0/8 and nowhere else."""

from __future__ import annotations

import pytest

from support.loopback import pod_url, require_loopback


@pytest.mark.parametrize("address", ["127.0.0.1", "127.10.3.17", "127.244.0.3", "127.255.255.254"])
def test_loopback_addresses_pass_unchanged(address):
    assert require_loopback(address) == address


@pytest.mark.parametrize("address", ["10.244.0.5", "128.0.0.1", "0.0.0.0", "192.168.1.10", "126.255.255.255"])
def test_other_ipv4_addresses_are_refused_by_name(address):
    with pytest.raises(ValueError) as err:
        require_loopback(address)
    assert str(err.value) == (
        f"{address} is not in 127.0.0.0/8: "
        "tests and benchmarks send traffic only to loopback IPv4 addresses, 127.0.0.0/8"
    )


@pytest.mark.parametrize("address", ["::1", "::ffff:127.0.0.1"])
def test_ipv6_even_loopback_is_refused(address):
    with pytest.raises(ValueError, match=f"^{address} is not in 127.0.0.0/8: "):
        require_loopback(address)


@pytest.mark.parametrize("address", ["", "localhost", "127.0.0.1:8000", "127.1", " 127.0.0.1", "127.0.0.256"])
def test_what_is_not_an_ip_address_is_refused(address):
    with pytest.raises(ValueError) as err:
        require_loopback(address)
    assert str(err.value) == (
        f"{address!r} is not an IP address: "
        "tests and benchmarks send traffic only to loopback IPv4 addresses, 127.0.0.0/8"
    )


def test_a_number_is_not_an_address():
    with pytest.raises(ValueError, match="2130706433 is not an IP address"):
        require_loopback(2130706433)  # 127.0.0.1 as an integer: ipaddress would take it


def pod(ip: str | None) -> dict:
    return {"metadata": {"name": "m-0"}, "status": {"podIP": ip} if ip else {}}


def test_pod_url_from_a_loopback_pod_ip():
    assert pod_url(pod("127.10.0.1"), 8000) == "http://127.10.0.1:8000/"
    assert pod_url(pod("127.10.0.1"), 8000, "metrics") == "http://127.10.0.1:8000/metrics"
    assert pod_url(pod("127.10.0.1"), 8000, "/v1/models") == "http://127.10.0.1:8000/v1/models"


def test_pod_url_refuses_a_pod_ip_off_loopback():
    with pytest.raises(ValueError, match=r"^10\.244\.0\.5 is not in 127\.0\.0\.0/8: "):
        pod_url(pod("10.244.0.5"), 8000, "metrics")


def test_pod_url_names_a_pod_without_an_ip():
    with pytest.raises(ValueError, match=r"^pod m-0 has no status\.podIP yet: "):
        pod_url(pod(None), 8000)
    with pytest.raises(ValueError, match=r"^pod \? has no status\.podIP yet: "):
        pod_url({}, 8000)
