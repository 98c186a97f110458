"""The outbound policy and the pinned HTTP client (deployments/pipeline/outbound.py),
against real loopback servers. Addresses outside loopback are only ever refused: the
`no_connections` fixture fails a test that would connect anywhere."""

from __future__ import annotations

import socket
import time
from typing import Any

import pytest

from deployments.pipeline import health
from deployments.pipeline.base import RolloutFailed, StageError
from deployments.pipeline.outbound import (
    OutboundError,
    OutboundPolicy,
    OutboundRefused,
    current_policy,
    http_get,
    resolve_checked,
)

from .conftest import Server

DENY = OutboundPolicy()

# (host as a URL would carry it, the class it must be refused as)
HOSTILE_HOSTS = [
    ("127.0.0.1", "loopback"),
    ("127.255.255.254", "loopback"),
    ("2130706433", "loopback"),  # decimal
    ("017700000001", "loopback"),  # octal, one number
    ("0177.0.0.1", "loopback"),  # octal
    ("0x7f.1", "loopback"),  # hex, short
    ("0x7f000001", "loopback"),  # hex, one number
    ("127.1", "loopback"),  # short
    ("127.0.1", "loopback"),
    ("[::1]", "loopback"),
    ("[0:0:0:0:0:0:0:1]", "loopback"),
    ("[::ffff:127.0.0.1]", "loopback"),  # IPv4-mapped
    ("[::ffff:7f00:1]", "loopback"),  # IPv4-mapped, hex
    ("[::ffff:0:7f00:1]", "loopback"),  # IPv4-translated (SIIT)
    ("[::127.0.0.1]", "loopback"),  # IPv4-compatible
    ("[64:ff9b::7f00:1]", "loopback"),  # NAT64
    ("[64:ff9b::a9fe:a9fe]", "metadata"),  # NAT64 of 169.254.169.254
    ("[2002:7f00:1::]", "loopback"),  # 6to4
    ("[2002:a9fe:a9fe::1]", "metadata"),  # 6to4 of 169.254.169.254
    ("[2001:0:4136:e378:8000:63bf:80ff:fffe]", "loopback"),  # Teredo, client 127.0.0.1
    ("localhost", "loopback"),
    ("localhost.", "loopback"),
    ("LOCALHOST", "loopback"),
    ("app.localhost", "loopback"),
    ("0.0.0.0", "unspecified"),
    ("0", "unspecified"),
    ("[::]", "unspecified"),
    ("169.254.169.254", "metadata"),
    ("2852039166", "metadata"),  # 169.254.169.254, decimal
    ("0xa9.0xfe.0xa9.0xfe", "metadata"),
    ("[::ffff:169.254.169.254]", "metadata"),
    ("[fd00:ec2::254]", "metadata"),
    ("169.254.170.2", "metadata"),
    ("100.100.100.200", "metadata"),
    ("169.254.0.1", "link-local"),
    ("[fe80::1]", "link-local"),
    ("[fe80::1%25eth0]", "link-local"),
    ("10.0.0.1", "private"),
    ("10.255.255.255", "private"),
    ("172.16.0.1", "private"),
    ("172.31.255.254", "private"),
    ("192.168.1.1", "private"),
    ("100.64.0.1", "private"),  # carrier-grade NAT
    ("100.127.255.254", "private"),
    ("[fc00::1]", "private"),  # unique-local
    ("[fd12:3456::1]", "private"),
    ("[fec0::1]", "private"),  # site-local
    ("[::ffff:10.0.0.1]", "private"),
    ("[::ffff:192.168.0.1]", "private"),
    ("224.0.0.1", "multicast"),
    ("239.255.255.250", "multicast"),
    ("[ff02::1]", "multicast"),
    ("255.255.255.255", "reserved"),
    ("240.0.0.1", "reserved"),
    ("192.0.2.1", "reserved"),  # documentation
    ("198.51.100.7", "reserved"),
    ("203.0.113.9", "reserved"),
    ("198.18.0.1", "reserved"),  # benchmarking
    ("192.0.0.8", "reserved"),
    ("[2001:db8::1]", "reserved"),
    ("[100::1]", "reserved"),  # discard-only
    ("[64:ff9b:1::1]", "reserved"),  # local-use NAT64
]

PUBLIC_HOSTS = [
    "8.8.8.8",
    "1.1.1.1",
    "[2606:4700:4700::1111]",
    "[::ffff:8.8.8.8]",
    "[64:ff9b::808:808]",
    "134744072",
]


def no_dns(*args: Any, **kwargs: Any) -> Any:
    raise AssertionError("an IP literal or localhost name must be judged without DNS")


@pytest.mark.parametrize(("host", "cls"), HOSTILE_HOSTS)
def test_every_spelling_of_an_internal_address_is_refused_by_the_default_policy(
    host: str, cls: str, no_connections: list[Any]
) -> None:
    with pytest.raises(OutboundRefused) as refused:
        resolve_checked(host, 80, policy=DENY, resolver=no_dns)

    message = str(refused.value)
    assert f"Refused to connect to {host.strip('[]')}" in message
    assert f" {cls} address" in message
    assert "SHIPMATE_ALLOW_INTERNAL" in message
    assert no_connections == []


@pytest.mark.parametrize(("host", "cls"), HOSTILE_HOSTS)
def test_every_internal_address_is_refused_over_http_before_any_connection(
    host: str, cls: str, no_connections: list[Any]
) -> None:
    with pytest.raises(OutboundRefused, match=f" {cls} address"):
        http_get(f"http://{host}:8080/healthz", timeout=1, policy=DENY)
    assert no_connections == []


@pytest.mark.parametrize("host", PUBLIC_HOSTS)
def test_public_addresses_pass_the_policy_without_a_connection(host: str, no_connections: list[Any]) -> None:
    assert resolve_checked(host, 443, policy=DENY, resolver=no_dns)
    assert no_connections == []


def test_a_refused_address_is_an_outbound_refusal_and_a_stage_error() -> None:
    assert issubclass(OutboundRefused, StageError)
    assert issubclass(OutboundRefused, OutboundError)


@pytest.mark.parametrize(
    ("answers", "refused"),
    [
        (["127.0.0.1"], "127.0.0.1"),
        (["10.1.2.3"], "10.1.2.3"),
        (["169.254.169.254"], "169.254.169.254"),
        (["::ffff:127.0.0.1"], "::ffff:7f00:1"),
        (["fd00:ec2::254"], "fd00:ec2::254"),
    ],
)
def test_a_dns_name_is_judged_by_the_addresses_it_resolves_to(
    answers: list[str], refused: str, no_connections: list[Any]
) -> None:
    def resolver(host: str, port: int, **kwargs: Any) -> list[Any]:
        return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (a, port)) for a in answers]

    with pytest.raises(OutboundRefused, match=f"it resolves to {refused}, which is"):
        resolve_checked("internal.example.com", 443, policy=DENY, resolver=resolver)


def test_a_name_with_one_public_and_one_internal_address_is_refused(no_connections: list[Any]) -> None:
    def resolver(host: str, port: int, **kwargs: Any) -> list[Any]:
        return [
            (socket.AF_INET, socket.SOCK_STREAM, 6, "", ("8.8.8.8", port)),
            (socket.AF_INET, socket.SOCK_STREAM, 6, "", ("10.0.0.5", port)),
        ]

    with pytest.raises(OutboundRefused, match="10.0.0.5"):
        resolve_checked("mixed.example.com", 443, policy=DENY, resolver=resolver)


def test_localhost_resolved_by_the_system_resolver_is_refused() -> None:
    with pytest.raises(OutboundRefused, match="loopback"):
        resolve_checked("localhost", 80, policy=DENY)


def test_the_machines_own_name_on_debians_127_0_1_1_is_refused(no_connections: list[Any]) -> None:
    # Debian maps the host name to 127.0.1.1 in /etc/hosts; resolved as this machine may
    # resolve it (a fixed answer, so the test runs the same everywhere).
    def resolver(host: str, port: int, **kwargs: Any) -> list[Any]:
        return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", ("127.0.1.1", port))]

    with pytest.raises(OutboundRefused, match="127.0.1.1"):
        resolve_checked(socket.gethostname(), 80, policy=DENY, resolver=resolver)


def test_an_unknown_name_is_an_error_but_not_a_refusal() -> None:
    with pytest.raises(OutboundError) as caught:
        resolve_checked("no-such-host.invalid", 80, policy=DENY)
    assert not isinstance(caught.value, OutboundRefused)


# -- the policy ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("allow", "address", "allowed"),
    [
        ("loopback", "127.0.0.1", True),
        ("loopback", "::1", True),
        ("loopback", "::ffff:127.0.0.1", True),
        ("loopback", "10.0.0.1", False),
        ("loopback", "169.254.169.254", False),
        ("link-local", "169.254.0.9", True),
        ("link-local", "169.254.169.254", False),  # metadata needs its own opt-in
        ("link-local,metadata", "169.254.169.254", True),
        ("private", "10.0.0.1", True),
        ("private", "100.64.0.1", True),
        ("private", "fd00::1", True),
        ("private", "fd00:ec2::254", False),
        ("private", "127.0.0.1", False),
        ("127.0.0.1/32", "127.0.0.1", True),
        ("127.0.0.1/32", "127.0.0.2", False),
        ("127.0.0.1/32", "::ffff:127.0.0.1", True),
        ("10.20.0.0/16", "10.20.3.4", True),
        ("10.20.0.0/16", "10.21.0.1", False),
        (" Loopback , 10.0.0.0/8 ", "10.9.9.9", True),
        ("", "8.8.8.8", True),
        ("", "127.0.0.1", False),
    ],
)
def test_the_policy_allows_exactly_the_classes_and_networks_it_names(
    allow: str, address: str, allowed: bool
) -> None:
    assert OutboundPolicy.parse(allow).allows(address) is allowed


@pytest.mark.parametrize("entry", ["everything", "127.0.0.1/33", "10.0.0.0/8;", "*"])
def test_a_bad_policy_entry_is_refused_with_its_name(entry: str) -> None:
    with pytest.raises(ValueError, match="SHIPMATE_ALLOW_INTERNAL"):
        OutboundPolicy.parse(entry)


def test_the_django_setting_is_the_policy_the_pipeline_uses(settings: Any) -> None:
    settings.OUTBOUND_ALLOW_INTERNAL = []
    assert not current_policy().allows("127.0.0.1")
    settings.OUTBOUND_ALLOW_INTERNAL = ["loopback"]
    assert current_policy().allows("127.0.0.1")


def test_credentials_in_a_url_never_appear_in_a_refusal(no_connections: list[Any]) -> None:
    with pytest.raises(OutboundRefused) as refused:
        http_get("http://deploy:s3cret-token@10.0.0.1/health", timeout=1, policy=DENY)
    assert "s3cret-token" not in str(refused.value)


# -- HTTP through the checked, pinned connection ------------------------------------------------


def test_an_allowed_server_answers(ok_server: Server) -> None:
    response = http_get(f"{ok_server.base}/healthz", timeout=2, policy=OutboundPolicy.parse("loopback"))

    assert response.status == 200
    assert ok_server.requests[0]["path"] == "/healthz"


def test_a_refused_server_gets_no_connection_at_all(ok_server: Server) -> None:
    with pytest.raises(OutboundRefused, match="loopback"):
        http_get(f"{ok_server.base}/healthz", timeout=2, policy=DENY)

    time.sleep(0.1)
    assert ok_server.requests == []


def test_the_connection_goes_to_the_checked_address_not_a_second_lookup(
    ok_server: Server, fake_dns: Any
) -> None:
    # First answer 127.0.0.1 (allowed), then 10.0.0.1: a rebinding name. Only one lookup
    # may happen, and the request still carries the name in its Host header.
    looked_up = fake_dns("rebind.shipmate.test", ["127.0.0.1", "10.0.0.1"])

    response = http_get(
        f"http://rebind.shipmate.test:{ok_server.port}/", timeout=2, policy=OutboundPolicy.parse("loopback")
    )

    assert response.status == 200
    assert looked_up == ["rebind.shipmate.test"]
    assert ok_server.requests[0]["host"] == f"rebind.shipmate.test:{ok_server.port}"


REDIRECT_TARGETS = [
    "http://127.0.0.2:{other}/",  # loopback, outside the allowed 127.0.0.1/32
    "http://localhost:{other}/",  # also ::1
    "http://[::1]:{other}/",
    "http://[::ffff:127.0.0.2]:{other}/",
    "http://2130706434:{other}/",  # 127.0.0.2
    "http://169.254.169.254/latest/meta-data/",
    "http://[fd00:ec2::254]/latest/meta-data/",
    "http://10.0.0.1/",
    "http://192.168.0.1:8080/admin",
    "http://0.0.0.0:{other}/",
    "//127.0.0.2:{other}/",  # scheme-relative
]


@pytest.mark.parametrize("target", REDIRECT_TARGETS)
def test_a_redirect_to_a_refused_address_is_refused_hop_by_hop(
    target: str, redirector: Server, other_loopback_server: Server
) -> None:
    # Only the redirector's own address is allowed; every target is somewhere else.
    policy = OutboundPolicy.parse("127.0.0.1/32")
    redirector.location = target.format(other=other_loopback_server.port)

    with pytest.raises(OutboundRefused, match="redirected to") as refused:
        http_get(f"{redirector.base}/start", timeout=2, policy=policy)

    assert "Refused to connect" in str(refused.value)
    assert len(redirector.requests) == 1
    assert other_loopback_server.requests == []


@pytest.mark.parametrize("target", ["file:///etc/passwd", "gopher://127.0.0.1:6379/_INFO", "ftp://x/"])
def test_a_redirect_to_another_scheme_is_refused(target: str, redirector: Server) -> None:
    redirector.location = target

    with pytest.raises(OutboundRefused, match="redirected to"):
        http_get(f"{redirector.base}/", timeout=2, policy=OutboundPolicy.parse("loopback"))


def test_an_allowed_redirect_is_followed(redirector: Server, ok_server: Server) -> None:
    redirector.location = f"{ok_server.base}/after"

    response = http_get(f"{redirector.base}/", timeout=2, policy=OutboundPolicy.parse("loopback"))

    assert response.status == 200
    assert response.url == f"{ok_server.base}/after"
    assert ok_server.requests[0]["path"] == "/after"


def test_a_redirect_loop_stops_after_five_hops(redirector: Server) -> None:
    redirector.location = "/again"

    with pytest.raises(OutboundRefused, match="more than 5 times"):
        http_get(f"{redirector.base}/", timeout=2, policy=OutboundPolicy.parse("loopback"))
    assert len(redirector.requests) == 6


def test_the_health_check_reports_a_refusal_and_stops_waiting_at_once(
    ok_server: Server, deny_all: OutboundPolicy
) -> None:
    lines: list[str] = []
    started = time.monotonic()

    with pytest.raises(RolloutFailed) as failed:
        health.wait_http_ok(f"{ok_server.base}/", timeout=20, should_stop=lambda: False, log=lines.append)

    assert isinstance(failed.value, OutboundRefused)
    assert time.monotonic() - started < 5
    assert "loopback" in str(failed.value)
    assert ok_server.requests == []
    ok, detail = health.check_url_once(f"{ok_server.base}/", 1)
    assert not ok and "Refused to connect to 127.0.0.1" in detail


def test_the_health_check_follows_an_allowed_redirect_to_http_200(
    redirector: Server, ok_server: Server
) -> None:
    redirector.location = f"{ok_server.base}/"
    assert health.check_url_once(f"{redirector.base}/", 2, policy=OutboundPolicy.parse("loopback")) == (
        True,
        "HTTP 200",
    )


def test_a_docker_target_with_a_refused_health_host_changes_nothing(no_connections: list[Any]) -> None:
    from deployments.pipeline.base import Release, TargetError
    from deployments.pipeline.targets.docker import DockerTarget

    # No engine at all: the refusal must come before the first engine call.
    target = DockerTarget(client=None, name="shipmate-x-dev", port=18080, policy=DENY)  # type: ignore[arg-type]

    with pytest.raises(TargetError, match="Refused to connect to 127.0.0.1: it is a loopback address"):
        target.apply(Release(image="r/x@sha256:" + "a" * 64), log=lambda line: None)
    assert no_connections == []


def test_a_bad_allow_list_stops_the_settings_at_start_up(tmp_path: Any) -> None:
    import os
    import subprocess
    import sys

    env = {**os.environ, "SHIPMATE_ALLOW_INTERNAL": "loopback,everything", "SECRET_KEY": "x"}
    result = subprocess.run(
        [sys.executable, "-c", "import pipeline_ui.settings"], env=env, capture_output=True, text=True
    )
    assert result.returncode != 0
    assert "ImproperlyConfigured" in result.stderr and "'everything'" in result.stderr
