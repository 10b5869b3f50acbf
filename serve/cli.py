"""`chorus`: run the embedded default and talk to a running Chorus."""

from __future__ import annotations

import os
import shutil
import signal
import sys
import threading
from pathlib import Path
from typing import Annotated, Optional

import httpx
import typer

from deployments.base import ENGINE_IDS

cli = typer.Typer(help="Chorus: text-to-speech for voice personalities.", no_args_is_help=True)

DEFAULT_URL = os.environ.get("CHORUS_URL", "http://127.0.0.1:8000")


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
) -> None:
    """Start a local Ray, deploy Chorus and serve until Ctrl-C."""
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    import ray
    from ray import serve

    from chorus.deploy import deploy, profile_path, render

    directory = (personalities or default_personalities_dir()).expanduser().resolve()
    if not directory.exists():
        # First run: seed the bundled personality so a new user gets speech at once.
        directory.mkdir(parents=True)
        shutil.copy(profile_path("default-personality"), directory / "default.yaml")
    config_file = Path(profile) if Path(profile).suffix in (".yaml", ".yml") else profile_path(profile)

    typer.echo("Starting Ray and deploying Chorus ...")
    ray.init(include_dashboard=False, logging_level="WARNING", log_to_driver=False)
    try:
        args: dict = {"personalities": {"directory": str(directory)}}
        if samples is not None:
            args["samples"] = {"directory": str(samples.expanduser().resolve())}
        deploy(render(config_file, args=args, host=host, port=port))
        url = f"http://{host}:{port}"
        typer.echo(f"Chorus is serving at {url}  (API docs: {url}/docs)")
        typer.echo(f"Personalities are read from {directory}")
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


def _client(url: str) -> httpx.Client:
    return httpx.Client(base_url=url, timeout=120)


def _fail(response: httpx.Response) -> None:
    try:
        detail = response.json().get("detail")
    except ValueError:
        detail = response.text
    typer.echo(f"error {response.status_code}: {detail}", err=True)
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
) -> None:
    """Synthesize TEXT with a personality into a file."""
    fmt = format or (output.suffix.lstrip(".") or "wav")
    body = {"text": text, "format": fmt}
    if language:
        body["language"] = language
    if provider:
        body["provider"] = provider
    try:
        with _client(url) as client:
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
def providers(url: Annotated[str, typer.Option(help="Chorus base URL.")] = DEFAULT_URL) -> None:
    """List the engines of a running Chorus with their health and languages."""
    try:
        with _client(url) as client:
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
    engines: Annotated[str, typer.Option(help="Cloning engines to judge the duration for.")] = "xtts_v2,styletts2",
) -> None:
    """Run the quality checks on a recording locally; stores nothing."""
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


@samples_cli.command("add")
def samples_add(
    personality: Annotated[str, typer.Argument(help="Personality name.")],
    file: Annotated[Path, typer.Argument(exists=True, dir_okay=False)],
    language: Annotated[Optional[str], typer.Option(help="Language of the recording (default: the personality's primary).")] = None,
    notes: Annotated[Optional[str], typer.Option()] = None,
    sample_id: Annotated[Optional[str], typer.Option("--id", help="Sample id (default: from the audio's hash).")] = None,
    url: Annotated[str, typer.Option(help="Chorus base URL.")] = DEFAULT_URL,
) -> None:
    """Upload a recording as a voice sample of PERSONALITY."""
    data = {k: v for k, v in {"language": language, "notes": notes, "id": sample_id}.items() if v}
    try:
        with _client(url) as client, file.open("rb") as f:
            response = client.post(f"/v1/personalities/{personality}/samples", files={"file": (file.name, f)}, data=data)
    except httpx.ConnectError:
        typer.echo(f"no Chorus at {url}: start it with `chorus serve`", err=True)
        raise typer.Exit(2) from None
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


def main() -> None:
    cli(prog_name="chorus")


if __name__ == "__main__":
    sys.exit(main())
