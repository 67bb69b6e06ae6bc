#!/usr/bin/env bash
# Installs the Debian packages tnet needs, only those that are missing; extra package names given
# as arguments are installed the same way (CI adds clang-19 for its second compiler).
set -euo pipefail
packages=(g++ cmake make ninja-build libeigen3-dev libstb-dev libturbojpeg0-dev zlib1g-dev doctest-dev "$@")
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "installing: ${missing[*]}"
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo=sudo
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing[@]}"
fi
