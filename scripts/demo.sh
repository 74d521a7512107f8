#!/usr/bin/env bash
# Set up regenheart in a local virtual environment and run the whole synthetic RegenHeart trial.
# Needs only Python >= 3.11 and pip. Extra arguments go to `regenheart demo` (e.g. --seed 7).
set -euo pipefail
cd "$(dirname "$0")/.."
python3 -m venv .venv
.venv/bin/python -m pip install --quiet --upgrade pip
.venv/bin/python -m pip install --quiet -e .
bash scripts/pdf-libs.sh   # Pango for the study report PDF (WeasyPrint)
# Bytecode of regenheart's own modules, written now: where PYTHONDONTWRITEBYTECODE is set, every run would
# otherwise compile them again (about 0.4 s of each demo).
.venv/bin/python -m compileall -q src/regenheart
exec .venv/bin/regenheart demo --out regenheart-demo "$@"
