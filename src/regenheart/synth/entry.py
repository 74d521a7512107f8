"""Type a synthetic cohort plan into the capture service, as the site's named users would."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from regenheart.capture.permissions import Actor
from regenheart.capture.service import CaptureService
from regenheart.synth.cohort import CohortPlan, SubjectPlan

# Synthetic site staff. Every record the generator enters is attributed to one of them.
SYNTH_COORDINATOR = Actor("synth.coordinator", "coordinator", "01")
SYNTH_INVESTIGATOR = Actor("synth.investigator", "investigator", "01")
# Generates the concealed allocation list of a randomized synthetic trial (no site: unblinded role).
SYNTH_STATISTICIAN = Actor("synth.statistician", "statistician")
# Batch entry forgets loaded (already flushed) rows after this many subjects.
RELEASE_EVERY = 100


@dataclass
class EntryStats:
    subjects: int = 0
    forms: int = 0
    adverse_events: int = 0
    corrections: int = 0
    warnings: int = 0


def enter_subject(service: CaptureService, plan: SubjectPlan, stats: EntryStats,
                  coordinator: Actor = SYNTH_COORDINATOR, investigator: Actor = SYNTH_INVESTIGATOR) -> None:
    """Enter one subject's plan: screening, eligibility, enrolment, visits, AEs, corrections, disposition."""
    service.screen_subject(coordinator, plan.code, plan.site, plan.screening_date, plan.consent_date, synthetic=True)
    stats.subjects += 1
    entered_visits: set[str] = set()

    def save(entry) -> None:
        visit_date = plan.visit_dates[entry.visit] if entry.visit not in entered_visits else None
        result = service.save_form(coordinator, plan.code, entry.visit, entry.form, entry.data, visit_date=visit_date)
        entered_visits.add(entry.visit)
        stats.forms += 1
        stats.warnings += len(result.warnings)

    screening = [f for f in plan.forms if f.visit == "SCR"]
    for entry in screening:
        save(entry)
    outcome = service.evaluate_eligibility(investigator, plan.code)
    if not outcome.eligible:
        return
    arm = service.enrol(investigator, plan.code, plan.enrolled_date)
    if plan.by_arm:  # randomized: continue with the plan of the arm the concealed list assigned
        plan = plan.by_arm[arm]
    for entry in plan.forms:
        if entry.visit != "SCR":
            save(entry)
    for ae in plan.adverse_events:
        service.record_adverse_event(coordinator, plan.code, ae)
        stats.adverse_events += 1
    for correction in plan.corrections:
        service.save_form(coordinator, plan.code, correction.visit, correction.form, correction.data,
                          reason=correction.reason)
        stats.corrections += 1
    if plan.disposition:
        service.record_disposition(investigator, plan.code, plan.disposition)


def enter_cohort(service: CaptureService, cohort: CohortPlan,
                 progress: Callable[[str], None] | None = None, *, batch: bool = False) -> EntryStats:
    """Enter every subject of ``cohort`` through ``service``; ``progress`` is called per subject.

    Default: every call is its own transaction, as site users' saves are. ``batch``: the whole cohort
    in one unit of work (:meth:`CaptureService.unit_of_work`), a savepoint per subject; the same calls,
    checks, stored values and audit records (the audit trail carries no reason a per-call entry would
    not), about three times faster because nothing commits until the end. A refused call rolls the
    whole cohort back and is raised, where per-call entry would keep the subjects before it.
    """
    stats = EntryStats()
    if not batch:
        for plan in cohort.subjects:
            enter_subject(service, plan, stats)
            if progress:
                progress(plan.code)
        return stats
    with service.unit_of_work() as work:
        # The subject's savepoint is rolled back on any refusal (which ends the entry): the calls
        # need no savepoint of their own.
        work.call_savepoints = False
        for done, plan in enumerate(cohort.subjects, start=1):
            with work.savepoint():
                enter_subject(service, plan, stats)
            if done % RELEASE_EVERY == 0:  # a large cohort (--subjects) keeps memory bounded
                work.release_memory()
            if progress:
                progress(plan.code)
    return stats
