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


# --- main-effects designs are built without formulaic: the same matrix, names and contrasts ---

MAIN_EFFECTS_CASES = [
    ("~ patient + timepoint", ("timepoint", "post", "pre")),
    ("~patient+timepoint", ("timepoint", "post", "pre")),
    ("~ timepoint + patient", ("timepoint", "pre", "post")),
    ("~ 1 + batch + age + timepoint", ("timepoint", "post", "pre")),
    ("~ age + batch", ("batch", "b3", "b1")),
    ("~ batch + batch + timepoint", ("batch", "b2", "b3")),
    ("~ code + timepoint", ("code", "3", "1")),
    ("~ 1", None),
]


def _mixed_sheet() -> pd.DataFrame:
    rng = np.random.default_rng(5)
    return pd.DataFrame({
        "patient": [f"P{i // 2:02d}" for i in range(12)],
        "timepoint": ["pre", "post"] * 6,
        "batch": [f"b{1 + i % 3}" for i in range(12)],
        "age": rng.uniform(20, 80, 12).round(1),
        "code": [1, 2, 3, 4, 1, 2, 3, 4, 1, 2, 3, 4],
    }, index=[f"s{i}" for i in range(12)])


@pytest.mark.parametrize(("design", "contrast"), MAIN_EFFECTS_CASES)
def test_main_effects_designs_equal_formulaic(design, contrast):
    from formulaic import Formula

    from expression._design import MainEffectsSpec, contrast_vector, design_model, prepare_design

    prepared = prepare_design(_mixed_sheet(), design, contrast=contrast)
    x, names, spec = design_model(prepared)
    assert isinstance(spec, MainEffectsSpec)
    reference = Formula(design).get_model_matrix(prepared.frame)
    assert names == [str(c) for c in reference.columns]
    np.testing.assert_array_equal(x, np.asarray(reference, dtype=np.float64))
    if contrast is not None:
        factor = contrast[0]
        for level in prepared.levels[factor][1:]:
            wanted = (factor, level, prepared.levels[factor][0])
            ours = contrast_vector(prepared, spec, names, wanted)
            theirs = contrast_vector(prepared, reference.model_spec, names, wanted)
            np.testing.assert_array_equal(ours, theirs)


@pytest.mark.parametrize("design", [
    "~ patient + C(timepoint)", "~ patient + np.log(age)", "~ batch:timepoint",
    "~ batch * timepoint", "~ 0 + batch", "~ batch - 1",
])
def test_other_formulas_go_to_formulaic(design):
    from expression._design import design_model, main_effects, prepare_design

    assert main_effects(design) is None
    prepared = prepare_design(_mixed_sheet(), design)
    _, names, spec = design_model(prepared)
    assert type(spec).__module__.startswith("formulaic")
    assert names[0] != "" and len(names) >= 2


def test_main_effects_parse():
    from expression._design import main_effects

    assert main_effects("~ patient + timepoint + patient") == ("patient", "timepoint")
    assert main_effects(" ~ 1 ") == ()
    assert main_effects("~ a + 1 + b") == ("a", "b")
    assert main_effects("~ a + lambda") is None  # a Python keyword: formulaic decides
    assert main_effects("~ a b") is None
    assert design_variables("~ b + a + b") == ["a", "b"]


def test_categorical_levels_that_are_not_text_go_to_formulaic():
    from expression._design import design_model, prepare_design

    sheet = _mixed_sheet()
    sheet["dose"] = pd.Categorical([0.5, 1.0, 2.0] * 4)
    prepared = prepare_design(sheet, "~ dose + timepoint", keep_categories=True)
    _, names, spec = design_model(prepared)
    assert type(spec).__module__.startswith("formulaic")
    assert names[1:3] == ["dose[T.1.0]", "dose[T.2.0]"]
