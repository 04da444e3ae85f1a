"""A tiny, safe arithmetic language for register scale expressions.

Mapping files say how a raw register becomes an engineering value with expressions such as
``raw * v_pu * 2**-15``. They come from files an operator may download or edit, so they are never
handed to ``eval()``: this module tokenizes and parses them itself and knows only numbers, names,
``+ - * / **``, unary signs and parentheses. Anything else raises `ExpressionError`, and so does
every arithmetic failure at evaluation time (division by zero, overflow, a complex result), so a
caller needs to handle exactly one exception type.

Grammar (``**`` binds tighter than a unary sign and is right-associative, as in Python)::

    expr   := term (("+" | "-") term)*
    term   := unary (("*" | "/") unary)*
    unary  := ("+" | "-") unary | power
    power  := atom ("**" unary)?
    atom   := NUMBER | NAME | "(" expr ")"
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass

__all__ = ["Expression", "ExpressionError", "compile_expression"]

# Bounds that keep a hostile file from costing more than a trivial one: a long input or deep
# nesting would otherwise be a way to hit Python's recursion limit from a data file.
MAX_LENGTH = 256
MAX_DEPTH = 32

# ASCII only: str patterns would otherwise accept any Unicode digit or space.
_SPACE = re.compile(r"\s*", re.ASCII)
_TOKEN = re.compile(
    r"""(?P<number>0[xX][0-9a-fA-F]+|(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?)
    | (?P<name>[A-Za-z_][A-Za-z0-9_]*)
    | (?P<op>\*\*|[-+*/()])""",
    re.VERBOSE | re.ASCII,
)


class ExpressionError(ValueError):
    """The expression is not valid, names something unknown, or its arithmetic failed."""


@dataclass(frozen=True, slots=True)
class _Token:
    kind: str  # "number", "name", "op" or "end"
    text: str
    position: int


def _tokenize(text: str) -> list[_Token]:
    tokens: list[_Token] = []
    position = 0
    while True:
        position = _SPACE.match(text, position).end()  # type: ignore[union-attr]  # \s* always matches
        if position >= len(text):
            break
        match = _TOKEN.match(text, position)
        if match is None or match.lastgroup is None:
            raise ExpressionError(f"unexpected character {text[position]!r} at position {position}")
        tokens.append(_Token(match.lastgroup, match.group(), position))
        position = match.end()
    tokens.append(_Token("end", "", len(text)))
    return tokens


# A compiled expression is a tree of closures: each takes the variable environment and returns a
# float. Closures keep evaluation a plain function call per node, with no interpretation loop.
_Node = Callable[[Mapping[str, float]], float]


def _checked(value: float) -> float:
    if not math.isfinite(value):
        raise ExpressionError(f"result is not a finite number ({value})")
    return value


def _number(value: float) -> _Node:
    return lambda _env: value


def _name(name: str) -> _Node:
    def node(env: Mapping[str, float]) -> float:
        try:
            return float(env[name])
        except KeyError:
            raise ExpressionError(f"no value for {name!r}") from None

    return node


def _binary(op: str, left: _Node, right: _Node) -> _Node:
    def node(env: Mapping[str, float]) -> float:
        a, b = left(env), right(env)
        try:
            if op == "+":
                return _checked(a + b)
            if op == "-":
                return _checked(a - b)
            if op == "*":
                return _checked(a * b)
            if op == "/":
                return _checked(a / b)
            # math.pow, not **: it raises instead of returning a complex number for (-8) ** 0.5.
            return _checked(math.pow(a, b))
        except ZeroDivisionError:
            raise ExpressionError("division by zero") from None
        except (OverflowError, ValueError) as exc:
            raise ExpressionError(f"{a!r} {op} {b!r}: {exc}") from None

    return node


def _negate(operand: _Node) -> _Node:
    return lambda env: -operand(env)


class _Parser:
    def __init__(self, text: str, names: frozenset[str]) -> None:
        self.tokens = _tokenize(text)
        self.index = 0
        self.names = names
        self.used: set[str] = set()
        self.depth = 0

    @property
    def current(self) -> _Token:
        return self.tokens[self.index]

    def _take(self) -> _Token:
        token = self.tokens[self.index]
        self.index += 1
        return token

    def _at(self, *ops: str) -> bool:
        return self.current.kind == "op" and self.current.text in ops

    def _enter(self) -> None:
        self.depth += 1
        if self.depth > MAX_DEPTH:
            raise ExpressionError(f"expression nests deeper than {MAX_DEPTH} levels")

    def parse(self) -> _Node:
        node = self.expr()
        if self.current.kind != "end":
            raise ExpressionError(f"unexpected {self.current.text!r} at position {self.current.position}")
        return node

    def expr(self) -> _Node:
        node = self.term()
        while self._at("+", "-"):
            op = self._take().text
            node = _binary(op, node, self.term())
        return node

    def term(self) -> _Node:
        node = self.unary()
        while self._at("*", "/"):
            op = self._take().text
            node = _binary(op, node, self.unary())
        return node

    def unary(self) -> _Node:
        if self._at("+", "-"):
            self._enter()
            sign = self._take().text
            operand = self.unary()
            self.depth -= 1
            return _negate(operand) if sign == "-" else operand
        return self.power()

    def power(self) -> _Node:
        base = self.atom()
        if self._at("**"):
            self._take()
            self._enter()
            exponent = self.unary()
            self.depth -= 1
            return _binary("**", base, exponent)
        return base

    def atom(self) -> _Node:
        token = self._take()
        if token.kind == "number":
            try:
                value = float(int(token.text, 16)) if token.text[:2].lower() == "0x" else float(token.text)
            except OverflowError:
                value = math.inf
            if not math.isfinite(value):
                raise ExpressionError(f"number {token.text!r} at position {token.position} is out of range")
            return _number(value)
        if token.kind == "name":
            if token.text not in self.names:
                known = ", ".join(sorted(self.names)) or "none"
                raise ExpressionError(f"unknown name {token.text!r} at position {token.position} (known: {known})")
            self.used.add(token.text)
            return _name(token.text)
        if token.kind == "op" and token.text == "(":
            self._enter()
            node = self.expr()
            self.depth -= 1
            if not self._at(")"):
                raise ExpressionError(f"missing ')' at position {self.current.position}")
            self._take()
            return node
        what = "end of expression" if token.kind == "end" else repr(token.text)
        raise ExpressionError(f"expected a number, a name or '(' but found {what} at position {token.position}")


@dataclass(frozen=True, slots=True)
class Expression:
    """A compiled expression: its source text, the names it uses, and how to evaluate it."""

    text: str
    names: frozenset[str]
    _root: _Node

    def evaluate(self, env: Mapping[str, float]) -> float:
        """The value for these variables; `ExpressionError` on any arithmetic failure."""
        return _checked(self._root(env))


def compile_expression(text: str, names: Iterable[str]) -> Expression:
    """Parse ``text``, allowing only the variables in ``names``; raise `ExpressionError` otherwise."""
    if not isinstance(text, str):
        raise ExpressionError(f"expression must be a string, not {type(text).__name__}")
    if len(text) > MAX_LENGTH:
        raise ExpressionError(f"expression longer than {MAX_LENGTH} characters")
    if not text.strip():
        raise ExpressionError("expression is empty")
    parser = _Parser(text, frozenset(names))
    root = parser.parse()
    return Expression(text, frozenset(parser.used), root)
