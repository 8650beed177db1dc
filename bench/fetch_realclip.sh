#!/bin/sh
# Fetch the real CGI clip the tracking measurements use (Megamind.avi: shot cuts between two
# characters), from Debian's opencv-doc package, into DIR (default: realclips/).
#   sh bench/fetch_realclip.sh [DIR]
# Needs apt-get and dpkg (Debian/Ubuntu); nothing is installed, the package is only unpacked.
set -eu
dest=${1:-realclips}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
(cd "$work" && apt-get download opencv-doc)
dpkg -x "$work"/opencv-doc_*.deb "$work/x"
clip=$(find "$work/x" -name Megamind.avi | head -n 1)
[ -n "$clip" ] || { echo "Megamind.avi not found in opencv-doc" >&2; exit 1; }
mkdir -p "$dest"
cp "$clip" "$dest/Megamind.avi"
echo "$dest/Megamind.avi"
