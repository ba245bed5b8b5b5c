"""Design handling shared by DE and the VST (``expression._design``)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from expression import design_variables
from expression._de import parse_contrast
from expression._design import as_contrast, design_frame, design_matrix


def _sheet() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "patient": ["b", "b", "a", "a"],
            "timepoint": pd.Categorical(["pre", "post"] * 2, categories=["pre", "post"]),
            "age": [50.0, 50.0, 61.0, 61.0],
            "dose": [0, 1, 0, 1],
        },
        index=["s1", "s2", "s3", "s4"],
    )


def test_contrasts_from_text_or_sequence():
    assert as_contrast("timepoint, post ,pre") == parse_contrast("timepoint,post,pre")
    assert as_contrast(["dose", 1, 0]) == ("dose", "1", "0")
    with pytest.raises(ValueError, match=r"contrast must be \(factor, level, reference\)"):
        as_contrast(("timepoint", "post"))
    with pytest.raises(ValueError, match="factor,level,reference"):
        as_contrast("timepoint,post")


def test_design_frame_for_de_sorts_levels_and_puts_the_reference_first():
    meta, levels = design_frame(_sheet(), ["age", "dose", "patient", "timepoint"],
                                contrast=("dose", "1", "0"))
    # categoricals are re-levelled as sorted text; the numeric contrast factor becomes a factor
    assert levels == {"dose": ["0", "1"], "patient": ["a", "b"], "timepoint": ["post", "pre"]}
    assert meta["age"].dtype == np.float64  # a covariate stays numeric
    _, levels = design_frame(_sheet(), ["timepoint"], contrast=("timepoint", "post", "pre"))
    assert levels == {"timepoint": ["pre", "post"]}


def test_design_frame_for_the_vst_keeps_categorical_order():
    meta, levels = design_frame(_sheet(), ["dose", "patient", "timepoint"], keep_categories=True)
    assert levels == {"patient": ["a", "b"], "timepoint": ["pre", "post"]}
    assert meta["dose"].dtype.kind == "i"


def test_design_matrix_is_treatment_coded():
    x = design_matrix(_sheet(), "~ patient + timepoint")
    # intercept, patient b (a is the sorted reference), timepoint post (pre is the first category)
    np.testing.assert_array_equal(x, [[1, 1, 0], [1, 1, 1], [1, 0, 0], [1, 0, 1]])
    assert design_variables("~ patient + timepoint") == ["patient", "timepoint"]


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda s: design_matrix(s, "~ donor"), r"design variable\(s\) \['donor'\] not in"),
        (lambda s: design_frame(s, ["patient"], contrast=("timepoint", "post", "pre")),
         "contrast factor 'timepoint' is not in the design"),
        (lambda s: design_frame(s, ["timepoint"], contrast=("timepoint", "wk4", "pre")),
         "contrast level 'wk4' not found"),
        (lambda s: design_frame(s, ["timepoint"], contrast=("timepoint", "pre", "pre")),
         "compares 'pre' with itself"),
        (lambda s: design_matrix(s.assign(patient=[None, "b", "a", "a"]), "~ patient"),
         "'patient' is missing for sample 's1'"),
        (lambda s: design_matrix(s, "patient"), "starting with '~'"),
    ],
)
def test_design_errors(call, message):
    with pytest.raises(ValueError, match=message):
        call(_sheet())
