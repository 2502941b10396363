#!/usr/bin/env bash
# System packages the tests need (Debian): OSMesa for headless MuJoCo rendering, Chromium and
# chromedriver for the browser test of the viewer, ffmpeg-free fonts for the report screenshots.
# Idempotent and non-interactive: installs only what is missing. Run as root (or with sudo).
set -euo pipefail

PKGS=(libosmesa6 chromium chromium-driver fonts-dejavu-core)

missing=()
for p in "${PKGS[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done

if [ "${#missing[@]}" -eq 0 ]; then
  echo "setup-system: all packages present (${PKGS[*]})"
  exit 0
fi

SUDO=""
if [ "$(id -u)" -ne 0 ]; then
  SUDO="sudo -n"
fi

echo "setup-system: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -q
$SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}"
