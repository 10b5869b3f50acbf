"""The dashboard in a real browser (Debian's headless Chromium through Selenium) against the
real service: Ray Serve, the ingress, real Piper. One browser for the module, quit at the end.
Screenshots of each view land in the test run's temporary directory (docs/dashboard-*.png
are copies of them)."""

from __future__ import annotations

import asyncio
import json
import re
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

import pytest
import yaml
from selenium import webdriver
from selenium.common.exceptions import StaleElementReferenceException
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.remote.webdriver import WebDriver
from selenium.webdriver.support.ui import Select, WebDriverWait

from chorus.auth.keys import digest
from chorus.auth.scopes import Scope
from chorus.ingress.asgi import create_app
from chorus.ingress.config import IngressConfig
from chorus.ingress.replica import Replica
from chorus.personalities import Personality, parse_spec
from chorus.speech.board import EngineBoard
from chorus.stores import configmaps
from chorus.stores.kubernetes import KubernetesStore
from tests.kube.control_plane import ControlPlane
from tests.support import recordings as rec
from tests.support.access_calls import KEYS
from tests.support.chorus_app import STEADY_PIPER, ChorusApp
from tests.support.engine_handles import LocalHandle, ScriptedEngine
from tests.support.servers import running

pytestmark = pytest.mark.ray

# A display name that would run if the page ever parsed API data as HTML.
HOSTILE = '<script>window.__xss = 1</script><img src=x onerror="window.__xss = 2">'
JOE = {"activeProvider": "piper", "displayName": HOSTILE, "languages": {"primary": "en"},
       "providers": {"piper": STEADY_PIPER}}
# Three engines in the chain to reorder; the cloud ones need not be deployed to be configured.
ANN = {"activeProvider": "piper", "fallbackChain": ["google_tts", "azure_tts", "ibm_watson"],
       "providers": {"piper": STEADY_PIPER, "google_tts": {}, "azure_tts": {}, "ibm_watson": {}}}
T = TypeVar("T")


@pytest.fixture(scope="module")
def browser() -> Iterator[WebDriver]:
    options = webdriver.ChromeOptions()
    options.binary_location = "/usr/bin/chromium"
    for flag in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                 "--disable-extensions", "--window-size=1280,1000", "--autoplay-policy=no-user-gesture-required",
                 "--renderer-process-limit=1"):
        options.add_argument(flag)
    driver = webdriver.Chrome(options=options, service=Service("/usr/bin/chromedriver"))
    try:
        yield driver
    finally:
        driver.quit()


@pytest.fixture(scope="module")
def shots(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("dashboard-screens")


# Where the page links to: a Ray dashboard and a trace viewer (none runs here: the links are
# checked, not followed).
LINKS = {"rayDashboard": "http://127.0.0.1:8265/", "trace": "http://traces.example/trace/{trace_id}",
         "engineTraces": "http://traces.example/search?engine={engine}"}


@pytest.fixture(scope="module")
def app(chorus: ChorusApp) -> ChorusApp:
    chorus.deploy(links=LINKS)
    chorus.write("joe", JOE)
    chorus.write("ann", ANN)
    chorus.wait_for("joe", timeout=30)
    chorus.wait_for("ann", timeout=30)
    return chorus


def until(browser: WebDriver, check: Callable[[WebDriver], T], timeout: float = 30) -> T:
    # A live view may replace an element between a check's find and its read: look again.
    return WebDriverWait(browser, timeout, poll_frequency=0.2,
                         ignored_exceptions=(StaleElementReferenceException,)).until(check)


def cell(browser: WebDriver, table: str, row: str, col: str) -> str:
    # Read in one script: a live view may replace its rows between a find and a read.
    return browser.execute_script(
        "const e = document.querySelector(arguments[0]); return e ? e.innerText.trim() : ''",
        f'#{table} tr[data-key="{row}"] [data-col="{col}"]')


def speak(app: ChorusApp, times: int) -> None:
    with app.client() as c:
        for _ in range(times):
            r = c.post("/v1/personalities/joe/speech", json={"text": "Counting."})
            assert r.status_code == 200, r.text


def settled_stats(app: ChorusApp, engine_requests: int) -> dict[str, Any]:
    """/v1/stats once the spans of `engine_requests` requests to piper are counted (flushed every second)."""
    deadline = time.monotonic() + 30
    with app.client() as c:
        while True:
            stats = c.get("/v1/stats?window=1h").json()
            if stats["engines"].get("piper", {}).get("requests") == engine_requests:
                return stats
            assert time.monotonic() < deadline, json.dumps(stats)[:500]
            time.sleep(0.3)


def test_performance_counts_match_the_api_and_refresh_live(app: ChorusApp, browser: WebDriver, shots: Path) -> None:
    speak(app, 3)
    stats = settled_stats(app, 3)
    browser.get(f"{app.url}/dashboard#performance")
    until(browser, lambda b: cell(b, "engine-stats", "piper", "requests") == "3")
    assert cell(browser, "personality-stats", "joe", "requests") == str(stats["personalities"]["joe"]["requests"])
    assert cell(browser, "engine-stats", "piper", "success") == "100.0 %"
    assert cell(browser, "engine-stats", "piper", "p95") == f'{stats["engines"]["piper"]["latencyMs"]["p95"]:.0f}'
    assert browser.find_elements(By.CSS_SELECTOR, '#chart-requests path[data-engine="piper"]')
    # Live: more requests show up without a reload (the page polls every 5 s).
    speak(app, 2)
    stats = settled_stats(app, 5)
    until(browser, lambda b: cell(b, "engine-stats", "piper", "requests") == "5", timeout=20)
    assert cell(browser, "personality-stats", "joe", "requests") == str(stats["personalities"]["joe"]["requests"])
    browser.save_screenshot(str(shots / "dashboard-performance.png"))
    # Every window the page offers is one the API takes (hour buckets for 30 days, a point a day).
    browser.find_element(By.ID, "live").click()  # no poll in between: each load below is the select's
    for span in ("5m", "24h", "30d"):
        # "Updated ..." is written only after both calls of a refresh succeeded.
        browser.execute_script("document.getElementById('performance-updated').textContent = ''")
        Select(browser.find_element(By.ID, "window")).select_by_value(span)
        until(browser, lambda b: b.find_element(By.ID, "performance-updated").text)
        with app.client() as c:
            expected = c.get(f"/v1/stats?window={span}").json()["engines"]["piper"]["requests"]
        assert cell(browser, "engine-stats", "piper", "requests") == str(expected)


def test_engines_show_health_and_capabilities(app: ChorusApp, browser: WebDriver, shots: Path) -> None:
    browser.get(f"{app.url}/dashboard#engines")
    until(browser, lambda b: cell(b, "engine-list", "piper", "health").startswith("healthy"))
    assert "en" in cell(browser, "engine-list", "piper", "languages")
    assert "en_US-joe-medium" in cell(browser, "engine-list", "piper", "voices")
    assert cell(browser, "engine-list", "piper", "circuit") == "closed"
    # Serve's own count: the tests deploy one Piper replica.
    with app.client() as c:
        (piper,) = [p for p in c.get("/v1/providers").json()["providers"] if p["engine"] == "piper"]
    assert piper["replicas"] == {"running": 1, "starting": 0, "stopping": 0}
    assert cell(browser, "engine-list", "piper", "replicas") == "1 running"
    replicas, traces = browser.find_elements(By.CSS_SELECTOR, '#engine-list tr[data-key="piper"] [data-col="links"] a')
    assert replicas.get_attribute("href") == "http://127.0.0.1:8265/#/serve/applications/chorus/piper"
    assert traces.get_attribute("href") == "http://traces.example/search?engine=piper"
    assert replicas.get_attribute("rel") == "noopener noreferrer"
    assert browser.find_element(By.ID, "key-said").text == "This server runs without API keys: every route is open."
    assert not browser.find_elements(By.CSS_SELECTOR, "nav a.locked")
    serve_page = browser.find_element(By.CSS_SELECTOR, "#engine-links a")
    assert serve_page.get_attribute("href") == "http://127.0.0.1:8265/#/serve"
    browser.save_screenshot(str(shots / "dashboard-engines.png"))


def test_quotas_show_a_bar_per_engine_and_voice_class(app: ChorusApp, browser: WebDriver, shots: Path) -> None:
    with app.client() as c:
        quotas = c.get("/v1/quotas").json()["quotas"]
    assert quotas  # the cloud engines' allowances are metered even when none is deployed
    browser.get(f"{app.url}/dashboard#quotas")
    until(browser, lambda b: len(b.find_elements(By.CSS_SELECTOR, "#quota-list meter")) == len(quotas))
    for q in quotas:
        item = browser.find_element(By.CSS_SELECTOR, f'#quota-list li[data-key="{q["engine"]}/{q["voiceClass"]}"]')
        meter = item.find_element(By.TAG_NAME, "meter")
        assert float(meter.get_attribute("value")) == q["used"]
        assert float(meter.get_attribute("max")) == q["allowed"]
        assert f'/ {q["allowed"]:,} characters' in item.text
    browser.save_screenshot(str(shots / "dashboard-quotas.png"))


def test_try_it_plays_and_names_the_engine_from_the_header(app: ChorusApp, browser: WebDriver, shots: Path) -> None:
    browser.get(f"{app.url}/dashboard#performance")
    # Without a mouse: the nav link and the form by keyboard, with a visible focus ring.
    link = browser.find_element(By.CSS_SELECTOR, 'nav a[href="#try"]')
    link.send_keys(Keys.ENTER)
    until(browser, lambda b: b.find_element(By.ID, "try").is_displayed())
    until(browser, lambda b: b.find_elements(By.CSS_SELECTOR, '#try-personality option[value="joe"]'))
    Select(browser.find_element(By.ID, "try-personality")).select_by_value("joe")
    button = browser.find_element(By.CSS_SELECTOR, "#try-form button")
    browser.execute_script("arguments[0].focus()", button)
    assert browser.execute_script("return getComputedStyle(document.activeElement).outlineStyle") != "none"
    button.send_keys(Keys.ENTER)
    provider = until(browser, lambda b: cell_header(b, "x-chorus-provider"))
    with app.client() as c:
        r = c.post("/v1/personalities/joe/speech", json={"text": "Hello from Chorus."})
    assert provider == r.headers["x-chorus-provider"] == "piper"
    assert float(cell_header(browser, "x-chorus-latency-ms")) > 0
    assert cell_header(browser, "x-chorus-cache") == r.headers["x-chorus-cache"]  # "bypass": the tests' cache is off
    # The answer's own trace, linked in the viewer: the id the response header named.
    trace = browser.find_element(By.CSS_SELECTOR, '#try-result dd[data-header="traceresponse"] a')
    assert re.fullmatch(r"[0-9a-f]{32}", trace.text)
    assert trace.get_attribute("href") == f"http://traces.example/trace/{trace.text}"
    assert int(r.headers["traceresponse"].rsplit("-", 1)[1], 16) & 1  # sampled: the only traces linked
    # The element really plays: a decoded duration and a clock that moves.
    duration = until(browser, lambda b: b.execute_script("const a = document.getElementById('try-audio');"
                                                         "return a.duration > 0 && a.duration"))
    assert duration > 0.5
    until(browser, lambda b: b.execute_script("const a = document.getElementById('try-audio');"
                                              "return a.currentTime > 0 || a.ended"))
    browser.save_screenshot(str(shots / "dashboard-try.png"))


def test_try_it_offers_the_voices_and_their_engines_from_the_listings(app: ChorusApp, browser: WebDriver) -> None:
    """The choices come from GET /v1/audio/voices and GET /v1/models: a voice's own engines, in
    the models' order, and the one chosen is tried first (google_tts is configured for ann but
    not deployed here, so Piper speaks after it, and the header says so)."""
    browser.get(f"{app.url}/dashboard#try")
    until(browser, lambda b: b.find_elements(By.CSS_SELECTOR, '#try-personality option[value="ann"]'))
    Select(browser.find_element(By.ID, "try-personality")).select_by_value("ann")
    with app.client() as c:
        chain = {v["id"]: v["engines"] for v in c.get("/v1/audio/voices").json()["voices"]}["ann"]
        order = [m["id"] for m in c.get("/v1/models").json()["data"]]
    offered = [o.get_attribute("value") for o in browser.find_elements(By.CSS_SELECTOR, "#try-model option")]
    assert offered == ["", *sorted(chain, key=order.index)]
    Select(browser.find_element(By.ID, "try-model")).select_by_value("google_tts")
    browser.find_element(By.CSS_SELECTOR, "#try-form button").click()
    until(browser, lambda b: cell_header(b, "x-chorus-fallback").startswith("google_tts;"))
    assert cell_header(browser, "x-chorus-provider") == "piper"
    Select(browser.find_element(By.ID, "try-personality")).select_by_value("joe")
    assert [o.get_attribute("value") for o in browser.find_elements(By.CSS_SELECTOR, "#try-model option")] == [
        "", "piper"]


def cell_header(browser: WebDriver, header: str) -> str:
    found = browser.find_elements(By.CSS_SELECTOR, f'#try-result dd[data-header="{header}"]')
    return found[0].text if found else ""


def test_a_script_in_a_display_name_is_shown_as_text(app: ChorusApp, browser: WebDriver) -> None:
    browser.get(f"{app.url}/dashboard#try")
    option = until(browser, lambda b: b.find_elements(By.CSS_SELECTOR, '#try-personality option[value="joe"]'))[0]
    assert option.get_attribute("textContent") == f"joe — {HOSTILE}"
    assert browser.execute_script("return window.__xss") is None
    assert not browser.find_elements(By.CSS_SELECTOR, "#try img, #try-personality script")


def chain(browser: WebDriver) -> list[str]:
    return [li.get_attribute("data-engine") for li in browser.find_elements(By.CSS_SELECTOR, "#editor-chain li")]


def open_editor(url: str, browser: WebDriver, name: str) -> None:
    browser.get(f"{url}/dashboard#editor")
    until(browser, lambda b: b.find_elements(By.ID, "editor-active"))
    Select(browser.find_element(By.ID, "editor-personality")).select_by_value(name)
    until(browser, lambda b: b.find_element(By.ID, "editor-personality").get_attribute("value") == name
          and b.find_elements(By.ID, "field-providers-piper-settings-volume"))


def test_editor_reorders_the_chain_by_keyboard_and_drag_and_saves(app: ChorusApp, browser: WebDriver, shots: Path) -> None:
    with app.client() as c:
        before = c.get("/v1/personalities/ann").json()["spec"]
    open_editor(app.url, browser, "ann")
    assert chain(browser) == ANN["fallbackChain"]
    up = browser.find_element(By.CSS_SELECTOR, 'button[aria-label="Move ibm_watson up"]')
    browser.execute_script("arguments[0].focus()", up)
    up.send_keys(Keys.ENTER)
    assert chain(browser) == ["google_tts", "ibm_watson", "azure_tts"]
    assert browser.switch_to.active_element == up  # the keyboard stays on the item it moves
    # Drag azure_tts onto the top half of google_tts (HTML5 drag events, as a mouse would send them).
    browser.execute_script("""
        const [from, to] = arguments, data = new DataTransfer(), box = to.getBoundingClientRect();
        from.dispatchEvent(new DragEvent("dragstart", {dataTransfer: data, bubbles: true}));
        to.dispatchEvent(new DragEvent("dragover", {dataTransfer: data, bubbles: true, cancelable: true}));
        to.dispatchEvent(new DragEvent("drop", {dataTransfer: data, bubbles: true, cancelable: true, clientY: box.top + 1}));
        from.dispatchEvent(new DragEvent("dragend", {dataTransfer: data, bubbles: true}));
    """, *(browser.find_element(By.CSS_SELECTOR, f'#editor-chain li[data-engine="{e}"]') for e in ("azure_tts", "google_tts")))
    assert chain(browser) == ["azure_tts", "google_tts", "ibm_watson"]
    browser.find_element(By.ID, "field-providers-google_tts-enabled").click()
    browser.find_element(By.ID, "editor-save").send_keys(Keys.ENTER)
    until(browser, lambda b: b.find_element(By.ID, "editor-status").text == "Saved ann.")
    with app.client() as c:
        spec = c.get("/v1/personalities/ann").json()["spec"]
    assert spec["fallbackChain"] == ["azure_tts", "google_tts", "ibm_watson"]
    assert spec["providers"]["google_tts"]["enabled"] is False
    assert spec["providers"]["piper"] == before["providers"]["piper"]  # untouched fields kept
    browser.execute_script("window.scrollTo(0, 0)")
    browser.save_screenshot(str(shots / "dashboard-editor.png"))


def test_editor_shows_the_apis_message_on_the_field(app: ChorusApp, browser: WebDriver) -> None:
    open_editor(app.url, browser, "ann")
    volume = browser.find_element(By.ID, "field-providers-piper-settings-volume")
    assert volume.get_attribute("max") == "4"  # the bound from the API's schema
    volume.clear()
    volume.send_keys("9")
    browser.find_element(By.ID, "editor-save").send_keys(Keys.ENTER)
    slot = '[data-error-for="providers.piper.settings.volume"]'
    until(browser, lambda b: "less than or equal to 4" in b.find_element(By.CSS_SELECTOR, slot).text)
    with app.client() as c:
        assert c.get("/v1/personalities/ann").json()["spec"]["providers"]["piper"]["settings"]["volume"] == 1.0


def test_editor_edits_aliases_and_the_lexicon(app: ChorusApp, browser: WebDriver) -> None:
    with app.client() as c:
        assert c.put("/v1/personalities/lex", json={**JOE, "displayName": "Lex", "aliases": ["echo"],
                                                   "lexicon": [{"text": "Chorus", "alias": "Core us"}]}).status_code == 201
    app.wait_for("lex")
    try:
        browser.get("about:blank")  # a fresh page: the list of personalities is read when it loads
        open_editor(app.url, browser, "lex")
        aliases = until(browser, lambda b: [e for e in b.find_elements(By.ID, "editor-aliases")
                                            if e.get_attribute("value") == "echo"])[0]
        aliases.clear()
        aliases.send_keys("echo, fable")
        rows = browser.find_elements(By.CSS_SELECTOR, "#editor-lexicon tr")
        assert [i.get_attribute("value") for i in rows[0].find_elements(By.TAG_NAME, "input")] == ["Chorus", "", "Core us"]
        browser.find_element(By.ID, "editor-lexicon-add").click()
        added = browser.find_elements(By.CSS_SELECTOR, "#editor-lexicon tr")[-1].find_elements(By.TAG_NAME, "input")
        added[0].send_keys("Zyxwv")
        added[1].send_keys("dˈɔːɹ")
        browser.find_element(By.ID, "editor-save").send_keys(Keys.ENTER)
        until(browser, lambda b: b.find_element(By.ID, "editor-status").text == "Saved lex.")
        with app.client() as c:
            spec = c.get("/v1/personalities/lex").json()["spec"]
        assert spec["aliases"] == ["echo", "fable"]
        assert spec["lexicon"] == [{"text": "Chorus", "alias": "Core us"}, {"text": "Zyxwv", "ipa": "dˈɔːɹ"}]
        # An entry with nothing to say is refused by the API, and the editor shows why.
        browser.find_element(By.ID, "editor-lexicon-add").click()
        browser.find_elements(By.CSS_SELECTOR, "#editor-lexicon tr")[-1].find_element(By.TAG_NAME, "input").send_keys("Oops")
        browser.find_element(By.ID, "editor-save").send_keys(Keys.ENTER)
        until(browser, lambda b: "give ipa, alias or both" in b.find_element(
            By.CSS_SELECTOR, '[data-error-for="lexicon"]').text)
    finally:
        with app.client() as c:
            c.delete("/v1/personalities/lex")


@contextmanager
def watching(store: KubernetesStore) -> Iterator[None]:
    """The store's list + watch on a loop of its own, as the Ingress deployment runs it."""
    loop = asyncio.new_event_loop()
    stop = asyncio.Event()

    def run() -> None:
        loop.run_until_complete(store.watch(stop))
        # watch() cancels its tasks on the way out; let them finish before the loop closes.
        leftover = asyncio.all_tasks(loop)
        loop.run_until_complete(asyncio.gather(*leftover, return_exceptions=True))

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    try:
        yield
    finally:
        loop.call_soon_threadsafe(stop.set)
        thread.join(timeout=10)
        loop.close()


@pytest.fixture(scope="module")
def cluster_url(kube: ControlPlane, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The ingress app over the cluster's read-only store, watching a real API server that
    holds `ann` as a VoicePersonality and the ConfigMap the operator renders for it (tests
    audit D7), served by uvicorn in this process: the editor as a cluster shows it."""
    ns = "dashboard-cluster"
    kube.kubectl("create", "namespace", ns)
    vp = {"apiVersion": "voice.chorus.dev/v1alpha1", "kind": "VoicePersonality",
          "metadata": {"name": "ann", "namespace": ns}, "spec": ANN}
    kube.kubectl("apply", "-f", "-", input=json.dumps(vp))
    uid = kube.kubectl("get", "vp", "ann", "-n", ns, "-o", "jsonpath={.metadata.uid}").stdout.strip()
    body = configmaps.render(Personality(name="ann", spec=parse_spec(ANN)), generation=1)
    body["metadata"].update(namespace=ns, ownerReferences=[{
        "apiVersion": "voice.chorus.dev/v1alpha1", "kind": "VoicePersonality", "name": "ann", "uid": uid,
        "controller": True, "blockOwnerDeletion": True}])
    kube.kubectl("apply", "-f", "-", input=json.dumps(body))

    root = tmp_path_factory.mktemp("cluster")
    config = IngressConfig(personalities={"kubernetes": {"namespace": ns, "kubeconfig": kube.identities["admin"]}},
                           samples={"directory": root / "samples"}, timeouts={"piper": 5})
    replica = Replica(config, EngineBoard({"piper": LocalHandle(ScriptedEngine("piper"))}))
    assert isinstance(replica.store, KubernetesStore)
    with watching(replica.store), running(create_app(replica)) as url:
        deadline = time.monotonic() + 30
        while not (replica.store.loaded and replica.store.get("ann")):
            assert time.monotonic() < deadline, "the store never listed ann from the API server"
            time.sleep(0.1)
        yield url


def test_cluster_mode_shows_the_yaml_to_apply_instead_of_saving(cluster_url: str, browser: WebDriver,
                                                                 shots: Path) -> None:
    open_editor(cluster_url, browser, "ann")
    down = browser.find_element(By.CSS_SELECTOR, 'button[aria-label="Move google_tts down"]')
    down.send_keys(Keys.ENTER)
    browser.find_element(By.ID, "editor-save").send_keys(Keys.ENTER)
    pre = until(browser, lambda b: b.find_element(By.CSS_SELECTOR, "#editor-yaml pre")
                if b.find_element(By.ID, "editor-yaml").is_displayed() else None)
    assert not browser.find_elements(By.ID, "editor-save")
    assert "kubectl apply" in browser.find_element(By.CSS_SELECTOR, "#editor-yaml p").text
    document = yaml.safe_load(pre.text)
    assert document["kind"] == "VoicePersonality" and document["metadata"] == {"name": "ann"}
    assert document["spec"]["fallbackChain"] == ["azure_tts", "google_tts", "ibm_watson"]
    assert parse_spec(document["spec"])  # a spec the cluster's CRD (the same model) accepts
    # The copy button puts exactly that text on the clipboard.
    browser.execute_cdp_cmd("Browser.grantPermissions", {
        "origin": cluster_url, "permissions": ["clipboardReadWrite", "clipboardSanitizedWrite"]})
    browser.find_element(By.ID, "editor-copy").send_keys(Keys.ENTER)
    until(browser, lambda b: b.find_element(By.ID, "editor-status").text == "YAML copied.")
    copied = browser.execute_async_script("navigator.clipboard.readText().then(arguments[0])")
    assert copied == pre.get_attribute("textContent")
    browser.save_screenshot(str(shots / "dashboard-cluster.png"))


def report_cell(browser: WebDriver, check: str, col: str) -> str:
    return cell(browser, "sample-report", check, col)


def test_samples_upload_shows_verdicts_and_figures_then_plays_and_deletes(app: ChorusApp, browser: WebDriver,
                                                                          shots: Path, tmp_path: Path) -> None:
    clean = rec.recordings().clean()
    good, noisy = tmp_path / "good.wav", tmp_path / "noisy.wav"
    good.write_bytes(rec.encode(clean.samples, clean.rate))
    noisy.write_bytes(rec.encode(rec.with_white_noise(clean, 10.0), clean.rate))
    browser.get(f"{app.url}/dashboard#samples")
    until(browser, lambda b: b.find_elements(By.CSS_SELECTOR, '#sample-personality option[value="joe"]'))
    Select(browser.find_element(By.ID, "sample-personality")).select_by_value("joe")
    until(browser, lambda b: b.find_element(By.ID, "sample-list").text.endswith("No stored samples."))

    # Each recording is checked first and its table shown; nothing is stored yet.
    browser.find_element(By.ID, "sample-file").send_keys(str(noisy))
    until(browser, lambda b: "noisy.wav: would be refused" in b.find_element(By.ID, "sample-result").text, timeout=180)
    assert report_cell(browser, "snr", "verdict") == "failed (hard)"
    assert abs(float(report_cell(browser, "snr", "value").split()[0]) - 10.0) < 3.0
    assert not browser.find_element(By.ID, "sample-store").is_enabled()

    browser.find_element(By.ID, "sample-notes").send_keys(HOSTILE)  # a note is data, shown as text
    browser.find_element(By.ID, "sample-file").send_keys(str(good))
    until(browser, lambda b: "good.wav: passed its checks" in b.find_element(By.ID, "sample-result").text, timeout=120)
    assert report_cell(browser, "snr", "verdict") == "passed"
    assert report_cell(browser, "speaker_consistency", "verdict") == "passed"
    with app.client() as c:
        assert c.get("/v1/personalities/joe/samples").json() == []
    browser.save_screenshot(str(shots / "dashboard-sample-check.png"))
    store = browser.find_element(By.ID, "sample-store")
    assert browser.switch_to.active_element == store  # the next step, by keyboard
    store.send_keys(Keys.ENTER)
    until(browser, lambda b: "good.wav: stored as" in b.find_element(By.ID, "sample-result").text, timeout=120)
    with app.client() as c:
        (stored,) = c.get("/v1/personalities/joe/samples").json()
    until(browser, lambda b: cell(b, "sample-list", stored["id"], "notes") == HOSTILE)
    assert browser.execute_script("return window.__xss") is None
    assert cell(browser, "sample-list", stored["id"], "duration") == f'{stored["duration"]:.1f}'
    assert cell(browser, "sample-list", stored["id"], "score") == f'{stored["quality_score"]:.2f}'
    snr = next(c for c in stored["checks"] if c["name"] == "snr")
    assert f'✓ snr {snr["value"]:.1f}' in cell(browser, "sample-list", stored["id"], "checks")

    browser.find_element(By.CSS_SELECTOR, f'button[aria-label="Play {stored["id"]}"]').send_keys(Keys.ENTER)
    duration = until(browser, lambda b: b.execute_script("const a = document.getElementById('sample-audio');"
                                                         "return a.duration > 0 && a.duration"))
    assert abs(duration - stored["duration"]) < 0.1
    browser.save_screenshot(str(shots / "dashboard-samples.png"))

    browser.find_element(By.CSS_SELECTOR, f'button[aria-label="Delete {stored["id"]}"]').send_keys(Keys.ENTER)
    until(browser, lambda b: b.find_element(By.ID, "sample-list").text.endswith("No stored samples."))
    with app.client() as c:
        assert c.get("/v1/personalities/joe/samples").json() == []


def test_phone_width_has_no_sideways_page(app: ChorusApp, browser: WebDriver, shots: Path) -> None:
    browser.set_window_size(390, 844)
    try:
        browser.get(f"{app.url}/dashboard#performance")
        until(browser, lambda b: cell(b, "engine-stats", "piper", "requests"))
        # Wide tables scroll inside their own box; the page itself never does.
        assert browser.execute_script("return document.documentElement.scrollWidth <= window.innerWidth")
        browser.save_screenshot(str(shots / "dashboard-phone.png"))
    finally:
        browser.set_window_size(1280, 1000)


def test_with_keys_on_nothing_loads_before_a_key(chorus: ChorusApp, app: ChorusApp, browser: WebDriver,
                                                  shots: Path, tmp_path: Path) -> None:
    keys = tmp_path / "keys.yaml"
    keys.write_text(yaml.safe_dump({"keys": [
        {"name": f"{s.value}-key", "sha256": digest(KEYS[s]), "scopes": [s.value], "charactersPerDay": 5000}
        for s in (Scope.SPEAK, Scope.ADMIN)
    ]}))
    chorus.deploy(auth={"keysFile": str(keys)})
    chorus.write("joe", JOE)
    with chorus.client(headers={"x-api-key": KEYS[Scope.ADMIN]}) as c:
        deadline = time.monotonic() + 30
        while c.get("/v1/personalities/joe").status_code != 200:
            assert time.monotonic() < deadline
            time.sleep(0.2)
    speak_key(chorus)
    browser.get(f"{chorus.url}/dashboard#performance")
    browser.execute_script("sessionStorage.clear()")
    browser.refresh()
    form = until(browser, lambda b: b.find_element(By.ID, "key-form") if b.find_element(By.ID, "key-form").is_displayed() else None)
    assert browser.switch_to.active_element == browser.find_element(By.ID, "key-input")
    time.sleep(1)  # what a first load would have shown by now
    assert not browser.find_elements(By.CSS_SELECTOR, "#engine-stats tbody tr")
    browser.save_screenshot(str(shots / "dashboard-key.png"))

    # A speak key: engines load, statistics say which scope the key lacks.
    browser.find_element(By.ID, "key-input").send_keys(KEYS[Scope.SPEAK], Keys.ENTER)
    until(browser, lambda b: "lacks the 'admin' scope" in b.find_element(By.CSS_SELECTOR, "#performance [data-problem]").text)
    assert not form.is_displayed()
    # What the key may do, from the API, and the views it cannot open marked in the menu.
    scopes = browser.find_elements(By.CSS_SELECTOR, "#key-scopes li")
    assert [li.get_attribute("data-scope") for li in scopes] == ["speak"]
    assert "Key speak-key may:" in browser.find_element(By.ID, "key-said").text and "synthesize" in scopes[0].text
    locked = {a.get_attribute("hash") for a in browser.find_elements(By.CSS_SELECTOR, "nav a.locked")}
    assert locked == {"#performance", "#quotas", "#editor", "#samples"}
    assert browser.find_element(By.ID, "key-limits").text == "Limits: 5,000 characters a day."
    browser.save_screenshot(str(shots / "dashboard-key-scopes.png"))
    browser.get(f"{chorus.url}/dashboard#engines")  # same tab: the key is remembered
    until(browser, lambda b: cell(b, "engine-list", "piper", "health").startswith("healthy"))
    # Editing needs admin: the editor says so and shows no form.
    browser.get(f"{chorus.url}/dashboard#editor")
    until(browser, lambda b: "lacks the 'admin' scope" in b.find_element(By.CSS_SELECTOR, "#editor [data-problem]").text)
    assert not browser.find_elements(By.CSS_SELECTOR, "#editor-form *")
    assert browser.execute_script("return document.cookie") == ""
    assert KEYS[Scope.SPEAK] not in browser.current_url

    # Forgotten, then an admin key: the statistics load, the requests made with the speak key counted.
    browser.find_element(By.ID, "key-forget").send_keys(Keys.ENTER)
    until(browser, lambda b: b.find_element(By.ID, "key-form").is_displayed())
    browser.find_element(By.ID, "key-input").send_keys(KEYS[Scope.ADMIN], Keys.ENTER)
    browser.get(f"{chorus.url}/dashboard#performance")
    until(browser, lambda b: cell(b, "engine-stats", "piper", "requests") == "1")


def speak_key(app: ChorusApp) -> None:
    with app.client(headers={"x-api-key": KEYS[Scope.SPEAK]}) as c:
        r = c.post("/v1/personalities/joe/speech", json={"text": "Keyed."})
        assert r.status_code == 200, r.text
