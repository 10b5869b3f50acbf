"""Who may reach a Chorus without API keys: only this machine.

Without keys every caller is an admin (it may rewrite personalities, download voice
recordings, clone voices). That is safe only while the port is reachable from loopback
alone, so keys off on any other address is refused wherever Chorus is started (`chorus
serve`, `chorus.app.build_app` under a Serve controller, the Helm chart), unless whoever
deploys it says something in front of Chorus guards it (`insecure_no_auth`)."""

from __future__ import annotations

import ipaddress


class ExposureRefused(ValueError):
    """Keys off on an address others can reach."""


def is_loopback(host: str) -> bool:
    """`host` (an address, or `localhost`) can only be reached from this machine."""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False  # a name that may resolve anywhere


def check(*, keys: bool, insecure_no_auth: bool, host: str | None) -> None:
    """Refuse serving `host` without keys unless it is loopback or the deployer accepted it.
    `host` None: not known here (checked where it is)."""
    if keys or insecure_no_auth or host is None or is_loopback(host):
        return
    raise ExposureRefused(
        f"refusing to serve {host} without API keys: anyone reaching it could rewrite personalities, download "
        "voice recordings and clone voices. Configure keys (auth.keysFile, CHORUS_API_KEYS_FILE; make one with "
        "`chorus keys new`), or set insecure_no_auth when something in front of Chorus guards it."
    )
