#!/usr/bin/env bash
# Sets up ivrsim on a Debian machine: the system packages it needs (apt-get, as root or through sudo) and
# the Python package with its test extras in ./.venv. Safe to run again: it installs only what is missing.
set -euo pipefail
cd "$(dirname "$0")"

# espeak-ng: speech for the talk-off tests (and TTS later); multimon-ng: the reference decoder in bench/;
# redis-server: the distributed job queue's tests and bench (the embedded queue needs no server);
# libportaudio2: PortAudio for sounddevice (the sound card); pulseaudio, pulseaudio-utils (pactl, pacat) and
# libasound2-plugins (ALSA's pulse device for PortAudio): the null-sink sound card the device tests run on;
# chromium, chromium-driver: the headless browser (and its WebDriver) the dashboard's browser tests drive;
# flite: more synthetic voices for the talk-off corpus; libspandsp2: spandsp's DTMF receiver, the second
# reference decoder in bench/ (bench/spandsp_rx.py); gcc and python3-dev: the DTMF receiver's compiled kernels.
APT_PACKAGES=(gcc python3-dev espeak-ng multimon-ng redis-server libportaudio2 pulseaudio pulseaudio-utils libasound2-plugins chromium chromium-driver flite libspandsp2)

missing=()
for package in "${APT_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed" || missing+=("$package")
done
if [ ${#missing[@]} -gt 0 ]; then
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  echo "setup: installing ${missing[*]}"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

python=${PYTHON:-python3}
if ! "$python" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
  echo "setup: ivrsim needs Python 3.11 or newer as $python (set PYTHON=/path/to/python3.11)" >&2
  exit 1
fi
if [ ! -x .venv/bin/python ]; then
  if ! "$python" -m venv .venv 2>/dev/null; then
    # Debian's python3 keeps venv in a package of its own
    sudo=""
    [ "$(id -u)" -eq 0 ] || sudo="sudo"
    $sudo apt-get install -y -qq python3-venv >/dev/null
    rm -rf .venv
    "$python" -m venv .venv
  fi
fi
stamp=.venv/.ivrsim-installed
# (the install also compiles the DTMF receiver's kernels, ivrsim/audio/dtmf_kernels.pyx and dtmf_simd.h, with
# Cython and gcc; it runs again when they or setup.py change, or when the compiled module is missing)
kernels=(ivrsim/audio/dtmf_kernels*.so)
changed=0
for source in pyproject.toml setup.py ivrsim/audio/dtmf_kernels.pyx ivrsim/audio/dtmf_simd.h; do
  [ "$source" -nt "$stamp" ] && changed=1
done
if [ ! -f "$stamp" ] || [ "$changed" -eq 1 ] || [ ! -f "${kernels[0]}" ]; then
  echo "setup: installing ivrsim and its test extras into .venv"
  # (some machines' pip configs list find-links folders that do not exist; pip warns about each one)
  .venv/bin/python -m pip install -q --disable-pip-version-check -e '.[test]' 2>&1 \
    | { grep -v "is ignored: it is neither a file nor a directory" || true; }
  touch "$stamp"
fi

# axios, for the test that runs the Canonical API's Node example (where node and npm are installed; the test
# skips without node): tests/node/package-lock.json pins it.
if command -v npm >/dev/null 2>&1 && [ ! -d tests/node/node_modules/axios ]; then
  echo "setup: installing axios into tests/node"
  npm ci --prefix tests/node --no-audit --no-fund --silent
fi
