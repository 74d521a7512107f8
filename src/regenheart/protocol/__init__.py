"""Protocol as data: the study definition (arms, visits, forms, eligibility, endpoints) as typed models.

Load RegenHeart's embedded definition with :func:`load_protocol` (no argument) or any study file by
path. Nothing in this package does I/O beyond reading the protocol file.
"""

from regenheart.protocol.loader import ProtocolError, ProtocolIssue, load_protocol, parse_protocol
from regenheart.protocol.models import FieldDef, FormDef, Parameter, Protocol, Visit
from regenheart.protocol.rules import Rule, RuleSyntaxError, compile_rule

__all__ = [
    "FieldDef", "FormDef", "Parameter", "Protocol", "ProtocolError", "ProtocolIssue", "Rule",
    "RuleSyntaxError", "Visit", "compile_rule", "load_protocol", "parse_protocol",
]
