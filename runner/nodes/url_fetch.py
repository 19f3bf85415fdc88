"""Fetching an http(s) URL for a node without letting a workflow reach into the machine's own networks.

A shared workflow's `url:` could otherwise point at this machine (127.0.0.1), the local network, or the cloud
metadata service (169.254.169.254, which hands out credentials), directly or through a redirect from a harmless
looking host, and the fetched bytes end up in the run's outputs and report.

So every host is resolved here (socket.getaddrinfo) and each address is checked before connecting: loopback,
private, link-local, shared (carrier-grade NAT), multicast, reserved, unspecified and known metadata addresses are
refused unless allowed. The connection then goes to the very address that was checked, so a second DNS answer
cannot swap in another one between the check and the connect (DNS rebinding); the host name still goes into the
Host header and, for https, into SNI and the certificate check. Every redirect is checked the same way. Proxies from
the environment (http_proxy, ...) are not used: through a proxy the address actually reached could not be checked.
"""

from __future__ import annotations

import http.client
import ipaddress
import socket
import threading
import time
import urllib.parse
import urllib.request
from typing import Iterable

# addresses of cloud metadata services, refused even where their range would not be (Azure's is a public address)
METADATA_ADDRESSES = frozenset(ipaddress.ip_address(a) for a in (
    "169.254.169.254",  # AWS, GCP, Azure, OpenStack, DigitalOcean, ...
    "169.254.170.2",  # AWS ECS task credentials
    "fd00:ec2::254",  # AWS over IPv6
    "100.100.100.200",  # Alibaba Cloud
    "168.63.129.16",  # Azure wire server
    "192.0.0.192",  # Oracle Cloud
))
PRIVATE_HINT = "runner fetches only from public addresses; to allow private ones, pass --allow-private-urls " \
               "(Python: allow_private_urls=True)"


class AddressRefused(ValueError):
    """A URL whose host resolves only to addresses that may not be fetched from."""


def refusal(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> str | None:
    """Why `address` is not a public one (None when it is)."""
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    if address in METADATA_ADDRESSES:
        return "a cloud metadata address"
    for test, reason in (("is_unspecified", "the unspecified address"), ("is_loopback", "a loopback address (this machine)"),
                         ("is_link_local", "a link-local address"), ("is_multicast", "a multicast address"),
                         ("is_reserved", "a reserved address"), ("is_private", "a private address")):
        if getattr(address, test):
            return reason
    if not address.is_global:
        return "not a globally routable address"
    return None


class AddressPolicy:
    """Which addresses a fetch may connect to: public ones, plus every address (`allow=True`) or the networks listed
    (`allow=["192.168.1.0/24", ...]`: a LAN image server, say, without opening the metadata service)."""

    def __init__(self, allow: bool | Iterable[str] = False):
        self.everything = allow is True
        self.networks = [] if isinstance(allow, bool) else [ipaddress.ip_network(n, strict=False) for n in allow]
        self.sockets: list[socket.socket] = []  # every socket a fetch opened: its deadline shuts them

    def allows(self, address) -> str | None:
        """None when `address` may be reached, else why not."""
        reason = refusal(address)
        if reason is None or self.everything:
            return None
        plain = address.ipv4_mapped if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped else address
        if any(plain in network for network in self.networks if network.version == plain.version):
            return None
        return reason

    def vetted(self, host: str, port: int, url: str) -> list[tuple]:
        """getaddrinfo's answers for host:port that may be connected to; AddressRefused when there is none."""
        try:
            answers = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, proto=socket.IPPROTO_TCP)
        except socket.gaierror as exc:
            raise OSError(f"cannot resolve {host}: {exc.strerror}") from None
        vetted, refused = [], {}
        for family, kind, proto, _name, sockaddr in answers:
            address = ipaddress.ip_address(sockaddr[0].split("%", 1)[0])
            reason = self.allows(address)
            if reason is None:
                vetted.append((family, kind, proto, sockaddr))
            else:
                refused[str(address)] = reason
        if not vetted:
            if _is_literal(host):
                why = f"{host} is {next(iter(refused.values()))}"
            else:
                why = f"{host} resolves to " + ", ".join(f"{address} ({reason})" for address, reason in refused.items())
            raise AddressRefused(f"{url}: {why}: {PRIVATE_HINT}")
        return vetted


def _is_literal(host: str) -> bool:
    try:
        ipaddress.ip_address(host.strip("[]"))
        return True
    except ValueError:
        return False


def _connect(policy: AddressPolicy, host: str, port: int, timeout, source_address, url: str) -> socket.socket:
    """A socket connected to a vetted address of host:port (the first that answers)."""
    error: OSError | None = None
    for family, kind, proto, sockaddr in policy.vetted(host, port, url):
        sock = socket.socket(family, kind, proto)
        policy.sockets.append(sock)
        try:
            if timeout is not socket._GLOBAL_DEFAULT_TIMEOUT:  # type: ignore[attr-defined]
                sock.settimeout(timeout)
            if source_address:
                sock.bind(source_address)
            sock.connect(sockaddr)
            return sock
        except OSError as exc:
            sock.close()
            error = exc
    raise error  # type: ignore[misc]


class _VettedHTTPConnection(http.client.HTTPConnection):
    policy: AddressPolicy
    url = ""

    def connect(self):
        self.sock = _connect(self.policy, self.host, self.port, self.timeout, self.source_address, self.url)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


class _VettedHTTPSConnection(http.client.HTTPSConnection):
    policy: AddressPolicy
    url = ""

    def connect(self):
        sock = _connect(self.policy, self.host, self.port, self.timeout, self.source_address, self.url)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.sock = self._context.wrap_socket(sock, server_hostname=self.host)  # SNI and certificate: the host name


def _connection_class(base: type, policy: AddressPolicy, url: str):
    def make(host, **kwargs):
        connection = base(host, **kwargs)
        connection.policy, connection.url = policy, url
        return connection

    return make


class _VettedHTTPHandler(urllib.request.HTTPHandler):
    def __init__(self, policy: AddressPolicy):
        super().__init__()
        self.policy = policy

    def http_open(self, req):
        return self.do_open(_connection_class(_VettedHTTPConnection, self.policy, req.full_url), req)


class _VettedHTTPSHandler(urllib.request.HTTPSHandler):
    def __init__(self, policy: AddressPolicy):
        super().__init__()
        self.policy = policy

    def https_open(self, req):
        return self.do_open(_connection_class(_VettedHTTPSConnection, self.policy, req.full_url), req,
                            context=self._context)


def fetch(url: str, *, allow: bool | Iterable[str] = False, timeout: float = 30, deadline: float = 120,
          max_bytes: int = 64 * 1024 * 1024, max_redirects: int = 5) -> bytes:
    """The bytes at `url`: only from addresses `allow` permits (see AddressPolicy), at most `max_bytes`, within
    `deadline` seconds in all (a server trickling bytes cannot hold the run) and `timeout` for connecting and for each
    wait for data, through at most `max_redirects` redirects, each to http(s) and each checked like the first URL."""
    policy = AddressPolicy(allow)

    class CheckedRedirects(urllib.request.HTTPRedirectHandler):
        max_redirections = max_redirects

        def redirect_request(self, req, fp, code, msg, headers, newurl):
            target = urllib.parse.urlsplit(newurl)
            if target.scheme not in ("http", "https"):
                raise ValueError(f"{url} redirects to {newurl}: only http(s) redirects are followed")
            try:
                port = target.port or (443 if target.scheme == "https" else 80)
            except ValueError:
                raise ValueError(f"{url} redirects to {newurl}: its port is out of range") from None
            try:  # checked here to name the redirect; checked again when connecting (the answer used is that one)
                policy.vetted(target.hostname or "", port, newurl)
            except AddressRefused as refused:
                raise AddressRefused(f"{url} redirects to {refused}") from None
            return super().redirect_request(req, fp, code, msg, headers, newurl)

    opener = urllib.request.OpenerDirector()
    for handler in (_VettedHTTPHandler(policy), _VettedHTTPSHandler(policy), CheckedRedirects(),
                    urllib.request.HTTPDefaultErrorHandler(), urllib.request.HTTPErrorProcessor(),
                    urllib.request.UnknownHandler()):
        opener.add_handler(handler)
    ends = time.monotonic() + deadline
    request = urllib.request.Request(url, headers={"User-Agent": "runner"})
    chunks, size = [], 0
    late = TimeoutError(f"{url} took longer than {deadline:g} s in all; fetch it yourself and use path:")
    # the deadline covers every wait (connecting, the status line, the headers, the body): when it passes, the
    # sockets are shut, which wakes a read blocked on a server trickling a byte at a time
    expired = threading.Event()

    def shut() -> None:
        expired.set()
        for sock in list(policy.sockets):
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass  # closed already

    timer = threading.Timer(deadline, shut)
    timer.daemon = True
    timer.start()
    try:
        with opener.open(request, timeout=timeout) as response:
            while True:
                if time.monotonic() > ends:
                    raise late
                chunk = response.read1(1 << 16)
                if not chunk:
                    break
                chunks.append(chunk)
                size += len(chunk)
                if size > max_bytes:
                    raise ValueError(f"{url} is larger than {max_bytes >> 20} MiB")
    except Exception:
        if expired.is_set():
            raise late from None
        raise
    finally:
        timer.cancel()
    if expired.is_set():  # a shut socket can also read as the end of the body
        raise late
    return b"".join(chunks)
