"""What many fast tests share: `api`, the ingress app without Ray over scripted engines
(tests/support/ingress_app.py) with its defaults. A test module that needs other settings
defines its own `api`, which takes precedence."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.support.ingress_app import Api


@pytest.fixture
async def api(tmp_path: Path) -> AsyncIterator[Api]:
    api = Api(tmp_path)
    async with api.client:
        yield api
