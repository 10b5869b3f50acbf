"""What clients ask for by name, without Ray: the voices listing, OpenAI's model list,
aliases (resolved by `voice`, unique across personalities: a duplicate PUT is refused with
its owner named; two files claiming one alias make it call neither) and `instructions`."""

from __future__ import annotations

from typing import Any

import pytest
import yaml

from tests.support.chorus_app import personality
from tests.support.ingress_app import Api

CLONER = {
    "displayName": "Clara", "activeProvider": "xtts_v2", "fallbackChain": ["piper"], "aliases": ["nova", "shimmer"],
    "languages": {"primary": "en", "supported": ["en", "de"]},
    "providers": {"xtts_v2": {}, "piper": {"voice": "en_US-joe-medium"}},
    "voiceSamples": [{"id": "a", "stored": True}, {"id": "b", "stored": True}],
}
PLAIN = {"activeProvider": "piper", "providers": {"piper": {}}}


def write(api: Api, name: str, spec: dict[str, Any]) -> None:
    directory = api.replica.store.directory  # type: ignore[attr-defined]
    (directory / f"{name}.yaml").write_text(yaml.safe_dump(personality(name, spec)))
    api.replica.store.rescan()  # type: ignore[attr-defined]


async def test_each_personality_is_listed_as_a_voice(api: Api) -> None:
    assert (await api.client.put("/v1/personalities/clara", json=CLONER)).status_code == 201
    r = await api.client.get("/v1/audio/voices")
    assert r.status_code == 200
    voices = {v["id"]: v for v in r.json()["voices"]}
    assert set(voices) == {"clara", "joe"}
    assert voices["clara"] == {
        "id": "clara", "name": "Clara", "aliases": ["nova", "shimmer"], "languages": ["en", "de"],
        "primary_language": "en", "engine": "xtts_v2", "engines": ["xtts_v2", "piper"], "clones": True, "samples": 2,
    }
    joe = voices["joe"]
    assert (joe["name"], joe["engine"], joe["engines"], joe["clones"], joe["samples"]) == (
        "joe", "piper", ["piper", "google_tts"], False, 0)


async def test_the_model_list_has_openais_names_and_every_engine(api: Api) -> None:
    r = await api.client.get("/v1/models")
    assert r.status_code == 200
    body = r.json()
    assert body["object"] == "list"
    assert [m["id"] for m in body["data"]] == [
        "tts-1", "tts-1-hd", "gpt-4o-mini-tts", "xtts_v2", "styletts2", "piper", "google_tts", "azure_tts", "ibm_watson"]
    assert {(m["object"], m["owned_by"]) for m in body["data"]} == {("model", "chorus")}


@pytest.mark.parametrize("model", ["tts-1", "tts-1-hd", "gpt-4o-mini-tts"])
async def test_an_alias_is_a_voice(api: Api, model: str) -> None:
    write(api, "ann", PLAIN | {"aliases": ["alloy"]})
    r = await api.client.post("/v1/audio/speech", json={"model": model, "voice": "alloy", "input": "Hi there."})
    assert r.status_code == 200, r.text
    assert api.piper.requests[-1].voice is None  # ann's Piper (no voice set), not joe's
    r = await api.client.post("/v1/audio/speech", json={"model": model, "voice": "ann", "input": "Hi there."})
    assert r.status_code == 200


async def test_an_alias_is_not_a_path(api: Api) -> None:
    write(api, "ann", PLAIN | {"aliases": ["alloy"]})
    r = await api.client.post("/v1/personalities/alloy/speech", json={"text": "Hi."})
    assert r.status_code == 404


async def test_a_taken_alias_is_refused_on_put_with_its_owner_named(api: Api) -> None:
    write(api, "ann", PLAIN | {"aliases": ["alloy", "echo"]})
    r = await api.client.put("/v1/personalities/bob", json=PLAIN | {"aliases": ["echo", "onyx"]})
    assert r.status_code == 409
    assert r.json()["detail"] == "alias 'echo' already belongs to personality 'ann'"
    assert r.json()["taken"] == {"echo": "ann"}
    assert not (api.replica.store.directory / "bob.yaml").exists()  # type: ignore[attr-defined]
    # An alias that is another personality's name, and a name that is another's alias.
    r = await api.client.put("/v1/personalities/bob", json=PLAIN | {"aliases": ["joe"]})
    assert r.status_code == 409 and r.json()["detail"] == "alias 'joe' already belongs to personality 'joe'"
    r = await api.client.put("/v1/personalities/alloy", json=PLAIN)
    assert r.status_code == 409 and r.json()["detail"] == "name 'alloy' is an alias of personality 'ann'"
    # Its own aliases are its own: replacing ann keeps them, and may drop one for bob to take.
    assert (await api.client.put("/v1/personalities/ann", json=PLAIN | {"aliases": ["alloy"]})).status_code == 200
    assert (await api.client.put("/v1/personalities/bob", json=PLAIN | {"aliases": ["echo"]})).status_code == 201


async def test_an_alias_two_files_claim_calls_neither_and_is_reported(api: Api) -> None:
    write(api, "ann", PLAIN | {"aliases": ["alloy"]})
    write(api, "bob", PLAIN | {"aliases": ["alloy", "onyx"]})
    r = await api.client.post("/v1/audio/speech", json={"model": "tts-1", "voice": "alloy", "input": "Hi."})
    assert r.status_code == 404 and r.json()["error"]["param"] == "voice"
    r = await api.client.post("/v1/audio/speech", json={"model": "tts-1", "voice": "onyx", "input": "Hi."})
    assert r.status_code == 200  # bob's other alias is his alone
    problems = (await api.client.get("/v1/personalities")).json()["problems"]
    errors = sorted(p["error"] for p in problems)
    assert errors == ["alias 'alloy' is also claimed by 'ann': it calls neither",
                      "alias 'alloy' is also claimed by 'bob': it calls neither"]


async def test_an_alias_naming_another_personality_is_ignored_and_reported(api: Api) -> None:
    write(api, "ann", PLAIN | {"aliases": ["joe"]})
    r = await api.client.post("/v1/audio/speech", json={"model": "tts-1", "voice": "joe", "input": "Hi."})
    assert r.status_code == 200 and api.piper.requests[-1].voice == "en_US-joe-medium"  # joe himself
    problems = (await api.client.get("/v1/personalities")).json()["problems"]
    assert [p["error"] for p in problems] == ["alias 'joe' is the name of personality 'joe'; not used"]


@pytest.mark.parametrize(("aliases", "message"), [
    (["Alloy"], "aliases[0]: String should match pattern"),
    (["alloy", "alloy"], "aliases must be unique"),
    ([f"a{i}" for i in range(17)], "aliases: List should have at most 16 items"),
])
async def test_bad_aliases_are_refused_by_name(api: Api, aliases: list[str], message: str) -> None:
    r = await api.client.put("/v1/personalities/ann", json=PLAIN | {"aliases": aliases})
    assert r.status_code == 422 and message in r.json()["detail"]


async def test_instructions_are_accepted_and_said_to_be_not_applied(api: Api) -> None:
    body = {"model": "gpt-4o-mini-tts", "voice": "joe", "input": "Hi there."}
    r = await api.client.post("/v1/audio/speech", json=body | {"instructions": "Speak like a pirate."})
    assert r.status_code == 200 and r.headers["x-chorus-instructions"] == "not-applied"
    r = await api.client.post("/v1/audio/speech", json=body)
    assert r.status_code == 200 and "x-chorus-instructions" not in r.headers
