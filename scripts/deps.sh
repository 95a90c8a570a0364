#!/usr/bin/env bash
# Install the Debian/Ubuntu packages given as arguments when any is missing.
# Runs apt-get update first; uses sudo when not root. Quiet when nothing is missing.
set -euo pipefail
# Packages whose program may come from elsewhere (NodeSource's nodejs, say): one is present
# when its program is on PATH, whatever package brought it.
declare -A program=([nodejs]=node [npm]=npm)
missing=()
for p in "$@"; do
    if [ -n "${program[$p]:-}" ] && command -v "${program[$p]}" >/dev/null 2>&1; then
        continue
    fi
    if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
        missing+=("$p")
    fi
done
[ ${#missing[@]} -eq 0 ] && exit 0
if ! command -v apt-get >/dev/null 2>&1; then
    echo "error: missing system packages (${missing[*]}) and no apt-get to install them" >&2
    exit 1
fi
sudo=()
if [ "$(id -u)" -ne 0 ]; then
    if ! command -v sudo >/dev/null 2>&1; then
        echo "error: missing system packages (${missing[*]}): run as root or install sudo" >&2
        exit 1
    fi
    sudo=(sudo)
fi
echo "Installing missing system packages: ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
"${sudo[@]}" apt-get update -qq
"${sudo[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
