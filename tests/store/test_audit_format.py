"""The audit trail's text formats are fixed: the fast writers give exactly the reference json.dumps text."""

from __future__ import annotations

import datetime as dt
import hashlib
import json

from hypothesis import given, settings
from hypothesis import strategies as st

from regenheart.store.audit import HASHED_COLUMNS, canonical, hashed_payload, record_hash, utc_now

# Captured values: text of any code point (quotes, backslashes, control characters, non-ASCII),
# integers of any size, booleans, floats (NaN and infinities included), dates, and the lists and
# mappings a missing-data code or checkbox field stores.
scalars = st.one_of(st.none(), st.text(), st.integers(), st.booleans(), st.floats(), st.dates(), st.datetimes())
values = st.recursive(scalars, lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(), inner,
                                                                                            max_size=3), max_leaves=6)


def reference_canonical(value):
    if value is None:
        return None
    if isinstance(value, (dt.date, dt.datetime)):
        value = value.isoformat()
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def _json_safe(value):
    """Dates inside lists and mappings are not JSON (neither writer accepts them): leave them out there."""
    if isinstance(value, list):
        return [v for v in map(_json_safe, value) if not isinstance(v, dt.date)]
    if isinstance(value, dict):
        return {k: v for k, v in ((k, _json_safe(v)) for k, v in value.items()) if not isinstance(v, dt.date)}
    return value


@settings(max_examples=400, deadline=None)
@given(values)
def test_canonical_is_the_reference_json_text(value):
    value = _json_safe(value)
    assert canonical(value) == reference_canonical(value)


record_values = st.one_of(st.none(), st.text(), st.integers(min_value=0))


@settings(max_examples=300, deadline=None)
@given(st.fixed_dictionaries({}, optional={name: record_values for name in HASHED_COLUMNS}),
       st.dictionaries(st.sampled_from(["hash", "id", "extra"]), st.text(), max_size=2))
def test_record_hash_is_sha256_of_the_reference_payload(content, other_columns):
    content = {**content, **other_columns}  # columns outside HASHED_COLUMNS are not hashed
    reference = json.dumps({k: content.get(k) for k in HASHED_COLUMNS}, sort_keys=True, separators=(",", ":"))
    assert hashed_payload(content) == reference
    assert record_hash(content) == hashlib.sha256(reference.encode("utf-8")).hexdigest()


def test_a_known_record_keeps_its_hash():
    # A record as the trail stores it, and the hash it has carried since the chain format was fixed.
    content = {"seq": 7, "ts_utc": "2026-01-02T03:04:05.000006Z", "username": "cli:import", "role": "data_manager",
               "action": "create", "entity": "item", "subject_code": "01-001", "visit_code": "M1",
               "form_code": "kccq", "record_key": "01-001/M1/kccq", "field": "q1a", "old_value": None,
               "new_value": '"caf\u00e9"', "reason": "import csv t.csv sha256=ab", "prev_hash": "0" * 64}
    # computed by the json.dumps implementation before the hash was written key by key
    assert record_hash(content) == "35053b68349919a13000e540fe0bb1f4e3e111e79dc8f82b2c13c43483eb5c0e"


def test_utc_now_is_iso_8601_with_microseconds_and_z():
    stamp = utc_now()
    parsed = dt.datetime.strptime(stamp, "%Y-%m-%dT%H:%M:%S.%fZ")
    assert parsed.strftime("%Y-%m-%dT%H:%M:%S.%fZ") == stamp
    assert abs(parsed.replace(tzinfo=dt.UTC) - dt.datetime.now(dt.UTC)) < dt.timedelta(seconds=5)
