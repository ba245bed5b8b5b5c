"""Compensation that cannot be applied is an error, never a silent uncompensated gate.

Every case is a real FCS file written by the test: a file without spillover, one whose
``$SPILLOVER`` labels are not its channel names (``BV510_A`` for ``BV510-A``), a singular matrix.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from gating import (
    CompensationError,
    Dimension,
    PlanError,
    RectangleGate,
    Strategy,
    apply_plan,
    check_spillover,
    compile_plan,
    plan_from_dict,
    read_fcs,
    write_fcs,
)

CHANNELS = ["FSC-A", "BV510-A", "PE-A"]
SPILL = pd.DataFrame([[1.0, 0.3], [0.1, 1.0]], index=["BV510-A", "PE-A"], columns=["BV510-A", "PE-A"])


def _events(n: int = 400, seed: int = 1) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return np.column_stack([rng.uniform(0, 100, n), rng.uniform(0, 1000, n), rng.uniform(0, 1000, n)])


def write_sample(path, *, spill: pd.DataFrame | None = SPILL, mangle: bytes | None = None):
    """An FCS file; ``mangle`` rewrites the ``$SPILLOVER`` labels (same length: ``-`` -> ``_``)."""
    written = write_fcs(path, _events(), CHANNELS, spill=spill)
    if mangle is not None:
        blob = written.read_bytes()
        old = b"," + mangle + b","
        assert blob.count(old) == 1
        written.write_bytes(blob.replace(old, b"," + mangle.replace(b"-", b"_") + b","))
    return written


STRATEGY = Strategy(gates=(
    RectangleGate("Cells", (Dimension("FSC-A", "FCS"),), ((10.0, None),)),
    RectangleGate("BV510+", (Dimension("BV510-A", "FCS"),), ((300.0, None),), parent="Cells"),
))


def test_spillover_labels_that_are_not_channels_are_an_error_with_a_hint(tmp_path):
    path = write_sample(tmp_path / "bad.fcs", mangle=b"BV510-A")
    sample = read_fcs(path)
    assert list(sample.spill.columns) == ["BV510_A", "PE-A"]
    with pytest.raises(CompensationError) as err:
        compile_plan(STRATEGY, sample)
    exc = err.value
    assert isinstance(exc, PlanError)
    assert str(path) in str(exc) and "BV510_A" in str(exc)
    assert "'BV510_A' looks like channel 'BV510-A'" in str(exc)
    assert "uncompensated='allow'" in str(exc) and "fix:" in str(exc)
    assert exc.reason == "labels" and exc.labels == ("BV510_A",) and exc.hints == (("BV510_A", "BV510-A"),)
    rebuild, args = exc.__reduce__()  # how it crosses Dask's process boundary
    again = rebuild(*args)
    assert type(again) is CompensationError and again.hints == exc.hints and str(again) == str(exc)
    check = check_spillover(sample)
    assert check.status == "labels" and not check.ok
    assert check.text == "labels do not match (BV510_A -> BV510-A)"


def test_a_file_without_spillover_is_an_error_for_a_fluorescence_gate(tmp_path):
    sample = read_fcs(write_sample(tmp_path / "nospill.fcs", spill=None))
    with pytest.raises(CompensationError, match="has no spillover matrix") as err:
        compile_plan(STRATEGY, sample)
    assert err.value.reason == "none" and err.value.gate == "BV510+"
    assert check_spillover(sample).text == "none"
    scatter_only = Strategy(gates=(STRATEGY.gates[0],))  # FSC is never in a spillover matrix
    assert compile_plan(scatter_only, sample).uncompensated == ()


def test_a_singular_spillover_is_an_error(tmp_path):
    singular = pd.DataFrame([[1.0, 1.0], [1.0, 1.0]], index=SPILL.index, columns=SPILL.columns)
    sample = read_fcs(write_sample(tmp_path / "singular.fcs", spill=singular))
    with pytest.raises(CompensationError, match="singular") as err:
        compile_plan(STRATEGY, sample)
    assert err.value.reason == "singular"
    assert check_spillover(sample).text == "singular (2x2)"


def test_allow_gates_uncompensated_and_says_so(tmp_path):
    bad = read_fcs(write_sample(tmp_path / "bad.fcs", mangle=b"BV510-A"))
    plan = compile_plan(STRATEGY, bad, uncompensated="allow")
    assert len(plan.uncompensated) == 1 and "BV510_A" in plan.uncompensated[0]
    assert plan_from_dict(plan.to_dict()).uncompensated == plan.uncompensated
    raw = Strategy(gates=tuple(
        RectangleGate(g.id, tuple(Dimension(d.name) for d in g.dimensions), g.bounds, g.parent)
        for g in STRATEGY.gates))
    result = apply_plan(plan, bad, mfi=["BV510-A"], uncompensated="allow")
    expected = apply_plan(compile_plan(raw, bad), bad)
    assert result.counts["count"].tolist() == expected.counts["count"].tolist()
    assert result.uncompensated and any("MFI" in why for why in result.uncompensated)
    with pytest.raises(CompensationError, match="MFI"):
        apply_plan(compile_plan(raw, bad), bad, mfi=["BV510-A"])
    with pytest.raises(ValueError, match="uncompensated must be"):
        compile_plan(STRATEGY, bad, uncompensated="yes")  # type: ignore[arg-type]


def test_a_good_spillover_is_applied_and_reported_ok(tmp_path):
    sample = read_fcs(write_sample(tmp_path / "good.fcs"))
    plan = compile_plan(STRATEGY, sample)
    assert plan.uncompensated == ()
    assert any(f.numerator.coefficients is not None for f in plan.features)
    assert check_spillover(sample).text == "ok (2x2)"
