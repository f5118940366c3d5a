"""Talk-off on real recordings: public speech, music and noises from Debian packages, decoded by ivrsim,
multimon-ng and spandsp; every digit found is a false one (nobody pressed a key in these files).

Usage: .venv/bin/python bench/dtmf_real_corpus.py [--cache DIR] [--json] [--list] [--decoders ivrsim,multimon,spandsp]

Steps, each skipped when its result is already in the cache (default ~/.cache/ivrsim/dtmf-corpus):
1. ``apt-get download`` the packages below into CACHE/debs (needs a Debian mirror; root is not required
   for download), ``dpkg-deb -x`` each into CACHE/extracted/PACKAGE;
2. convert every sound file (WAV, OGG, raw GSM 6.10) of at least 0.3 s to 8 kHz mono 16-bit WAV in
   CACHE/wav/PACKAGE/..., listed in CACHE/manifest.json (file, package, source, category, seconds);
3. decode each file with (a) ivrsim's ``detect_dtmf`` at 8 kHz, (b) multimon-ng (raw s16 at 22,050 Hz,
   the only rate it reads; one run per file, then per 2 s window where it found something, to say where),
   (c) spandsp through bench/spandsp_rx.py;
   print per decoder the false digits, hours of audio and false digits per hour, in total and per category.
   ``--list`` adds each false digit: file, time, key (and for ivrsim ``DtmfDigit.as_dict()``).

Categories: ``speech`` (Asterisk IVR prompts in en, fr-ca, es-mx, it, ru, plus the es-co, fr (Armelle) and
it (Menardi) voices; Tux Paint's spoken stamp names in about 20 languages), ``music`` (Asterisk music on
hold, Colobot's game music), ``noise`` (Tux Paint's animal, tool and household sounds, Colobot's effects,
the freedesktop and Oxygen desktop sound themes).
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import soundfile

sys.path.insert(0, str(Path(__file__).resolve().parent))

import spandsp_rx  # bench/ is not a package

from ivrsim.audio.dtmf_receiver import HALF_BLOCK_S, detect_dtmf
from ivrsim.audio.resample import resample
from ivrsim.exceptions import AudioFileError
from ivrsim.media.files import read_audio_file

logger = logging.getLogger("dtmf_real_corpus")

RATE_HZ = 8000
MULTIMON_RATE_HZ = 22050
MIN_SECONDS = 0.3
DEFAULT_CACHE = Path.home() / ".cache" / "ivrsim" / "dtmf-corpus"
SOUND_SUFFIXES = {".wav", ".ogg", ".oga", ".flac", ".gsm"}


def _speech(path: str) -> str:
    return "speech"


def _colobot(path: str) -> str:
    return "music" if "/music/" in path else "noise"


def _tuxpaint(path: str) -> str:
    name = Path(path).name
    if "_desc" in name or "/alphabets/" in path or "/math/" in path:
        return "speech"
    return "music" if "/music/" in path else "noise"


def _noise(path: str) -> str:
    return "noise"


def _music(path: str) -> str:
    return "music"


#: Debian package -> the category of each of its sound files (by path inside the package).
PACKAGES: dict[str, Callable[[str], str]] = {
    "asterisk-core-sounds-en-wav": _speech,
    "asterisk-core-sounds-fr-wav": _speech,
    "asterisk-core-sounds-es-wav": _speech,
    "asterisk-core-sounds-it-wav": _speech,
    "asterisk-core-sounds-ru-wav": _speech,
    "asterisk-prompt-es-co": _speech,
    "asterisk-prompt-fr-armelle": _speech,
    "asterisk-prompt-it-menardi-wav": _speech,
    "asterisk-moh-opsound-wav": _music,
    "colobot-common-sounds": _colobot,
    "tuxpaint-stamps-default": _tuxpaint,
    "sound-theme-freedesktop": _noise,
    "oxygen-sounds": _noise,
}


@dataclass
class Entry:
    """One converted file of the corpus."""

    file: str  # relative to the cache folder
    package: str
    source: str  # path inside the package
    category: str
    seconds: float


@dataclass
class FalseDigit:
    """A digit a decoder found in the corpus; ``time_s`` is where (its start, or where it was reported)."""

    decoder: str
    file: str
    package: str
    category: str
    key: str
    time_s: float
    details: dict[str, float | str] = field(default_factory=dict)


# -- download and convert ------------------------------------------------------------------------------


def _deb_for(debs: Path, package: str) -> Path | None:
    found = sorted(debs.glob(f"{package}_*.deb"))
    return found[-1] if found else None


def fetch(cache: Path, packages: Iterable[str]) -> dict[str, Path]:
    """Each package extracted under CACHE/extracted/PACKAGE (downloaded first if its .deb is missing)."""
    debs = cache / "debs"
    debs.mkdir(parents=True, exist_ok=True)
    missing = [p for p in packages if _deb_for(debs, p) is None]
    if missing:
        logger.info("apt-get download %s", " ".join(missing))
        subprocess.run(["apt-get", "download", *missing], cwd=debs, check=True, capture_output=True)
    roots: dict[str, Path] = {}
    for package in packages:
        deb = _deb_for(debs, package)
        if deb is None:
            raise RuntimeError(f"apt-get download {package} left no .deb in {debs}")
        root = cache / "extracted" / package
        done = root / ".extracted"
        if not done.exists() or done.read_text() != deb.name:
            shutil.rmtree(root, ignore_errors=True)
            root.mkdir(parents=True)
            subprocess.run(["dpkg-deb", "-x", str(deb), str(root)], check=True)
            done.write_text(deb.name)
        roots[package] = root
    return roots


def read_mono_8k(path: Path) -> np.ndarray:
    """Any sound file of the corpus as float32 mono at 8 kHz (raw .gsm is GSM 6.10 at 8 kHz)."""
    if path.suffix.lower() == ".gsm":
        samples, rate_hz = soundfile.read(str(path), format="RAW", subtype="GSM610", samplerate=RATE_HZ, channels=1, dtype="float32", always_2d=True)
    else:
        clip = read_audio_file(path)
        samples, rate_hz = clip.samples, clip.rate_hz
    mono = samples.mean(axis=1) if samples.shape[1] > 1 else samples[:, 0]
    return np.clip(resample(mono, int(rate_hz), RATE_HZ), -1.0, 1.0)


def convert(cache: Path, roots: dict[str, Path], progress: Callable[[int, int], None] | None = None) -> list[Entry]:
    """Convert what is not converted yet; return the whole manifest (also written to CACHE/manifest.json)."""
    manifest_path = cache / "manifest.json"
    known: dict[str, Entry] = {}
    skipped: set[str] = set()
    if manifest_path.exists():
        data = json.loads(manifest_path.read_text())
        known = {e["file"]: Entry(**e) for e in data.get("files", [])}
        skipped = set(data.get("skipped", []))
    todo: list[tuple[str, Path, str, Path]] = []
    for package, root in roots.items():
        for source in sorted(p for p in root.rglob("*") if p.is_file() and p.suffix.lower() in SOUND_SUFFIXES):
            inner = "/" + str(source.relative_to(root))
            target = cache / "wav" / package / (inner.lstrip("/").rsplit(".", 1)[0] + ".wav")
            todo.append((package, source, inner, target))
    entries: list[Entry] = []
    for done_count, (package, source, inner, target) in enumerate(todo, 1):
        relative = str(target.relative_to(cache))
        if relative in known and target.exists():
            entries.append(known[relative])
        elif relative not in skipped:
            try:
                mono = read_mono_8k(source)
            except (AudioFileError, RuntimeError, soundfile.LibsndfileError) as error:
                logger.warning("skipped %s: %s", source, error)
                skipped.add(relative)
                continue
            seconds = len(mono) / RATE_HZ
            if seconds < MIN_SECONDS:
                skipped.add(relative)
                continue
            target.parent.mkdir(parents=True, exist_ok=True)
            soundfile.write(str(target), mono, RATE_HZ, subtype="PCM_16")
            entries.append(Entry(relative, package, inner, PACKAGES[package](inner), round(seconds, 3)))
        if progress:
            progress(done_count, len(todo))
    manifest_path.write_text(json.dumps({"files": [asdict(e) for e in entries], "skipped": sorted(skipped)}, indent=1))
    return entries


# -- decoders ------------------------------------------------------------------------------------------


def load(cache: Path, entry: Entry) -> np.ndarray:
    samples, _ = soundfile.read(str(cache / entry.file), dtype="float32")
    return samples


def decode_ivrsim(cache: Path, entries: list[Entry], tick: Callable[[], None]) -> list[FalseDigit]:
    found: list[FalseDigit] = []
    for entry in entries:
        for digit in detect_dtmf(load(cache, entry), RATE_HZ):
            found.append(FalseDigit("ivrsim", entry.file, entry.package, entry.category, str(digit.key), round(digit.start_s, 3), digit.as_dict()))
        tick()
    return found


def decode_spandsp(cache: Path, entries: list[Entry], tick: Callable[[], None]) -> list[FalseDigit]:
    found: list[FalseDigit] = []
    for entry in entries:
        for digit in spandsp_rx.decode_timed(load(cache, entry)):
            found.append(FalseDigit("spandsp", entry.file, entry.package, entry.category, digit.key, digit.reported_s, {"reported_s": digit.reported_s}))
        tick()
    return found


def _multimon_run(signal_8k: np.ndarray, folder: Path) -> str:
    raw = folder / "signal.raw"
    signal = resample(signal_8k, RATE_HZ, MULTIMON_RATE_HZ)
    np.clip(np.round(signal * 32767), -32768, 32767).astype("<i2").tofile(raw)
    out = subprocess.run(["multimon-ng", "-q", "-c", "-a", "DTMF", "-t", "raw", str(raw)], capture_output=True, text=True, check=True).stdout
    return "".join(line.split(":", 1)[1].strip() for line in out.splitlines() if line.startswith("DTMF:"))


def _multimon_where(signal_8k: np.ndarray, folder: Path, window_s: float = 2.0) -> list[tuple[float, str]]:
    """Digits of one file with an approximate start: the first 2 s window (1 s hop) that holds each."""
    if len(signal_8k) <= window_s * RATE_HZ:
        return [(0.0, key) for key in _multimon_run(signal_8k, folder)]
    hop = int(window_s / 2 * RATE_HZ)
    width = int(window_s * RATE_HZ)
    hits: list[tuple[float, str]] = []
    last_end = -1.0
    for begin in range(0, len(signal_8k) - hop, hop):
        keys = _multimon_run(signal_8k[begin : begin + width], folder)
        if keys and begin / RATE_HZ >= last_end:  # a hit in the overlap of two windows is counted once
            hits.extend((begin / RATE_HZ, key) for key in keys)
            last_end = (begin + width) / RATE_HZ
    return hits


def decode_multimon(cache: Path, entries: list[Entry], tick: Callable[[], None]) -> list[FalseDigit]:
    """One multimon-ng run per file (about 12 ms each): its digits depend on its block phase, so files
    joined into one run would find others."""
    found: list[FalseDigit] = []
    with tempfile.TemporaryDirectory() as name:
        folder = Path(name)
        for entry in entries:
            signal = load(cache, entry)
            whole = _multimon_run(signal, folder)
            if whole:
                where = _multimon_where(signal, folder)
                times = [t for t, _ in where] + [float("nan")] * max(0, len(whole) - len(where))
                for key, time_s in zip(whole, times):
                    found.append(FalseDigit("multimon-ng", entry.file, entry.package, entry.category, key, time_s, {"time_approx": "+-1 s"}))
            tick()
    return found


DECODERS: dict[str, Callable[[Path, list[Entry], Callable[[], None]], list[FalseDigit]]] = {
    "ivrsim": decode_ivrsim,
    "multimon": decode_multimon,
    "spandsp": decode_spandsp,
}


# -- regression excerpts (tests/data/talkoff) -----------------------------------------------------------

#: Each package's licence, from /usr/share/doc/PACKAGE/copyright in its .deb (checked by hand; the
#: freedesktop theme's licence is per file and is looked up in FREEDESKTOP_LICENCES).
LICENCES: dict[str, str] = {
    "asterisk-core-sounds-en-wav": "CC-BY-SA-3.0 (voice: Allison Smith)",
    "asterisk-core-sounds-es-wav": "CC-BY-SA-3.0 (voice: Allison Smith)",
    "asterisk-core-sounds-fr-wav": "CC-BY-SA-3.0 (voice: June Wallack)",
    "asterisk-core-sounds-it-wav": "CC-BY-3.0 (voice: Carlo Flora)",
    "asterisk-core-sounds-ru-wav": "CC-BY-3.0 (Maxim Topal, ivrvoice.ru)",
    "asterisk-prompt-es-co": "GPL-2 (Avatar Ltda. / July E. Jimenez)",
    "asterisk-prompt-fr-armelle": "BSD-style, notice kept (Michel Gutierrez; voice: Armelle Desjardins)",
    "asterisk-prompt-it-menardi-wav": "CC-BY-SA-3.0 Italian (Marco Menardi; voice: Paola Dal Zot)",
    "asterisk-moh-opsound-wav": "CC-BY-SA-3.0 (per-file authors in the package's copyright file)",
    "colobot-common-sounds": "GPL-3+ (Daniel Roux, EPSITEC SA & TerranovaTeam)",
    "tuxpaint-stamps-default": "GPL-2 (Bill Kendrick and the Tux Paint contributors)",
    "oxygen-sounds": "LGPL-3.0-or-later (Nuno Filipe Povoa)",
    "sound-theme-freedesktop": "see FREEDESKTOP_LICENCES",
}
FREEDESKTOP_LICENCES = {"alarm-clock-elapsed": "CC-BY-SA-3.0 (Tim/corsica_s)", "bell": "CC-BY-3.0 (Dr. Richard Boulanger et al)",
                        "camera-shutter": "CC-BY-SA-3.0 (freesound user horsthorstensen)"}


@dataclass(frozen=True)
class SpreadRule:
    """Pick ``count`` files of ``package`` whose source path contains ``contains`` (and not ``_desc`` unless
    asked), of at least 1 s, and keep ``seconds`` of each (from the start; from the middle for music)."""

    package: str
    contains: str
    count: int
    seconds: float
    category: str = ""


#: The spread of ordinary audio kept beside the false-digit stretches (about 2 minutes).
SPREAD: tuple[SpreadRule, ...] = (
    *(SpreadRule(f"asterisk-core-sounds-{lang}-wav", "/", 2, 4.0) for lang in ("en", "fr", "es", "it", "ru")),
    SpreadRule("asterisk-prompt-es-co", "/", 2, 4.0),
    SpreadRule("asterisk-prompt-fr-armelle", "/", 2, 4.0),
    SpreadRule("asterisk-prompt-it-menardi-wav", "/", 2, 4.0),
    *(SpreadRule("tuxpaint-stamps-default", f"_desc_{lang}.", 1, 2.5) for lang in ("bg", "ca", "da", "el", "lt", "ro", "be", "es")),
    SpreadRule("asterisk-moh-opsound-wav", "/", 3, 7.0),
    SpreadRule("colobot-common-sounds", "/music/", 3, 7.0),
    SpreadRule("tuxpaint-stamps-default", "/animals/", 8, 3.0, category="noise"),
    SpreadRule("tuxpaint-stamps-default", "/", 2, 3.0, category="noise"),
    SpreadRule("sound-theme-freedesktop", "", 0, 3.0),  # filled from FREEDESKTOP_LICENCES below
    SpreadRule("oxygen-sounds", "/", 2, 2.0),
    SpreadRule("colobot-common-sounds", "/sounds/", 2, 2.0),
)
#: Seconds kept either side of a false digit.
MARGIN_S = 1.25


def _where(digit: FalseDigit) -> tuple[float, float]:
    """The stretch of the file a false digit lies in, by what each decoder can tell."""
    if digit.decoder == "ivrsim":
        return float(digit.details["start_s"]), float(digit.details["end_s"])
    if digit.decoder == "spandsp":
        return max(0.0, digit.time_s - 0.25), digit.time_s
    return max(0.0, digit.time_s - 1.0), digit.time_s + 2.0  # multimon-ng: the 2 s window that held it, +-1 s


@dataclass
class Excerpt:
    """One regression excerpt: ``entry`` from ``start_s`` to ``end_s``; ``why`` names the false digits."""

    entry: Entry
    start_s: float
    end_s: float
    why: list[str]
    name: str = ""


def _on_grid(start_s: float) -> float:
    """``start_s`` moved back onto ivrsim's analysis grid (whole half-blocks from the start of the original):
    some false digits are found at one block phase only, and an excerpt must keep the phase they had."""
    half_block = round(HALF_BLOCK_S * RATE_HZ)
    return (int(start_s * RATE_HZ) // half_block) * half_block / RATE_HZ


def plan_excerpts(entries: list[Entry], results: dict[str, list[FalseDigit]], seed: int = 18) -> list[Excerpt]:
    """Every stretch where a decoder found a false digit (the same recording in several packages once),
    then the SPREAD."""
    by_file = {e.file: e for e in entries}
    hits: dict[str, list[tuple[float, float, str]]] = {}
    for name, digits in results.items():
        for d in digits:
            lo, hi = _where(d)
            if math.isnan(lo):  # nan: multimon-ng found it in the whole file only
                lo, hi = 0.0, by_file[d.file].seconds
            hits.setdefault(d.file, []).append((lo, hi, f"{name} {d.key} @ {d.time_s:.2f} s"))
    excerpts: list[Excerpt] = []
    seen: set[tuple[str | float, int]] = set()
    for file, spans in sorted(hits.items()):
        entry = by_file[file]
        merged: list[Excerpt] = []
        for lo, hi, why in sorted(spans):
            start, end = _on_grid(max(0.0, lo - MARGIN_S)), min(entry.seconds, hi + MARGIN_S)
            if merged and start <= merged[-1].end_s:
                merged[-1].end_s = max(merged[-1].end_s, end)
                merged[-1].why.append(why)
            else:
                merged.append(Excerpt(entry, start, end, [why]))
        for excerpt in merged:
            # tt-monkeys is the same recording in six packages, two inukshuk files are one recording.
            keys: set[tuple[str | float, int]] = {(Path(entry.source).name, int(excerpt.start_s)), (entry.seconds, int(excerpt.start_s))}
            if not keys & seen:
                seen.update(keys)
                excerpts.append(excerpt)
    rng = np.random.default_rng(seed)
    for rule in SPREAD:
        if rule.package == "sound-theme-freedesktop":
            chosen = [e for e in entries if e.package == rule.package and Path(e.source).stem in FREEDESKTOP_LICENCES]
        else:
            pool = [e for e in entries if e.package == rule.package and rule.contains in e.source and e.seconds >= 1.5
                    and "/silence/" not in e.source and ("_desc" in rule.contains or "_desc" not in e.source) and (not rule.category or e.category == rule.category)
                    and e.file not in hits]
            chosen = [pool[i] for i in sorted(rng.choice(len(pool), size=min(rule.count, len(pool)), replace=False))]
        for entry in chosen:
            length = min(rule.seconds, entry.seconds)
            start = (entry.seconds - length) / 2 if entry.category == "music" else 0.0
            excerpts.append(Excerpt(entry, start, start + length, []))
    return excerpts


def _multimon_excerpt(samples: np.ndarray) -> str:
    with tempfile.TemporaryDirectory() as name:
        return _multimon_run(samples, Path(name))


#: What each decoder finds in an excerpt alone (for SOURCES.md: is the false digit still there?).
EXCERPT_DECODERS: dict[str, Callable[[np.ndarray], str]] = {
    "ivrsim": lambda samples: "".join(d.key for d in detect_dtmf(samples, RATE_HZ)),
    "multimon": _multimon_excerpt,
    "spandsp": spandsp_rx.decode,
}


def _short(package: str) -> str:
    return package.replace("asterisk-core-sounds-", "ast-").replace("asterisk-prompt-", "ast-").replace("-wav", "").replace("-stamps-default", "").replace("-common-sounds", "")


def write_excerpts(cache: Path, excerpts: list[Excerpt], folder: Path) -> None:
    """FLAC (8 kHz, 16-bit) files plus SOURCES.md in ``folder``; old .flac files there are replaced."""
    folder.mkdir(parents=True, exist_ok=True)
    for old in folder.glob("*.flac"):
        old.unlink()
    rows = []
    debs = {p: _deb_for(cache / "debs", p) for p in PACKAGES}
    for excerpt in excerpts:
        entry = excerpt.entry
        kind = "falsedigit" if excerpt.why else entry.category
        whole = load(cache, entry)
        samples = whole[round(excerpt.start_s * RATE_HZ) : round(excerpt.end_s * RATE_HZ)]
        if any(why.startswith("multimon") for why in excerpt.why):
            # multimon-ng's digit depends on its own block phase: move the start back until it is found again.
            while excerpt.start_s > 0 and not _multimon_excerpt(samples):
                excerpt.start_s = _on_grid(max(0.0, excerpt.start_s - 0.5))
                samples = whole[round(excerpt.start_s * RATE_HZ) : round(excerpt.end_s * RATE_HZ)]
        excerpt.name = f"{kind}_{_short(entry.package)}_{Path(entry.source).stem}_{excerpt.start_s:.1f}s.flac".replace(" ", "_")
        soundfile.write(str(folder / excerpt.name), samples, RATE_HZ, format="FLAC", subtype="PCM_16")
        licence = LICENCES[entry.package]
        if entry.package == "sound-theme-freedesktop":
            licence = FREEDESKTOP_LICENCES[Path(entry.source).stem]
        deb = debs[entry.package]
        again = ""
        if excerpt.why:  # does each decoder that found a digit here still find it in the excerpt alone?
            flagged = sorted({why.split(" ", 1)[0] for why in excerpt.why})
            again = ", ".join(f"{name} {EXCERPT_DECODERS[name](samples) or '-'}" for name in flagged if name in EXCERPT_DECODERS)
        rows.append(f"| {excerpt.name} | {deb.name if deb else entry.package} | {entry.source} | {licence} | "
                    f"{excerpt.start_s:.2f}-{excerpt.end_s:.2f} | {'; '.join(excerpt.why)} | {again} |")
    total_s = sum(e.end_s - e.start_s for e in excerpts)
    text = [
        "# Talk-off regression excerpts (real recordings)",
        "",
        "Short stretches of public recordings from Debian packages, converted to 8 kHz mono 16-bit FLAC by",
        "`bench/dtmf_real_corpus.py --excerpts tests/data/talkoff` (which also downloads and converts the whole",
        "corpus). Nobody pressed a key in any of them: tests/test_dtmf_real_talkoff.py asserts that the receiver",
        "finds no digit. `falsedigit_*` files are the stretches where a decoder (ivrsim, multimon-ng or spandsp)",
        "found a false digit in the whole corpus when they were cut, with 1.25 s either side; each starts a whole",
        "number of ivrsim's 51-sample half-blocks into the original, so that a digit found at one block phase only",
        "is found again (last column). The others are a spread of speech in several languages and voices, music,",
        "and animal and other noises.",
        "",
        f"{len(excerpts)} files, {total_s:.0f} s. Each file keeps its own licence (column 4), as stated in",
        "/usr/share/doc/PACKAGE/copyright of its package; the excerpt is seconds from the start of the original.",
        "",
        "| file | package | original file | licence | excerpt s | false digits found there (whole file) | found in the excerpt alone |",
        "|---|---|---|---|---|---|---|",
        *rows,
        "",
    ]
    (folder / "SOURCES.md").write_text("\n".join(text))


# -- report --------------------------------------------------------------------------------------------


def summary(entries: list[Entry], results: dict[str, list[FalseDigit]]) -> dict[str, Any]:
    categories = sorted({e.category for e in entries})
    seconds = {c: sum(e.seconds for e in entries if e.category == c) for c in categories}
    total_h = sum(seconds.values()) / 3600.0
    corpus = {
        "files": len(entries),
        "hours": round(total_h, 3),
        "per_category": {c: {"files": sum(1 for e in entries if e.category == c), "hours": round(s / 3600.0, 3)} for c, s in seconds.items()},
        "per_package": {p: round(sum(e.seconds for e in entries if e.package == p) / 3600.0, 3) for p in sorted({e.package for e in entries})},
    }
    decoders: dict[str, object] = {}
    for name, digits in results.items():
        decoders[name] = {
            "false_digits": len(digits),
            "hours": round(total_h, 3),
            "false_digits_per_hour": round(len(digits) / total_h, 2) if total_h else 0.0,
            "per_category": {
                c: {"false_digits": sum(1 for d in digits if d.category == c), "per_hour": round(sum(1 for d in digits if d.category == c) / (seconds[c] / 3600.0), 2)}
                for c in categories
            },
            "digits": [asdict(d) for d in digits],
        }
    return {"corpus": corpus, "decoders": decoders}


def _progress() -> tuple[Callable[[str, int], None], Callable[[], None], Callable[[], None]]:
    """start(label, total), tick(), stop(): a rich progress bar on a terminal, nothing otherwise."""
    if not sys.stderr.isatty():
        return (lambda label, total: None), (lambda: None), (lambda: None)
    from rich.progress import Progress

    bar = Progress(transient=True)
    state: dict[str, object] = {}

    def start(label: str, total: int) -> None:
        if not state:
            bar.start()
        state["task"] = bar.add_task(label, total=total)

    def tick() -> None:
        bar.advance(state["task"])  # type: ignore[arg-type]

    def stop() -> None:
        if state:
            bar.stop()

    return start, tick, stop


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cache", type=Path, default=DEFAULT_CACHE, help=f"cache folder (default {DEFAULT_CACHE})")
    parser.add_argument("--json", action="store_true", help="print the summary (and every false digit) as JSON")
    parser.add_argument("--list", action="store_true", help="list each false digit")
    parser.add_argument("--decoders", default=",".join(DECODERS), help="comma-separated subset of " + ",".join(DECODERS))
    parser.add_argument("--convert-only", action="store_true", help="download and convert, decode nothing")
    parser.add_argument("--results", type=Path, help="take the false digits from this earlier --json output instead of decoding")
    parser.add_argument("--excerpts", type=Path, help="write the regression excerpts and SOURCES.md into this folder")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO if not args.json else logging.WARNING, format="%(message)s")
    names = [n.strip() for n in args.decoders.split(",") if n.strip()]
    unknown = [n for n in names if n not in DECODERS]
    if unknown:
        parser.error(f"--decoders: unknown {unknown}; use {','.join(DECODERS)}")
    if "multimon" in names and not shutil.which("multimon-ng"):
        logger.warning("multimon-ng not installed (apt-get install multimon-ng): skipped")
        names.remove("multimon")
    if "spandsp" in names:
        if not spandsp_rx.available():
            logger.warning("libspandsp not installed (apt-get install libspandsp2): skipped")
            names.remove("spandsp")
        else:
            spandsp_rx.self_check()
    cache = args.cache.expanduser()
    start, tick, stop = _progress()
    try:
        roots = fetch(cache, list(PACKAGES))
        state: dict[str, bool] = {}

        def converting(done: int, total: int) -> None:
            if not state:
                start("converting", total)
                state["started"] = True
            tick()

        entries = convert(cache, roots, converting)
        if args.convert_only:
            print(json.dumps(summary(entries, {})["corpus"], indent=2))
            return 0
        results: dict[str, list[FalseDigit]] = {}
        if args.results:
            earlier = json.loads(args.results.read_text())["decoders"]
            results = {name: [FalseDigit(**d) for d in r["digits"]] for name, r in earlier.items()}
        else:
            for name in names:
                start(f"decoding: {name}", len(entries))
                results[name] = DECODERS[name](cache, entries, tick)
    finally:
        stop()
    if args.excerpts:
        write_excerpts(cache, plan_excerpts(entries, results), args.excerpts)
    report = summary(entries, results)
    if args.json:
        print(json.dumps(report, indent=2))
        return 0
    corpus = report["corpus"]
    assert isinstance(corpus, dict)
    print(f"corpus: {corpus['files']} files, {corpus['hours']:.2f} h in {cache}")
    for category, c in corpus["per_category"].items():
        print(f"  {category:<8} {c['files']:>6} files {c['hours']:>7.2f} h")
    print(f"{'decoder':<12} {'false digits':>12} {'hours':>7} {'per hour':>9}   per category (digits)")
    for name, r in report["decoders"].items():
        per = ", ".join(f"{c} {v['false_digits']}" for c, v in r["per_category"].items())
        print(f"{name:<12} {r['false_digits']:>12} {r['hours']:>7.2f} {r['false_digits_per_hour']:>9.2f}   {per}")
    if args.list:
        for name, digits in results.items():
            for d in digits:
                extra = " ".join(f"{k}={v}" for k, v in d.details.items() if k != "key")
                print(f"{name:<12} {cache / d.file} @ {d.time_s:.3f} s key {d.key} {extra}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
