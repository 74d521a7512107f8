"""The statistical analysis plan as data: the ``sap:`` section of a protocol file (pydantic v2).

A plan names populations (by their ADSL flag), what the baseline table shows, how the primary
endpoint is estimated, and for each endpoint the analyses to run at which visits: paired change
(t and Wilcoxon), geometric mean ratio (log-normal parameters), MMRM (formula terms, covariance
structure, estimation method and df method), shift table with sign test (ordinal parameters),
proportion with exact Clopper-Pearson CI (binary parameters), responder thresholds with their
source; the missing-data sensitivity analyses and their targets; and, for randomized protocol
versions, the between-arm comparisons. ``regenheart.stats`` runs what the plan says.

The models validate structure and types; :func:`regenheart.protocol.loader.load_protocol` checks
that every parameter, visit, population, code list and arm a plan names exists, and
:func:`default_plan` builds the plan of a protocol that has none (e.g. one drafted from a REDCap
project): descriptive statistics by visit of every numeric field and frequencies of every code field.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

if TYPE_CHECKING:  # the protocol model imports this module; only the type is needed here
    from regenheart.protocol.models import Protocol

_IDENT = r"^[a-z][a-z0-9_]*$"
_ADAM_NAME = r"^[A-Z][A-Z0-9]{0,7}$"
_MMRM_TERM = r"^[A-Z][A-Z0-9]*([:*][A-Z][A-Z0-9]*)*$"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Population(_Strict):
    """An analysis population: the subjects whose ADSL ``flag`` is ``Y``."""

    name: str = Field(pattern=_IDENT)
    label: str
    flag: str = Field(pattern=_ADAM_NAME)
    definition: str


class BaselineVariable(_Strict):
    """One row group of the baseline table: an ADSL ``column`` or a parameter's baseline value
    (``paramcd``, from ADEFF). With ``codelist`` it is categorical (n and % per code, in code-list
    order, labelled by ``level_label`` with ``{decode}`` replaced); otherwise continuous."""

    column: str | None = Field(default=None, pattern=_ADAM_NAME)
    paramcd: str | None = Field(default=None, pattern=_ADAM_NAME)
    label: str | None = None
    unit: str | None = None
    codelist: str | None = None
    level_label: str = "{decode}"

    @model_validator(mode="after")
    def _one_source(self) -> BaselineVariable:
        if (self.column is None) == (self.paramcd is None):
            raise ValueError("a baseline variable needs exactly one of 'column' (ADSL) or 'paramcd' (ADEFF)")
        if self.column is not None and self.label is None:
            raise ValueError(f"baseline column '{self.column}' needs a 'label'")
        return self


class BaselinePlan(_Strict):
    population: str = "safety"
    variables: list[BaselineVariable] = Field(default_factory=list)


class MmrmModel(_Strict):
    """``response ~ terms + covariance(AVISIT | USUBJID)``, fitted by ``method`` with ``df`` degrees
    of freedom. Terms are ADaM column names joined by ``:`` (interaction) or ``*`` (crossing)."""

    response: Literal["CHG", "AVAL"] = "CHG"
    terms: list[Annotated[str, Field(pattern=_MMRM_TERM)]] = Field(min_length=1)
    covariance: Literal["us", "cs", "csh", "ar1", "ar1h", "toep", "toeph"] = "us"
    method: Literal["REML", "ML"] = "REML"
    df: Literal["kenward-roger", "satterthwaite", "residual"] = "kenward-roger"

    @property
    def formula(self) -> str:
        """The model in R mmrm syntax, as :func:`regenheart.stats.mmrm.fit_mmrm` reads it."""
        return f"{self.response} ~ {' + '.join(self.terms)} + {self.covariance}(AVISIT | USUBJID)"

    @property
    def columns(self) -> list[str]:
        """Every data column the model needs besides the response, visit and subject."""
        names: list[str] = []
        for term in self.terms:
            for name in term.replace("*", ":").split(":"):
                if name not in names:
                    names.append(name)
        return names


class PairedChange(_Strict):
    """Change from baseline in subjects with both values: mean (CI), paired t, Wilcoxon signed-rank."""

    type: Literal["paired_change"]
    tests: list[Literal["t", "wilcoxon"]] = Field(default_factory=lambda: ["t", "wilcoxon"])


class GeometricMeanRatio(_Strict):
    """Follow-up / baseline geometric mean ratio (paired t on log values), for log-normal parameters."""

    type: Literal["geometric_mean_ratio"]


class MmrmAnalysis(_Strict):
    """The plan's MMRM model (``sap.mmrm``) fitted to this parameter; ``scale: log`` models the log
    ratio to baseline with log baseline as covariate and reports back-transformed ratios."""

    type: Literal["mmrm"]
    scale: Literal["identity", "log"] = "identity"


class ShiftTable(_Strict):
    """Ordinal parameter: baseline x visit shift table over the code list's codes, and the
    improvement test (exact sign test; Wilcoxon supportive); ``improvement`` is the better direction."""

    type: Literal["shift_table"]
    codelist: str
    level_label: str = "{decode}"
    improvement: Literal["lower", "higher"]
    test: Literal["sign"] = "sign"


class Proportion(_Strict):
    """Binary parameter: subjects whose value equals ``event`` at each visit, n/N with the exact
    Clopper-Pearson CI."""

    type: Literal["proportion"]
    event: float | int | str
    ci: Literal["clopper-pearson"] = "clopper-pearson"


class ResponderThreshold(_Strict):
    level: str = Field(pattern=_IDENT)
    change: float = Field(gt=0)
    source: str


class Responder(_Strict):
    """Responders: improvement (in the parameter's better direction) of at least each threshold,
    observed cases, with the exact Clopper-Pearson CI; each threshold cites its source."""

    type: Literal["responder"]
    thresholds: list[ResponderThreshold] = Field(min_length=1)


EndpointAnalysis = Annotated[PairedChange | GeometricMeanRatio | MmrmAnalysis | ShiftTable | Proportion | Responder,
                             Field(discriminator="type")]


def _analysis_shorthand(value: Any) -> Any:
    """``paired_change`` is short for ``{type: paired_change}``."""
    if isinstance(value, list):
        return [{"type": v} if isinstance(v, str) else v for v in value]
    return value


class EndpointPlan(_Strict):
    """The analyses of one protocol parameter (``paramcd``) at ``visits`` in ``population``;
    ``group`` (secondary / exploratory) orders and titles the report."""

    paramcd: str = Field(pattern=_ADAM_NAME)
    group: Literal["secondary", "exploratory"]
    population: str = "efficacy"
    visits: list[str] = Field(min_length=1)
    analyses: list[EndpointAnalysis] = Field(min_length=1)
    decimals: int | None = Field(default=None, ge=0, le=6)  # report decimals of means, SDs, CIs (None: default)

    @model_validator(mode="before")
    @classmethod
    def _shorthand(cls, data: Any) -> Any:
        if isinstance(data, dict) and "analyses" in data:
            data = {**data, "analyses": _analysis_shorthand(data["analyses"])}
        return data

    def analysis(self, kind: str) -> Any:
        """The analysis of type ``kind`` (None if the plan does not run it for this parameter)."""
        return next((a for a in self.analyses if a.type == kind), None)


class SupportivePlan(_Strict):
    """Supportive parameters (instrument domains and derived clinical values that the analysis
    datasets provide beside the protocol endpoints), analysed with ``analyses`` at ``visits``."""

    population: str = "efficacy"
    visits: list[str] = Field(min_length=1)
    analyses: list[Annotated[PairedChange | GeometricMeanRatio, Field(discriminator="type")]] = Field(min_length=1)

    @model_validator(mode="before")
    @classmethod
    def _shorthand(cls, data: Any) -> Any:
        if isinstance(data, dict) and "analyses" in data:
            data = {**data, "analyses": _analysis_shorthand(data["analyses"])}
        return data


class PrimaryPlan(_Strict):
    """Subjects with at least one primary-composite event: n/N with an exact CI."""

    population: str = "safety"
    ci: Literal["clopper-pearson"] = "clopper-pearson"


class FlowPlan(_Strict):
    """CONSORT-style flow: the follow-up boxes count subjects with an analysed value of
    ``assessed_paramcd`` at each of its plan visits."""

    population: str = "safety"
    assessed_paramcd: str | None = Field(default=None, pattern=_ADAM_NAME)


class SensitivityPlan(_Strict):
    """Missing-data sensitivity analysis of one target (``paramcd`` change at ``visit``): multiple
    imputation under MAR (Bayesian normal regression on ``predictors``), delta adjustment and the
    tipping point, combined by Rubin's rules."""

    id: str = Field(pattern=_IDENT)
    label: str
    paramcd: str = Field(pattern=_ADAM_NAME)
    visit: str
    population: str = "efficacy"
    method: Literal["multiple_imputation"] = "multiple_imputation"
    predictors: list[Literal["BASE"]] = Field(default_factory=lambda: ["BASE"])
    imputations: int = Field(default=50, ge=2)
    seed: int
    delta_adjustment: bool = True
    tipping_point: bool = True
    alpha: float = Field(default=0.05, gt=0, lt=1)


class RiskDifferencePlan(_Strict):
    """Between-arm risk difference of the primary endpoint: Newcombe hybrid score CI (Wilson,
    method 10) and, optionally, the exact unconditional CI."""

    methods: list[Literal["newcombe", "exact"]] = Field(default_factory=lambda: ["newcombe", "exact"], min_length=1)


class BetweenArmsPlan(_Strict):
    """Comparisons run when the active protocol version is randomized: the MMRM treatment
    difference (``mmrm``), the primary endpoint's risk difference, the ordinal parameters' change
    compared by the Wilcoxon-Mann-Whitney test, baseline and flow by arm, allocation by stratum
    (ADSL ``stratum_column``)."""

    reference_arm: str = Field(pattern=r"^[A-Z][A-Z0-9_]*$")
    arm_column: str = Field(default="ARMCD", pattern=_ADAM_NAME)
    stratum_column: str = Field(default="STRATUM", pattern=_ADAM_NAME)
    mmrm: MmrmModel
    risk_difference: RiskDifferencePlan = Field(default_factory=RiskDifferencePlan)
    ordinal_test: Literal["mann-whitney"] = "mann-whitney"


class DescriptiveVariable(_Strict):
    """A form field summarised by visit: numeric fields with n, mean, SD, median, quartiles, range;
    code fields with the frequency of each code."""

    form: str
    field: str
    kind: Literal["numeric", "code"]


class DescriptivePlan(_Strict):
    population: str = "screened"
    variables: list[DescriptiveVariable] = Field(default_factory=list)


class SapPlan(_Strict):
    """The whole statistical analysis plan."""

    title: str = "Statistical analysis plan"
    populations: list[Population] = Field(min_length=1)
    flow: FlowPlan = Field(default_factory=FlowPlan)
    baseline: BaselinePlan | None = None
    primary: PrimaryPlan | None = None
    adverse_events_population: str | None = "safety"
    mmrm: MmrmModel | None = None
    endpoints: list[EndpointPlan] = Field(default_factory=list)
    supportive: SupportivePlan | None = None
    sensitivity: list[SensitivityPlan] = Field(default_factory=list)
    between_arms: BetweenArmsPlan | None = None
    descriptive: DescriptivePlan | None = None
    headline: str | None = Field(default=None, pattern=_ADAM_NAME)

    @model_validator(mode="after")
    def _unique_names(self) -> SapPlan:
        for what, names in (("population", [p.name for p in self.populations]),
                            ("endpoint", [e.paramcd for e in self.endpoints]),
                            ("sensitivity analysis", [s.id for s in self.sensitivity])):
            twice = sorted({n for n in names if names.count(n) > 1})
            if twice:
                raise ValueError(f"{what} {', '.join(twice)} is defined twice")
        if any(e.analysis("mmrm") for e in self.endpoints) and self.mmrm is None:
            raise ValueError("an endpoint asks for an MMRM analysis but the plan has no 'mmrm' model")
        return self

    def population(self, name: str) -> Population:
        """The population called ``name`` (KeyError if absent)."""
        for p in self.populations:
            if p.name == name:
                return p
        raise KeyError(name)

    def endpoint(self, paramcd: str) -> EndpointPlan | None:
        return next((e for e in self.endpoints if e.paramcd == paramcd), None)


#: Populations every derived ADSL carries (``regenheart.derive``): the default plan's populations.
STANDARD_POPULATIONS = (
    Population(name="screened", label="Screened", flag="SCRNFL",
               definition="Every consented subject with a screening record."),
    Population(name="enrolled", label="Enrolled", flag="ENRLFL",
               definition="Eligible subjects enrolled in the study."),
    Population(name="safety", label="Safety population", flag="SAFFL",
               definition="Enrolled subjects who received the study treatment."),
)


def default_plan(protocol: Protocol) -> SapPlan:
    """The plan of a protocol without a ``sap:`` section.

    Always: descriptive statistics by visit of every numeric field and the frequencies of every code
    field of the visit forms, in the screened population (all a protocol drafted from a REDCap data
    dictionary, which has no endpoints, can be analysed with). A protocol with endpoints also gets
    the conventional analyses of each: paired change (t, Wilcoxon); the geometric mean ratio for
    log-scale parameters; a shift table with the sign test for ordinal ones; for secondary
    continuous parameters the MMRM ``CHG ~ BASE + AVISIT + BASE:AVISIT`` (unstructured, REML,
    Kenward-Roger); and the primary endpoint with its exact CI.
    """
    variables = []
    for form_code, form in protocol.forms.items():
        for field in form.fields:
            if field.type in ("integer", "float"):
                variables.append(DescriptiveVariable(form=form_code, field=field.name, kind="numeric"))
            elif field.type == "code":
                variables.append(DescriptiveVariable(form=form_code, field=field.name, kind="code"))
    descriptive = DescriptivePlan(population="screened", variables=variables)
    endpoints_def = getattr(protocol, "endpoints", None)
    if endpoints_def is None:
        return SapPlan(title="Default analysis plan: descriptive statistics by visit",
                       populations=list(STANDARD_POPULATIONS), adverse_events_population=None,
                       descriptive=descriptive)
    endpoints = []
    for group_name in ("secondary", "exploratory"):
        group = getattr(endpoints_def, group_name)
        for p in group.parameters:
            analyses: list[Any] = [PairedChange(type="paired_change")]
            if p.log_scale:
                analyses.append(GeometricMeanRatio(type="geometric_mean_ratio"))
            if p.ordinal:
                field = protocol.forms[p.form].field(p.item) if p.form in protocol.forms else None
                if field is not None and field.codelist:
                    analyses.append(ShiftTable(type="shift_table", codelist=field.codelist,
                                               improvement="lower" if p.direction == "lower_better" else "higher"))
            elif group_name == "secondary":
                analyses.append(MmrmAnalysis(type="mmrm", scale="log" if p.log_scale else "identity"))
            endpoints.append(EndpointPlan(paramcd=p.paramcd, group=group_name, visits=list(group.visits),
                                          analyses=analyses))
    efficacy = Population(name="efficacy", label="Efficacy population", flag="EFFFL",
                          definition="Treated subjects with a baseline and at least one post-baseline value of a "
                                     "secondary endpoint.")
    return SapPlan(title="Default analysis plan", populations=[*STANDARD_POPULATIONS, efficacy],
                   primary=PrimaryPlan() if getattr(endpoints_def, "primary", None) is not None else None,
                   mmrm=MmrmModel(terms=["BASE", "AVISIT", "BASE:AVISIT"]), endpoints=endpoints,
                   descriptive=descriptive)


def plan_issues(protocol: Protocol, plan: SapPlan) -> list[tuple[str, str]]:
    """Cross-references of a plan against its protocol, as ``(path, message)`` pairs with paths in
    the protocol file (``sap.endpoints[2].visits[0]``): every population, parameter, visit, code
    list, form field and arm the plan names must exist."""
    issues: list[tuple[str, str]] = []
    populations = {p.name for p in plan.populations}
    parameters = {p.paramcd: p for p in protocol.all_parameters}
    visits = {v.code: v for v in protocol.visits}
    planned = {e.paramcd: e for e in plan.endpoints}

    def population(path: str, name: str | None) -> None:
        if name is not None and name not in populations:
            issues.append((path, f"unknown population '{name}' (the plan defines {sorted(populations)})"))

    def codelist(path: str, name: str | None) -> None:
        if name is not None and name not in protocol.codelists:
            issues.append((path, f"unknown code list '{name}'"))

    population("sap.flow.population", plan.flow.population)
    if plan.flow.assessed_paramcd is not None and plan.flow.assessed_paramcd not in planned:
        issues.append(("sap.flow.assessed_paramcd", f"'{plan.flow.assessed_paramcd}' is not an endpoint of the plan"))
    if plan.headline is not None and plan.headline not in planned:
        issues.append(("sap.headline", f"'{plan.headline}' is not an endpoint of the plan"))
    if plan.baseline is not None:
        population("sap.baseline.population", plan.baseline.population)
        for i, var in enumerate(plan.baseline.variables):
            if var.paramcd is not None and var.paramcd not in parameters:
                issues.append((f"sap.baseline.variables[{i}].paramcd", f"unknown parameter '{var.paramcd}'"))
            codelist(f"sap.baseline.variables[{i}].codelist", var.codelist)
    if plan.primary is not None:
        population("sap.primary.population", plan.primary.population)
        if protocol.endpoints is None:
            issues.append(("sap.primary", "the protocol has no endpoints section with a primary endpoint"))
    population("sap.adverse_events_population", plan.adverse_events_population)
    if plan.mmrm is not None and "AVISIT" not in plan.mmrm.columns:
        issues.append(("sap.mmrm.terms", "the model needs AVISIT among its terms (LS means are given per visit)"))
    for i, endpoint in enumerate(plan.endpoints):
        path = f"sap.endpoints[{i}]"
        population(f"{path}.population", endpoint.population)
        param = parameters.get(endpoint.paramcd)
        if param is None:
            issues.append((f"{path}.paramcd", f"unknown parameter '{endpoint.paramcd}' (not in the protocol endpoints)"))
        for j, code in enumerate(endpoint.visits):
            if code not in visits:
                issues.append((f"{path}.visits[{j}]", f"unknown visit '{code}'"))
            elif visits[code].baseline:
                issues.append((f"{path}.visits[{j}]", f"'{code}' is the baseline visit, not a follow-up visit"))
        for j, analysis in enumerate(endpoint.analyses):
            if analysis.type == "shift_table":
                codelist(f"{path}.analyses[{j}].codelist", analysis.codelist)
            if analysis.type in ("geometric_mean_ratio",) and param is not None and not param.log_scale:
                issues.append((f"{path}.analyses[{j}]", f"'{endpoint.paramcd}' is not a log-scale parameter"))
    if plan.supportive is not None:
        population("sap.supportive.population", plan.supportive.population)
        for j, code in enumerate(plan.supportive.visits):
            if code not in visits:
                issues.append((f"sap.supportive.visits[{j}]", f"unknown visit '{code}'"))
    for i, sens in enumerate(plan.sensitivity):
        path = f"sap.sensitivity[{i}]"
        population(f"{path}.population", sens.population)
        target = planned.get(sens.paramcd)
        if target is None:
            issues.append((f"{path}.paramcd", f"'{sens.paramcd}' is not an endpoint of the plan"))
        elif sens.visit not in target.visits:
            issues.append((f"{path}.visit", (f"'{sens.visit}' is not one of the visits of {sens.paramcd} "
                                            f"{target.visits}")))
    if plan.between_arms is not None:
        between = plan.between_arms
        arms = {a.code for v in protocol.protocol_versions if v.design == "randomized" for a in v.arms}
        if between.reference_arm not in arms:
            issues.append(("sap.between_arms.reference_arm",
                           (f"'{between.reference_arm}' is not an arm of a randomized protocol version "
                           f"({sorted(arms) or 'none'})")))
        for name in (between.arm_column, "AVISIT"):
            if name not in between.mmrm.columns:
                issues.append(("sap.between_arms.mmrm.terms", f"the model needs {name} among its terms"))
    if plan.descriptive is not None:
        population("sap.descriptive.population", plan.descriptive.population)
        for i, var in enumerate(plan.descriptive.variables):
            form = protocol.forms.get(var.form)
            if form is None:
                issues.append((f"sap.descriptive.variables[{i}].form", f"unknown form '{var.form}'"))
            elif var.field not in form.field_names:
                issues.append((f"sap.descriptive.variables[{i}].field", f"form '{var.form}' has no field '{var.field}'"))
    return issues
