"""The directory store: hot reload, last good version, atomic writes."""

from __future__ import annotations

import asyncio
from pathlib import Path

import yaml

from chorus.personalities import Personality, parse_spec
from chorus.stores.directory import DirectoryStore

SPEC = {"activeProvider": "piper", "providers": {"piper": {"voice": "en_US-joe-medium"}}}


def write(path: Path, data: object) -> None:
    path.write_text(data if isinstance(data, str) else yaml.safe_dump(data))


async def eventually(check, timeout: float = 10.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not check():
        assert asyncio.get_running_loop().time() < deadline, "condition never became true"
        await asyncio.sleep(0.05)


async def test_hot_reload_keeps_last_good_version(tmp_path: Path) -> None:
    write(tmp_path / "ava.yaml", {**SPEC, "displayName": "Ava 1"})
    store = DirectoryStore(tmp_path)
    stop = asyncio.Event()
    watcher = asyncio.create_task(store.watch(stop))
    try:
        assert store.get("ava").spec.display_name == "Ava 1"

        write(tmp_path / "ava.yaml", {**SPEC, "displayName": "Ava 2"})
        await eventually(lambda: store.get("ava").spec.display_name == "Ava 2")
        assert store.status("ava").error is None

        # Broken edit: the last good version keeps serving and the status says why.
        write(tmp_path / "ava.yaml", {**SPEC, "activeProvider": "festival", "displayName": "Ava 3"})
        await eventually(lambda: store.status("ava").error is not None)
        assert store.get("ava").spec.display_name == "Ava 2"
        assert "activeProvider" in store.status("ava").error

        # Fixed again: the error clears.
        write(tmp_path / "ava.yaml", {**SPEC, "displayName": "Ava 4"})
        await eventually(lambda: store.get("ava").spec.display_name == "Ava 4")
        assert store.status("ava").error is None

        # New file, then removal.
        write(tmp_path / "ben.json", '{"activeProvider": "piper", "providers": {"piper": {}}}')
        await eventually(lambda: store.get("ben") is not None)
        (tmp_path / "ben.json").unlink()
        await eventually(lambda: store.get("ben") is None)

        # A file that was never valid serves nothing and is listed as a problem.
        write(tmp_path / "bad.yaml", "activeProvider: piper\nproviders: {}\n")
        await eventually(lambda: any(p.source.endswith("bad.yaml") for p in store.problems()))
        assert store.get("bad") is None
    finally:
        stop.set()
        await watcher


def test_duplicate_names_keep_the_first_file(tmp_path: Path) -> None:
    doc = {"apiVersion": "voice.chorus.dev/v1alpha1", "kind": "VoicePersonality", "metadata": {"name": "ava"}, "spec": SPEC}
    write(tmp_path / "a.yaml", doc)
    write(tmp_path / "b.yaml", doc)
    store = DirectoryStore(tmp_path)
    assert store.status("ava").source.endswith("a.yaml")
    assert [p.source.endswith("b.yaml") for p in store.problems()] == [True]


LOCK = ".write.lock"  # every write holds it, for as long as the directory is written to


def test_put_and_delete_are_atomic_and_leave_no_temp_files(tmp_path: Path) -> None:
    store = DirectoryStore(tmp_path)
    assert store.put(Personality(name="ava", spec=parse_spec(SPEC))) is True
    assert store.put(Personality(name="ava", spec=parse_spec({**SPEC, "displayName": "A"}))) is False
    assert sorted(p.name for p in tmp_path.iterdir() if p.name != LOCK) == ["ava.yaml"]
    assert DirectoryStore(tmp_path).get("ava").spec.display_name == "A"
    # A personality defined in a file of another name is written back to that file.
    write(tmp_path / "custom.yml", {**SPEC, "displayName": "C"})
    store.rescan()
    store.put(Personality(name="custom", spec=parse_spec({**SPEC, "displayName": "D"})))
    assert sorted(p.name for p in tmp_path.iterdir() if p.name != LOCK) == ["ava.yaml", "custom.yml"]
    assert store.delete("ava") and not store.delete("ava")
    assert sorted(p.name for p in tmp_path.iterdir() if p.name != LOCK) == ["custom.yml"]


def test_a_sample_mirror_never_writes_back_a_spec_read_before_a_concurrent_put(tmp_path: Path) -> None:
    """Security audit M8: an upload's mirror into voiceSamples read the personality, then
    wrote it back; an admin's PUT landing in between was lost. Writes now apply their change
    to what is stored when they hold the directory's write lock."""
    import threading

    from chorus.samples.audio import canonical_wav, decode_audio
    from chorus.samples.service import SamplesConfig, SampleService
    from chorus.samples.storage import SampleMeta
    from tests.support.access_calls import recording

    store = DirectoryStore(tmp_path / "personalities")
    spec = {"activeProvider": "piper", "providers": {"piper": {}}}
    store.put(Personality(name="joe", spec=parse_spec(spec)))
    samples = SampleService(SamplesConfig(directory=tmp_path / "samples"), store)
    clean = canonical_wav(decode_audio(recording()["file"][1]))
    samples.store.put("joe", clean, SampleMeta(id="s0", duration=7.6, quality_score=1.0))
    other = DirectoryStore(tmp_path / "personalities")  # another replica on the same directory
    admin_put = threading.Thread(target=other.put, args=(Personality(
        name="joe", spec=parse_spec({**spec, "displayName": "Joe, renamed by an admin"})),))
    listing = samples.store.list

    def list_while_an_admin_puts(key: str) -> list:  # the mirror reads the stored samples
        if not admin_put.is_alive() and admin_put.ident is None:
            admin_put.start()
            admin_put.join(0.5)  # done at once without a lock; waits for the mirror with one
        return listing(key)

    samples.store.list = list_while_an_admin_puts  # type: ignore[method-assign]
    samples._mirror("joe")
    admin_put.join(10)
    store.rescan()
    joe = store.get("joe")
    assert joe is not None and joe.spec.display_name == "Joe, renamed by an admin"
