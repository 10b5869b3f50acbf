"""Downloading a sample URL without becoming a proxy into the cluster (SSRF).

A VoicePersonality's author picks the URL, and the operator fetches it from inside the
cluster with its own network position, so every hop is checked before a byte is sent:

- the host is resolved here (getaddrinfo, which also reads odd spellings such as
  0x7f000001, 2130706433 or 0177.0.0.1 as the address they are) and every address it
  gives must be public: loopback, private, link-local (the cloud metadata service at
  169.254.169.254), unique-local (fd00:ec2::254), IPv4-mapped forms of those,
  unspecified, multicast and reserved addresses are refused;
- the connection goes to the checked address (no second lookup that DNS rebinding could
  answer differently), with the original Host header and TLS server name, so the
  certificate is still verified against the host;
- redirects are followed by hand, at most `max_redirects`, each hop checked the same way;
- one deadline covers the whole download, redirects included (a server trickling a byte
  every few seconds never trips a per-read timeout), and the size cap holds throughout;
- an optional allowlist limits the hosts (a domain allows its subdomains).

Credentials in URLs (user:pass@, signed query parameters) never reach events, status or
logs: every message names the URL through `redact`.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from collections.abc import Sequence
from urllib.parse import parse_qsl, urlencode

import httpx
from pydantic import BaseModel, ConfigDict, Field

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

# Query parameters that carry a credential in presigned or token URLs (S3, GCS, Azure SAS,
# generic API tokens). Compared lower-cased.
SECRET_PARAMS = frozenset({
    "token", "access_token", "auth", "authorization", "key", "api_key", "apikey", "secret", "password",
    "signature", "sig", "x-amz-signature", "x-amz-credential", "x-amz-security-token",
    "x-goog-signature", "x-goog-credential", "awsaccesskeyid",
})
REDIRECTS = frozenset({301, 302, 303, 307, 308})


class FetchError(Exception):
    """A download that may work later (network, 5xx, deadline)."""


class SampleRefused(Exception):
    """A sample that will not work until the spec changes (4xx, too big, forbidden host)."""


class FetchPolicy(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    max_bytes: int = Field(gt=0)
    deadline_s: float = Field(gt=0, description="the whole download, redirects included")
    max_redirects: int = Field(3, ge=0)
    allowed_domains: tuple[str, ...] = Field(
        (), description="hosts (and their subdomains) URLs may name; empty: any public host"
    )
    allowed_networks: tuple[IPNetwork, ...] = Field(
        (), description="non-public networks that may be fetched from anyway (tests only)"
    )


def redact(url: str) -> str:
    """`url` without credentials: user info and secret query parameters are masked."""
    try:
        parsed = httpx.URL(url)
    except httpx.InvalidURL:
        return "<unparseable URL>"
    if parsed.userinfo:
        parsed = parsed.copy_with(username="***", password=None)
    if parsed.query:
        pairs = parse_qsl(parsed.query.decode(), keep_blank_values=True)
        masked = [(k, "***" if k.lower() in SECRET_PARAMS else v) for k, v in pairs]
        parsed = parsed.copy_with(query=urlencode(masked, safe="*").encode())
    return str(parsed)


# Never fetched from, whatever this interpreter's `ipaddress` tables say (they differ by patch
# level: 3.11.7 takes 192.0.0.192 or 2002:a9fe:a9fe::1, 6to4 of 169.254.169.254, as public).
# The chart's operator NetworkPolicy excepts the same networks (a test holds them equal).
DENIED_NETWORKS: tuple[IPNetwork, ...] = tuple(ipaddress.ip_network(n) for n in (
    "0.0.0.0/8", "10.0.0.0/8", "100.64.0.0/10", "127.0.0.0/8", "169.254.0.0/16", "172.16.0.0/12",
    "192.0.0.0/24", "192.0.2.0/24", "192.88.99.0/24", "192.168.0.0/16", "198.18.0.0/15", "198.51.100.0/24",
    "203.0.113.0/24", "224.0.0.0/4", "240.0.0.0/4",
    "::/128", "::1/128", "64:ff9b::/96", "64:ff9b:1::/48", "100::/64", "2001::/23",
    "2001:db8::/32", "2002::/16", "fc00::/7", "fe80::/10", "fec0::/10", "ff00::/8",
))


def forbidden_reason(ip: IPAddress, allowed: Sequence[IPNetwork] = ()) -> str | None:
    """Why the operator must not connect to `ip`, or None if it may."""
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped  # ::ffff:127.0.0.1 is 127.0.0.1
    if any(ip in net for net in allowed):
        return None
    for prop in ("loopback", "link_local", "private", "unspecified", "multicast", "reserved"):
        if getattr(ip, f"is_{prop}"):
            return f"{ip} is a {prop.replace('_', '-')} address"
    if denied := next((net for net in DENIED_NETWORKS if ip in net), None):  # (a v4 is never in a v6 net)
        return f"{ip} is in {denied}, which is never fetched from"
    if not ip.is_global:  # shared address space, 6to4 and other special ranges
        return f"{ip} is not a public address"
    return None


def _host_allowed(host: str, domains: Sequence[str]) -> bool:
    host = host.lower().rstrip(".")
    return not domains or any(host == d or host.endswith(f".{d}") for d in (d.lower().strip(".") for d in domains))


async def resolve_checked(host: str, policy: FetchPolicy) -> IPAddress:
    """The address to connect to for `host`, the first its resolver gives: every address it
    resolves to must be allowed (a name answering one public and one private address is refused)."""
    loop = asyncio.get_running_loop()
    try:
        infos = await loop.getaddrinfo(host, None, type=socket.SOCK_STREAM)
    except socket.gaierror as err:
        raise FetchError(f"cannot resolve {host}: {err.strerror}") from None
    # A link-local answer may carry its zone (fe80::1%eth0); the address is what is checked.
    addresses = [ipaddress.ip_address(str(info[4][0]).partition("%")[0]) for info in infos]
    if not addresses:
        raise FetchError(f"{host} resolves to no address")
    for ip in addresses:
        if why := forbidden_reason(ip, policy.allowed_networks):
            raise SampleRefused(f"{host} resolves to {why}; the operator fetches from public addresses only")
    return addresses[0]


async def fetch(url: str, policy: FetchPolicy, *, transport: httpx.AsyncBaseTransport | None = None) -> bytes:
    """The body at `url`, fetched under `policy` (SampleRefused or FetchError)."""
    shown = redact(url)
    try:
        async with asyncio.timeout(policy.deadline_s):
            async with httpx.AsyncClient(transport=transport, follow_redirects=False, trust_env=False) as http:
                return await _follow(http, httpx.URL(url), policy)
    except TimeoutError:
        raise FetchError(f"{shown}: not downloaded within {policy.deadline_s:g} s") from None
    except httpx.HTTPError as err:
        raise FetchError(f"{shown}: {type(err).__name__}") from None
    except httpx.InvalidURL:
        raise SampleRefused(f"{shown}: not a valid URL") from None


async def _follow(http: httpx.AsyncClient, url: httpx.URL, policy: FetchPolicy) -> bytes:
    for _hop in range(policy.max_redirects + 1):
        shown = redact(str(url))
        if url.scheme not in ("http", "https") or not url.host:
            raise SampleRefused(f"{shown}: the operator fetches http and https URLs only")
        if not _host_allowed(url.host, policy.allowed_domains):
            raise SampleRefused(f"{shown}: {url.host} is not in the operator's allowed domains")
        ip = await resolve_checked(url.host, policy)
        # Connect to the checked address; Host and TLS server name (unused by plain http) stay
        # the URL's host, so the certificate is verified against the name.
        pinned = url.copy_with(host=str(ip))
        request = http.build_request(
            "GET", pinned, headers={"Host": url.netloc.decode()}, extensions={"sni_hostname": url.host},
        )
        resp = await http.send(request, stream=True)
        try:
            if resp.status_code in REDIRECTS and "location" in resp.headers:
                url = url.join(resp.headers["location"])
                continue
            return await _body(resp, shown, policy.max_bytes)
        finally:
            await resp.aclose()
    raise SampleRefused(f"{redact(str(url))}: more than {policy.max_redirects} redirects")


async def _body(resp: httpx.Response, shown: str, limit: int) -> bytes:
    if resp.status_code >= 500 or resp.status_code == 429:
        raise FetchError(f"{shown}: HTTP {resp.status_code}")
    if resp.status_code >= 300:
        raise SampleRefused(f"{shown}: HTTP {resp.status_code}")
    declared = resp.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise SampleRefused(f"{shown}: larger than {limit} bytes")
    chunks, size = [], 0
    async for chunk in resp.aiter_bytes():
        size += len(chunk)
        if size > limit:
            raise SampleRefused(f"{shown}: larger than {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)
