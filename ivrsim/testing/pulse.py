"""A PulseAudio daemon with null sinks for tests and benchmarks: the real device code path with no sound card.

``PulseAudioServer`` starts ``pulseaudio`` (as root too) with its own runtime folder, so it never touches
a user's session: null sinks ``speaker`` (the default sink: what the card plays is heard on
``speaker.monitor``) and ``micfeed`` (whose monitor is the default source: what a test plays into
``micfeed`` is the card's microphone). While it runs, ``os.environ`` points libpulse (and so PortAudio's
ALSA ``pulse``/``default`` devices) at it. An idle null sink wakes only every 2 s, so a stream that starts
on it waits up to 2 s; a low-latency recorder kept on each monitor ("keep-alive") keeps the sinks clocked
like a real card's.
"""

from __future__ import annotations

import glob
import os
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path
from types import TracebackType

import numpy as np

from ivrsim.testing.waiting import wait_until

#: Binaries the harness runs (Debian packages pulseaudio and pulseaudio-utils).
BINARIES = ("pulseaudio", "pactl", "pacat", "parec")
#: ALSA's PulseAudio plugin, which gives PortAudio its ``pulse`` device (Debian package libasound2-plugins).
ALSA_PULSE_PLUGIN = "/usr/lib/*/alsa-lib/libasound_module_pcm_pulse.so"
#: Longest the daemon may take to answer ``pactl info``, in seconds.
START_TIMEOUT_S = 20.0


def available() -> str | None:
    """None when PulseAudio, its ALSA plugin and PortAudio are installed, else why not (a skip reason)."""
    missing = [name for name in BINARIES if shutil.which(name) is None]
    if missing:
        return f"PulseAudio is not installed ({', '.join(missing)} missing): apt-get install pulseaudio pulseaudio-utils"
    if not glob.glob(ALSA_PULSE_PLUGIN):
        return "ALSA's PulseAudio plugin is not installed: apt-get install libasound2-plugins"
    try:
        import sounddevice  # noqa: F401
    except OSError:
        return "PortAudio is not installed: apt-get install libportaudio2"
    return None


class PulseAudioServer:
    """``pulseaudio`` with null sinks ``speaker`` and ``micfeed`` in a runtime folder of its own."""

    def __init__(self, speaker: str = "speaker", micfeed: str = "micfeed", keep_alive: bool = True) -> None:
        self.speaker = speaker
        self.micfeed = micfeed
        self.keep_alive = keep_alive
        self.folder: Path | None = None
        self.env: dict[str, str] = {}
        self.pid: int | None = None
        self._saved: dict[str, str | None] = {}
        self._keep_alives: list[subprocess.Popen[bytes]] = []

    @property
    def speaker_monitor(self) -> str:
        return f"{self.speaker}.monitor"

    @property
    def micfeed_monitor(self) -> str:
        return f"{self.micfeed}.monitor"

    def __enter__(self) -> PulseAudioServer:
        reason = available()
        if reason is not None:
            raise RuntimeError(reason)
        self.folder = Path(tempfile.mkdtemp(prefix="ivrsim-pulse-"))
        runtime = self.folder / "pulse"
        self.env = {"XDG_RUNTIME_DIR": str(self.folder), "PULSE_RUNTIME_PATH": str(runtime),
                    "PULSE_SERVER": f"unix:{runtime / 'native'}", "PULSE_COOKIE": str(self.folder / "cookie")}
        for name, value in self.env.items():
            self._saved[name] = os.environ.get(name)
            os.environ[name] = value
        daemon_env = {**os.environ, "HOME": str(self.folder), "XDG_CONFIG_HOME": str(self.folder / "config")}
        log = self.folder / "pulseaudio.log"
        try:
            subprocess.run(
                ["pulseaudio", "-D", "--exit-idle-time=-1", "-n", "--use-pid-file=yes", f"--log-target=file:{log}",
                 f"--load=module-null-sink sink_name={self.speaker}", f"--load=module-null-sink sink_name={self.micfeed}",
                 "--load=module-native-protocol-unix auth-anonymous=1"],
                env=daemon_env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, check=True, timeout=START_TIMEOUT_S)
            wait_until(self._answers, timeout_s=START_TIMEOUT_S)
            self.pid = int((runtime / "pid").read_text().strip())
            self.pactl("set-default-sink", self.speaker)
            self.pactl("set-default-source", self.micfeed_monitor)
            if self.keep_alive:
                # 1,000 bytes a second each (u8 at 1 kHz) into files; ready once both have written some
                sinks = []
                for source in (self.speaker_monitor, self.micfeed_monitor):
                    sink = self.folder / f"keep-alive-{source}.raw"
                    with open(sink, "wb") as output:
                        self._keep_alives.append(subprocess.Popen(
                            ["parec", "--raw", "--format=u8", "--channels=1", "--rate=1000", "--latency-msec=10", "-d", source],
                            env={**os.environ, **self.env}, stdin=subprocess.DEVNULL, stdout=output, stderr=subprocess.DEVNULL))
                    sinks.append(sink)
                wait_until(lambda: all(sink.stat().st_size > 0 for sink in sinks), timeout_s=START_TIMEOUT_S)
        except BaseException as error:
            self.__exit__(type(error), error, None)
            if isinstance(error, subprocess.CalledProcessError):
                raise RuntimeError(f"pulseaudio did not start: {error.stderr.decode(errors='replace').strip()}; see {log}") from error
            raise
        return self

    def _answers(self) -> bool:
        return subprocess.run(["pactl", "info"], env={**os.environ, **self.env}, capture_output=True, timeout=10, check=False).returncode == 0

    def pactl(self, *arguments: str) -> str:
        done = subprocess.run(["pactl", *arguments], env={**os.environ, **self.env}, capture_output=True, timeout=10, check=True)
        return done.stdout.decode()

    def play(
        self, sink: str, samples: np.ndarray, rate_hz: int, wait: bool = True, latency_ms: int = 20
    ) -> subprocess.Popen[bytes]:
        """Play mono ``samples`` into ``sink`` through a second stream (``pacat``); with ``wait``, return once played.
        ``latency_ms`` is pacat's buffer: 20 ms starts at once (for timing tests); a longer one rides out a loaded
        machine, where pacat starved for 20 ms plays silence into the sink."""
        # from a file, not a pipe: writing more than a pipe holds would block until pacat had played most of it
        assert self.folder is not None, "the server is not running"
        source = tempfile.NamedTemporaryFile(dir=self.folder, suffix=".raw", delete=False)
        with source:
            source.write(np.ascontiguousarray(samples, dtype="<f4").tobytes())
        with open(source.name, "rb") as stdin:
            player = subprocess.Popen(
                ["pacat", "--playback", "--raw", "--format=float32le", "--channels=1", f"--rate={int(rate_hz)}", f"--latency-msec={int(latency_ms)}", "-d", sink],
                env={**os.environ, **self.env}, stdin=stdin, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        os.unlink(source.name)
        if wait:
            player.wait(timeout=len(samples) / rate_hz + 20)
        return player

    def record(self, source: str, seconds: float, rate_hz: int = 48000) -> np.ndarray:
        """``seconds`` of mono float32 audio from ``source`` (e.g. ``speaker.monitor``), from now."""
        wanted = int(seconds * rate_hz) * 4
        recorder = subprocess.Popen(
            ["parec", "--raw", "--format=float32le", "--channels=1", f"--rate={int(rate_hz)}", "--latency-msec=10", "-d", source],
            env={**os.environ, **self.env}, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
        assert recorder.stdout is not None
        data = bytearray()
        deadline = time.monotonic() + seconds + 20
        try:
            while len(data) < wanted and time.monotonic() < deadline:
                chunk = recorder.stdout.read1(wanted - len(data))  # type: ignore[attr-defined]
                if not chunk:
                    break
                data += chunk
        finally:
            recorder.kill()
            recorder.wait()
        return np.frombuffer(bytes(data[:len(data) // 4 * 4]), dtype="<f4").astype(np.float32)

    def stop(self) -> None:
        """Stop the daemon now (a test's way to make the sound card disappear mid-call)."""
        for keeper in self._keep_alives:
            keeper.kill()
            keeper.wait()
        self._keep_alives.clear()
        if self.pid is not None:
            try:
                os.kill(self.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline and _alive(self.pid):
                time.sleep(0.01)
            self.pid = None

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None) -> None:
        self.stop()
        for name, value in self._saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
        self._saved.clear()
        if self.folder is not None:
            shutil.rmtree(self.folder, ignore_errors=True)
            self.folder = None


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:  # a zombie (daemonised, so reaped by init) counts as gone
        return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"
    except OSError:
        return False
