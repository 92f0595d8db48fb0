"""Where a webhook may point: http(s) to a public address, unless the deployment allows private ones.

Server-side request forgery: a URL an admin types is fetched by our worker,
from inside our network. A webhook pointing at 127.0.0.1:6379, the cloud's
metadata address (169.254.169.254) or an intranet host would let anyone with
the admin role reach what only the server can. So every address the host
resolves to must be global, checked when the webhook is made and again at
each delivery, and the delivery connects to the address that was checked
(the host name goes in Host and in TLS's SNI), so a DNS answer that changes
in between (rebinding) cannot slip a private address in. Redirects are not
followed.
"""

import ipaddress
import socket
from dataclasses import dataclass
from urllib.parse import SplitResult, urlsplit

SCHEMES = {"http": 80, "https": 443}
IpAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


class UnsafeUrl(ValueError):
    """The URL is not one a webhook may point at; the message says why."""


@dataclass(frozen=True)
class Target:
    """A checked URL, pinned to one of the addresses its host resolved to."""

    url: str  # with the address in place of the host name
    host_header: str
    sni_hostname: str | None  # https only


def parse(url: str) -> SplitResult:
    """Raises: UnsafeUrl (not http(s), no host, credentials in it, a bad port)."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise UnsafeUrl(f"not a URL: {exc}") from None
    if parts.scheme not in SCHEMES:
        raise UnsafeUrl("only http and https URLs")
    if not parts.hostname:
        raise UnsafeUrl("the URL names no host")
    if parts.username is not None or parts.password is not None:
        raise UnsafeUrl("no credentials in the URL: receivers check the signature")
    if parts.fragment:
        raise UnsafeUrl("no #fragment: it is never sent")
    if port == 0:
        raise UnsafeUrl("port 0")
    return parts


def _public(address: IpAddress) -> bool:
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped  # ::ffff:127.0.0.1 is loopback
    return address.is_global and not address.is_multicast


def resolve(url: str, *, allow_private: bool) -> Target:
    """The URL checked and pinned to the first address its host resolves to.

    Raises: UnsafeUrl (see `parse`; the host does not resolve; it resolves to a non-public address and
    `allow_private` is off).
    """
    parts = parse(url)
    host = parts.hostname or ""
    port = parts.port or SCHEMES[parts.scheme]
    try:
        found = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError) as exc:
        raise UnsafeUrl(f"host {host} does not resolve ({exc})") from None
    addresses = [ipaddress.ip_address(str(info[4][0]).split("%")[0]) for info in found]
    if not allow_private:
        private = sorted({str(a) for a in addresses if not _public(a)})
        if private:
            raise UnsafeUrl(f"host {host} resolves to a non-public address ({', '.join(private)}): refused")
    pinned = addresses[0]
    netloc = f"[{pinned}]:{port}" if pinned.version == 6 else f"{pinned}:{port}"
    target = parts._replace(netloc=netloc).geturl()
    host_header = parts.netloc.rpartition("@")[2]
    return Target(url=target, host_header=host_header, sni_hostname=host if parts.scheme == "https" else None)
