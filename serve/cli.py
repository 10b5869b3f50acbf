"""`chorus`: run the embedded default and talk to a running Chorus."""

from __future__ import annotations

import os
import secrets
import shutil
import signal
import sys
import threading
from importlib.metadata import version as installed_version
from pathlib import Path
from typing import Annotated, Optional

import httpx
import typer

from chorus.auth import exposure
from chorus.auth.config import KEYS_FILE_ENV
from deployments.base import ENGINE_IDS

cli = typer.Typer(help="Chorus: text-to-speech for voice personalities.", no_args_is_help=True)

DEFAULT_URL = os.environ.get("CHORUS_URL", "http://127.0.0.1:8000")
API_KEY_ENV = "CHORUS_API_KEY"


def _print_version(requested: bool) -> None:
    if requested:
        # The installed distribution's version: the one the images are tagged with.
        typer.echo(f"chorus {installed_version('chorus')}")
        raise typer.Exit()


@cli.callback()
def _options(
    version: Annotated[
        bool,
        typer.Option("--version", callback=_print_version, is_eager=True, help="Print the version and exit."),
    ] = False,
) -> None:
    """Chorus: text-to-speech for voice personalities."""


def default_personalities_dir() -> Path:
    data = Path(os.environ.get("XDG_DATA_HOME") or Path.home() / ".local" / "share")
    return data / "chorus" / "personalities"


@cli.command()
def serve(
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 8000,
    personalities: Annotated[
        Optional[Path], typer.Option(help="Directory of personality files (default: ~/.local/share/chorus/personalities).")
    ] = None,
    samples: Annotated[
        Optional[Path], typer.Option(help="Directory for voice samples (default: ~/.local/share/chorus/samples).")
    ] = None,
    profile: Annotated[str, typer.Option(help="Serve config: 'cpu', 'cluster' or a file path.")] = "cpu",
    api_keys: Annotated[
        Optional[Path],
        typer.Option(envvar=KEYS_FILE_ENV, dir_okay=False,
                     help="Key file (docs/security.md): every route but the probes then needs a key."),
    ] = None,
    insecure_no_auth: Annotated[
        bool, typer.Option(help="Serve a non-loopback address without keys: anyone reaching it may do anything.")
    ] = False,
    dashboard: Annotated[
        bool, typer.Option(help="Start the Ray dashboard (on 127.0.0.1 only; about 0.2 GB more, bench/RESULTS.md).")
    ] = False,
    dashboard_port: Annotated[int, typer.Option(help="Ray dashboard port.")] = 8265,
    metrics_port: Annotated[
        Optional[int], typer.Option(help="Port of Ray's Prometheus metrics endpoint (default: a free one).")
    ] = None,
) -> None:
    """Start a local Ray, deploy Chorus and serve until Ctrl-C."""
    # Ray's own ports (GCS, raylet, workers) listen on every interface whatever --host is,
    # and whoever reaches them can run code: unless told otherwise, only processes holding
    # this run's random token may use them (Ray token auth; the workers inherit it).
    if "RAY_AUTH_MODE" not in os.environ:
        os.environ["RAY_AUTH_MODE"] = "token"
        os.environ["RAY_AUTH_TOKEN"] = secrets.token_hex(32)
    from chorus.deploy import APP_NAME, profile_path, render

    config_file = Path(profile) if Path(profile).suffix in (".yaml", ".yml") else profile_path(profile)
    directory = (personalities or default_personalities_dir()).expanduser().resolve()
    args: dict = {"personalities": {"directory": str(directory)}}
    if samples is not None:
        args["samples"] = {"directory": str(samples.expanduser().resolve())}
    if api_keys is not None:
        api_keys = api_keys.expanduser().resolve()
        _check_key_file(api_keys)
        args["auth"] = {"keysFile": str(api_keys)}
    if dashboard:  # the web dashboard's Engines view links to it
        args["links"] = {"rayDashboard": f"http://127.0.0.1:{dashboard_port}"}
    # OTEL_* set here reach every deployment (docs/observability.md#traces).
    if insecure_no_auth:
        args["insecure_no_auth"] = True
    config = render(config_file, args=args, host=host, port=port, environ=os.environ)
    app_args = next(a for a in config.applications if a.name == APP_NAME).args
    try:
        exposure.check(keys=app_args.get("auth") is not None, insecure_no_auth=insecure_no_auth, host=host)
    except exposure.ExposureRefused as refused:
        typer.echo(f"{refused} Give --api-keys FILE, or --insecure-no-auth.", err=True)
        raise typer.Exit(2) from None
    if not directory.exists():
        # First run: seed the bundled personality so a new user gets speech at once.
        directory.mkdir(parents=True)
        shutil.copy(profile_path("default-personality"), directory / "default.yaml")

    import ray
    from ray import serve

    from chorus.deploy import deploy

    typer.echo("Starting Ray and deploying Chorus ...")
    # The dashboard stays on loopback whatever --host is: it submits jobs, i.e. runs code.
    context = ray.init(include_dashboard=dashboard, dashboard_host="127.0.0.1", dashboard_port=dashboard_port,
                       _metrics_export_port=metrics_port, logging_level="WARNING", log_to_driver=False)
    try:
        deploy(config)
        url = f"http://{host}:{port}"
        typer.echo(f"Chorus is serving at {url}  (API docs: {url}/docs)")
        if dashboard:
            # Ray leaves the URL empty when the dashboard failed to start (a taken port, say).
            dashboard_url = context.dashboard_url or ""
            typer.echo(f"Ray dashboard: {_http(dashboard_url)}" if dashboard_url
                       else "Ray dashboard: did not start (see /tmp/ray/session_latest/logs/dashboard.log)")
        typer.echo(f"Prometheus metrics (chorus_* and Serve's): http://127.0.0.1:{_metrics_export_port()}/metrics")
        typer.echo(f"Ray: {context.address_info['gcs_address']}, "
                   + ("token auth (this run's token)" if os.environ["RAY_AUTH_MODE"] == "token"
                      else f"auth {os.environ['RAY_AUTH_MODE']}"))
        typer.echo(f"Personalities are read from {directory}")
        auth = app_args.get("auth")
        typer.echo(f"API keys: {auth}" if auth else "API keys: off, every route is open")
        typer.echo('Try: chorus say "Hello from Chorus." --personality default -o hello.wav')
        stop = threading.Event()
        signal.signal(signal.SIGTERM, lambda *_: stop.set())
        try:
            stop.wait()
        except KeyboardInterrupt:
            pass
    finally:
        typer.echo("Shutting down ...")
        serve.shutdown()
        ray.shutdown()


def _http(url: str) -> str:
    return url if "://" in url else f"http://{url}"


def _metrics_export_port() -> int:
    """The port this node's metrics agent serves Prometheus text on (`--metrics-port` or Ray's pick)."""
    import ray

    node_id = ray.get_runtime_context().get_node_id()
    return next(n["MetricsExportPort"] for n in ray.nodes() if n["NodeID"] == node_id)


def _check_key_file(path: Path) -> None:
    """Refuse to start on a key file a replica would refuse, before Ray starts."""
    from chorus.auth.sources import KeySourceError, parse_keys

    try:
        keys, problems = parse_keys(path.read_bytes(), str(path))
    except OSError as err:
        raise typer.BadParameter(f"{path}: {err.strerror or err}", param_hint="--api-keys") from None
    except KeySourceError as err:
        raise typer.BadParameter(err.reason, param_hint="--api-keys") from None
    if problems:  # a running replica would leave these out; at start, say so instead
        raise typer.BadParameter("; ".join(problems), param_hint="--api-keys")
    if not keys:
        raise typer.BadParameter(f"{path} holds no key: add one with `chorus keys new`", param_hint="--api-keys")


ApiKeyOption = Annotated[
    Optional[str],
    typer.Option("--api-key", envvar=API_KEY_ENV, help="API key, sent as x-api-key.", show_default=False),
]


def _client(url: str, api_key: str | None) -> httpx.Client:
    return httpx.Client(base_url=url, timeout=120, headers={"x-api-key": api_key} if api_key else None)


def _fail(response: httpx.Response) -> None:
    try:
        detail = response.json().get("detail")
    except ValueError:
        detail = response.text
    typer.echo(f"error {response.status_code}: {detail}", err=True)
    if response.status_code == 401:
        typer.echo(f"pass a key with --api-key or ${API_KEY_ENV}", err=True)
    raise typer.Exit(1)


@cli.command()
def say(
    text: Annotated[str, typer.Argument(help="What to say.")],
    personality: Annotated[str, typer.Option("--personality", "-p")] = "default",
    output: Annotated[Path, typer.Option("--output", "-o", help="Audio file to write.")] = Path("out.wav"),
    language: Annotated[Optional[str], typer.Option()] = None,
    provider: Annotated[Optional[str], typer.Option(help=f"Engine to try first: {', '.join(ENGINE_IDS)}.")] = None,
    format: Annotated[Optional[str], typer.Option(help="wav, mp3, opus, aac, flac, pcm (default: from -o).")] = None,
    url: Annotated[str, typer.Option(help="Chorus base URL.")] = DEFAULT_URL,
    api_key: ApiKeyOption = None,
) -> None:
    """Synthesize TEXT with a personality into a file."""
    fmt = format or (output.suffix.lstrip(".") or "wav")
    body = {"text": text, "format": fmt}
    if language:
        body["language"] = language
    if provider:
        body["provider"] = provider
    try:
        with _client(url, api_key) as client:
            response = client.post(f"/v1/personalities/{personality}/speech", json=body)
    except httpx.ConnectError:
        typer.echo(f"no Chorus at {url}: start it with `chorus serve`", err=True)
        raise typer.Exit(2) from None
    if response.status_code != 200:
        _fail(response)
    tmp = output.with_name(f".{output.name}.part")
    tmp.write_bytes(response.content)
    tmp.replace(output)
    fallback = response.headers.get("x-chorus-fallback")
    typer.echo(
        f"wrote {output} ({len(response.content)} bytes) spoken by {response.headers.get('x-chorus-provider')} "
        f"in {response.headers.get('x-chorus-latency-ms')} ms" + (f"; tried before: {fallback}" if fallback else "")
    )


@cli.command()
def providers(
    url: Annotated[str, typer.Option(help="Chorus base URL.")] = DEFAULT_URL,
    api_key: ApiKeyOption = None,
) -> None:
    """List the engines of a running Chorus: health, languages, voices, circuit."""
    try:
        with _client(url, api_key) as client:
            response = client.get("/v1/providers")
    except httpx.ConnectError:
        typer.echo(f"no Chorus at {url}: start it with `chorus serve`", err=True)
        raise typer.Exit(2) from None
    if response.status_code != 200:
        _fail(response)
    for p in response.json()["providers"]:
        caps, health = p["capabilities"], p["health"]
        state = "healthy" if health["healthy"] else f"UNAVAILABLE: {health['reason']}"
        voices = ", ".join(v["id"] for v in caps["voices"]) or "-"
        typer.echo(f"{p['engine']:<11} {state}")
        typer.echo(f"  languages: {', '.join(caps['languages']) or '-'}   voices: {voices}")
        typer.echo(
            f"  cloning: {caps['cloning']}  streaming: {caps['streaming']}  max characters: {caps['max_characters']}"
            f"  sample rate: {caps['sample_rate']}  timeout: {p['timeout_s']} s"
        )
        circuit = p["circuit"]
        retry = f", one probe from {circuit['retry_at']}" if circuit.get("retry_at") else ""
        typer.echo(f"  circuit: {circuit['state']} ({circuit['failures']} failures in a row{retry})")


samples_cli = typer.Typer(help="Voice samples: check a recording, add it to a personality.", no_args_is_help=True)
cli.add_typer(samples_cli, name="samples")


def _check_table(checks: list[dict]) -> str:
    rows = []
    for c in checks:
        mark = "ok  " if c["passed"] else ("FAIL" if c["severity"] == "hard" else "warn")
        value = "" if c.get("value") is None else f"{c['value']:.4g}"
        threshold = c.get("threshold")
        if isinstance(threshold, (list, tuple)):
            threshold = f"{threshold[0]:g}-{threshold[1]:g}"
        elif threshold is not None:
            threshold = f"{threshold:g}"
        rows.append(f"  {mark} {c['name']:<22} {value:>9} {c.get('unit') or '':<5} limit {threshold or '-':<10} {c['message']}")
    return "\n".join(rows)


@samples_cli.command("check")
def samples_check(
    file: Annotated[Path, typer.Argument(exists=True, dir_okay=False, help="Audio file (WAV, FLAC, OGG/Opus, MP3).")],
    personality: Annotated[Optional[str], typer.Option(
        help="Ask a running Chorus as an upload to this personality would be judged (its cloning engines, "
             "duplicates, the speaker of its samples, its sample limit); default: check here, alone.")] = None,
    engines: Annotated[str, typer.Option(help="Cloning engines to judge the duration for (local check).")] = "xtts_v2,styletts2",
    url: Annotated[str, typer.Option(help="Chorus base URL (with --personality).")] = DEFAULT_URL,
    api_key: ApiKeyOption = None,
) -> None:
    """Run the quality checks on a recording; stores nothing. Exit 1 when it would be refused."""
    if personality is not None:
        _check_remotely(file, personality, url, api_key)
        return
    from chorus.samples.audio import decode_audio
    from chorus.samples.models import SampleModels
    from chorus.samples.quality import SampleChecker
    from chorus.samples.report import SampleRejected

    try:
        audio = decode_audio(file.read_bytes())
    except SampleRejected as err:
        typer.echo(f"rejected: {err.reason}")
        raise typer.Exit(1) from None
    report = SampleChecker(SampleModels()).check_sample(audio, [e for e in engines.split(",") if e])
    typer.echo(_check_table([c.model_dump() for c in report.checks]))
    verdict = "accepted" if report.accepted else "rejected"
    typer.echo(f"{verdict}: quality score {report.quality_score:.2f}, {report.duration_s:.1f} s, "
               f"fit for {', '.join(report.fit_for) or 'no cloning engine'}")
    raise typer.Exit(0 if report.accepted else 1)


def _check_remotely(file: Path, personality: str, url: str, api_key: str | None) -> None:
    """POST .../samples/check: the table an upload would get, nothing stored."""
    try:
        with _client(url, api_key) as client, file.open("rb") as f:
            response = client.post(f"/v1/personalities/{personality}/samples/check", files={"file": (file.name, f)})
    except httpx.ConnectError:
        typer.echo(f"no Chorus at {url}: start it with `chorus serve`", err=True)
        raise typer.Exit(2) from None
    if response.status_code != 200:
        _fail(response)
    body = response.json()
    report = body["report"]
    typer.echo(_check_table(report["checks"]))
    if body["accepted"]:
        typer.echo(f"would be stored: quality score {report['quality_score']:.2f}, {report['duration_s']:.1f} s, "
                   f"fit for {', '.join(report['fit_for']) or 'no cloning engine'}")
        return
    typer.echo("would be refused: " + "; ".join(body["problems"]))
    raise typer.Exit(1)


@samples_cli.command("add")
def samples_add(
    personality: Annotated[str, typer.Argument(help="Personality name.")],
    file: Annotated[Path, typer.Argument(exists=True, dir_okay=False)],
    language: Annotated[Optional[str], typer.Option(help="Language of the recording (default: the personality's primary).")] = None,
    notes: Annotated[Optional[str], typer.Option()] = None,
    sample_id: Annotated[Optional[str], typer.Option("--id", help="Sample id (default: from the audio's hash).")] = None,
    url: Annotated[str, typer.Option(help="Chorus base URL.")] = DEFAULT_URL,
    api_key: ApiKeyOption = None,
) -> None:
    """Upload a recording as a voice sample of PERSONALITY."""
    data = {k: v for k, v in {"language": language, "notes": notes, "id": sample_id}.items() if v}
    try:
        with _client(url, api_key) as client, file.open("rb") as f:
            response = client.post(f"/v1/personalities/{personality}/samples", files={"file": (file.name, f)}, data=data)
    except httpx.ConnectError:
        typer.echo(f"no Chorus at {url}: start it with `chorus serve`", err=True)
        raise typer.Exit(2) from None
    if response.status_code in (401, 403):
        _fail(response)
    body = response.json()
    if response.status_code != 201:
        typer.echo(f"error {response.status_code}: {body.get('detail')}", err=True)
        if body.get("checks"):
            typer.echo(_check_table(body["checks"]), err=True)
        raise typer.Exit(1)
    sample, report = body["sample"], body["report"]
    typer.echo(_check_table(report["checks"]))
    typer.echo(f"stored sample {sample['id']} of {personality}: {sample['duration']:.1f} s, "
               f"quality score {sample['quality_score']:.2f}")
    for warning in report["warnings"]:
        typer.echo(f"warning: {warning}")


keys_cli = typer.Typer(help="API keys (docs/security.md).", no_args_is_help=True)
cli.add_typer(keys_cli, name="keys")


@keys_cli.command("new")
def keys_new(
    name: Annotated[str, typer.Option(help="Shown in logs and stats in place of the key.")],
    scopes: Annotated[str, typer.Option(help="Comma-separated: speak, clone, samples, admin.")],
    rate_limit: Annotated[Optional[str], typer.Option(help="Requests per moving window, e.g. 60/minute.")] = None,
    characters_per_day: Annotated[Optional[int], typer.Option(help="Characters synthesized per UTC day.")] = None,
) -> None:
    """Make a fresh key: print it once, and the key-file entry that grants it (its SHA-256 only)."""
    import yaml
    from pydantic import ValidationError

    from chorus.auth.keys import KeyEntry, KeyLimits, digest, new_key

    key = new_key()
    try:
        entry = KeyEntry(name=name, sha256=digest(key), scopes=[s.strip() for s in scopes.split(",") if s.strip()],
                         rate_limit=rate_limit, characters_per_day=characters_per_day)
    except ValidationError as err:
        problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in err.errors(include_url=False))
        raise typer.BadParameter(problems) from None
    limits = entry.model_dump(mode="json", by_alias=True, exclude_none=True, include=set(KeyLimits.model_fields))
    document = {"name": entry.name, "sha256": entry.sha256, "scopes": [str(s) for s in entry.scopes], **limits}
    typer.echo(key)
    typer.echo("# The key above is shown only now: hand it to its user. Add this entry under `keys:`")
    typer.echo("# in the key file; only its hash is stored, and a running Chorus picks it up on its own.")
    typer.echo(yaml.safe_dump([document], sort_keys=False, default_flow_style=None).rstrip())


def main() -> None:
    cli(prog_name="chorus")


if __name__ == "__main__":
    sys.exit(main())
