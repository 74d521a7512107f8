"""Edit checks as REDCap data-quality rules: the protocol's rule language -> REDCap logic.

A REDCap custom data-quality rule is logic that is TRUE for a *discrepancy* (standards.md 1.6), in
REDCap's syntax: ``[field]``, ``= <> < > <= >=``, ``and``/``or``, parentheses, ``if(c, a, b)``,
``abs()``, ``min()``, ``max()``, ``round(x, n)``; a blank is ``''``. REDCap has no ``not``, so the
check's rule is negated by De Morgan's laws. A regenheart rule is silent while a value it needs is
missing; the translation flags a discrepancy only when every field the rule compares is filled
(fields the rule itself tests with ``is None``, or reads through ``default()``, are not required).
"""

from __future__ import annotations

import ast
from collections.abc import Mapping

from regenheart.protocol.rules import compile_rule

_NEGATE = {ast.Eq: "<>", ast.NotEq: "=", ast.Lt: ">=", ast.LtE: ">", ast.Gt: "<=", ast.GtE: "<"}
_PLAIN = {ast.Eq: "=", ast.NotEq: "<>", ast.Lt: "<", ast.LtE: "<=", ast.Gt: ">", ast.GtE: ">="}
_ARITHMETIC = {ast.Add: "+", ast.Sub: "-", ast.Mult: "*", ast.Div: "/"}


class Untranslatable(ValueError):
    """The rule uses something REDCap logic cannot say."""


class _Translator:
    def __init__(self, names: Mapping[str, str]):
        self.names = names
        self.optional: set[str] = set()   # tested for blank or read through default(): not guarded

    def name(self, node: ast.Name) -> str:
        if node.id not in self.names:
            raise Untranslatable(f"field '{node.id}' is not in the REDCap project")
        return f"[{self.names[node.id]}]"

    def value(self, node: ast.expr) -> str:
        if isinstance(node, ast.Name):
            return self.name(node)
        if isinstance(node, ast.Constant):
            if isinstance(node.value, str):
                return "'" + node.value.replace("'", "") + "'"
            if isinstance(node.value, bool) or node.value is None:
                raise Untranslatable(f"constant {node.value!r}")
            return repr(node.value)
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub):
            return f"-({self.value(node.operand)})"
        if isinstance(node, ast.BinOp) and type(node.op) in _ARITHMETIC:
            return f"({self.value(node.left)} {_ARITHMETIC[type(node.op)]} {self.value(node.right)})"
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name):
            function, args = node.func.id, node.args
            if function == "default" and len(args) == 2 and isinstance(args[0], ast.Name):
                self.optional.add(args[0].id)
                field = self.name(args[0])
                return f"if({field} = '', {self.value(args[1])}, {field})"
            if function == "round":
                digits = self.value(args[1]) if len(args) > 1 else "0"
                return f"round({self.value(args[0])}, {digits})"
            if function in ("abs", "min", "max"):
                return f"{function}({', '.join(self.value(a) for a in args)})"
        raise Untranslatable(f"'{ast.unparse(node)}'")

    def condition(self, node: ast.expr, negate: bool) -> str:
        """REDCap logic for ``node`` (or for its negation)."""
        if isinstance(node, ast.BoolOp):
            parts = [self.condition(v, negate) for v in node.values]
            joiner = " and " if isinstance(node.op, ast.And) != negate else " or "
            return "(" + joiner.join(parts) + ")"
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.Not):
            return self.condition(node.operand, not negate)
        if isinstance(node, ast.Compare):
            parts, left = [], node.left
            for op, right in zip(node.ops, node.comparators, strict=True):
                parts.append(self.comparison(left, op, right, negate))
                left = right
            joiner = " or " if negate else " and "
            return parts[0] if len(parts) == 1 else "(" + joiner.join(parts) + ")"
        raise Untranslatable(f"'{ast.unparse(node)}' is not a condition")

    def comparison(self, left: ast.expr, op: ast.cmpop, right: ast.expr, negate: bool) -> str:
        if isinstance(op, (ast.Is, ast.IsNot)):
            if not (isinstance(left, ast.Name) and isinstance(right, ast.Constant) and right.value is None):
                raise Untranslatable("'is' compares a field with None only")
            self.optional.add(left.id)
            blank = isinstance(op, ast.Is) != negate
            return f"{self.name(left)} {'=' if blank else '<>'} ''"
        if isinstance(op, (ast.In, ast.NotIn)):
            if not isinstance(right, (ast.Tuple, ast.List)):
                raise Untranslatable("'in' needs a literal list")
            inside = isinstance(op, ast.In) != negate
            tests = [f"{self.value(left)} {'=' if inside else '<>'} {self.value(v)}" for v in right.elts]
            return "(" + (" or " if inside else " and ").join(tests) + ")"
        table = _NEGATE if negate else _PLAIN
        if type(op) not in table:
            raise Untranslatable(f"operator {type(op).__name__}")
        return f"{self.value(left)} {table[type(op)]} {self.value(right)}"


def discrepancy_logic(rule: str, names: Mapping[str, str]) -> str:
    """REDCap logic that is TRUE when ``rule`` fails (``names``: protocol field -> REDCap field).

    Raises :class:`Untranslatable` naming what REDCap logic cannot express.
    """
    compiled = compile_rule(rule)
    translator = _Translator(names)
    failed = translator.condition(compiled.tree.body, negate=True)
    guards = [f"[{names[n]}] <> ''" for n in sorted(compiled.names - translator.optional) if n in names]
    return " and ".join([*guards, failed])
