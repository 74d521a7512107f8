#!/usr/bin/env bash
# Set up regenheart with its test dependencies and run the whole test suite.
# Needs Python >= 3.11 and pip; installs (apt-get, as root or with sudo) Debian's chromium for the
# browser tests and PostgreSQL for the multi-site engine tests when missing. Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
python3 -m venv .venv
.venv/bin/python -m pip install --quiet --upgrade pip
.venv/bin/python -m pip install --quiet -e '.[test,postgres]'
bash scripts/pdf-libs.sh   # Pango for the study report PDF (WeasyPrint)
if [ ! -x /usr/bin/chromium ]; then
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  echo "Installing Debian's chromium for the browser tests..."
  $SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq chromium >/dev/null
fi
if [ -z "${REGENHEART_TEST_PG_URL:-}" ]; then
  REGENHEART_TEST_PG_URL=$(bash scripts/postgres.sh)
  export REGENHEART_TEST_PG_URL
fi
exec .venv/bin/python -m pytest "$@"
