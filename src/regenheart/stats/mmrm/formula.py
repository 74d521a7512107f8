"""A small parser for R-style MMRM formulas.

Grammar (whitespace is free)::

    formula  := NAME '~' rhs
    rhs      := ['-'] item (('+' | '-') item)*
    item     := '0' | '1' | covterm | product
    covterm  := STRUCT '(' NAME '|' NAME ')'          STRUCT in us, cs, csh, ar1, ar1h, toep, toeph
    product  := atom (('*' | ':') atom)*
    atom     := NAME | '(' rhs ')'

``a*b`` expands to ``a + b + a:b`` (and ``(a+b)*c`` to ``a + b + c + a:c + b:c``); ``- 1`` or ``+ 0``
removes the intercept; ``- term`` removes a term. Names are identifiers (letters, digits, ``_``,
``.``) or any text in backticks. Function calls other than the covariance term (``log(x)``,
``I(x^2)``) are not supported: compute such columns in the data frame first.

Terms are ordered like R's ``terms()``: by order (main effects, then two-way interactions, ...), and
within an order by first appearance; the variables inside an interaction keep the order of their
first appearance in the formula, so ``ARMCD*AVISIT`` gives the term ``ARMCD:AVISIT``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from ._errors import MMRMError

COVARIANCE_STRUCTURES = ("us", "cs", "csh", "ar1", "ar1h", "toep", "toeph")

_TOKEN = re.compile(
    r"\s*(?:(?P<name>[A-Za-z_.][A-Za-z0-9_.]*)|`(?P<quoted>[^`]+)`|(?P<num>\d+(?:\.\d*)?)|(?P<op>[~+\-*:()|/^,]))"
)


@dataclass(frozen=True)
class ParsedFormula:
    """The pieces of an MMRM formula.

    ``terms`` are tuples of variable names (a main effect is a 1-tuple), in R's order; the
    intercept is not a term but the flag ``intercept``.
    """

    response: str
    terms: tuple[tuple[str, ...], ...]
    intercept: bool
    structure: str | None
    visit: str | None
    subject: str | None

    @property
    def variables(self) -> tuple[str, ...]:
        """Fixed-effect variables in order of first appearance."""
        seen: list[str] = []
        for term in self.terms:
            for v in term:
                if v not in seen:
                    seen.append(v)
        return tuple(seen)


def _tokenize(text: str) -> list[tuple[str, str]]:
    tokens: list[tuple[str, str]] = []
    pos = 0
    text = text.rstrip()
    while pos < len(text):
        m = _TOKEN.match(text, pos)
        if m is None or m.end() == pos:
            raise MMRMError(f"formula: cannot read {text[pos:]!r}")
        pos = m.end()
        if m.group("name") is not None:
            tokens.append(("name", m.group("name")))
        elif m.group("quoted") is not None:
            tokens.append(("name", m.group("quoted")))
        elif m.group("num") is not None:
            tokens.append(("num", m.group("num")))
        else:
            tokens.append(("op", m.group("op")))
    tokens.append(("end", ""))
    return tokens


class _Parser:
    def __init__(self, text: str):
        self.text = text
        self.tokens = _tokenize(text)
        self.i = 0
        self.order: list[str] = []  # variables by first appearance
        self.cov: tuple[str, str, str] | None = None

    def peek(self) -> tuple[str, str]:
        return self.tokens[self.i]

    def take(self, kind: str | None = None, value: str | None = None) -> tuple[str, str]:
        tok = self.tokens[self.i]
        if (kind is not None and tok[0] != kind) or (value is not None and tok[1] != value):
            want = value or kind
            got = tok[1] or "end of formula"
            raise MMRMError(f"formula {self.text!r}: expected {want!r}, found {got!r}")
        self.i += 1
        return tok

    def note(self, name: str) -> str:
        if name not in self.order:
            self.order.append(name)
        return name

    # Each rhs evaluates to (set of terms, intercept flag or None if not mentioned).
    def rhs(self) -> tuple[list[frozenset[str]], bool | None]:
        terms: list[frozenset[str]] = []
        intercept: bool | None = None
        sign = "+"
        if self.peek() == ("op", "-"):
            self.take()
            sign = "-"
        while True:
            tok = self.peek()
            if tok[0] == "num":
                self.take()
                if tok[1] not in ("0", "1"):
                    raise MMRMError(f"formula {self.text!r}: numeric term {tok[1]!r} (only 0 and 1)")
                has = tok[1] == "1"
                intercept = has if sign == "+" else not has
            elif tok[0] == "name" and tok[1] in COVARIANCE_STRUCTURES and self.tokens[self.i + 1] == ("op", "("):
                if sign == "-":
                    raise MMRMError(f"formula {self.text!r}: cannot remove a covariance term")
                self.covterm()
            else:
                new = self.product()
                if sign == "+":
                    for t in new:
                        if t not in terms:
                            terms.append(t)
                else:
                    terms = [t for t in terms if t not in new]
            tok = self.peek()
            if tok in (("op", "+"), ("op", "-")):
                sign = self.take()[1]
                continue
            return terms, intercept

    def covterm(self) -> None:
        struct = self.take("name")[1]
        self.take("op", "(")
        visit = self.take("name")[1]
        if self.peek() != ("op", "|"):
            raise MMRMError(f"formula {self.text!r}: covariance term needs the form {struct}(VISIT | SUBJECT)")
        self.take("op", "|")
        subject = self.take("name")[1]
        if self.peek() == ("op", "/"):
            raise MMRMError(
                f"formula {self.text!r}: group-specific covariance ({struct}(VISIT | GROUP / SUBJECT)) is not supported"
            )
        self.take("op", ")")
        if self.cov is not None:
            raise MMRMError(f"formula {self.text!r}: more than one covariance term")
        self.cov = (struct, visit, subject)

    def product(self) -> list[frozenset[str]]:
        result = self.atom()
        while self.peek() in (("op", "*"), ("op", ":")):
            op = self.take()[1]
            right = self.atom()
            inter = []
            for a in result:
                for b in right:
                    t = a | b
                    if t not in inter:
                        inter.append(t)
            if op == "*":
                combined = list(result)
                for t in right + inter:
                    if t not in combined:
                        combined.append(t)
                result = combined
            else:
                result = inter
        return result

    def atom(self) -> list[frozenset[str]]:
        tok = self.peek()
        if tok == ("op", "("):
            self.take()
            terms, intercept = self.rhs()
            self.take("op", ")")
            if intercept is not None:
                raise MMRMError(f"formula {self.text!r}: 0/1 inside parentheses is not supported")
            return terms
        if tok[0] == "name":
            self.take()
            if self.peek() == ("op", "("):
                raise MMRMError(
                    f"formula {self.text!r}: function call {tok[1]}(...) is not supported; "
                    "compute the column in the data first"
                )
            return [frozenset([self.note(tok[1])])]
        got = tok[1] or "end of formula"
        raise MMRMError(f"formula {self.text!r}: unexpected {got!r}")


def parse_formula(text: str) -> ParsedFormula:
    """Parse an R-style MMRM formula such as ``"FEV1 ~ RACE + ARMCD*AVISIT + us(AVISIT | USUBJID)"``."""
    if not isinstance(text, str) or "~" not in text:
        raise MMRMError(f"formula must be a string 'response ~ terms', got {text!r}")
    p = _Parser(text)
    response = p.take("name")[1]
    p.take("op", "~")
    terms, intercept = p.rhs()
    if p.peek()[0] != "end":
        raise MMRMError(f"formula {text!r}: unexpected {p.peek()[1]!r}")
    rank = {v: k for k, v in enumerate(p.order)}
    ordered = [tuple(sorted(t, key=rank.__getitem__)) for t in terms]
    first = {t: k for k, t in enumerate(ordered)}
    ordered.sort(key=lambda t: (len(t), first[t]))
    if response in p.order:
        raise MMRMError(f"formula {text!r}: the response {response!r} also appears on the right-hand side")
    structure = visit = subject = None
    if p.cov is not None:
        structure, visit, subject = p.cov
        if subject in p.order:
            raise MMRMError(f"formula {text!r}: the subject variable {subject!r} cannot be a fixed effect")
        if visit == subject:
            raise MMRMError(f"formula {text!r}: visit and subject variables must differ")
    return ParsedFormula(
        response=response,
        terms=tuple(ordered),
        intercept=True if intercept is None else intercept,
        structure=structure,
        visit=visit,
        subject=subject,
    )
