"""moto's AWS server on a free loopback port (S3 for sample storage, Secrets Manager for
API keys): boto3 talks to it through its real wire protocol."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager

from tests.conftest import free_port


@contextmanager
def moto_server() -> Iterator[str]:
    """Runs the server until the block ends; yields its endpoint URL."""
    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # one access-log line per request
    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.stop()
