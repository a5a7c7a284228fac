"""The Spec type and the VNN-LIB reader: real VNN-COMP files, every construct, errors, round trips."""

from __future__ import annotations

import csv
import gzip
import math
import re
from functools import cache
from pathlib import Path

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from verifriend.bounds import compute_bounds, robustness_spec
from verifriend.errors import UserError
from verifriend.specs import Spec, parse_vnnlib, read_vnnlib, stack_specs

F64 = torch.float64
VNNCOMP = Path(__file__).resolve().parents[1].parent / "shared" / "vnncomp"
BENCHMARKS = sorted(p.parent.name for p in VNNCOMP.glob("*/instances.csv"))


def t(rows) -> torch.Tensor:
    return torch.tensor(rows, dtype=F64)


def header(n_in: int, n_out: int) -> str:
    decl = [f"(declare-const X_{i} Real)" for i in range(n_in)]
    decl += [f"(declare-const Y_{j} Real)" for j in range(n_out)]
    return "\n".join(decl) + "\n"


def box_text(lo, hi) -> str:
    return "\n".join(
        f"(assert (>= X_{i} {a!r}))\n(assert (<= X_{i} {b!r}))"
        for i, (a, b) in enumerate(zip(lo, hi))
    )


def one(text: str) -> Spec:
    specs = parse_vnnlib(text)
    assert len(specs) == 1
    return specs[0]


def assert_clauses(spec: Spec, expected: list[tuple[list, list]]) -> None:
    assert len(spec.clauses) == len(expected)
    for (A, b), (eA, eb) in zip(spec.clauses, expected):
        assert torch.equal(A, t(eA).reshape(-1, spec.n_outputs)), (A, eA)
        assert torch.equal(b, t(eb)), (b, eb)


# ---------------------------------------------------------------- real VNN-COMP files


@cache
def onnx_sizes(path: Path) -> tuple[int, int]:
    onnx = pytest.importorskip("onnx")
    model = onnx.load(str(path), load_external_data=False)
    inits = {i.name for i in model.graph.initializer}

    def size(value) -> int:
        n = 1
        for d in value.type.tensor_type.shape.dim:
            n *= d.dim_value if d.HasField("dim_value") and d.dim_value > 0 else 1
        return n

    (inp,) = [i for i in model.graph.input if i.name not in inits]
    (out,) = model.graph.output
    return size(inp), size(out)


@pytest.mark.parametrize("bench", BENCHMARKS or ["missing"])
def test_every_vnncomp_file_parses_and_matches_its_network(bench):
    if not BENCHMARKS:
        pytest.skip(f"{VNNCOMP} is missing")
    root = VNNCOMP / bench
    with open(root / "instances.csv") as f:
        rows = list(csv.DictReader(f))
    parsed = {}
    for row in rows:
        path = root / row["vnnlib"]
        if path not in parsed:
            parsed[path] = read_vnnlib(path)
        n_in, n_out = onnx_sizes(root / row["onnx"])
        for spec in parsed[path]:
            assert spec.n_inputs == n_in and spec.n_outputs == n_out
            assert spec.lower.dtype == F64 and bool((spec.lower <= spec.upper).all())
            assert torch.isfinite(spec.lower).all() and torch.isfinite(spec.upper).all()
            assert spec.n_clauses >= 1
            for A, b in spec.clauses:
                assert A.shape == (len(b), n_out)
    # every file of the benchmark is covered, also those no instance names
    for path in (root / "vnnlib").glob("*.vnnlib*"):
        if path not in parsed:
            read_vnnlib(path)


@pytest.mark.skipif(not (VNNCOMP / "mnistfc").is_dir(), reason="vnncomp/mnistfc is missing")
def test_mnistfc_files_are_robustness_specs_of_their_label():
    for path in sorted((VNNCOMP / "mnistfc" / "vnnlib").glob("*.vnnlib.gz")):
        text = gzip.decompress(path.read_bytes()).decode()
        label = int(re.search(r"label: (\d+)", text).group(1))
        eps = float(re.search(r"_([0-9.]+)\.vnnlib", path.name).group(1))
        (spec,) = read_vnnlib(path)
        ref = Spec.linf_robustness((spec.lower + spec.upper) / 2, label, eps, 10)
        assert_clauses(spec, [(A.tolist(), b.tolist()) for A, b in ref.clauses])
        assert (
            float((spec.upper - spec.lower).max()) <= 2 * eps + 1e-6
        )  # the files store eps in float32
        assert bool((spec.lower >= 0).all()) and bool((spec.upper <= 1).all())


@pytest.mark.skipif(not (VNNCOMP / "acasxu").is_dir(), reason="vnncomp/acasxu is missing")
def test_acasxu_properties_by_hand():
    (p1,) = read_vnnlib(VNNCOMP / "acasxu" / "vnnlib" / "prop_1.vnnlib.gz")
    assert p1.lower.tolist() == [0.6, -0.5, -0.5, 0.45, -0.5]
    assert p1.upper.tolist() == [0.679857769, 0.5, 0.5, 0.5, -0.45]
    assert_clauses(p1, [([1, 0, 0, 0, 0], [3.991125645861615])])
    (p3,) = read_vnnlib(VNNCOMP / "acasxu" / "vnnlib" / "prop_3.vnnlib.gz")
    # Y_0 <= Y_k for k = 1..4, all in one clause: Y_k - Y_0 >= 0
    assert_clauses(
        p3, [([[-1, 1, 0, 0, 0], [-1, 0, 1, 0, 0], [-1, 0, 0, 1, 0], [-1, 0, 0, 0, 1]], [0] * 4)]
    )
    # property 6: an OR of two input boxes, each with the same four output clauses
    p6 = read_vnnlib(VNNCOMP / "acasxu" / "vnnlib" / "prop_6.vnnlib.gz")
    assert len(p6) == 2
    assert p6[0].lower[1] == 0.11140846 and p6[0].upper[1] == 0.499999896
    assert p6[1].lower[1] == -0.499999896 and p6[1].upper[1] == -0.11140846
    clauses = [([1 if j == 0 else -1 if j == k else 0 for j in range(5)], [0]) for k in range(1, 5)]
    for spec in p6:
        assert_clauses(spec, clauses)


# ---------------------------------------------------------------- constructs, by hand


def test_bounds_and_one_comparison():
    spec = one(
        header(2, 2)
        + "; a comment\n(assert (<= X_0 0.5)) ; trailing comment\n(assert (>= X_0 0.1))\n"
        "(assert (>= 1 X_1))\n(assert (<= -2.5e-1 X_1))\n(assert (<= Y_0 Y_1))\n"
    )
    assert spec.lower.tolist() == [0.1, -0.25] and spec.upper.tolist() == [0.5, 1.0]
    assert_clauses(spec, [([[-1, 1]], [0])])
    assert spec.n_inputs == 2 and spec.n_outputs == 2 and spec.n_clauses == 1
    ((clause, a, b),) = spec.constraints()
    assert clause == 0 and a.tolist() == [-1, 1] and b == 0 and math.copysign(1, b) == 1


def test_linear_terms_numbers_and_constants():
    box = box_text([0], [1])
    spec = one(
        header(1, 3) + box + "\n(assert (and"
        "\n  (>= (+ (* 2.0 Y_0) (* -1 Y_1)) 3.5)"  # 2 Y0 - Y1 >= 3.5
        "\n  (<= (- Y_0 Y_1 Y_2) -1.5E-3)"  # -Y0 + Y1 + Y2 >= 0.0015
        "\n  (>= (- Y_2) (* 2 3 Y_1))"  # -6 Y1 - Y2 >= 0
        "\n  (<= (+ Y_0 1) (* Y_2 +4))"  # -Y0 + 4 Y2 >= 1
        "\n  (> (* 0.5 (+ Y_0 Y_0)) 1e2)"  # Y0 >= 100
        "\n))\n"
    )
    assert_clauses(
        spec,
        [([[2, -1, 0], [-1, 1, 1], [0, -6, -1], [-1, 0, 4], [1, 0, 0]], [3.5, 0.0015, 0, 1, 100])],
    )


def test_or_of_ands_keeps_file_order_and_clause_indices():
    spec = one(
        header(1, 3)
        + box_text([0], [1])
        + "\n(assert (or (and (>= Y_0 1) (<= Y_1 2)) (and (>= Y_2 Y_0)) (and (<= Y_2 3) (>= Y_1 4) (>= Y_0 5))))"
    )
    assert_clauses(
        spec,
        [
            ([[1, 0, 0], [0, -1, 0]], [1, -2]),
            ([[-1, 0, 1]], [0]),
            ([[0, 0, -1], [0, 1, 0], [1, 0, 0]], [-3, 4, 5]),
        ],
    )
    assert [c for c, _, _ in spec.constraints()] == [0, 0, 1, 2, 2, 2]
    assert [b for _, _, b in spec.constraints()] == [1, -2, 0, -3, 4, 5]
    C, d, clause = spec.to_spec_matrix()
    assert torch.equal(C, -torch.cat([A for A, _ in spec.clauses]))
    assert d.tolist() == [1, -2, 0, -3, 4, 5] and clause.tolist() == [0, 0, 1, 2, 2, 2]


def test_conjunction_of_asserts_distributes_over_or():
    # (Y0 >= 1) and ((Y1 >= 2) or (Y2 >= 3)) and (Y0 <= 9): two clauses sharing Y0's rows
    spec = one(
        header(1, 3)
        + box_text([0], [1])
        + "\n(assert (>= Y_0 1))\n(assert (or (and (>= Y_1 2)) (and (>= Y_2 3))))\n(assert (<= Y_0 9))"
    )
    assert_clauses(
        spec,
        [
            ([[1, 0, 0], [0, 1, 0], [-1, 0, 0]], [1, 2, -9]),
            ([[1, 0, 0], [0, 0, 1], [-1, 0, 0]], [1, 3, -9]),
        ],
    )


def test_nested_single_element_and_or():
    spec = one(
        header(1, 2)
        + "(assert (and (or (and (>= X_0 0))) (and (<= X_0 1))))\n"
        + "(assert (or (and (or (and (>= Y_0 Y_1))))))"
    )
    assert spec.lower.tolist() == [0] and spec.upper.tolist() == [1]
    assert_clauses(spec, [([[1, -1]], [0])])


def test_strict_and_equal_comparisons():
    spec = one(
        header(2, 2)
        + "(assert (= X_0 0.25))\n(assert (< X_1 1))\n(assert (> X_1 0))\n(assert (= Y_0 2))"
    )
    assert spec.lower.tolist() == [0.25, 0] and spec.upper.tolist() == [0.25, 1]
    assert_clauses(spec, [([[1, 0], [-1, 0]], [2, -2])])


def test_repeated_bounds_intersect():
    spec = one(
        header(1, 1)
        + "(assert (>= X_0 0))(assert (>= X_0 0.2))(assert (<= X_0 1))(assert (<= X_0 0.7))(assert (>= Y_0 0))"
    )
    assert spec.lower.tolist() == [0.2] and spec.upper.tolist() == [0.7]


def test_input_or_gives_one_spec_per_box_and_merges_equal_boxes():
    text = header(2, 2) + (
        "(assert (or (and (>= X_0 0) (<= X_0 1) (>= X_1 0) (<= X_1 1))"
        " (and (>= X_0 2) (<= X_0 3) (>= X_1 0) (<= X_1 1))"
        " (and (<= X_1 1) (>= X_1 0) (>= X_0 0) (<= X_0 1))))\n"
        "(assert (or (and (>= Y_0 1)) (and (>= Y_1 2))))"
    )
    first, second = parse_vnnlib(text)
    assert first.lower.tolist() == [0, 0] and first.upper.tolist() == [1, 1]
    assert second.lower.tolist() == [2, 0] and second.upper.tolist() == [3, 1]
    assert_clauses(second, [([[1, 0]], [1]), ([[0, 1]], [2])])
    # the third case repeats the first box, so its clauses join the first spec
    assert_clauses(first, [([[1, 0]], [1]), ([[0, 1]], [2])] * 2)


def test_negative_zero_bounds_give_the_same_box():
    (spec,) = parse_vnnlib(
        header(1, 1)
        + "(assert (or (and (>= X_0 -0.0) (<= X_0 1)) (and (<= (- X_0) 0) (>= 1 X_0))))"
        + "(assert (>= Y_0 -0.0))"
    )
    assert spec.n_clauses == 2 and math.copysign(1, spec.lower.item()) == 1
    assert math.copysign(1, spec.constraints()[0][2]) == 1


def test_stack_specs_batches_boxes_with_shared_clauses():
    text = header(1, 2) + (
        "(assert (or (and (>= X_0 0) (<= X_0 1)) (and (>= X_0 2) (<= X_0 3))))\n"
        "(assert (or (and (>= Y_0 1) (<= Y_1 0)) (and (>= Y_1 2))))"
    )
    specs = parse_vnnlib(text)
    lower, upper, C, d = stack_specs(specs)
    assert lower.tolist() == [[0], [2]] and upper.tolist() == [[1], [3]]
    assert C.shape == (2, 3, 2) and torch.equal(C[1], specs[1].to_spec_matrix()[0])
    assert d.tolist() == [[1, 0, 2]] * 2
    mixed = parse_vnnlib(
        header(1, 1) + "(assert (or (and (>= X_0 0) (<= X_0 1) (>= Y_0 1)) "
        "(and (>= X_0 2) (<= X_0 3) (>= Y_0 1) (<= Y_0 5))))"
    )
    with pytest.raises(UserError, match="one at a time"):
        stack_specs(mixed)


def test_inputs_and_outputs_in_one_disjunct():
    # the shape of VNN-COMP's test_small / test_tiny
    first, second = parse_vnnlib(
        header(1, 1) + "(assert (or\n (and (>= X_0 -1) (<= X_0 1) (>= Y_0 100))\n"
        " (and (>= X_0 2) (<= X_0 3) (<= Y_0 -5))))"
    )
    assert (first.lower.item(), first.upper.item(), second.lower.item(), second.upper.item()) == (
        -1,
        1,
        2,
        3,
    )
    assert_clauses(first, [([[1]], [100])])
    assert_clauses(second, [([[-1]], [5])])


def test_empty_cases_of_an_input_or_are_dropped():
    (spec,) = parse_vnnlib(
        header(1, 1)
        + "(assert (or (and (>= X_0 2) (<= X_0 1)) (and (>= X_0 0) (<= X_0 1))))(assert (>= Y_0 0))"
    )
    assert spec.lower.tolist() == [0] and spec.upper.tolist() == [1]


def test_declare_fun_and_ignored_commands():
    spec = one(
        "(set-logic QF_LRA)\n(declare-fun X_0 () Real)\n(declare-fun Y_0 () Real)\n"
        "(assert (>= X_0 0))(assert (<= X_0 1))(assert (>= Y_0 0))\n(check-sat)\n(get-model)\n(exit)\n"
    )
    assert_clauses(spec, [([[1]], [0])])


def test_plain_and_gzip_files(tmp_path):
    text = header(1, 2) + box_text([0], [1]) + "\n(assert (<= Y_0 Y_1))\n"
    plain = tmp_path / "p.vnnlib"
    plain.write_text(text)
    packed = tmp_path / "p.vnnlib.gz"
    packed.write_bytes(gzip.compress(text.encode()))
    (a,), (b,) = read_vnnlib(plain), read_vnnlib(packed)
    assert torch.equal(a.lower, b.lower) and torch.equal(a.clauses[0][0], b.clauses[0][0])
    assert a.source == str(plain)


# ---------------------------------------------------------------- errors name file:line:col


@pytest.mark.parametrize(
    ("body", "where", "words"),
    [
        ("(assert (<= X_0 1))\n(assert (<= X_0 Y_0)))", "5:22", "unmatched"),
        ("(assert (<= X_0 1))\n  (assert (<= X_0 Y_0)", "5:3", "never closed"),
        ("(assert (>= X_0 0))\n(assert (<= X_0 1))\n (assert (<= X_0 Y_0))", "6:10", "mix input"),
        ("(declare-const X_1 Real)(assert (<= (+ X_0 X_1) 1))", "4:33", "single X variable"),
        ("(assert (<= X_0 1))\n(assert (>= Y_5 0))", "5:13", "Y_5 is not declared"),
        ("(assert (not (<= Y_0 0)))", "4:10", "unsupported operator 'not'"),
        ("(assert (<= (* Y_0 Y_1) 0))", "4:20", "not linear"),
        ("(assert (<= (/ Y_0 2) 0))", "4:14", "unsupported operator '/'"),
        ("(assert (<= foo 1))", "4:13", "neither a number nor a variable"),
        ("(assert (<= X_0 -inf))", "4:17", "not a finite number"),
        ("(assert (<= 1 2))", "4:9", "no variable"),
        ("(assert (<= Y_0))", "4:9", "needs two arguments"),
        ("(assert (or))", "4:9", "empty '(or)'"),
        ("(assert Y_0)", "4:9", "expected a constraint"),
        ("(assert (<= Y_0 0) (<= Y_1 0))", "4:1", "exactly one formula"),
        ("(define-fun f () Real 1)", "4:2", "unsupported command 'define-fun'"),
        ("X_0", "4:1", "expected '('"),
        ("(declare-const X_0 Real)", "4:16", "declared twice"),
        ("(declare-const Z_0 Real)", "4:16", "named X_i or Y_j"),
        ("(declare-const X_3 Int)", "4:1", "sort Real"),
        ("()", "4:1", "expected an operator"),
    ],
)
def test_syntax_and_semantic_errors_name_line_and_column(body, where, words):
    # the header takes lines 1-3, so the body starts on line 4
    with pytest.raises(UserError) as info:
        parse_vnnlib(header(1, 2) + body, source="spec.vnnlib")
    message = str(info.value)
    assert message.startswith(f"spec.vnnlib:{where}: "), message
    assert words in message and message.endswith(".") and "\n" not in message


@pytest.mark.parametrize(
    ("text", "words"),
    [
        (
            header(2, 1)
            + "(assert (>= X_0 0))(assert (<= X_0 1))(assert (<= X_1 1))(assert (>= Y_0 0))",
            "X_1 has no lower bound",
        ),
        (header(1, 1) + "(assert (>= X_0 0))(assert (>= Y_0 0))", "X_0 has no upper bound"),
        (header(1, 1) + "(assert (>= X_0 0))(assert (<= X_0 1))", "no output (Y) constraint"),
        (
            header(1, 1) + "(assert (>= X_0 2))(assert (<= X_0 1))(assert (>= Y_0 0))",
            "X_0 has its lower bound above",
        ),
        ("(declare-const Y_0 Real)(assert (>= Y_0 0))", "no input X_0"),
        (
            "(declare-const X_0 Real)(declare-const X_2 Real)(declare-const Y_0 Real)",
            "X_1 is not declared",
        ),
    ],
)
def test_semantic_errors_name_the_variable(text, words):
    with pytest.raises(UserError, match=re.escape(words)) as info:
        parse_vnnlib(text, source="s.vnnlib")
    assert str(info.value).startswith("s.vnnlib: ")


def test_file_errors(tmp_path):
    with pytest.raises(UserError, match="cannot read"):
        read_vnnlib(tmp_path / "missing.vnnlib")
    bad = tmp_path / "bad.vnnlib.gz"
    bad.write_bytes(b"\x1f\x8b\x08\x00garbage")
    with pytest.raises(UserError, match="gzip"):
        read_vnnlib(bad)
    binary = tmp_path / "bin.vnnlib"
    binary.write_bytes(b"(declare-const X_0 Real)\xff\xfe")
    with pytest.raises(UserError, match="UTF-8"):
        read_vnnlib(binary)


# ---------------------------------------------------------------- Spec semantics


def hand_spec() -> Spec:
    """Unsafe iff (Y0 - Y1 >= 0 and Y2 >= 1) or (Y1 >= 5)."""
    return one(
        header(1, 3)
        + box_text([0], [1])
        + "(assert (or (and (>= Y_0 Y_1) (>= Y_2 1)) (and (>= Y_1 5))))"
    )


@pytest.mark.parametrize(
    ("y", "violated"),
    [
        ([2, 1, 1], True),  # first clause
        ([2, 1, 0], False),  # Y2 < 1 and Y1 < 5
        ([0, 5, 0], True),  # second clause, on its boundary
        ([1, 1, 1], True),  # first clause on both boundaries (non-strict)
        ([0.9, 1, 7], False),
        ([-3, 4.999, 2], False),
    ],
)
def test_is_violated_by_hand(y, violated):
    spec = hand_spec()
    assert spec.is_violated(t(y)) is violated
    assert spec.violated_mask(t([y, y])).tolist() == [violated] * 2


@pytest.mark.parametrize(
    ("lower", "proved"),
    [
        ([0.1, -1, 0.2], True),  # row 0 excludes clause 0, row 2 clause 1
        ([-1, 0.1, 0.2], True),
        ([0.1, 0.1, 0.0], False),  # clause 1 is not excluded (needs > 0)
        ([-1, -1, 5], False),
    ],
)
def test_proved_by_hand(lower, proved):
    spec = hand_spec()
    assert spec.proved(t(lower)) is proved
    assert spec.proved_mask(t([lower, [1, 1, 1]])).tolist() == [proved, True]
    assert spec.proved(t([lower, [1, 1, 1]])) is proved


def test_clause_without_rows_is_never_proved_and_no_clause_always_is():
    empty = Spec(t([0]), t([1]), [(torch.zeros(0, 2, dtype=F64), torch.zeros(0, dtype=F64))], 2)
    assert not empty.proved(torch.zeros(0, dtype=F64))
    assert empty.is_violated(t([0, 0]))
    nothing = Spec(t([0]), t([1]), [], 2)
    assert nothing.proved(torch.zeros(0, dtype=F64)) and not nothing.is_violated(t([0, 0]))


def test_proved_matches_sampled_outputs():
    """If ``proved`` accepts exact lower bounds of C y + d over a sample set, no sample is unsafe."""
    gen = torch.Generator().manual_seed(0)
    spec = hand_spec()
    C, d, _ = spec.to_spec_matrix()
    for _ in range(200):
        ys = torch.randn(50, 3, generator=gen, dtype=F64) * 3
        lower = (ys @ C.T + d).min(0).values
        assert spec.proved(lower) == (not bool(spec.violated_mask(ys).any()))


def test_input_box_shapes():
    spec = one(header(4, 1) + box_text([0, 1, 2, 3], [1, 2, 3, 4]) + "(assert (>= Y_0 0))")
    lo, hi = spec.input_box((1, 2, 2), dtype=torch.float32)
    assert (
        lo.shape == (1, 1, 2, 2)
        and lo.dtype == torch.float32
        and hi.flatten().tolist() == [1, 2, 3, 4]
    )
    with pytest.raises(UserError, match="4 inputs"):
        spec.input_box((3,))


def test_linf_robustness_agrees_with_the_bound_engine():
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(6, 12), nn.ReLU(), nn.Linear(12, 4)).double()
    x = torch.rand(6, dtype=F64)
    for label in range(4):
        for eps in (0.0, 0.01, 0.3):
            spec = Spec.linf_robustness(x, label, eps, 4)
            assert torch.equal(spec.lower, (x - eps).clamp(0, 1)) and torch.equal(
                spec.upper, (x + eps).clamp(0, 1)
            )
            C, d, clause = spec.to_spec_matrix()
            ref = robustness_spec(torch.tensor([label]), 4, dtype=F64)
            assert torch.equal(C, ref[0]) and not d.any() and clause.tolist() == [0, 1, 2]
            lo, hi = spec.input_box((6,))
            b = compute_bounds(net, lo, hi, C[None], method="crown")
            assert spec.proved(b.lower[0] + d) == bool((b.lower > 0).all())
            # a concrete output is unsafe iff the label is not the strict argmax
            y = net(x)
            assert spec.is_violated(y.detach()) == bool(
                (y[torch.arange(4) != label] >= y[label]).any()
            )
    with pytest.raises(UserError):
        Spec.linf_robustness(x, 4, 0.1, 4)
    with pytest.raises(UserError):
        Spec.linf_robustness(x, 0, -0.1, 4)


# ---------------------------------------------------------------- round trip through a writer

finite = st.floats(-1e6, 1e6, allow_nan=False, allow_infinity=False)


def write_term(coefs: list[float], forms: list[int]) -> str:
    terms = []
    for j, (a, form) in enumerate(zip(coefs, forms)):
        if a == 0:
            continue
        if form == 0:
            terms.append(f"(* {a!r} Y_{j})")
        elif form == 1:
            terms.append(f"(* Y_{j} {a!r})")
        else:
            terms.append(f"(- (* {-a!r} Y_{j}))")
    return terms[0] if len(terms) == 1 else f"(+ {' '.join(terms)})"


def write_constraint(a: list[float], b: float, forms: list[int], flip: bool) -> str:
    if flip:  # -a . Y <= -b
        return f"(<= {write_term([-v for v in a], forms)} {-b!r})"
    return f"(>= {write_term(a, forms)} {b!r})"


@st.composite
def specs(draw):
    n_in = draw(st.integers(1, 4))
    n_out = draw(st.integers(1, 4))
    boxes = []
    for _ in range(draw(st.integers(1, 2))):
        lo = draw(st.lists(finite, min_size=n_in, max_size=n_in))
        width = draw(st.lists(st.floats(0, 10), min_size=n_in, max_size=n_in))
        hi = [a + w for a, w in zip(lo, width)]
        if (lo, hi) not in boxes:
            boxes.append((lo, hi))
    coef = st.one_of(st.just(0.0), st.just(1.0), finite)
    clauses = []
    for _ in range(draw(st.integers(1, 3))):
        rows = []
        for _ in range(draw(st.integers(1, 3))):
            a = draw(st.lists(coef, min_size=n_out, max_size=n_out).filter(lambda r: any(r)))
            forms = draw(st.lists(st.integers(0, 2), min_size=n_out, max_size=n_out))
            rows.append((a, draw(finite), forms, draw(st.booleans())))
        clauses.append(rows)
    return n_in, n_out, boxes, clauses, draw(st.booleans())


@settings(max_examples=60, deadline=None)
@given(specs())
def test_written_specs_parse_back_to_the_same_constraints(case):
    n_in, n_out, boxes, clauses, separate = case
    text = header(n_in, n_out)
    if len(boxes) == 1:
        text += box_text(*boxes[0]) + "\n"
    else:
        groups = [
            "(and "
            + " ".join(f"(>= X_{i} {a!r}) (<= X_{i} {b!r})" for i, (a, b) in enumerate(zip(lo, hi)))
            + ")"
            for lo, hi in boxes
        ]
        text += f"(assert (or {' '.join(groups)}))\n"
    written = [[write_constraint(*row) for row in rows] for rows in clauses]
    if len(clauses) == 1 and separate:
        text += "\n".join(f"(assert {c})" for c in written[0])
    else:
        text += "(assert (or\n" + "\n".join(f"  (and {' '.join(cs)})" for cs in written) + "\n))"
    parsed = parse_vnnlib(text)
    assert len(parsed) == len(boxes)
    expected = [([row[0] for row in rows], [row[1] for row in rows]) for rows in clauses]
    for spec, (lo, hi) in zip(parsed, boxes):
        assert spec.lower.tolist() == lo and spec.upper.tolist() == hi
        assert_clauses(spec, expected)
        assert [(c, a.tolist(), b) for c, a, b in spec.constraints()] == [
            (j, row[0], row[1]) for j, rows in enumerate(clauses) for row in rows
        ]
