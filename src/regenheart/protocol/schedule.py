"""Schedule arithmetic: study days, visit windows and analysis-visit assignment (pure functions)."""

from __future__ import annotations

import datetime as dt

from regenheart.protocol.models import Protocol, Visit


def study_day(date: dt.date, infusion_date: dt.date) -> int:
    """Protocol study day of ``date``: day 0 is the infusion day, the day before is day -1.

    (The CDISC --DY convention, which has no day 0, is derived separately in the ADaM layer.)
    """
    return (date - infusion_date).days


def in_window(visit: Visit, day: int) -> bool:
    """True when ``day`` lies inside the visit's inclusive window."""
    lo, hi = visit.window
    return lo <= day <= hi


def assign_analysis_visit(protocol: Protocol, day: int, candidates: list[str] | None = None) -> str | None:
    """Analysis visit (AVISIT) for an assessment on protocol ``day``, from the protocol windows.

    Among ``candidates`` (default: all visits) the visit whose window contains ``day`` is chosen;
    if windows overlap, the visit with the nearest target day wins (ties: the earlier visit).
    Returns None when the day falls in no window (the record is then not used in by-visit analyses).
    """
    visits = [protocol.visit(c) for c in candidates] if candidates else list(protocol.visits)
    hits = [v for v in visits if in_window(v, day)]
    if not hits:
        return None
    return min(hits, key=lambda v: (abs(day - v.day), v.day)).code


def schedule_table(protocol: Protocol) -> list[dict[str, object]]:
    """Schedule of assessments as rows (visit, target day, window, forms) for display."""
    return [
        {"visit": v.code, "label": v.label, "day": v.day, "window": v.window, "forms": list(v.forms)}
        for v in protocol.visits
    ]
