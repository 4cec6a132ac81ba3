#!/usr/bin/env bash
# One-time (idempotent) set-up on a fresh Debian machine: Mesa for offscreen rendering,
# a virtual environment in .venv, the CPU build of torch first, then puzzlebot itself.
set -euo pipefail
cd "$(dirname "$0")/.."

MESA_PACKAGES="libosmesa6 libegl1 libgl1-mesa-dri libglx-mesa0 libegl-mesa0"
if command -v dpkg >/dev/null 2>&1 && ! dpkg -s $MESA_PACKAGES >/dev/null 2>&1; then
  if [ "$(id -u)" = "0" ]; then
    echo "[setup] installing Mesa for headless rendering: $MESA_PACKAGES"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $MESA_PACKAGES >/dev/null
  else
    echo "[setup] offscreen rendering needs: sudo apt-get install $MESA_PACKAGES" >&2
  fi
fi

PYTHON="${PYTHON:-python3}"
if [ ! -x .venv/bin/python ]; then
  echo "[setup] creating .venv"
  "$PYTHON" -m venv .venv
fi
# torch first, pinned to the CPU wheel: a bare 'torch' requirement would pull a multi-GB CUDA build.
.venv/bin/python -m pip install -q --disable-pip-version-check "torch==2.13.0"
.venv/bin/python -m pip install -q --disable-pip-version-check -e ".[dev]"
echo "[setup] done: .venv/bin/puzzlebot-sim, .venv/bin/puzzlebot-author, .venv/bin/python -m pytest"
