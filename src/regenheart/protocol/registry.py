"""Registration facts of a study (the ``registry:`` section of a protocol file).

What ClinicalTrials.gov holds about a study beyond its design: status and dates, enrolment,
contacts, responsible party, the outcome measures as registered (title, description, time frame),
arm types, interventions, eligibility ages and sex, keywords, and the fixed texts of the results
section (limitations and caveats, certain agreements, results point of contact, adverse-event
collection). Everything is optional at the protocol level (``Protocol.registry`` may be absent);
:mod:`regenheart.exchange.ctgov` reads it to write the registration record and the results upload.

Enumerations use the ClinicalTrials.gov API v2 spelling (``COMPLETED``, ``SINGLE_GROUP``,
``EXPERIMENTAL``); the PRS upload writers translate them to the PRS display values.
"""

from __future__ import annotations

import datetime as dt
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

OverallStatus = Literal["NOT_YET_RECRUITING", "RECRUITING", "ENROLLING_BY_INVITATION", "ACTIVE_NOT_RECRUITING",
                        "SUSPENDED", "TERMINATED", "COMPLETED", "WITHDRAWN"]
OutcomeType = Literal["PRIMARY", "SECONDARY", "OTHER_PRE_SPECIFIED", "POST_HOC"]
ArmType = Literal["EXPERIMENTAL", "ACTIVE_COMPARATOR", "PLACEBO_COMPARATOR", "SHAM_COMPARATOR", "NO_INTERVENTION",
                  "OTHER"]
InterventionType = Literal["DRUG", "DEVICE", "BIOLOGICAL", "PROCEDURE", "RADIATION", "BEHAVIORAL", "GENETIC",
                           "DIETARY_SUPPLEMENT", "COMBINATION_PRODUCT", "DIAGNOSTIC_TEST", "OTHER"]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class DateFact(_Strict):
    """A registry date (``YYYY-MM`` or ``YYYY-MM-DD``) and whether it is actual or estimated."""

    date: str = Field(pattern=r"^\d{4}-\d{2}(-\d{2})?$")
    type: Literal["ACTUAL", "ESTIMATED"] = "ACTUAL"

    @field_validator("date", mode="before")
    @classmethod
    def _iso(cls, value: object) -> object:
        # YAML reads 2020-03-01 as a date; the registry keeps the text (a month-only date is allowed).
        return value.isoformat() if isinstance(value, dt.date) else value


class Contact(_Strict):
    """A person or office to contact. ``email``/``phone`` are optional here; the PRS checks require them
    for the results point of contact, so a record without them is written only as a draft."""

    name: str
    organization: str | None = None
    email: str | None = None
    phone: str | None = None
    phone_ext: str | None = None


class Official(_Strict):
    name: str
    affiliation: str | None = None
    role: Literal["PRINCIPAL_INVESTIGATOR", "STUDY_CHAIR", "STUDY_DIRECTOR"] = "PRINCIPAL_INVESTIGATOR"


class ResponsibleParty(_Strict):
    type: Literal["SPONSOR", "PRINCIPAL_INVESTIGATOR", "SPONSOR_INVESTIGATOR"] = "SPONSOR"
    investigator_name: str | None = None
    investigator_title: str | None = None
    investigator_affiliation: str | None = None


class Oversight(_Strict):
    has_dmc: bool | None = None
    fda_regulated_drug: bool | None = None
    fda_regulated_device: bool | None = None
    us_export: bool | None = None


class RegisteredOutcome(_Strict):
    """One outcome measure as registered.

    ``source`` names what the results come from: ``primary`` (the protocol's primary endpoint) or
    an analysis parameter code (PARAMCD) of the endpoints; ``visits`` the analysis visits reported
    (default: the endpoint group's visits).
    """

    type: OutcomeType
    title: str = Field(min_length=1, max_length=255)
    description: str | None = None
    time_frame: str = Field(min_length=1, max_length=255)
    source: str
    visits: list[str] | None = None


class ArmGroupFact(_Strict):
    arm: str
    type: ArmType


class InterventionFact(_Strict):
    type: InterventionType
    name: str
    description: str | None = None
    arms: list[str] = Field(min_length=1)
    other_names: list[str] = Field(default_factory=list)


class EligibilityFacts(_Strict):
    sex: Literal["ALL", "FEMALE", "MALE"] = "ALL"
    minimum_age: str = Field(default="N/A", pattern=r"^(N/A|\d+ (Years|Months|Weeks|Days|Hours|Minutes))$")
    maximum_age: str = Field(default="N/A", pattern=r"^(N/A|\d+ (Years|Months|Weeks|Days|Hours|Minutes))$")
    healthy_volunteers: bool = False


class ResultsFacts(_Strict):
    """The fixed, non-numeric parts of the results section."""

    point_of_contact: Contact | None = None
    pi_sponsor_employee: bool | None = None
    restrictive_agreement: bool | None = None
    restriction_type: Literal["LTE60", "GT60", "OTHER"] | None = None
    agreement_details: str | None = None
    limitations_and_caveats: str | None = None
    recruitment_details: str | None = None
    ae_time_frame: str
    ae_description: str | None = None
    ae_assessment: Literal["SYSTEMATIC_ASSESSMENT", "NON_SYSTEMATIC_ASSESSMENT"] = "SYSTEMATIC_ASSESSMENT"
    ae_source_vocabulary: str
    other_events_threshold_pct: float = Field(default=5.0, ge=0)
    baseline_population: str | None = None


class Registry(_Strict):
    """Registration facts of the study (ClinicalTrials.gov protocol section and the results' fixed texts)."""

    org_name: str
    overall_status: OverallStatus
    why_stopped: str | None = None
    status_verified: str = Field(pattern=r"^\d{4}-\d{2}$")
    first_submitted: dt.date | None = None
    start: DateFact
    primary_completion: DateFact
    completion: DateFact
    enrollment: int = Field(ge=0)
    enrollment_type: Literal["ACTUAL", "ESTIMATED"] = "ACTUAL"
    brief_summary: str
    detailed_description: str | None = None
    primary_purpose: Literal["TREATMENT", "PREVENTION", "DIAGNOSTIC", "SUPPORTIVE_CARE", "SCREENING",
                             "HEALTH_SERVICES_RESEARCH", "BASIC_SCIENCE", "DEVICE_FEASIBILITY", "OTHER"] = "TREATMENT"
    masking: Literal["NONE", "SINGLE", "DOUBLE", "TRIPLE", "QUADRUPLE"] = "NONE"
    funder_type: str = "OTHER"
    responsible_party: ResponsibleParty = ResponsibleParty()
    oversight: Oversight = Oversight()
    keywords: list[str] = Field(default_factory=list)
    arm_groups: list[ArmGroupFact] = Field(default_factory=list)
    interventions: list[InterventionFact] = Field(default_factory=list)
    eligibility: EligibilityFacts = EligibilityFacts()
    officials: list[Official] = Field(default_factory=list)
    outcomes: list[RegisteredOutcome] = Field(min_length=1)
    results: ResultsFacts | None = None

    def arm_type(self, arm_code: str, receives_cells: bool) -> str:
        """The registered arm type of ``arm_code`` (Experimental/No Intervention when not stated)."""
        for group in self.arm_groups:
            if group.arm == arm_code:
                return group.type
        return "EXPERIMENTAL" if receives_cells else "NO_INTERVENTION"
