"""VNN-LIB reader: the VNN-COMP subset of SMT-LIB, into :class:`~verifriend.specs.spec.Spec`.

Supported: ``(declare-const X_i Real)`` / ``(declare-const Y_j Real)`` (also
``declare-fun`` with no arguments), ``(assert F)`` where F is an atom, ``(and F ...)`` or
``(or F ...)`` nested freely; atoms ``(<= s t)``, ``(>= s t)``, ``(< s t)``, ``(> s t)``,
``(= s t)`` (chains allowed) over linear terms built from numbers (scientific notation,
signs), variables, ``(+ ...)``, ``(- ...)`` and ``(* ...)`` with at most one non-constant
factor; ``;`` comments; gzip-compressed files. ``set-logic``, ``set-info``,
``set-option``, ``check-sat``, ``get-model`` and ``exit`` are ignored.

Semantics: the file is the conjunction of its asserts, expanded to a disjunction of
conjunctions of atoms. An atom over X must bound a single X variable; an atom over Y is an
output constraint; mixing both is an error. Each disjunct gives an input box and one
AND-group of output constraints; disjuncts with the same box are merged into one Spec
whose clauses are those groups in order. Strict comparisons are read as non-strict: the
unsafe region becomes its closure, which only makes a proof harder (sound).
"""

from __future__ import annotations

import gzip
import itertools
import math
import re
from pathlib import Path

import torch

from verifriend.errors import UserError
from verifriend.specs.spec import F64, Spec

_TOKEN = re.compile(r"[()]|[^\s();]+")
_COMMENT = re.compile(r";[^\n]*")
_VAR = re.compile(r"([XY])_(\d+)\Z")
_IGNORED = {"set-logic", "set-info", "set-option", "check-sat", "get-model", "exit"}
_COMPARE = {"<=", ">=", "<", ">", "="}
_MAX_DISJUNCTS = 100_000


class _Sym:
    """A token other than a parenthesis, with its index in the token stream."""

    __slots__ = ("pos", "text")

    def __init__(self, text: str, pos: int):
        self.text, self.pos = text, pos


class _List:
    """A parenthesized list of nodes, with the token index of its opening parenthesis."""

    __slots__ = ("items", "pos")

    def __init__(self, items: list, pos: int):
        self.items, self.pos = items, pos


class _Reader:
    """Turns token indices into ``file:line:col`` errors.

    Nodes keep token indices, not offsets: tokenizing without match objects is several
    times faster, and offsets are only needed once, for the error being reported.
    """

    def __init__(self, text: str, source: str):
        self.text, self.source = text, source

    def error(self, tok: int, message: str) -> UserError:
        pos = len(self.text)
        k = 0
        for m in re.finditer(r"[()]|;[^\n]*|[^\s();]+", self.text):
            if m.group()[0] == ";":
                continue
            if k == tok:
                pos = m.start()
                break
            k += 1
        line = self.text.count("\n", 0, pos) + 1
        col = pos - (self.text.rfind("\n", 0, pos) + 1) + 1
        return UserError(f"{self.source}:{line}:{col}: {message}.")


def _parse_sexprs(text: str, rd: _Reader) -> list[_List]:
    tokens = _TOKEN.findall(_COMMENT.sub("", text))
    stack: list[_List] = []
    top: list[_List] = []
    for k, tok in enumerate(tokens):
        if tok == "(":
            stack.append(_List([], k))
        elif tok == ")":
            if not stack:
                raise rd.error(k, "unmatched ')'")
            node = stack.pop()
            (stack[-1].items if stack else top).append(node)
        elif stack:
            stack[-1].items.append(_Sym(tok, k))
        else:
            raise rd.error(k, f"expected '(' but found '{tok}'")
    if stack:
        raise rd.error(stack[-1].pos, "this '(' is never closed")
    return top


def _head(node: _List, rd: _Reader) -> str:
    if not node.items or not isinstance(node.items[0], _Sym):
        raise rd.error(node.pos, "expected an operator after '('")
    return node.items[0].text


def _number(text: str) -> float | None:
    if text[0] not in "0123456789+-.":
        return None
    try:
        return float(text)
    except ValueError:
        return None


class _Linear:
    """A linear term ``sum coefs[var] * var + const``; vars are ('X' | 'Y', index)."""

    __slots__ = ("coefs", "const")

    def __init__(self, coefs: dict, const: float):
        self.coefs, self.const = coefs, const

    def scaled(self, c: float) -> _Linear:
        return _Linear({v: c * a for v, a in self.coefs.items()}, c * self.const)

    def plus(self, other: _Linear, sign: float = 1.0) -> _Linear:
        coefs = dict(self.coefs)
        for v, a in other.coefs.items():
            coefs[v] = coefs.get(v, 0.0) + sign * a
        return _Linear(coefs, self.const + sign * other.const)


class _Parser:
    def __init__(self, text: str, source: str):
        self.rd = _Reader(text, source)
        self.text = text
        self.declared: dict[tuple[str, int], int] = {}  # var -> token index of its declaration

    def term(self, node) -> _Linear:
        rd = self.rd
        if isinstance(node, _Sym):
            value = _number(node.text)
            if value is not None:
                if not math.isfinite(value):
                    raise rd.error(node.pos, f"'{node.text}' is not a finite number")
                return _Linear({}, value)
            m = _VAR.match(node.text)
            if m is None:
                raise rd.error(
                    node.pos, f"'{node.text}' is neither a number nor a variable X_i / Y_j"
                )
            var = (m.group(1), int(m.group(2)))
            if var not in self.declared:
                raise rd.error(node.pos, f"variable {node.text} is not declared")
            return _Linear({var: 1.0}, 0.0)
        op = _head(node, rd)
        args = [self.term(a) for a in node.items[1:]]
        if not args:
            raise rd.error(node.pos, f"'{op}' needs at least one argument")
        if op == "+":
            out = args[0]
            for a in args[1:]:
                out = out.plus(a)
            return out
        if op == "-":
            if len(args) == 1:
                return args[0].scaled(-1.0)
            out = args[0]
            for a in args[1:]:
                out = out.plus(a, -1.0)
            return out
        if op == "*":
            factor, rest = 1.0, None
            for a, item in zip(args, node.items[1:]):
                if not a.coefs:
                    factor *= a.const
                elif rest is None:
                    rest = a
                else:
                    raise rd.error(item.pos, "a product of two variables is not linear")
            return _Linear({}, factor) if rest is None else rest.scaled(factor)
        raise rd.error(node.items[0].pos, f"unsupported operator '{op}' in a term")

    def atoms(self, node: _List, op: str) -> list[tuple]:
        """The atom as rows ``("X", i, value, is_lower)`` or ``("Y", {j: a_j}, b)`` (a . Y >= b)."""
        rd = self.rd
        if len(node.items) < 3:
            raise rd.error(node.pos, f"'{op}' needs two arguments")
        if len(node.items) == 3 and op != "=":
            row = self.simple_bound(node.items[1], node.items[2], op)
            if row is not None:
                return [row]
        terms = [self.term(a) for a in node.items[1:]]
        diffs = []  # each reads expr >= 0
        for lhs, rhs in itertools.pairwise(terms):
            if op in (">=", ">"):
                diffs.append(lhs.plus(rhs, -1.0))
            elif op in ("<=", "<"):
                diffs.append(rhs.plus(lhs, -1.0))
            else:
                diff = lhs.plus(rhs, -1.0)
                diffs += [diff, diff.scaled(-1.0)]
        rows = []
        for r in diffs:
            coefs = {v: a for v, a in r.coefs.items() if a != 0.0}
            kinds = {v[0] for v in coefs}
            if not kinds:
                raise rd.error(node.pos, "this constraint contains no variable")
            if kinds == {"X", "Y"}:
                raise rd.error(
                    node.pos, "a constraint may not mix input (X) and output (Y) variables"
                )
            if "X" in kinds:
                if len(coefs) > 1:
                    raise rd.error(node.pos, "an input constraint must bound a single X variable")
                (((_, i), a),) = coefs.items()
                # a * X_i + c >= 0 is a lower bound if a > 0 and an upper bound if a < 0
                rows.append(("X", i, 0.0 - r.const / a, a > 0))  # 0.0 - x never yields -0.0
            else:
                rows.append(("Y", {j: a for (_, j), a in coefs.items()}, 0.0 - r.const))
        return rows

    def simple_bound(self, lhs, rhs, op: str) -> tuple | None:
        """Fast path for ``(op VAR NUMBER)`` / ``(op NUMBER VAR)``, most atoms of real files.

        Gives the same row as the general path, or None when the atom has another shape.
        """
        if type(lhs) is not _Sym or type(rhs) is not _Sym:
            return None
        ge = op in (">=", ">")
        m = _VAR.match(lhs.text)
        value = _number(rhs.text)
        if m is None or value is None:
            m = _VAR.match(rhs.text)
            value = _number(lhs.text)
            if m is None or value is None:
                return None
            ge = not ge  # NUMBER op VAR is VAR op' NUMBER
        var = (m.group(1), int(m.group(2)))
        if var not in self.declared or not math.isfinite(value):
            return None  # the general path reports it
        if var[0] == "X":
            return ("X", var[1], value + 0.0, ge)  # + 0.0 turns -0.0 into 0.0
        return ("Y", {var[1]: 1.0}, value + 0.0) if ge else ("Y", {var[1]: -1.0}, 0.0 - value)

    def dnf(self, node) -> list[list[tuple[_Linear, int]]]:
        """The formula as a list of disjuncts, each a list of ``expr >= 0`` rows."""
        rd = self.rd
        if not isinstance(node, _List):
            raise rd.error(node.pos, f"expected a constraint but found '{node.text}'")
        op = _head(node, rd)
        if op in _COMPARE:
            return [self.atoms(node, op)]
        if op in ("and", "or"):
            if len(node.items) < 2:
                raise rd.error(node.pos, f"empty '({op})'")
            parts = [self.dnf(a) for a in node.items[1:]]
            if op == "or":
                return [d for p in parts for d in p]
            out = [[]]
            for p in parts:
                out = _conjoin(out, p, node.pos, rd)
            return out
        raise rd.error(node.items[0].pos, f"unsupported operator '{op}' in a constraint")

    def declare(self, node: _List, cmd: str) -> None:
        rd = self.rd
        items = node.items
        if cmd == "declare-fun":
            ok = len(items) == 4 and isinstance(items[2], _List) and not items[2].items
            sort = items[3] if ok else None
        else:
            ok = len(items) == 3
            sort = items[2] if ok else None
        if not ok or not isinstance(items[1], _Sym):
            raise rd.error(node.pos, f"malformed '{cmd}'; expected ({cmd} X_i Real)")
        if not isinstance(sort, _Sym) or sort.text != "Real":
            raise rd.error(node.pos, "variables must have sort Real")
        m = _VAR.match(items[1].text)
        if m is None:
            raise rd.error(items[1].pos, f"variable '{items[1].text}' must be named X_i or Y_j")
        var = (m.group(1), int(m.group(2)))
        if var in self.declared:
            raise rd.error(items[1].pos, f"variable {items[1].text} is declared twice")
        self.declared[var] = items[1].pos

    def run(self) -> list[Spec]:
        rd = self.rd
        asserts = []
        for node in _parse_sexprs(self.text, rd):
            cmd = _head(node, rd)
            if cmd in ("declare-const", "declare-fun"):
                self.declare(node, cmd)
            elif cmd == "assert":
                if len(node.items) != 2:
                    raise rd.error(node.pos, "'assert' takes exactly one formula")
                asserts.append(node.items[1])
            elif cmd not in _IGNORED:
                raise rd.error(node.items[0].pos, f"unsupported command '{cmd}'")
        n_in = self._count("X")
        n_out = self._count("Y")
        disjuncts: list[list] = [[]]
        for a in asserts:
            disjuncts = _conjoin(disjuncts, self.dnf(a), a.pos, rd)
        if not any(r[0] == "Y" for d in disjuncts for r in d):
            raise UserError(f"{rd.source}: the file asserts no output (Y) constraint.")
        return _group(disjuncts, n_in, n_out, rd.source)

    def _count(self, kind: str) -> int:
        idx = sorted(i for k, i in self.declared if k == kind)
        if not idx:
            name = "input X_0" if kind == "X" else "output Y_0"
            raise UserError(f"{self.rd.source}: no {name} variable is declared.")
        for expect, i in enumerate(idx):
            if i != expect:
                raise UserError(
                    f"{self.rd.source}: variable {kind}_{expect} is not declared "
                    f"although {kind}_{idx[-1]} is."
                )
        return len(idx)


def _conjoin(left: list[list], right: list[list], pos: int, rd: _Reader) -> list[list]:
    """The DNF of ``left AND right``; keeps each disjunct's rows in file order."""
    if len(right) == 1:  # the common case: extend in place instead of copying
        for d in left:
            d.extend(right[0])
        return left
    if len(left) * len(right) > _MAX_DISJUNCTS:
        raise rd.error(pos, f"the constraints expand to more than {_MAX_DISJUNCTS} cases")
    return [d + e for d in left for e in right]


def _group(disjuncts: list[list], n_in: int, n_out: int, source: str) -> list[Spec]:
    """One Spec per distinct input box, its clauses the disjuncts' output groups in order."""
    specs: dict[tuple, Spec] = {}
    boxes: dict[tuple, tuple] = {}  # an OR over outputs repeats the same input rows per case
    empty_var = None
    for d in disjuncts:
        xs = tuple(r for r in d if r[0] == "X")
        if xs not in boxes:
            boxes[xs] = _box(xs, n_in, source)
        lower, upper, key = boxes[xs]
        if key is None:
            # an empty box holds no input: this case of the disjunction cannot happen
            if empty_var is None:
                empty_var = int((lower > upper).nonzero()[0])
            continue
        ys = [r for r in d if r[0] == "Y"]
        rows = [k for k, r in enumerate(ys) for _ in r[1]]
        cols = [j for r in ys for j in r[1]]
        vals = [a for r in ys for a in r[1].values()]
        A = torch.zeros(len(ys), n_out, dtype=F64)
        A[torch.tensor(rows, dtype=torch.long), torch.tensor(cols, dtype=torch.long)] = (
            torch.tensor(vals, dtype=F64)
        )
        b = torch.tensor([r[2] for r in ys], dtype=F64)
        if key not in specs:
            specs[key] = Spec(lower, upper, [], n_out, source)
        specs[key].clauses.append((A, b))
    if not specs:
        raise UserError(
            f"{source}: the input constraints admit no point (X_{empty_var} has its lower bound "
            "above its upper bound)."
        )
    return list(specs.values())


def _box(xs: tuple, n: int, source: str) -> tuple:
    """``(lower, upper, key)``: every variable's largest lower and smallest upper bound.

    ``key`` identifies the box (None when it is empty).
    """
    lower = torch.full((n,), -torch.inf, dtype=F64)
    upper = torch.full((n,), torch.inf, dtype=F64)
    if xs:
        _, idx, vals, low = zip(*xs)
        idx_t = torch.tensor(idx, dtype=torch.long)
        vals_t = torch.tensor(vals, dtype=F64)
        low_t = torch.tensor(low, dtype=torch.bool)
        lower.scatter_reduce_(0, idx_t[low_t], vals_t[low_t], "amax")
        upper.scatter_reduce_(0, idx_t[~low_t], vals_t[~low_t], "amin")
    for name, bound in (("lower", lower), ("upper", upper)):
        missing = torch.isinf(bound).nonzero()
        if len(missing):
            raise UserError(f"{source}: input X_{int(missing[0])} has no {name} bound.")
    if bool((lower > upper).any()):
        return lower, upper, None
    return lower, upper, (lower.numpy().tobytes(), upper.numpy().tobytes())


def parse_vnnlib(text: str, source: str = "<string>") -> list[Spec]:
    """Parse VNN-LIB text into one Spec per distinct input box (usually exactly one).

    The property holds iff it holds for every returned Spec. Errors raise
    :class:`UserError` as ``source:line:col: message``.
    """
    return _Parser(text, source).run()


def read_vnnlib(path: str | Path) -> list[Spec]:
    """Read a ``.vnnlib`` or gzip-compressed ``.vnnlib.gz`` file; see :func:`parse_vnnlib`."""
    path = Path(path)
    try:
        raw = path.read_bytes()
    except OSError as e:
        raise UserError(f"cannot read the VNN-LIB file {path}: {e.strerror or e}.") from None
    if raw[:2] == b"\x1f\x8b":
        try:
            raw = gzip.decompress(raw)
        except (OSError, EOFError) as e:
            raise UserError(f"{path}: the gzip data is corrupt ({e}).") from None
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise UserError(f"{path}: the file is not UTF-8 text (byte {e.start}).") from None
    return parse_vnnlib(text, str(path))
