"""Outbound connections to addresses that users name: the SSRF guard.

Repository URLs, smoke URLs and a Docker target's health host come from users, and the
worker connects to them from inside the operator's network. Every such connection goes
through this module:

- `OutboundPolicy` says which internal address classes an admin allows
  (SHIPMATE_ALLOW_INTERNAL); by default none: loopback, private, link-local, cloud
  metadata, multicast, unspecified and reserved addresses are refused, also when they
  hide inside an IPv4-mapped, IPv4-compatible, NAT64, 6to4 or Teredo IPv6 address.
- `resolve_checked()` resolves a host once and refuses it if ANY address is refused.
  Callers then connect to exactly those addresses (pinning), so a DNS answer that
  changes between check and connect (rebinding) cannot move the connection.
- `http_get()` connects to the checked address itself and checks every redirect hop
  again before following it.

The check runs on the resolved address, never on the URL string: `2130706433`,
`0x7f.1` and `localtest.me` all end up as 127.0.0.1 before they are judged.
"""

from __future__ import annotations

import http.client
import ipaddress
import os
import re
import socket
import ssl
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from urllib.parse import SplitResult, urljoin, urlsplit

from .base import StageError

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

ENV_NAME = "SHIPMATE_ALLOW_INTERNAL"
MAX_REDIRECTS = 5
REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})

# The classes an admin can allow by name; anything else in SHIPMATE_ALLOW_INTERNAL must be a CIDR.
CLASSES = ("loopback", "private", "link-local", "metadata", "multicast", "unspecified", "reserved")

# (network, class, what it is). The first match wins, so the metadata addresses come
# before the link-local and shared ranges that contain them: allowing "link-local"
# does not open the metadata service, only allowing "metadata" (or a CIDR) does.
_RANGES: list[tuple[str, str, str]] = [
    ("169.254.169.254/32", "metadata", "the cloud metadata service 169.254.169.254"),
    ("169.254.170.2/32", "metadata", "the ECS task metadata service 169.254.170.2"),
    ("100.100.100.200/32", "metadata", "the Alibaba Cloud metadata service 100.100.100.200"),
    ("fd00:ec2::254/128", "metadata", "the AWS IPv6 metadata service fd00:ec2::254"),
    ("0.0.0.0/8", "unspecified", "'this network', 0.0.0.0/8"),
    ("127.0.0.0/8", "loopback", "127.0.0.0/8"),
    ("10.0.0.0/8", "private", "RFC 1918, 10.0.0.0/8"),
    ("172.16.0.0/12", "private", "RFC 1918, 172.16.0.0/12"),
    ("192.168.0.0/16", "private", "RFC 1918, 192.168.0.0/16"),
    ("100.64.0.0/10", "private", "carrier-grade NAT, 100.64.0.0/10"),
    ("169.254.0.0/16", "link-local", "169.254.0.0/16"),
    ("192.0.0.0/24", "reserved", "IETF protocol assignments, 192.0.0.0/24"),
    ("192.0.2.0/24", "reserved", "documentation, 192.0.2.0/24"),
    ("198.51.100.0/24", "reserved", "documentation, 198.51.100.0/24"),
    ("203.0.113.0/24", "reserved", "documentation, 203.0.113.0/24"),
    ("198.18.0.0/15", "reserved", "benchmarking, 198.18.0.0/15"),
    ("192.88.99.0/24", "reserved", "6to4 relay anycast, 192.88.99.0/24"),
    ("224.0.0.0/4", "multicast", "224.0.0.0/4"),
    ("240.0.0.0/4", "reserved", "240.0.0.0/4, broadcast"),
    ("::/128", "unspecified", "::"),
    ("::1/128", "loopback", "::1"),
    ("fe80::/10", "link-local", "fe80::/10"),
    ("fec0::/10", "private", "site-local, fec0::/10"),
    ("fc00::/7", "private", "unique-local, fc00::/7"),
    ("ff00::/8", "multicast", "ff00::/8"),
    ("100::/64", "reserved", "discard-only, 100::/64"),
    ("64:ff9b:1::/48", "reserved", "local-use NAT64, 64:ff9b:1::/48"),
    ("2001:db8::/32", "reserved", "documentation, 2001:db8::/32"),
    ("3fff::/20", "reserved", "documentation, 3fff::/20"),
    ("2001:2::/48", "reserved", "benchmarking, 2001:2::/48"),
]
_TABLE: list[tuple[IPNetwork, str, str]] = [
    (ipaddress.ip_network(net), cls, label) for net, cls, label in _RANGES
]

# IPv6 forms that carry an IPv4 address a packet may end up at.
_MAPPED = ipaddress.ip_network("::ffff:0:0/96")
_TRANSLATED = ipaddress.ip_network("::ffff:0:0:0/96")
_COMPATIBLE = ipaddress.ip_network("::/96")
_NAT64 = ipaddress.ip_network("64:ff9b::/96")

# RFC 6761: these names are loopback wherever they resolve; judged without DNS.
_LOCALHOST_RE = re.compile(r"^(?:.+\.)?localhost\.?$", re.IGNORECASE)
# What a host in a URL may look like: a DNS name (or numeric IPv4 spelling) or an IPv6 literal.
_NAME_RE = re.compile(r"^[A-Za-z0-9_](?:[A-Za-z0-9_.-]*[A-Za-z0-9_.])?$")


class OutboundError(StageError):
    """An outbound address is unusable (bad URL, unknown name); the message is safe to show."""


class OutboundRefused(OutboundError):
    """The outbound policy refuses the address a host names or resolves to."""


@dataclass(frozen=True)
class Verdict:
    """Why an address is internal: its class and a description for the message."""

    cls: str
    label: str


def _embedded(ip: IPAddress) -> list[tuple[ipaddress.IPv4Address, str]]:
    """IPv4 addresses an IPv6 address carries, with the name of the form."""
    if not isinstance(ip, ipaddress.IPv6Address):
        return []
    found: list[tuple[ipaddress.IPv4Address, str]] = []
    low32 = ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
    if ip in _MAPPED:
        found.append((low32, "an IPv4-mapped IPv6 address"))
    elif ip in _TRANSLATED:
        found.append((low32, "an IPv4-translated IPv6 address"))
    elif ip in _NAT64:
        found.append((low32, "a NAT64 address"))
    elif ip in _COMPATIBLE and int(ip) > 1:
        found.append((low32, "an IPv4-compatible IPv6 address"))
    if ip.sixtofour is not None:
        found.append((ip.sixtofour, "a 6to4 address"))
    if ip.teredo is not None:
        server, client = ip.teredo
        found += [(server, "a Teredo address (server)"), (client, "a Teredo address (client)")]
    return found


def classify(ip: IPAddress) -> Verdict | None:
    """The internal class of `ip` (unwrapping IPv6 forms that carry IPv4), or None if public."""
    ip = _unscoped(ip)
    for network, cls, label in _TABLE:
        if ip.version == network.version and ip in network:
            return Verdict(cls, label)
    for inner, form in _embedded(ip):
        verdict = classify(inner)
        if verdict is not None:
            return Verdict(verdict.cls, f"{verdict.label}, as {inner} inside {form}")
    # A safety net for ranges the table does not name: nothing non-global gets through.
    if not ip.is_global:
        return Verdict("reserved", "not globally routable")
    return None


def _unscoped(ip: IPAddress) -> IPAddress:
    if isinstance(ip, ipaddress.IPv6Address) and ip.scope_id:
        return ipaddress.IPv6Address(str(ip).split("%", 1)[0])
    return ip


@dataclass(frozen=True)
class OutboundPolicy:
    """Which internal addresses outbound connections may reach: classes and CIDRs.

    The default (nothing allowed) refuses every internal class. `allow` holds class
    names from CLASSES; `networks` holds CIDRs that are allowed whatever their class.
    """

    allow: frozenset[str] = frozenset()
    networks: tuple[IPNetwork, ...] = ()

    @classmethod
    def parse(cls, entries: Iterable[str] | str) -> OutboundPolicy:
        """From SHIPMATE_ALLOW_INTERNAL: a comma-separated list (or list) of class names
        and CIDRs. Raises ValueError naming the bad entry."""
        if isinstance(entries, str):
            entries = entries.split(",")
        allow: set[str] = set()
        networks: list[IPNetwork] = []
        for raw in entries:
            entry = raw.strip().lower()
            if not entry:
                continue
            if entry in CLASSES:
                allow.add(entry)
                continue
            try:
                networks.append(ipaddress.ip_network(entry, strict=False))
            except ValueError:
                known = ", ".join(CLASSES)
                raise ValueError(
                    f"{ENV_NAME}: {raw.strip()!r} is neither an address class ({known}) nor a CIDR"
                ) from None
        return cls(frozenset(allow), tuple(networks))

    @classmethod
    def from_env(cls, environ: dict[str, str] | None = None) -> OutboundPolicy:
        return cls.parse((environ if environ is not None else os.environ).get(ENV_NAME, ""))

    def describe(self) -> str:
        parts = sorted(self.allow) + [str(n) for n in self.networks]
        return ", ".join(parts) or "none"

    def _in_networks(self, ip: IPAddress) -> bool:
        candidates = [ip, *(inner for inner, _ in _embedded(ip))]
        return any(c.version == n.version and c in n for c in candidates for n in self.networks)

    def refusal(self, ip: IPAddress) -> Verdict | None:
        """None when `ip` may be reached, else why not."""
        ip = _unscoped(ip)
        verdict = classify(ip)
        if verdict is None or verdict.cls in self.allow or self._in_networks(ip):
            return None
        return verdict

    def allows(self, ip: IPAddress | str) -> bool:
        return self.refusal(ipaddress.ip_address(ip) if isinstance(ip, str) else ip) is None

    def check_ip(self, host: str, ip: IPAddress) -> None:
        verdict = self.refusal(ip)
        if verdict is None:
            return
        via = "is" if _same(host, ip) else f"resolves to {ip}, which is"
        article = "an" if verdict.cls[0] in "aeiou" else "a"
        raise OutboundRefused(
            f"Refused to connect to {host}: it {via} {article} {verdict.cls} address ({verdict.label}); "
            f"{ENV_NAME} allows: {self.describe()}."
        )

    def check_host_literal(self, host: str) -> None:
        """The checks that need no DNS: an IP literal and the localhost names. Save-time
        validation uses this; DNS names are judged again when the worker connects."""
        host = _bare(host)
        for ip in fixed_addresses(host):
            self.check_ip(host, ip)


def fixed_addresses(host: str) -> list[IPAddress]:
    """What `host` names without asking DNS: an IP literal, or the loopback addresses
    for the localhost names (RFC 6761; curl answers those itself, whatever DNS says)."""
    ip = parse_ip_literal(host)
    if ip is not None:
        return [ip]
    if _LOCALHOST_RE.match(_bare(host)):
        return [ipaddress.ip_address("127.0.0.1"), ipaddress.ip_address("::1")]
    return []


def _same(host: str, ip: IPAddress) -> bool:
    try:
        return ipaddress.ip_address(_bare(host).split("%", 1)[0]) == _unscoped(ip)
    except ValueError:
        return False


def _bare(host: str) -> str:
    return host[1:-1] if host.startswith("[") and host.endswith("]") else host


def parse_ip_literal(host: str) -> IPAddress | None:
    """The address `host` names without DNS, in every spelling the C resolver accepts
    (2130706433, 0177.0.0.1, 0x7f.1, 127.1, [::ffff:7f00:1]); None for a DNS name."""
    bracketed = host.startswith("[")
    host = _bare(host)
    try:
        return ipaddress.ip_address(host)
    except ValueError:
        pass
    if bracketed or ":" in host:
        return None
    try:
        # inet_aton is what getaddrinfo (and curl, and git) use for numeric IPv4 hosts.
        return ipaddress.IPv4Address(socket.inet_aton(host))
    except OSError:
        return None


# Swappable in tests that must show a refusal happens before any lookup or connection.
Resolver = Callable[..., Sequence[tuple[object, ...]]]
_source: Callable[[], OutboundPolicy] = OutboundPolicy.from_env


def set_policy_source(source: Callable[[], OutboundPolicy]) -> None:
    """Where `current_policy()` comes from. The pipeline imports no Django; the Django
    app installs a source that reads its settings (deployments/apps.py)."""
    global _source
    _source = source


def current_policy() -> OutboundPolicy:
    return _source()


def resolve_checked(
    host: str,
    port: int,
    *,
    policy: OutboundPolicy | None = None,
    resolver: Resolver | None = None,
) -> list[str]:
    """The addresses `host` resolves to, all allowed by `policy`; connect only to these.

    Raises OutboundRefused if ANY of them is refused (a name with one public and one
    internal address is refused: the client could pick either), OutboundError if the
    name does not resolve.
    """
    policy = policy if policy is not None else current_policy()
    shown = _bare(host)
    if not shown:
        raise OutboundError("The URL has no host.")
    fixed = fixed_addresses(shown)
    if fixed:
        for ip in fixed:
            policy.check_ip(shown, ip)
        return [str(ip) for ip in fixed]
    try:
        infos = (resolver or socket.getaddrinfo)(shown, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError) as exc:
        raise OutboundError(f"cannot resolve {shown}: {exc}") from None
    addresses: list[str] = []
    for info in infos:
        sockaddr = info[4]
        address = str(sockaddr[0]) if isinstance(sockaddr, tuple) else str(sockaddr)
        ip = ipaddress.ip_address(address.split("%", 1)[0])
        policy.check_ip(shown, ip)
        if str(ip) not in addresses:
            addresses.append(str(ip))
    if not addresses:
        raise OutboundError(f"cannot resolve {shown}: no addresses")
    return addresses


def connect_checked(
    host: str, port: int, *, timeout: float, policy: OutboundPolicy | None = None
) -> socket.socket:
    """A TCP connection to `host`, made to one of its checked addresses."""
    last: OSError | None = None
    for address in resolve_checked(host, port, policy=policy):
        try:
            return socket.create_connection((address, port), timeout=timeout)
        except OSError as exc:
            last = exc
    assert last is not None
    raise last


# -- HTTP ------------------------------------------------------------------------------------------


def validate_http_url(url: str, *, policy: OutboundPolicy | None = None) -> SplitResult:
    """An http(s) URL the worker can connect to: a host in plain syntax and a valid port.
    With `policy`, an IP-literal or localhost host is judged too (save time)."""
    if not url:
        raise OutboundError("The URL is empty.")
    if any(ord(c) <= 0x20 or ord(c) == 0x7F for c in url) or "\\" in url:
        raise OutboundError("A URL must not contain spaces, backslashes or control characters.")
    parts = urlsplit(url)
    if parts.scheme.lower() not in ("http", "https"):
        raise OutboundError(
            f"Only http:// and https:// URLs can be checked, not {parts.scheme or 'no'} scheme."
        )
    host = parts.hostname or ""
    netloc_host = parts.netloc.rsplit("@", 1)[-1]
    if not host or not (netloc_host.startswith("[") or _NAME_RE.match(host)):
        raise OutboundError(f"The URL {redact(url)} has no valid host.")
    try:
        _ = parts.port
    except ValueError:
        raise OutboundError(f"The URL {redact(url)} has an invalid port.") from None
    if policy is not None:
        policy.check_host_literal(host)
    return parts


def redact(url: str) -> str:
    """`url` without `user:password@`, for messages."""
    parts = urlsplit(url)
    if "@" not in parts.netloc:
        return url
    return parts._replace(netloc=parts.netloc.rsplit("@", 1)[-1]).geturl()


class _PinnedHTTPConnection(http.client.HTTPConnection):
    """Sends the name in the Host header but connects to one checked address."""

    def __init__(self, host: str, port: int, address: str, timeout: float) -> None:
        super().__init__(host, port, timeout=timeout)
        self._address = address

    def connect(self) -> None:
        self.sock = socket.create_connection((self._address, self.port), self.timeout)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


class _PinnedHTTPSConnection(_PinnedHTTPConnection):
    """TLS to the checked address, with SNI and certificate checks for the name."""

    def __init__(self, host: str, port: int, address: str, timeout: float, context: ssl.SSLContext) -> None:
        super().__init__(host, port, address, timeout)
        self._context = context

    def connect(self) -> None:
        super().connect()
        self.sock = self._context.wrap_socket(self.sock, server_hostname=self.host)


@dataclass
class Response:
    status: int
    url: str  # the last hop's URL
    hops: list[str] = field(default_factory=list)  # every URL requested, in order


def http_get(
    url: str,
    *,
    timeout: float,
    policy: OutboundPolicy | None = None,
    max_redirects: int = MAX_REDIRECTS,
    context: ssl.SSLContext | None = None,
) -> Response:
    """GET `url` through checked, pinned connections; no proxy.

    Redirects are followed here, never by a library: each Location is resolved and
    checked like the first URL, only http(s) is followed, and at most `max_redirects`
    hops. Raises OutboundRefused, OutboundError, OSError or http.client.HTTPException.
    """
    policy = policy if policy is not None else current_policy()
    hops: list[str] = []
    current = url
    while True:
        parts = validate_http_url(current)
        hops.append(current)
        try:
            status, location = _get_once(parts, timeout, policy, context)
        except OutboundRefused as exc:
            if len(hops) == 1:
                raise
            raise OutboundRefused(f"{redact(hops[-2])} redirected to {redact(current)}: {exc}") from None
        if status not in REDIRECT_STATUSES or not location:
            return Response(status, current, hops)
        target = urljoin(current, location)
        if len(hops) > max_redirects:
            raise OutboundRefused(f"{redact(url)} redirected more than {max_redirects} times.")
        try:
            validate_http_url(target)
        except OutboundError as exc:
            raise OutboundRefused(f"{redact(current)} redirected to {redact(target)}: {exc}") from None
        current = target


def _get_once(
    parts: SplitResult, timeout: float, policy: OutboundPolicy, context: ssl.SSLContext | None
) -> tuple[int, str]:
    host = parts.hostname or ""
    https = parts.scheme.lower() == "https"
    port = parts.port or (443 if https else 80)
    name = f"[{host}]" if ":" in host else host
    path = parts.path or "/"
    if parts.query:
        path += "?" + parts.query
    last: OSError | None = None
    for address in resolve_checked(host, port, policy=policy):
        conn: _PinnedHTTPConnection
        if https:
            conn = _PinnedHTTPSConnection(
                name, port, address, timeout, context or ssl.create_default_context()
            )
        else:
            conn = _PinnedHTTPConnection(name, port, address, timeout)
        try:
            conn.request("GET", path, headers={"User-Agent": "Shipmate", "Connection": "close"})
            response = conn.getresponse()
            response.read(65536)
            return response.status, response.getheader("Location") or ""
        except ConnectionRefusedError as exc:
            last = exc  # try the name's next address
        finally:
            conn.close()
    assert last is not None
    raise last


class DeadlineExceeded(TimeoutError):
    """The whole exchange took longer than its deadline."""


def http_post(
    url: str,
    body: bytes,
    *,
    headers: dict[str, str],
    timeout: float,
    policy: OutboundPolicy | None = None,
    context: ssl.SSLContext | None = None,
) -> tuple[int, bytes]:
    """POST `body` to `url` through a checked, pinned connection; no proxy. Returns the
    status and at most 64 KiB of the response body.

    Redirects are not followed: a 3xx comes back as it is, so a receiver cannot move
    the request (and its signature or token) to another address. `timeout` bounds the
    whole exchange, not each socket operation: a receiver that trickles one byte a
    second is cut off at the deadline (DeadlineExceeded). Name resolution is bounded by
    the resolver's own timeouts. Raises OutboundRefused, OutboundError, OSError or
    http.client.HTTPException.
    """
    policy = policy if policy is not None else current_policy()
    deadline = time.monotonic() + timeout
    parts = validate_http_url(url)
    host = parts.hostname or ""
    https = parts.scheme.lower() == "https"
    port = parts.port or (443 if https else 80)
    name = f"[{host}]" if ":" in host else host
    path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    last: OSError | None = None
    for address in resolve_checked(host, port, policy=policy):
        left = deadline - time.monotonic()
        if left <= 0:
            raise DeadlineExceeded(f"no answer within {timeout:g} s")
        conn: _PinnedHTTPConnection
        if https:
            conn = _PinnedHTTPSConnection(name, port, address, left, context or ssl.create_default_context())
        else:
            conn = _PinnedHTTPConnection(name, port, address, left)
        fired = threading.Event()

        def cut(conn: _PinnedHTTPConnection = conn, fired: threading.Event = fired) -> None:
            fired.set()
            sock = conn.sock
            if sock is not None:
                try:
                    sock.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass

        timer = threading.Timer(left, cut)
        timer.daemon = True
        timer.start()
        try:
            conn.request(
                "POST", path, body=body, headers={"User-Agent": "Shipmate", "Connection": "close", **headers}
            )
            response = conn.getresponse()
            data = response.read(65536)
            if fired.is_set():
                raise DeadlineExceeded(f"no complete answer within {timeout:g} s")
            return response.status, data
        except ConnectionRefusedError as exc:
            last = exc  # try the name's next address
        except (OSError, http.client.HTTPException, ValueError) as exc:
            if fired.is_set() or isinstance(exc, socket.timeout):
                raise DeadlineExceeded(f"no complete answer within {timeout:g} s") from None
            raise
        finally:
            timer.cancel()
            conn.close()
    assert last is not None
    raise last
