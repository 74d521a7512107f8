"""Append-only, tamper-evident audit trail.

Each audit record carries ``hash = SHA-256(canonical JSON of its content + prev_hash)``, where
``prev_hash`` is the hash of the record before it (64 zeros for the first). Changing, deleting,
inserting or reordering any record breaks the chain from that point on, and :func:`verify_chain`
names the first broken record. The chain head is kept in ``audit_head`` and locked in the writing
transaction (``SELECT ... FOR UPDATE`` on PostgreSQL, ``BEGIN IMMEDIATE`` on SQLite), so concurrent
writers append one after the other and never fork the chain.

A batch transaction either locks the head at its start (:func:`lock_head`) or chains its records only at
its end (:func:`begin_late_chain`): it then holds the head just for hashing, inserting and committing them,
so that other processes' batches can do their reads and data writes meanwhile.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from collections.abc import Iterator
from dataclasses import dataclass
from dataclasses import field as dataclass_field
from json.encoder import encode_basestring, encode_basestring_ascii
from typing import Any

from sqlalchemy import Engine, insert, select, update
from sqlalchemy.orm import Session

from regenheart.store.bulk import insert_plain_rows
from regenheart.store.models import AuditHead, AuditRecord

GENESIS_HASH = "0" * 64
HASHED_COLUMNS = (
    "seq", "ts_utc", "username", "role", "action", "entity", "subject_code", "visit_code",
    "form_code", "record_key", "field", "old_value", "new_value", "reason", "prev_hash",
)


def utc_now() -> str:
    """Current UTC time as ISO 8601 with microseconds and a 'Z' suffix (unambiguous, sortable).

    The text of ``strftime("%Y-%m-%dT%H:%M:%S.%fZ")``, built by ``isoformat`` (half the time).
    """
    return dt.datetime.now(dt.UTC).replace(tzinfo=None).isoformat(timespec="microseconds") + "Z"


# Canonical JSON of any value: keys sorted, no spaces, non-ASCII kept (the text json.dumps gives
# with these settings; the encoder is made once instead of on every call).
_CANONICAL_ENCODER = json.JSONEncoder(sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def canonical(value: Any) -> str | None:
    """Canonical JSON text of a captured value (None stays None), used in the trail and the store.

    Strings, integers, booleans, finite floats and dates, nearly every captured value, are written
    directly: the same text ``json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)``
    gives.
    """
    if value is None:
        return None
    kind = type(value)
    if kind is str:
        return encode_basestring(value)
    if kind is int:
        return int.__repr__(value)
    if kind is bool:
        return "true" if value else "false"
    if kind is float and value - value == 0:  # finite (NaN and the infinities have JSON names of their own)
        return float.__repr__(value)
    if kind is dt.date or kind is dt.datetime:
        return encode_basestring(value.isoformat())
    if isinstance(value, (dt.date, dt.datetime)):
        value = value.isoformat()
    return _CANONICAL_ENCODER.encode(value)


# The hashed content is JSON of the hashed columns with sorted keys and no spaces, ASCII only:
# json.dumps({k: content.get(k) for k in HASHED_COLUMNS}, sort_keys=True, separators=(",", ":")).
# It is written here key by key in that order (the chain's format is unchanged; a test compares
# the two), which takes half the time of json.dumps on a new dictionary for every record.
_HASH_KEYS = tuple(sorted(HASHED_COLUMNS))
_HASH_KEY_PREFIXES = tuple(("{" if i == 0 else ",") + encode_basestring_ascii(key) + ":"
                           for i, key in enumerate(_HASH_KEYS))
_HASH_FIELDS = tuple(zip(_HASH_KEY_PREFIXES, _HASH_KEYS, strict=True))
_HASH_ENCODER = json.JSONEncoder(sort_keys=True, separators=(",", ":"))


def _hash_value(value: Any) -> str:
    if value is None:
        return "null"
    kind = type(value)
    if kind is str:
        return encode_basestring_ascii(value)
    if kind is int:
        return int.__repr__(value)
    return _HASH_ENCODER.encode(value)


def hashed_payload(content: dict[str, Any]) -> str:
    """The canonical JSON text that :func:`record_hash` hashes (the hashed columns of ``content``)."""
    get = content.get
    return "".join([prefix + _hash_value(get(key)) for prefix, key in _HASH_FIELDS]) + "}"


def record_hash(content: dict[str, Any]) -> str:
    """SHA-256 (hex) of the canonical JSON of the hashed columns of an audit record."""
    return hashlib.sha256(hashed_payload(content).encode("utf-8")).hexdigest()


@dataclass(frozen=True)
class AuditEntry:
    """What an audit record says: who (username, role), what (action on entity/field), old -> new, why."""

    username: str
    role: str
    action: str
    entity: str
    subject_code: str | None = None
    visit_code: str | None = None
    form_code: str | None = None
    record_key: str | None = None
    field: str | None = None
    old_value: str | None = None
    new_value: str | None = None
    reason: str | None = None


_BATCH_HEAD = "regenheart.audit_batch_head"
_INSERT_RECORDS = insert(AuditRecord.__table__)


@dataclass
class BatchHead:
    """The chain head of a batch transaction, kept in memory between :func:`lock_head` (or
    :func:`begin_late_chain`) and :func:`store_head`.

    ``pending``: records appended but not inserted yet; they are inserted together, one multi-row INSERT
    instead of one per append: by :func:`flush_pending` (hashes computed and head advanced at append), or,
    when ``late``, by :func:`store_head`, which only then locks the head and numbers and hashes them.
    """

    seq: int
    hash: str
    pending: list[dict[str, Any]] = dataclass_field(default_factory=list)
    late: bool = False


def lock_head(session: Session) -> BatchHead:
    """Lock the chain head for the rest of ``session``'s transaction (a batch of many appends).

    Taken outside any savepoint, the lock survives savepoint rollbacks. Until :func:`store_head`,
    :func:`append` advances the returned in-memory head instead of reading and updating the row for
    every append, and keeps the new records in ``pending`` until :func:`flush_pending`. A caller
    that rolls back a savepoint flushes the pending records when the savepoint begins, and when it
    is rolled back restores the head it saw before and calls :func:`discard_pending`. Only for
    sessions that live for one transaction (the capture service's unit of work), which must call
    :func:`store_head` before committing.
    """
    head = session.scalars(select(AuditHead).where(AuditHead.id == 1).with_for_update()).one()
    batch = session.info[_BATCH_HEAD] = BatchHead(head.seq, head.hash)
    return batch


def begin_late_chain(session: Session) -> BatchHead:
    """Start a batch whose audit records are chained only by :func:`store_head`, just before the commit.

    Until then nothing locks the head: appends keep their records (unnumbered, unhashed) in ``pending``, and
    :func:`store_head` locks the head, numbers and hashes them in order with the time of that moment (so
    that the trail's times follow its order) and inserts them; the lock is held from there to the commit.
    The data the records describe must be protected by locks of their own until the commit (the capture
    service locks each subject's row), so that the order of the chain is the order of the changes. Records
    of a late batch cannot be read before the commit. Same contract as :func:`lock_head` otherwise.
    """
    batch = session.info[_BATCH_HEAD] = BatchHead(0, GENESIS_HASH, late=True)
    return batch


def flush_pending(session: Session) -> None:
    """Insert the batch's pending audit records (one multi-row INSERT); nothing to do outside a batch
    or in a late batch (its records are inserted by :func:`store_head`)."""
    batch: BatchHead | None = session.info.get(_BATCH_HEAD)
    if batch is not None and batch.pending and not batch.late:
        rows, batch.pending = batch.pending, []
        insert_plain_rows(session.connection(), _INSERT_RECORDS, rows)  # text and integers only


def pending_count(session: Session) -> int:
    """How many audit records the batch holds back (the mark a savepoint rolls back to)."""
    batch: BatchHead | None = session.info.get(_BATCH_HEAD)
    return len(batch.pending) if batch is not None else 0


def discard_pending(session: Session, keep: int = 0) -> None:
    """Forget the batch's pending audit records after the first ``keep`` (their savepoint was rolled back)."""
    batch: BatchHead | None = session.info.get(_BATCH_HEAD)
    if batch is not None:
        del batch.pending[keep:]


def store_head(session: Session) -> None:
    """Insert pending records and write the batch's head into ``audit_head`` (before commit); a late batch
    locks the head, then numbers and hashes its records first."""
    batch: BatchHead | None = session.info.get(_BATCH_HEAD)
    if batch is not None and batch.late:
        head = session.scalars(select(AuditHead).where(AuditHead.id == 1).with_for_update()).one()
        seq, prev, ts = head.seq, head.hash, utc_now()
        for content in batch.pending:
            seq += 1
            content.update(seq=seq, ts_utc=ts, prev_hash=prev)
            content["hash"] = prev = record_hash(content)
        batch.seq, batch.hash, batch.late = seq, prev, False
    flush_pending(session)
    session.info.pop(_BATCH_HEAD, None)
    if batch is not None:
        session.execute(update(AuditHead).where(AuditHead.id == 1).values(seq=batch.seq, hash=batch.hash))


def append(session: Session, entries: list[AuditEntry], ts_utc: str | None = None) -> list[dict[str, Any]]:
    """Append ``entries`` to the chain inside the caller's transaction (same commit as the data).

    Returns the rows (as dicts, with their ``seq`` and ``hash``; in a late batch without them: they are
    numbered at its end). In a batch (:func:`lock_head`) they are inserted by the next :func:`flush_pending`;
    otherwise at once, after the pending data changes of the session they record.
    """
    if not entries:
        return []
    batch: BatchHead | None = session.info.get(_BATCH_HEAD)
    if batch is not None and batch.late:  # numbered, timed and hashed by store_head
        rows = [dict(entry.__dict__) for entry in entries]
        batch.pending.extend(rows)
        return rows
    head: AuditHead | BatchHead = batch if batch is not None else \
        session.scalars(select(AuditHead).where(AuditHead.id == 1).with_for_update()).one()
    ts = ts_utc or utc_now()
    seq, prev = head.seq, head.hash
    rows = []
    for entry in entries:
        seq += 1
        content = {**entry.__dict__, "seq": seq, "ts_utc": ts, "prev_hash": prev}
        content["hash"] = prev = record_hash(content)
        rows.append(content)
    if batch is not None:
        batch.pending.extend(rows)
    else:
        # One multi-row INSERT (a prepared Core statement: no ORM bookkeeping per row).
        session.flush()
        session.connection().execute(_INSERT_RECORDS, rows)
    head.seq, head.hash = seq, prev
    return rows


@dataclass(frozen=True)
class ChainReport:
    """Result of :func:`verify_chain`: ``ok``, records checked, head hash, and the first problem."""

    ok: bool
    records: int
    head_hash: str
    first_bad_seq: int | None = None
    problem: str | None = None


def iter_records(session: Session, batch: int = 5000) -> Iterator[Any]:
    """Every audit record in order, as plain rows with the columns' names (no ORM objects: reading the
    trail, not changing it), ``batch`` at a time."""
    columns = AuditRecord.__table__.c
    last = 0
    while True:
        rows = session.execute(select(*columns).where(columns.seq > last).order_by(columns.seq).limit(batch)).all()
        if not rows:
            return
        yield from rows
        last = rows[-1].seq


def verify_chain(engine: Engine) -> ChainReport:
    """Recompute every hash and link; report the first record that does not verify."""
    with Session(engine) as session:
        prev, expected_seq, count = GENESIS_HASH, 1, 0
        for record in iter_records(session):
            content = {k: getattr(record, k) for k in HASHED_COLUMNS}
            if record.seq != expected_seq:
                return ChainReport(False, count, prev, record.seq,
                                   f"sequence gap: expected record {expected_seq}, found {record.seq}")
            if record.prev_hash != prev:
                return ChainReport(False, count, prev, record.seq,
                                   "link broken: prev_hash does not match the previous record")
            if record_hash(content) != record.hash:
                return ChainReport(False, count, prev, record.seq,
                                   "content altered: the stored hash does not match the record")
            prev, expected_seq, count = record.hash, expected_seq + 1, count + 1
        head = session.scalars(select(AuditHead).where(AuditHead.id == 1)).one()
        if head.seq != count or head.hash != prev:
            return ChainReport(False, count, prev, head.seq,
                               f"chain head (record {head.seq}) does not match the last record ({count}): "
                               "records were removed from the end")
        return ChainReport(True, count, prev)


def head_hash(engine: Engine) -> tuple[int, str]:
    """(number of audit records, hash of the newest) as stored in the chain head."""
    with Session(engine) as session:
        head = session.scalars(select(AuditHead).where(AuditHead.id == 1)).one()
        return head.seq, head.hash
