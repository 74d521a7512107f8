"""Compare two demo output folders file by file, apart from what differs between any two runs.

Run: .venv/bin/python benchmarks/compare_demo_outputs.py DIR_A DIR_B

Used to check that a faster pipeline writes the same outputs: the same files; JSON files equal key by key
(numbers exactly) once times, hashes, sizes and durations are left out; other text and binary files equal
byte by byte once ISO and SAS timestamps and SHA-256 audit hashes are masked. The report PDFs are only
listed with their sizes (their page streams carry the snapshot time in the footer). study.db is skipped:
its audit trail carries entry times and hashes (tests/synth/test_entry.py compares database contents).
Exit status 1 when anything differs.
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path
from typing import Any

TIMESTAMPS = [re.compile(rb"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?(Z|[+-]\d\d:\d\d)?"),  # ISO 8601
              re.compile(rb"\d\d[A-Z]{3}\d\d:\d\d:\d\d:\d\d"),  # SAS transport header dates
              re.compile(rb"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d(\.\d+)?")]
HASHES = re.compile(rb"\b[0-9a-f]{64}\b|\b[0-9a-f]{16}(?=\.\.\.|&hellip;|\xe2\x80\xa6)")  # full or shortened
VOLATILE_KEYS = {"seconds", "sha256", "bytes", "taken_utc", "created_utc", "snapshot_utc", "audit_head_hash",
                 "datasetJSONCreationDateTime", "dbLastModifiedDateTime", "creationDateTime"}


def masked(data: bytes) -> bytes:
    for pattern in TIMESTAMPS:
        data = pattern.sub(b"<time>", data)
    return HASHES.sub(b"<hash>", data)


def json_differences(a: Any, b: Any, path: str = "") -> list[str]:
    if isinstance(a, dict) and isinstance(b, dict):
        out = []
        for key in sorted(set(a) | set(b)):
            if key in VOLATILE_KEYS:
                continue
            if key not in a or key not in b:
                out.append(f"{path}/{key}: in one file only")
            else:
                out += json_differences(a[key], b[key], f"{path}/{key}")
        return out
    if isinstance(a, list) and isinstance(b, list):
        out = [f"{path}: {len(a)} items vs {len(b)}"] if len(a) != len(b) else []
        for i, (x, y) in enumerate(zip(a, b)):
            out += json_differences(x, y, f"{path}[{i}]")
        return out
    if isinstance(a, str) and isinstance(b, str):
        return [] if masked(a.encode()) == masked(b.encode()) else [f"{path}: {a[:60]!r} vs {b[:60]!r}"]
    return [] if a == b else [f"{path}: {a!r} vs {b!r}"]


def main() -> int:
    a, b = Path(sys.argv[1]), Path(sys.argv[2])
    files_a = sorted(p.relative_to(a) for p in a.rglob("*") if p.is_file())
    files_b = sorted(p.relative_to(b) for p in b.rglob("*") if p.is_file())
    differing = 0
    if files_a != files_b:
        differing += 1
        print("different files:", sorted(str(p) for p in set(files_a) ^ set(files_b)))
    for rel in files_a:
        if rel.name == "study.db" or rel not in files_b:
            continue
        x, y = (a / rel).read_bytes(), (b / rel).read_bytes()
        if x == y:
            continue
        if rel.suffix == ".pdf":
            print(f"{rel}: {len(x)} and {len(y)} bytes (not compared)")
        elif rel.suffix == ".json":
            found = json_differences(json.loads(x), json.loads(y))
            if found:
                differing += 1
                print(f"{rel}:", *found[:8], sep="\n  ")
        elif masked(x) != masked(y):
            differing += 1
            print(f"{rel}: differs after masking times and hashes")
    print(f"{len(files_a)} files compared, {differing} differing")
    return 1 if differing else 0


if __name__ == "__main__":
    sys.exit(main())
