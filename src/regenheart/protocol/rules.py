"""Rule expressions: the small, safe language of edit checks and eligibility criteria.

A rule is a Python-like boolean expression over field names, e.g. ``"lvesv_ml < lvedv_ml"`` or
``"nidcm_diagnosis == 'Y' and nyha_class in (3, 4)"``. It is parsed once with :mod:`ast` and only a
whitelist of node types is accepted (comparisons, ``and``/``or``/``not``, arithmetic, literals,
tuples, ``is None`` and the functions in :data:`ALLOWED_FUNCTIONS`), so a protocol file can never run
arbitrary code.

Evaluation follows clinical edit-check practice: a rule that needs a value that is missing is *not
evaluable* (result ``None``), not false. Edit checks then stay silent, because the required-field
check reports the gap; eligibility reports the criterion as "not assessed".
"""

from __future__ import annotations

import ast
import datetime as dt
import functools
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

ALLOWED_FUNCTIONS = {"abs": abs, "min": min, "max": max, "round": round, "default": None}
# default(field, fallback): the field's value, or ``fallback`` when it is missing. It is the one
# way to treat a blank as a value, e.g. an unticked SAE criterion as 'N'.

_ALLOWED_NODES = (
    ast.Expression, ast.BoolOp, ast.And, ast.Or, ast.UnaryOp, ast.Not, ast.USub, ast.UAdd,
    ast.BinOp, ast.Add, ast.Sub, ast.Mult, ast.Div, ast.Compare, ast.Eq, ast.NotEq, ast.Lt,
    ast.LtE, ast.Gt, ast.GtE, ast.In, ast.NotIn, ast.Is, ast.IsNot, ast.Name, ast.Load,
    ast.Constant, ast.Tuple, ast.List, ast.Call,
)


class RuleSyntaxError(ValueError):
    """A rule expression is not valid in the rule language."""


class _Missing(Exception):
    """Internal signal: the rule references a field that has no value."""


@dataclass(frozen=True)
class Rule:
    """A compiled rule expression. Call :meth:`evaluate` with a mapping of field values."""

    source: str
    tree: ast.Expression
    names: frozenset[str]

    def evaluate(self, values: Mapping[str, Any]) -> bool | None:
        """Return True/False, or None when a referenced value is missing (rule not evaluable).

        ``x is None`` / ``x is not None`` are the only operations that accept a missing value.
        """
        try:
            return bool(_eval(self.tree.body, values))
        except _Missing:
            return None


@functools.lru_cache(maxsize=1024)
def compile_rule(source: str) -> Rule:
    """Parse and check a rule expression; raise :class:`RuleSyntaxError` naming the problem.

    Cached: protocols reuse the same few rules on every save.
    """
    try:
        tree = ast.parse(source, mode="eval")
    except SyntaxError as exc:
        raise RuleSyntaxError(f"not a valid expression ({exc.msg})") from None
    names: set[str] = set()
    for node in ast.walk(tree):
        if not isinstance(node, _ALLOWED_NODES):
            raise RuleSyntaxError(f"'{type(node).__name__}' is not allowed in a rule")
        if isinstance(node, ast.Call):
            if not isinstance(node.func, ast.Name) or node.func.id not in ALLOWED_FUNCTIONS:
                raise RuleSyntaxError(
                    f"only the functions {sorted(ALLOWED_FUNCTIONS)} may be called in a rule"
                )
            if node.keywords:
                raise RuleSyntaxError("keyword arguments are not allowed in a rule")
        elif isinstance(node, ast.Name):
            names.add(node.id)
    names -= set(ALLOWED_FUNCTIONS)
    names.discard("None")
    return Rule(source=source, tree=tree, names=frozenset(names))


def _value(node: ast.expr, values: Mapping[str, Any]) -> Any:
    """Evaluate a node where a missing value is allowed (operand of ``is``)."""
    if isinstance(node, ast.Name):
        return values.get(node.id)
    return _eval(node, values)


def _eval(node: ast.expr, values: Mapping[str, Any]) -> Any:
    if isinstance(node, ast.Constant):
        return node.value
    if isinstance(node, ast.Name):
        value = values.get(node.id)
        if value is None:
            raise _Missing(node.id)
        return value
    if isinstance(node, (ast.Tuple, ast.List)):
        return tuple(_eval(e, values) for e in node.elts)
    if isinstance(node, ast.BoolOp):
        # Three-valued logic: 'or' is true if any evaluable operand is true, etc.
        results: list[bool | None] = []
        for operand in node.values:
            try:
                results.append(bool(_eval(operand, values)))
            except _Missing:
                results.append(None)
        if isinstance(node.op, ast.And):
            if any(r is False for r in results):
                return False
            if any(r is None for r in results):
                raise _Missing("and")
            return True
        if any(r is True for r in results):
            return True
        if any(r is None for r in results):
            raise _Missing("or")
        return False
    if isinstance(node, ast.UnaryOp):
        operand = _eval(node.operand, values)
        if isinstance(node.op, ast.Not):
            return not operand
        if isinstance(node.op, ast.USub):
            return -operand
        return +operand
    if isinstance(node, ast.BinOp):
        left, right = _eval(node.left, values), _eval(node.right, values)
        if isinstance(node.op, ast.Add):
            return left + right
        if isinstance(node.op, ast.Sub):
            return left - right
        if isinstance(node.op, ast.Mult):
            return left * right
        if right == 0:
            raise _Missing("division by zero")
        return left / right
    if isinstance(node, ast.Call):
        name = node.func.id  # type: ignore[union-attr]
        if name == "default":
            if len(node.args) != 2:
                raise RuleSyntaxError("default() takes a field and a fallback value")
            value = _value(node.args[0], values)
            return _eval(node.args[1], values) if value is None else value
        return ALLOWED_FUNCTIONS[name](*(_eval(a, values) for a in node.args))
    if isinstance(node, ast.Compare):
        left_node = node.left
        for op, right_node in zip(node.ops, node.comparators):
            if isinstance(op, (ast.Is, ast.IsNot)):
                left, right = _value(left_node, values), _value(right_node, values)
                ok = (left is right) if isinstance(op, ast.Is) else (left is not right)
            else:
                left, right = _eval(left_node, values), _eval(right_node, values)
                left, right = _comparable(left), _comparable(right)
                ok = _compare(op, left, right)
            if not ok:
                return False
            left_node = right_node
        return True
    raise RuleSyntaxError(f"'{type(node).__name__}' is not allowed in a rule")  # pragma: no cover


def _comparable(value: Any) -> Any:
    # Dates may arrive as ISO strings or date objects; compare them as dates.
    if isinstance(value, str) and len(value) == 10 and value[4] == "-" and value[7] == "-":
        try:
            return dt.date.fromisoformat(value)
        except ValueError:
            return value
    return value


def _compare(op: ast.cmpop, left: Any, right: Any) -> bool:
    if isinstance(op, ast.Eq):
        return left == right
    if isinstance(op, ast.NotEq):
        return left != right
    if isinstance(op, ast.In):
        return left in right
    if isinstance(op, ast.NotIn):
        return left not in right
    if isinstance(op, ast.Lt):
        return left < right
    if isinstance(op, ast.LtE):
        return left <= right
    if isinstance(op, ast.Gt):
        return left > right
    return left >= right
