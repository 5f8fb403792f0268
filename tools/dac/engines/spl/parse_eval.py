"""The SPL eval expression parser: precedence climbing over eval's tokens to a parse tree
(tuples) that both engines (dac.engines.spl.engine_expr, dac.engines.spl.sql_expr) evaluate."""

from __future__ import annotations

import re
from dataclasses import field

from .parse import SplUnsupported, scan, unquote


_EVAL_TOKEN = re.compile(r"""
    \s*(?:
      (?P<num>\d+(?:\.\d+)?)
    | (?P<str>"(?:\\.|[^"\\])*")
    | (?P<qfield>'[^']*')
    | (?P<op>==|!=|<=|>=|[=<>+\-*/%.(),])
    | (?P<word>[A-Za-z_][\w]*)
    )""", re.X)


BINARY = {  # operator -> precedence; higher binds tighter
    "OR": 1, "XOR": 2, "AND": 3,
    "=": 5, "==": 5, "!=": 5, "<": 5, "<=": 5, ">": 5, ">=": 5, "LIKE": 5,
    "+": 6, "-": 6, ".": 6, "*": 7, "/": 7, "%": 7,
}


COMPARISONS = ("=", "==", "!=", "<", "<=", ">", ">=")


# eval function -> accepted argument counts (None: any)
FUNCTIONS: dict[str, tuple[int, ...] | None] = {
    "if": (3,), "case": None, "coalesce": None, "null": (0,), "true": (0,), "false": (0,),
    "isnull": (1,), "isnotnull": (1,), "match": (2,), "replace": (3,), "urldecode": (1,),
    "mvindex": (2, 3), "mvfind": (2,), "mvjoin": (2,), "mvcount": (1,), "lower": (1,), "upper": (1,), "len": (1,),
    "tostring": (1,), "tonumber": (1, 2), "substr": (2, 3), "like": (2,),
}


class _EvalParser:
    """Pratt parser turning an eval expression into a tree."""

    def __init__(self, text: str):
        self.text = text
        self.tokens = [(m.lastgroup, m.group(m.lastgroup)) for m in scan(_EVAL_TOKEN, text, "eval expression")]
        self.pos = 0

    def _peek(self):
        return self.tokens[self.pos] if self.pos < len(self.tokens) else (None, None)

    def _take(self, kind=None, value=None):
        tok = self._peek()
        if tok[0] is None or (kind and tok[0] != kind) or (value and tok[1] != value):
            raise SplUnsupported(f"eval expression {self.text!r}: expected {value or kind}, found {tok[1]!r}")
        self.pos += 1
        return tok

    def parse(self) -> tuple:
        expr = self.expression(0)
        if self.pos != len(self.tokens):
            raise SplUnsupported(f"eval expression {self.text!r}: unexpected {self._peek()[1]!r}")
        return expr

    def _binary_op(self):
        kind, val = self._peek()
        if kind == "op" and val in BINARY:
            return val
        if kind == "word" and val in ("AND", "OR", "XOR", "LIKE"):
            return val
        return None

    def expression(self, min_prec: int):
        left = self.unary()
        while (op := self._binary_op()) is not None and BINARY[op] > min_prec:
            self.pos += 1
            right = self.expression(BINARY[op])
            left = ("bin", "=" if op == "==" else op, left, right)
        return left

    def unary(self):
        kind, val = self._peek()
        if kind == "word" and val == "NOT":
            self.pos += 1
            return ("not", self.expression(4))
        if kind == "op" and val == "-":
            self.pos += 1
            return ("neg", self.unary())
        return self.primary()

    def primary(self):
        kind, val = self._take()
        if kind == "num":
            return ("num", float(val) if "." in val else int(val))
        if kind == "str":
            return ("str", unquote(val))
        if kind == "qfield":
            return ("field", val[1:-1])
        if kind == "op" and val == "(":
            inner = self.expression(0)
            self._take("op", ")")
            return inner
        if kind == "word":
            if self._peek() == ("op", "("):
                return self._call(val)
            if val in ("true", "false", "null"):
                raise SplUnsupported(f"bare {val} in eval (write {val}())")
            return ("field", val)
        raise SplUnsupported(f"eval expression {self.text!r}: unexpected {val!r}")

    def _call(self, name: str):
        if name not in FUNCTIONS:
            raise SplUnsupported(f"eval function {name}() is outside the evaluated subset")
        self._take("op", "(")
        args = []
        if self._peek() != ("op", ")"):
            args.append(self.expression(0))
            while self._peek() == ("op", ","):
                self.pos += 1
                args.append(self.expression(0))
        self._take("op", ")")
        counts = FUNCTIONS[name]
        if name == "case" and len(args) % 2:
            raise SplUnsupported("case() needs condition/value pairs")
        if counts is not None and len(args) not in counts:
            raise SplUnsupported(f"{name}() does not take {len(args)} arguments")
        return ("call", name, args)


def parse_eval(text: str) -> tuple:
    return _EvalParser(text).parse()
