"""The API fuzzed against its own OpenAPI document (schemathesis), keys on, on the real app:
no answer is a 5xx, and every answer the document describes matches it. A fixed seed
(derandomized) and example count keep the run bounded and repeatable."""

from __future__ import annotations

import time

import pytest
import schemathesis
import yaml
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import not_a_server_error, response_schema_conformance

from chorus.auth.keys import digest
from tests.support.chorus_app import STEADY_PIPER, ChorusApp

pytestmark = pytest.mark.ray

ADMIN_KEY = "chorus_test_fuzz_admin_0123456789"
ADMIN = {"x-api-key": ADMIN_KEY}
EXAMPLES = 12

@pytest.fixture(scope="module")
def app(chorus: ChorusApp, tmp_path_factory: pytest.TempPathFactory) -> ChorusApp:
    keys = tmp_path_factory.mktemp("secret") / "keys.yaml"
    keys.write_text(yaml.safe_dump({"keys": [{"name": "fuzzer", "sha256": digest(ADMIN_KEY), "scopes": ["admin"]}]}))
    chorus.deploy(engines={"piper": {}}, auth={"keysFile": str(keys), "failedPerMinute": 100_000})
    chorus.write("joe", {"activeProvider": "piper", "providers": {"piper": STEADY_PIPER}})
    with chorus.client(headers=ADMIN) as c:
        deadline = time.monotonic() + 30
        while c.get("/v1/personalities/joe").status_code != 200 and time.monotonic() < deadline:
            time.sleep(0.2)
    return chorus


@pytest.fixture(scope="module")
def api_schema(app: ChorusApp) -> schemathesis.BaseSchema:
    return schemathesis.openapi.from_url(f"{app.url}/openapi.json", headers=ADMIN)


def test_no_5xx_and_every_answer_matches_the_document(api_schema: schemathesis.BaseSchema, app: ChorusApp) -> None:
    # Each operation in turn through Hypothesis directly (schemathesis's pytest plugin does not
    # load under this pytest); every failure is collected, so one run names them all.
    failures: dict[str, str] = {}
    for operation in (result.ok() for result in api_schema.get_all_operations()):

        @given(case=operation.as_strategy())
        @settings(max_examples=EXAMPLES, derandomize=True, deadline=None, database=None,
                  suppress_health_check=list(HealthCheck))
        def fuzz(case: schemathesis.Case) -> None:
            case.call_and_validate(base_url=app.url, headers=ADMIN, timeout=120,
                                   checks=[not_a_server_error, response_schema_conformance])

        try:
            fuzz()
        except (Exception, BaseExceptionGroup) as err:  # reported below, every operation's
            failures[f"{operation.method.upper()} {operation.path}"] = str(err)[:2000]
    assert not failures, "\n\n".join(f"{op}:\n{why}" for op, why in failures.items())


def test_the_fuzzer_reaches_every_route(api_schema: schemathesis.BaseSchema) -> None:
    from tests.support.access_calls import CALLS

    operations = {(op.method.upper(), op.path) for op in (r.ok() for r in api_schema.get_all_operations())}
    assert operations == {route for route in CALLS if not route[1].startswith(("/docs", "/openapi", "/redoc"))}


