"""Roles and what each may do. The capture service enforces this; the web layer reuses it.

Site roles (an account with a site) see and touch only their site's subjects.
"""

from __future__ import annotations

from dataclasses import dataclass

ROLES = ("admin", "data_manager", "investigator", "coordinator", "monitor", "statistician", "read_only")

# Action -> roles allowed. A monitor or a statistician never changes clinical data.
PERMISSIONS: dict[str, frozenset[str]] = {
    "view": frozenset(ROLES),
    "screen_subject": frozenset({"admin", "data_manager", "investigator", "coordinator"}),
    "enter_data": frozenset({"data_manager", "investigator", "coordinator"}),
    "evaluate_eligibility": frozenset({"data_manager", "investigator", "coordinator"}),
    "enrol": frozenset({"investigator", "coordinator", "data_manager"}),
    "open_query": frozenset({"monitor", "data_manager"}),
    "answer_query": frozenset({"investigator", "coordinator", "data_manager"}),
    "close_query": frozenset({"monitor", "data_manager"}),
    "verify": frozenset({"monitor"}),
    "lock": frozenset({"data_manager"}),
    "sign": frozenset({"investigator"}),
    "manage_users": frozenset({"admin"}),
    "manage_sites": frozenset({"admin"}),
    # correct a subject code entered wrongly at screening (capture/subject_admin.py)
    "correct_subject_code": frozenset({"admin", "data_manager"}),
    "export": frozenset({"admin", "data_manager", "statistician"}),
    # generate / export concealed allocation lists (the protocol's scheme may narrow this further)
    "randomization_list": frozenset({"admin", "statistician"}),
}


@dataclass(frozen=True)
class Actor:
    """Who is acting: unique username, role, and the site an account is restricted to (None = all)."""

    username: str
    role: str
    site: str | None = None

    def __post_init__(self) -> None:
        if self.role not in ROLES:
            raise ValueError(f"role {self.role!r} is not one of {', '.join(ROLES)}")

    def may(self, action: str) -> bool:
        return self.role in PERMISSIONS.get(action, frozenset())

    def sees_site(self, site_code: str) -> bool:
        return self.site is None or self.site == site_code
