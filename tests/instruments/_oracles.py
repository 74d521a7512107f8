"""Location of the shared oracle files (beside the repository: <repo>/../shared/oracles)."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

ORACLES = Path(__file__).resolve().parents[2] / ".." / "shared" / "oracles"


def _path(name: str) -> Path:
    p = ORACLES / name
    if not p.exists():  # pragma: no cover - CI always has shared/ beside the repo
        pytest.fail(f"oracle file missing: {p}")
    return p


def load_json(name: str):
    return json.loads(_path(name).read_text(encoding="utf-8"))


def load_csv(name: str) -> list[dict[str, str]]:
    with _path(name).open(newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


def cell(value: str) -> float | None:
    """CSV cell -> float, empty -> None (missing answer / score not computable)."""
    return None if value.strip() == "" else float(value)
