"""The operator's sample downloads (voice_operator.safe_fetch): forbidden addresses are
refused before any connection, redirects are checked hop by hop, one deadline bounds a
trickling server, credentials never show, and oversized decodes are refused from the
header (chorus.samples.audio, the checks uploads get)."""

from __future__ import annotations

import asyncio
import io
import ipaddress
import socket
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import soundfile as sf

from chorus.samples.report import SampleRejected
from voice_operator.safe_fetch import FetchError, FetchPolicy, SampleRefused, fetch, forbidden_reason, redact
from voice_operator.sample_volumes import SampleVolumes
from voice_operator.settings import OperatorSettings

LOOPBACK_ONE = (ipaddress.ip_network("127.0.0.1/32"),)


class AcceptRecorder:
    """A listening socket that only records (by peer address) the connections it is offered."""

    def __init__(self, host: str = "127.0.0.1") -> None:
        self.host = host
        self.sock = socket.create_server((host, 0))
        self.sock.settimeout(0.1)
        self.port = self.sock.getsockname()[1]
        self.peers: list[Any] = []
        self._accepted = threading.Condition()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                conn, peer = self.sock.accept()
            except TimeoutError:
                continue
            with self._accepted:
                self.peers.append(peer)
                self._accepted.notify_all()
            conn.close()

    def offered_before_now(self) -> int:
        """Connections made before this call. The kernel queues connections in the order they
        were made, so once a probe connection made now has been accepted, every earlier one
        has been too: no grace period to guess."""
        with socket.create_connection((self.host, self.port), timeout=5) as probe:
            mine = probe.getsockname()
        with self._accepted:
            assert self._accepted.wait_for(lambda: mine in self.peers, timeout=5), "probe never accepted"
            return self.peers.index(mine)

    def close(self) -> None:
        self._stop.set()
        self._thread.join()
        self.sock.close()


@pytest.fixture
def recorder() -> Iterator[AcceptRecorder]:
    rec = AcceptRecorder()
    yield rec
    rec.close()


def policy(**kw: Any) -> FetchPolicy:
    return FetchPolicy(**({"max_bytes": 1_000_000, "deadline_s": 5.0} | kw))


@pytest.mark.parametrize("host", ["127.0.0.1", "[::ffff:127.0.0.1]", "0x7f000001", "2130706433", "0177.0.0.1",
                                  "localhost"])
def test_loopback_in_any_spelling_is_refused_without_connecting(host: str, recorder: AcceptRecorder) -> None:
    # httpx itself refuses the octal spelling as an invalid URL; the others resolve to loopback.
    with pytest.raises(SampleRefused, match="public addresses only|not a valid URL"):
        asyncio.run(fetch(f"http://{host}:{recorder.port}/s.wav", policy()))
    assert recorder.offered_before_now() == 0


@pytest.mark.parametrize("address", ["169.254.169.254", "[fd00:ec2::254]", "10.0.0.1", "[::]", "224.0.0.1",
                                     "100.64.0.1", "[fe80::1]"])
def test_metadata_private_and_special_addresses_are_refused(address: str) -> None:
    with pytest.raises(SampleRefused, match="public addresses only"):
        asyncio.run(fetch(f"http://{address}/latest/meta-data/", policy(deadline_s=1.0)))


def test_the_rules_read_the_mapped_address_and_pass_public_ones() -> None:
    assert forbidden_reason(ipaddress.ip_address("::ffff:169.254.169.254")) is not None
    assert forbidden_reason(ipaddress.ip_address("93.184.216.34")) is None
    assert forbidden_reason(ipaddress.ip_address("2606:4700::1")) is None
    assert forbidden_reason(ipaddress.ip_address("127.0.0.1"), LOOPBACK_ONE) is None


def test_every_resolved_address_must_be_public(monkeypatch: pytest.MonkeyPatch) -> None:
    """A name answering one public and one private address (DNS rebinding's set-up) is refused."""
    def two_answers(host: str, port: int, *args: Any, **kw: Any) -> list[Any]:
        return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", ("93.184.216.34", port)),
                (socket.AF_INET, socket.SOCK_STREAM, 6, "", ("10.1.2.3", port))]
    monkeypatch.setattr(socket, "getaddrinfo", two_answers)
    with pytest.raises(SampleRefused, match="10.1.2.3"):
        asyncio.run(fetch("http://samples.example.com/a.wav", policy()))


class Site:
    """A loopback HTTP server whose handler a test writes; records the Host headers seen."""

    def __init__(self, handle: Any) -> None:
        site = self
        self.hosts: list[str] = []

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                site.hosts.append(self.headers["Host"])
                handle(self)

            def log_message(self, *args: Any) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.port = self.httpd.server_port
        # (A short poll: shutdown() waits for it, once per test.)
        threading.Thread(target=self.httpd.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True).start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


def test_a_redirect_to_a_loopback_port_is_refused_without_connecting() -> None:
    # The redirecting site is allowed (127.0.0.1 only); its target, another loopback
    # address with a listener, is not.
    target = AcceptRecorder("127.0.0.2")

    def redirect(h: BaseHTTPRequestHandler) -> None:
        h.send_response(302)
        h.send_header("Location", f"http://127.0.0.2:{target.port}/admin")
        h.send_header("Content-Length", "0")
        h.end_headers()

    site = Site(redirect)
    try:
        with pytest.raises(SampleRefused, match="127.0.0.2 is a loopback address"):
            asyncio.run(fetch(f"http://127.0.0.1:{site.port}/s.wav", policy(allowed_networks=LOOPBACK_ONE)))
        assert target.offered_before_now() == 0 and len(site.hosts) == 1
    finally:
        site.close()
        target.close()


def test_redirects_are_followed_at_most_three_times() -> None:
    def loop(h: BaseHTTPRequestHandler) -> None:
        hop = int(h.path.strip("/") or 0)
        if hop < 10:
            h.send_response(302)
            h.send_header("Location", f"/{hop + 1}")
            h.send_header("Content-Length", "0")
            h.end_headers()
            return
        h.send_response(200)
        h.end_headers()

    site = Site(loop)
    try:
        with pytest.raises(SampleRefused, match="more than 3 redirects"):
            asyncio.run(fetch(f"http://127.0.0.1:{site.port}/0", policy(allowed_networks=LOOPBACK_ONE)))
        assert len(site.hosts) == 4
    finally:
        site.close()


def answer_abc(h: BaseHTTPRequestHandler) -> None:
    h.send_response(200)
    h.send_header("Content-Length", "3")
    h.end_headers()
    h.wfile.write(b"abc")


def test_the_connection_goes_to_the_checked_address_with_the_host_kept() -> None:
    site = Site(answer_abc)
    try:
        got = asyncio.run(fetch(f"http://localhost:{site.port}/x", policy(allowed_networks=LOOPBACK_ONE)))
        assert got == b"abc" and site.hosts == [f"localhost:{site.port}"]
        with pytest.raises(SampleRefused, match="larger than 2 bytes"):
            asyncio.run(fetch(f"http://localhost:{site.port}/x", policy(max_bytes=2, allowed_networks=LOOPBACK_ONE)))
    finally:
        site.close()


def test_a_name_answering_differently_later_is_not_looked_up_again(monkeypatch: pytest.MonkeyPatch) -> None:
    """DNS rebinding: the name answers an allowed address when checked and a refused one
    (127.0.0.2, outside the allowance, nothing listening) afterwards. The body arrives only if
    the connection goes to the checked address rather than to the name looked up again."""
    real_getaddrinfo = socket.getaddrinfo
    lookups: list[str] = []

    def rebinding(host: str | bytes, port: int, *args: Any, **kw: Any) -> list[Any]:
        name = host.decode() if isinstance(host, bytes) else host
        if name != "rebind.example":
            return real_getaddrinfo(host, port, *args, **kw)
        lookups.append(name)
        address = "127.0.0.1" if len(lookups) == 1 else "127.0.0.2"
        return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (address, port))]

    site = Site(answer_abc)
    monkeypatch.setattr(socket, "getaddrinfo", rebinding)
    try:
        url = f"http://rebind.example:{site.port}/x"
        got = asyncio.run(fetch(url, policy(allowed_networks=LOOPBACK_ONE)))
        assert got == b"abc"
        assert site.hosts == [f"rebind.example:{site.port}"]  # one request, the Host kept
        assert lookups == ["rebind.example"]  # the check's lookup was the only one
    finally:
        site.close()


def test_a_trickling_server_is_cut_off_at_the_deadline() -> None:
    stop = threading.Event()

    def trickle(h: BaseHTTPRequestHandler) -> None:
        h.send_response(200)
        h.send_header("Content-Length", "100")
        h.end_headers()
        while not stop.is_set():  # a byte every 20 s: no per-read timeout would fire
            h.wfile.write(b"x")
            h.wfile.flush()
            stop.wait(20)

    site = Site(trickle)
    try:
        start = time.monotonic()
        with pytest.raises(FetchError, match="not downloaded within 1 s"):
            asyncio.run(fetch(f"http://127.0.0.1:{site.port}/slow",
                              policy(deadline_s=1.0, allowed_networks=LOOPBACK_ONE)))
        assert time.monotonic() - start < 2.0
    finally:
        stop.set()
        site.close()


def test_the_allowlist_limits_hosts_before_any_lookup(monkeypatch: pytest.MonkeyPatch) -> None:
    looked_up: list[str] = []
    monkeypatch.setattr(socket, "getaddrinfo", lambda host, *a, **k: looked_up.append(host) or [])
    with pytest.raises(SampleRefused, match="not in the operator's allowed domains"):
        asyncio.run(fetch("https://evil.example.net/a.wav", policy(allowed_domains=("samples.example.com",))))
    with pytest.raises(SampleRefused, match="not in the operator's allowed domains"):
        asyncio.run(fetch("https://example.com.evil.net/a.wav", policy(allowed_domains=("example.com",))))
    assert looked_up == []
    with pytest.raises(FetchError, match="resolves to no address"):
        asyncio.run(fetch("https://cdn.example.com/a.wav", policy(allowed_domains=("example.com",))))
    assert looked_up == ["cdn.example.com"]


def test_credentials_in_urls_are_redacted() -> None:
    shown = redact("https://user:hunter2@bucket.s3.amazonaws.com/a.wav?X-Amz-Signature=abc123&"
                   "X-Amz-Credential=AKIA%2F1&token=t0k&lang=en")
    assert "hunter2" not in shown and "abc123" not in shown and "AKIA" not in shown and "t0k" not in shown
    assert "lang=en" in shown and "bucket.s3.amazonaws.com/a.wav" in shown


def test_refusals_do_not_repeat_credentials() -> None:
    with pytest.raises(SampleRefused) as err:
        asyncio.run(fetch("http://admin:s3cret@169.254.169.254/?token=abc", policy()))
    assert "s3cret" not in str(err.value) and "abc" not in str(err.value)


def test_settings_take_the_allowlist_and_the_test_allowance_from_the_environment() -> None:
    s = OperatorSettings.from_env({"CHORUS_OPERATOR_ALLOWED_DOMAINS": "samples.example.com, cdn.example.org",
                                   "CHORUS_OPERATOR_ALLOW_PRIVATE_NETWORKS": "127.0.0.0/8"})
    p = s.fetch_policy()
    assert p.allowed_domains == ("samples.example.com", "cdn.example.org")
    assert p.allowed_networks == (ipaddress.ip_network("127.0.0.0/8"),) and p.max_redirects == 3
    assert OperatorSettings.from_env({}).fetch_policy().allowed_networks == ()  # never by default


def silent_flac(seconds: float, rate: int) -> bytes:
    out = io.BytesIO()
    sf.write(out, np.zeros(int(seconds * rate), dtype=np.int16), rate, format="FLAC", subtype="PCM_16")
    return out.getvalue()


def test_a_decompression_bomb_is_refused_from_its_header(tmp_path: Path) -> None:
    bomb = silent_flac(60, 192_000)
    assert len(bomb) < 200_000  # tiny on the wire, ~92 MB decoded as int32 stereo-less frames
    volumes = SampleVolumes(OperatorSettings(samples_dir=tmp_path, max_sample_rate=44_100))
    assert volumes.ingest.max_sample_rate == 44_100  # the operator's setting reaches the decode
    with pytest.raises(SampleRejected, match="192000 Hz, over the 44100 Hz maximum"):
        volumes.ingest.add("alice", bomb)
    with pytest.raises(SampleRejected, match="over the 60 s maximum"):
        volumes.ingest.add("alice", silent_flac(61, 8_000))
    assert not list(tmp_path.iterdir())  # nothing stored, no model loaded


@pytest.mark.parametrize("address", ["192.0.0.192", "2002:a9fe:a9fe::1", "fec0::1", "64:ff9b::a9fe:a9fe", "2001::1"])
def test_the_deny_list_does_not_depend_on_the_interpreters_tables(address: str) -> None:
    """Security audit L-6: 3.11.7's `ipaddress` takes these for public addresses (an Oracle
    Cloud metadata address, 6to4 and NAT64 of 169.254.169.254, site-local, Teredo)."""
    assert forbidden_reason(ipaddress.ip_address(address)) is not None


# Each rule at its edges (the mutants of scripts/mutation.sh that survived before these).

def loopback_site_policy(**kw: Any) -> FetchPolicy:
    return policy(allowed_networks=LOOPBACK_ONE, **kw)


def fetch_from(site: Site, path: str = "/x", **kw: Any) -> bytes:
    return asyncio.run(fetch(f"http://127.0.0.1:{site.port}{path}", loopback_site_policy(**kw)))


@pytest.fixture
def sites() -> Iterator[Any]:
    opened: list[Site] = []

    def open_site(handle: Any) -> Site:
        opened.append(Site(handle))
        return opened[-1]
    yield open_site
    for s in opened:
        s.close()


def respond(status: int, body: bytes = b"", **headers: str) -> Any:
    def handle(h: BaseHTTPRequestHandler) -> None:
        h.send_response(status)
        for name, value in headers.items():
            h.send_header(name.replace("_", "-"), value)
        h.end_headers()
        h.wfile.write(body)
    return handle


@pytest.mark.parametrize("status", [301, 302, 303, 307, 308])
def test_each_redirect_status_is_followed(status: int, sites: Any) -> None:
    def handle(h: BaseHTTPRequestHandler) -> None:
        respond(status, Location="/there", Content_Length="0")(h) if h.path == "/here" else answer_abc(h)
    assert fetch_from(sites(handle), "/here") == b"abc"


@pytest.mark.parametrize("status", [300, 304, 306, 309])
def test_other_3xx_answers_are_not_followed(status: int, sites: Any) -> None:
    site = sites(respond(status, Location="/there", Content_Length="0"))
    with pytest.raises(SampleRefused, match=f"HTTP {status}"):
        fetch_from(site)
    assert len(site.hosts) == 1


def test_a_redirect_without_a_location_is_refused_and_a_location_on_200_is_ignored(sites: Any) -> None:
    with pytest.raises(SampleRefused, match="HTTP 302"):
        fetch_from(sites(respond(302, Content_Length="0")))
    assert fetch_from(sites(respond(200, b"abc", Location="/elsewhere", Content_Length="3"))) == b"abc"


@pytest.mark.parametrize(("status", "error"), [
    (500, FetchError), (503, FetchError), (429, FetchError),  # may work later: retried
    (499, SampleRefused), (428, SampleRefused), (430, SampleRefused), (404, SampleRefused), (403, SampleRefused),
])
def test_server_errors_and_429_are_retried_other_errors_refused(status: int, error: type, sites: Any) -> None:
    with pytest.raises(error, match=f"HTTP {status}"):
        fetch_from(sites(respond(status, b"no", Content_Length="2")))


def test_any_2xx_is_the_body(sites: Any) -> None:
    assert fetch_from(sites(respond(299, b"abc", Content_Length="3"))) == b"abc"


@pytest.mark.parametrize(("declared", "size", "accepted"), [
    (None, 100, True), (None, 101, False), (None, 250, False),  # counted as it streams (no length)
    ("100", 100, True),  # a declared length at the cap is fine
])
def test_the_size_cap_is_inclusive_with_or_without_a_declared_length(
        declared: str | None, size: int, accepted: bool, sites: Any) -> None:
    site = sites(respond(200, b"x" * size, **({"Content_Length": declared} if declared else {})))
    if accepted:
        assert fetch_from(site, max_bytes=100) == b"x" * size
    else:
        with pytest.raises(SampleRefused, match="larger than 100 bytes"):
            fetch_from(site, max_bytes=100)


def test_a_declared_length_over_the_cap_is_refused_before_the_body(sites: Any) -> None:
    """The server declares 2,000 bytes, sends 5 and holds the connection: refused from the
    header at once, not after waiting out the deadline for a body that is never read."""
    hold = threading.Event()

    def declare_big(h: BaseHTTPRequestHandler) -> None:
        respond(200, b"xxxxx", Content_Length="2000")(h)
        h.wfile.flush()
        hold.wait(10)
    try:
        with pytest.raises(SampleRefused, match="larger than 100 bytes"):
            fetch_from(sites(declare_big), max_bytes=100, deadline_s=3.0)
    finally:
        hold.set()


def test_an_endless_body_is_cut_at_the_cap_while_streaming(sites: Any) -> None:
    stop = threading.Event()

    def endless(h: BaseHTTPRequestHandler) -> None:
        h.send_response(200)
        h.end_headers()
        try:
            while not stop.is_set():
                h.wfile.write(b"x" * 1024)
        except OSError:  # the client hung up at its cap
            pass
    try:
        with pytest.raises(SampleRefused, match="larger than 10000 bytes"):
            fetch_from(sites(endless), max_bytes=10_000, deadline_s=3.0)
    finally:
        stop.set()


@pytest.mark.parametrize("url", ["ftp://samples.example.com/a.wav", "file:///etc/passwd", "gopher://samples.example.com/"])
def test_only_http_and_https_urls_are_fetched(url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    looked_up: list[str] = []
    monkeypatch.setattr(socket, "getaddrinfo", lambda host, *a, **k: looked_up.append(host) or [])
    with pytest.raises(SampleRefused, match="http and https URLs only"):
        asyncio.run(fetch(url, policy()))
    assert looked_up == []


def resolving(monkeypatch: pytest.MonkeyPatch, names: dict[str, list[str]]) -> None:
    """getaddrinfo answers `names` with the given addresses, in order; other names as usual."""
    real = socket.getaddrinfo

    def answer(host: str | bytes, port: Any, *args: Any, **kw: Any) -> list[Any]:
        name = host.decode() if isinstance(host, bytes) else host
        if name not in names:
            return real(host, port, *args, **kw)
        return [(socket.AF_INET6 if ":" in a else socket.AF_INET, socket.SOCK_STREAM, 6, "", (a, port or 0))
                for a in names[name]]
    monkeypatch.setattr(socket, "getaddrinfo", answer)


def test_a_name_that_does_not_resolve_may_work_later(monkeypatch: pytest.MonkeyPatch) -> None:
    def nxdomain(*args: Any, **kw: Any) -> list[Any]:
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
    monkeypatch.setattr(socket, "getaddrinfo", nxdomain)
    with pytest.raises(FetchError, match="cannot resolve samples.example.com: Name or service not known"):
        asyncio.run(fetch("http://samples.example.com/a.wav", policy()))


def test_the_first_resolved_address_is_the_one_connected_to(monkeypatch: pytest.MonkeyPatch, sites: Any) -> None:
    site = sites(answer_abc)  # 127.0.0.1; nothing listens on 127.0.0.3
    resolving(monkeypatch, {"two.example": ["127.0.0.1", "127.0.0.3"]})
    url = f"http://two.example:{site.port}/x"
    assert asyncio.run(fetch(url, policy(allowed_networks=(ipaddress.ip_network("127.0.0.0/8"),)))) == b"abc"


def test_a_resolved_zone_is_dropped_from_the_address(monkeypatch: pytest.MonkeyPatch) -> None:
    from voice_operator.safe_fetch import resolve_checked
    resolving(monkeypatch, {"zoned.example": ["::1%lo"]})
    got = asyncio.run(resolve_checked("zoned.example", policy(allowed_networks=(ipaddress.ip_network("::1/128"),))))
    assert got == ipaddress.IPv6Address("::1") and str(got) == "::1"


@pytest.mark.parametrize("host", ["samples.example.com", "SAMPLES.Example.com", "samples.example.com."])
def test_an_allowed_domain_itself_is_allowed_in_any_case(host: str, monkeypatch: pytest.MonkeyPatch, sites: Any) -> None:
    site = sites(answer_abc)
    resolving(monkeypatch, {host.lower(): ["127.0.0.1"]})  # (URLs carry hosts lower-cased)
    got = asyncio.run(fetch(f"http://{host}:{site.port}/x",
                            loopback_site_policy(allowed_domains=("Samples.example.com.",))))
    assert got == b"abc"


def test_proxy_settings_in_the_environment_are_not_used(monkeypatch: pytest.MonkeyPatch, sites: Any,
                                                        recorder: AcceptRecorder) -> None:
    """An environment proxy would see (and could answer for) every sample URL: fetches go direct."""
    for name in ("NO_PROXY", "no_proxy"):
        monkeypatch.delenv(name, raising=False)
    for name in ("HTTP_PROXY", "http_proxy", "ALL_PROXY", "all_proxy"):
        monkeypatch.setenv(name, f"http://127.0.0.1:{recorder.port}")
    site = sites(answer_abc)
    assert fetch_from(site) == b"abc" and len(site.hosts) == 1
    assert recorder.offered_before_now() == 0


def test_the_policy_is_validated_and_immutable() -> None:
    from pydantic import ValidationError
    for bad in ({"max_bytes": 0}, {"deadline_s": 0}, {"max_redirects": -1}):
        with pytest.raises(ValidationError, match=next(iter(bad))):
            policy(**bad)
    p = policy(max_bytes=1, deadline_s=0.5, max_redirects=0)  # the smallest of each is fine
    with pytest.raises(ValidationError, match="frozen"):
        p.max_bytes = 10**9  # type: ignore[misc]


def test_no_redirects_allowed_means_the_first_is_refused(sites: Any) -> None:
    site = sites(respond(302, Location="/there", Content_Length="0"))
    with pytest.raises(SampleRefused, match="more than 0 redirects"):
        fetch_from(site, max_redirects=0)


def test_redaction_keeps_blank_parameters() -> None:
    assert redact("https://h.example/a.wav?v=&token=t0k") == "https://h.example/a.wav?v=&token=***"


def test_https_is_verified_against_the_url_host_while_connecting_to_the_checked_address(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """The connection goes to the checked IP, yet TLS is still checked against the name: the
    server's certificate is for samples.test only, and a certificate for another name fails."""
    import ssl

    import httpx
    import trustme

    ca = trustme.CA()
    client_ctx = ssl.create_default_context()
    ca.configure_trust(client_ctx)
    resolving(monkeypatch, {"samples.test": ["127.0.0.1"], "other.test": ["127.0.0.1"]})
    for cert_name, url_host, ok in (("samples.test", "samples.test", True), ("elsewhere.test", "other.test", False)):
        site = Site(answer_abc)
        server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ca.issue_cert(cert_name).configure_cert(server_ctx)
        site.httpd.socket = server_ctx.wrap_socket(site.httpd.socket, server_side=True)
        try:
            run = fetch(f"https://{url_host}:{site.port}/x", loopback_site_policy(),
                        transport=httpx.AsyncHTTPTransport(verify=client_ctx))
            if ok:
                assert asyncio.run(run) == b"abc" and site.hosts == [f"samples.test:{site.port}"]
            else:
                with pytest.raises(FetchError, match="ConnectError"):
                    asyncio.run(run)
        finally:
            site.close()
