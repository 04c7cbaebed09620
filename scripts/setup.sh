#!/usr/bin/env bash
# One-time (idempotent) set-up: Debian data/browser packages where apt is available, a virtual
# environment at .venv with the pinned requirements, and rerelrp_core installed into it.
# Usage: scripts/setup.sh [--browser]   (--browser also installs Chromium for the browser test)
set -euo pipefail
cd "$(dirname "$0")/.."

apt_packages=(dataset-fashion-mnist)
[[ "${1:-}" == "--browser" ]] && apt_packages+=(chromium chromium-driver)

install_apt() {
  local missing=()
  for p in "${apt_packages[@]}"; do
    dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p")
  done
  [[ ${#missing[@]} -eq 0 ]] && return 0
  if ! command -v apt-get >/dev/null 2>&1; then
    echo "setup: apt-get not available; skipping ${missing[*]} (Fashion-MNIST falls back to torchvision's download folder)"
    return 0
  fi
  local sudo=""
  [[ $(id -u) -ne 0 ]] && sudo="sudo"
  echo "setup: installing Debian packages: ${missing[*]}"
  $sudo apt-get install -y -q "${missing[@]}" >/dev/null 2>&1 \
    || { $sudo apt-get update -q >/dev/null && $sudo apt-get install -y -q "${missing[@]}" >/dev/null; } \
    || echo "setup: WARNING: could not install ${missing[*]}"
}
install_apt

python=${PYTHON:-python3}
[[ -x .venv/bin/python ]] || "$python" -m venv .venv

# Reinstall only when the pins change: the stamp holds the hash of requirements + pyproject.
stamp=.venv/.setup-stamp
want=$(cat requirements.txt pyproject.toml | sha256sum | cut -d' ' -f1)
if [[ "$(cat "$stamp" 2>/dev/null)" != "$want" ]]; then
  echo "setup: installing Python packages into .venv (about a minute)"
  .venv/bin/python -m pip install -q --upgrade pip
  .venv/bin/python -m pip install -q -r requirements.txt
  .venv/bin/python -m pip install -q --no-deps -e .
  echo "$want" > "$stamp"
fi
