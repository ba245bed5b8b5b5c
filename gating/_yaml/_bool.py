"""Boolean expressions of the strategy format (``"CCR6+ and CXCR3+ and not CCR4+"``).

:func:`bool_expression` tokenises an expression (bare or quoted population references,
parentheses, ``and``/``or``/``not`` in any case), parses it with a small recursive-descent
parser (no eval) and returns it in negation normal form; :func:`quote_operand` writes a reference so
that it reads back as one token.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any, NoReturn

__all__ = ["bool_expression", "quote_operand"]

_TOKEN = re.compile(r"\s*(?:(\()|(\))|\"([^\"]*)\"|'([^']*)'|([^\s()\"']+))")
_KEYWORDS = ("and", "or", "not")


def bool_expression(value: str, fail: Callable[[str], NoReturn]) -> tuple[Any, ...]:
    """Parse ``value`` into negation normal form; ``fail(message)`` raises."""
    tokens: list[tuple[str, str]] = []
    pos = 0
    while value[pos:].strip():
        m = _TOKEN.match(value, pos)
        if m is None:
            fail(f"unbalanced quote at character {pos + 1} of {value!r}")
        lpar, rpar, dq, sq, bare = m.groups()
        if bare is not None and bare.lower() in _KEYWORDS:
            tokens.append((bare.lower(), bare))
        elif lpar or rpar:
            tokens.append((lpar or rpar, lpar or rpar))  # type: ignore[arg-type]
        else:
            tokens.append(("name", next(t for t in (dq, sq, bare) if t is not None)))
        pos = m.end()
    parser = _BooleanParser(tokens, lambda msg: fail(f"{msg} in {value!r}"))
    return _nnf(parser.parse())


class _BooleanParser:
    """``or`` < ``and`` < ``not`` < atoms; nodes ``("ref", name)``, ``("not", x)``,
    ``("and" | "or", [x, ...])``."""

    def __init__(self, tokens: list[tuple[str, str]], fail: Any) -> None:
        self.tokens, self.pos, self.fail = tokens, 0, fail

    def peek(self) -> str | None:
        return self.tokens[self.pos][0] if self.pos < len(self.tokens) else None

    def parse(self) -> tuple[Any, ...]:
        if not self.tokens:
            self.fail("empty expression")
        try:
            node = self.chain("or", self.chain_and)
        except RecursionError:
            self.fail("expression nested too deeply")
        if self.pos < len(self.tokens):
            self.fail(f"expected 'and' or 'or' before {self.tokens[self.pos][1]!r}")
        return node

    def chain(self, op: str, operand: Any) -> tuple[Any, ...]:
        items = [operand()]
        while self.peek() == op:
            self.pos += 1
            items.append(operand())
        return items[0] if len(items) == 1 else (op, items)

    def chain_and(self) -> tuple[Any, ...]:
        return self.chain("and", self.negation)

    def negation(self) -> tuple[Any, ...]:
        if self.peek() == "not":
            self.pos += 1
            return ("not", self.negation())
        kind = self.peek()
        if kind == "(":
            self.pos += 1
            node = self.chain("or", self.chain_and)
            if self.peek() != ")":
                self.fail("missing ')'")
            self.pos += 1
            return node
        if kind != "name":
            self.fail("expected a population name" + (
                f", got {self.tokens[self.pos][1]!r}" if kind else " at the end"))
        self.pos += 1
        return ("ref", self.tokens[self.pos - 1][1])


def _nnf(node: tuple[Any, ...], negate: bool = False) -> tuple[Any, ...]:
    """Push ``not`` down to the references (De Morgan) and flatten nested same operators."""
    if node[0] == "ref":
        return ("lit", node[1], negate)
    if node[0] == "not":
        return _nnf(node[1], not negate)
    op = {"and": "or", "or": "and"}[node[0]] if negate else node[0]
    children: list[tuple[Any, ...]] = []
    for child in node[1]:
        sub = _nnf(child, negate)
        children += sub[1] if sub[0] == op else [sub]
    return (op, children)


def quote_operand(token: str) -> str | None:
    if re.fullmatch(r"[^\s()\"']+", token) and token.lower() not in _KEYWORDS:
        return token
    return next((q + token + q for q in "\"'" if q not in token), None)
