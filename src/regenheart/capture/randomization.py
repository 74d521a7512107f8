"""Concealed randomization: stratified permuted-block allocation lists and taking the next slot.

The scheme is protocol data (``protocol_versions[].randomization``): allocation ratio, permuted
blocks whose size is drawn at random for every block (so a site cannot infer the next arm from the
ones before), stratification factors (the site, and rules over the screening data such as
``lvef_pct <= 25``) and the roles that may see the lists.

* :func:`plan_allocation` is pure: the list of every stratum from a seed (same seed, same list).
* :func:`generate_list` stores it, once per protocol version, in its own tables, which nothing but
  this module reads: not the snapshot, not the exports, not the web API or pages.
* :func:`take_slot` is called by :meth:`CaptureService.enrol` inside the enrolment transaction: the
  subject gets the first unused slot of their stratum, audited (who, when, stratum, slot, arm).
  SQLite serializes writers (``BEGIN IMMEDIATE``); on PostgreSQL the conditional update
  ``... WHERE subject_id IS NULL`` plus a retry means two simultaneous enrolments can never take
  the same slot.
* :func:`export_list` gives the unblinded list with what was used (subject, time, user) to the
  statistician and the data monitoring committee, and audits the export.
"""

from __future__ import annotations

import csv
import hashlib
import itertools
import secrets
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from sqlalchemy import Engine, func, select, update
from sqlalchemy.orm import Session, sessionmaker

from regenheart.capture.common import audit_entry
from regenheart.capture.errors import PermissionDenied, StateError, ValidationFailed
from regenheart.capture.permissions import Actor
from regenheart.capture.validation import Violation
from regenheart.protocol.models import Protocol, ProtocolVersion, RandomizationScheme
from regenheart.protocol.rules import compile_rule
from regenheart.store import audit
from regenheart.store.audit import canonical, utc_now
from regenheart.store.models import RandomizationList, RandomizationSlot, Subject


class RandomizationError(StateError):
    """A randomization request cannot be carried out (no list, list exists, stratum exhausted)."""


@dataclass(frozen=True)
class PlannedSlot:
    """One allocation of a stratum's list: slot and block numbers (1-based), block size, arm."""

    stratum: str
    slot: int
    block: int
    block_size: int
    arm_code: str


# ------------------------------------------------------------------ pure: strata and lists
def scheme_of(protocol: Protocol, version: str | None = None) -> tuple[ProtocolVersion, RandomizationScheme]:
    """The protocol version (default: the active one) and its randomization scheme.

    Raises :class:`RandomizationError` for a version without randomization (e.g. single arm).
    """
    pv = protocol.active_version if version is None else protocol.protocol_version(version)
    if pv.randomization is None:
        raise RandomizationError(f"protocol version {pv.version} is {pv.design.replace('_', ' ')}: "
                                 "it has no randomization scheme")
    return pv, pv.randomization


def stratum_key(levels: Mapping[str, str]) -> str:
    """Canonical name of a stratum, e.g. ``site=01; lvef_stratum=LVEF<=25`` (factor order kept)."""
    return "; ".join(f"{name}={level}" for name, level in levels.items()) or "all"


def all_strata(protocol: Protocol, scheme: RandomizationScheme) -> list[str]:
    """Every stratum: the product of the factors' levels (sites of the study, rule true/false)."""
    choices = []
    for factor in scheme.stratification:
        levels = [s.code for s in protocol.study.sites] if factor.by == "site" else [factor.if_true, factor.if_false]
        choices.append([(factor.name, level) for level in levels])
    return [stratum_key(dict(combo)) for combo in itertools.product(*choices)]


def subject_stratum(scheme: RandomizationScheme, site_code: str, screening: Mapping[str, Any]) -> str:
    """The stratum of a subject from their site and screening data.

    Raises :class:`ValidationFailed` naming the factor, its rule and the missing fields when a rule
    cannot be evaluated (the subject cannot be randomized until the data are entered).
    """
    levels: dict[str, str] = {}
    violations: list[Violation] = []
    for factor in scheme.stratification:
        if factor.by == "site":
            levels[factor.name] = site_code
            continue
        rule = compile_rule(factor.rule or "")
        result = rule.evaluate(screening)
        if result is None:
            missing = sorted(n for n in rule.names if screening.get(n) is None)
            violations.append(Violation(factor.name, None, "stratification",
                                        f"stratification factor '{factor.label}' ({factor.rule}) needs "
                                        f"{', '.join(missing)} from the screening visit"))
            continue
        levels[factor.name] = factor.if_true if result else factor.if_false  # type: ignore[assignment]
    if violations:
        raise ValidationFailed(violations)
    return stratum_key(levels)


def plan_allocation(scheme: RandomizationScheme, strata: Sequence[str], seed: int) -> list[PlannedSlot]:
    """Permuted blocks of randomly chosen size for every stratum, until each has
    ``slots_per_stratum`` slots (the last block is completed, so a list may be slightly longer).

    Every block holds each arm ``ratio[arm] * size / sum(ratio)`` times in random order. Strata draw
    from independent streams of one seed (``numpy.random.SeedSequence``): the same seed and scheme
    give the same list, and adding a stratum does not change the others.
    """
    unit = sum(scheme.ratio.values())
    streams = np.random.SeedSequence(seed).spawn(len(strata))
    out: list[PlannedSlot] = []
    for stratum, stream in zip(strata, streams):
        rng = np.random.default_rng(stream)
        slot = block = 0
        while slot < scheme.slots_per_stratum:
            size = int(rng.choice(scheme.block_sizes))
            arms = [arm for arm, r in scheme.ratio.items() for _ in range(r * size // unit)]
            block += 1
            for arm in rng.permutation(arms):
                slot += 1
                out.append(PlannedSlot(stratum, slot, block, size, str(arm)))
    return out


def list_digest(slots: Sequence[PlannedSlot]) -> str:
    """SHA-256 over every (stratum, slot, block, size, arm): proves later that the list was not changed."""
    ordered = sorted(slots, key=lambda s: (s.stratum, s.slot))
    text = "\n".join(f"{s.stratum}|{s.slot}|{s.block}|{s.block_size}|{s.arm_code}" for s in ordered)
    return hashlib.sha256(text.encode()).hexdigest()


# ------------------------------------------------------------------ permissions
def _require_unblinded(actor: Actor, scheme: RandomizationScheme, what: str) -> None:
    if not actor.may("randomization_list") or actor.role not in scheme.unblinded_roles:
        raise PermissionDenied(f"role '{actor.role}' may not {what}: allocation lists are for "
                               f"{', '.join(scheme.unblinded_roles)} only")
    if actor.site is not None:
        raise PermissionDenied(f"user {actor.username} is a site account and may not {what}")


# ------------------------------------------------------------------ database
@dataclass(frozen=True)
class GeneratedList:
    protocol_version: str
    strata: list[str]
    n_slots: int
    sha256: str
    generated_utc: str


def generate_list(engine: Engine, protocol: Protocol, actor: Actor, seed: int | None = None,
                  version: str | None = None) -> GeneratedList:
    """Create and store the allocation list of every stratum of a randomized protocol version.

    ``seed`` None draws one from the operating system (``secrets``); give one to reproduce a list.
    Refuses (``RandomizationError``, nothing written) when the version already has a list.
    """
    pv, scheme = scheme_of(protocol, version)
    _require_unblinded(actor, scheme, "generate an allocation list")
    if seed is None:
        seed = secrets.randbits(63)
    if seed < 0:
        raise ValidationFailed([Violation("seed", seed, "range", "must be a non-negative integer")])
    strata = all_strata(protocol, scheme)
    slots = plan_allocation(scheme, strata, seed)
    digest = list_digest(slots)
    now = utc_now()
    with sessionmaker(engine).begin() as session:
        existing = session.scalars(select(RandomizationList).where(
            RandomizationList.protocol_version == pv.version)).one_or_none()
        if existing is not None:
            raise RandomizationError(f"protocol version {pv.version} already has an allocation list (generated "
                                     f"{existing.generated_utc} by {existing.generated_by}); nothing was changed")
        header = RandomizationList(protocol_version=pv.version, seed=str(seed), scheme=scheme.model_dump_json(),
                                   list_sha256=digest, generated_by=actor.username, generated_utc=now)
        session.add(header)
        session.flush()
        session.add_all([RandomizationSlot(list_id=header.id, stratum=s.stratum, slot=s.slot, block=s.block,
                                           block_size=s.block_size, arm_code=s.arm_code) for s in slots])
        # the audit trail records that a list exists and its hash, never its content
        audit.append(session, [audit_entry(actor, "generate", "randomization_list", None,
                                           record_key=f"randomization/{pv.version}", field="list_sha256",
                                           new_value=canonical(digest),
                                           reason=f"{len(slots)} slots in {len(strata)} strata")])
    return GeneratedList(pv.version, strata, len(slots), digest, now)


def take_slot(session: Session, actor: Actor, protocol_version: str, subject: Subject, stratum: str) -> RandomizationSlot:
    """Give ``subject`` the first unused slot of ``stratum`` (inside the caller's transaction) and audit it.

    The update is conditional on the slot still being free, so a concurrent enrolment that took it
    first makes this one move on to the next slot instead of sharing it.
    """
    header = session.scalars(select(RandomizationList).where(
        RandomizationList.protocol_version == protocol_version)).one_or_none()
    if header is None:
        raise RandomizationError(f"protocol version {protocol_version} has no allocation list yet: a statistician "
                                 "must run 'regenheart randomization generate' before the first enrolment")
    now = utc_now()
    for _attempt in range(1000):
        slot = session.scalars(select(RandomizationSlot).where(
            RandomizationSlot.list_id == header.id, RandomizationSlot.stratum == stratum,
            RandomizationSlot.subject_id.is_(None)).order_by(RandomizationSlot.slot).limit(1)).first()
        if slot is None:
            used = session.scalar(select(func.count()).select_from(RandomizationSlot).where(
                RandomizationSlot.list_id == header.id, RandomizationSlot.stratum == stratum))
            raise RandomizationError(f"stratum '{stratum}' has no unused slot left ({used} used); "
                                     "the statistician must extend the allocation list")
        taken = session.execute(update(RandomizationSlot).where(
            RandomizationSlot.id == slot.id, RandomizationSlot.subject_id.is_(None)).values(
            subject_id=subject.id, used_utc=now, used_by=actor.username)).rowcount
        if taken == 1:
            session.expire(slot)
            key = f"{subject.subject_code}/randomization"
            audit.append(session, [
                audit_entry(actor, "randomize", "randomization", subject.subject_code, record_key=key,
                            field=name, new_value=canonical(value))
                for name, value in (("stratum", stratum), ("slot", slot.slot), ("arm_code", slot.arm_code))
            ])
            return slot
        session.expire(slot)  # taken by a concurrent enrolment: try the next one
    raise RandomizationError(f"could not take a slot in stratum '{stratum}' (too much contention); try again")


def export_list(engine: Engine, actor: Actor, protocol: Protocol, version: str | None = None) -> list[dict[str, Any]]:
    """The unblinded allocation list, one row per slot, with who used it, when and for which subject.

    For the statistician and the data monitoring committee; the export itself is audited.
    """
    pv, scheme = scheme_of(protocol, version)
    _require_unblinded(actor, scheme, "export an allocation list")
    with sessionmaker(engine).begin() as session:
        header = session.scalars(select(RandomizationList).where(
            RandomizationList.protocol_version == pv.version)).one_or_none()
        if header is None:
            raise RandomizationError(f"protocol version {pv.version} has no allocation list to export")
        rows = session.execute(
            select(RandomizationSlot, Subject.subject_code)
            .outerjoin(Subject, Subject.id == RandomizationSlot.subject_id)
            .where(RandomizationSlot.list_id == header.id)
            .order_by(RandomizationSlot.stratum, RandomizationSlot.slot)).all()
        out = [{"protocol_version": pv.version, "stratum": s.stratum, "slot": s.slot, "block": s.block,
                "block_size": s.block_size, "arm_code": s.arm_code, "subject_code": code,
                "randomized_utc": s.used_utc, "randomized_by": s.used_by} for s, code in rows]
        digest = list_digest([PlannedSlot(r["stratum"], r["slot"], r["block"], r["block_size"], r["arm_code"])
                              for r in out])
        if digest != header.list_sha256:
            raise RandomizationError("the stored allocation list does not match the hash recorded when it was "
                                     "generated: it was altered outside regenheart")
        audit.append(session, [audit_entry(actor, "export", "randomization_list", None,
                                           record_key=f"randomization/{pv.version}", field="export",
                                           new_value=canonical(len(out)),
                                           reason="unblinded allocation list exported")])
    return out


EXPORT_COLUMNS = ("protocol_version", "stratum", "slot", "block", "block_size", "arm_code", "subject_code",
                  "randomized_utc", "randomized_by")


def write_export(rows: Sequence[Mapping[str, Any]], path: Path) -> Path:
    """Write exported rows as CSV (UTF-8, header) to ``path``; refuses to overwrite a file."""
    path = Path(path)
    if path.exists():
        raise FileExistsError(f"{path} exists; choose a new file for the unblinded list")
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("x", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=EXPORT_COLUMNS)
        writer.writeheader()
        writer.writerows(rows)
    return path

