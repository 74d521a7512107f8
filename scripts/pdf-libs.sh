#!/usr/bin/env bash
# Install the system libraries of the PDF engine (WeasyPrint: Pango, with a font) when missing.
# Used by scripts/demo.sh and scripts/test.sh; needs apt-get as root or with sudo. Without them the
# submission package is still written, only report.pdf is skipped with a message saying why.
set -euo pipefail
if ldconfig -p 2>/dev/null | grep -q "libpangoft2-1.0.so" && fc-list 2>/dev/null | grep -q .; then
  exit 0
fi
if ! command -v apt-get >/dev/null; then
  echo "note: install Pango (libpango-1.0-0, libpangoft2-1.0-0) and a font for the study report PDF" >&2
  exit 0
fi
SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
echo "Installing Pango and a font for the study report PDF..."
$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq \
  libpango-1.0-0 libpangoft2-1.0-0 fontconfig fonts-dejavu-core >/dev/null
