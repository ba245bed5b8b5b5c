"""The study manifest: one YAML file naming every input of a paired pre/post study.

The manifest is read with PyYAML's safe loader, bounded against alias bombs, recursive
aliases and deep nesting (:func:`engine.runtime.load_yaml_bounded`), and validated into
small frozen dataclasses.
Relative paths resolve against the manifest's folder. Anything wrong (a missing file, an
unknown population, a column the clinical table does not have, a malformed entry) raises
:class:`StudyError` naming the manifest file and the key, e.g.
``study.yaml: correlations[1].y: 'MMRS' is not a clinical column or population``.

Keys (``[]`` = optional)::

    name: my-study
    timepoints: [pre, post]              # or {pre: baseline, post: week2}
    [columns: {subject: patient, time: timepoint}]
    [patients: [P01, ...]]               # default: every patient of the clinical table
    fcs: [{sample, patient, timepoint, path}, ...]
    strategy: strategy.yaml              # or a preset name
    populations_of_interest: [{name, path, parent, [parent_path]}, ...]
    clinical: clinical.csv
    outcomes: [MMRSS, ...]               # clinical columns compared pre vs post
    [subgroup: group]                    # a clinical column
    [counts: counts.csv, samples: samples.csv]
    [gene_sets: [default, sets.gmt]]
    [expression: {design, contrast: [factor, level, reference], alpha, score, numeric: [age],
                  fit_type: parametric}]     # or mean: the dispersion trend (R's fitType)
    [correlations: [{x, y, [timepoint: pre], [pool_timepoints: false], [method]}, ...]]
    [statistics: {paired_test: wilcoxon, correlation: spearman, confidence: 0.95}]
    [figures: {gate_plot_patient: P05, key_populations: [Tc17]}]
    [truth: truth.json]                  # the demo's planted effects
    [seed: 20190419]                     # informational (the demo writes it)

A key that is not one of these, at any level (``statistics: {paired_tests: t}``,
``subgroups: group``), is an error naming the key path and the closest valid key; so is a value
of the wrong kind (a name where a mapping is expected). Values are checked when the manifest is
loaded, before any gating: every input file exists, the contrast's factor and both levels are in
the sample sheet (with the design's variables, their kinds decided by the one design rule of
:func:`expression.prepare_design`: integer codes such as patient numbers are factors unless
listed in ``expression.numeric``), test and correlation names are among the allowed ones.
"""

from __future__ import annotations

import dataclasses
import difflib
import hashlib
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pragma: no cover - typing only
    from gating import FlowJoWorkspace, Strategy

__all__ = [
    "Correlation",
    "ExpressionSettings",
    "FcsSample",
    "Population",
    "Study",
    "StudyError",
    "load_study",
]

#: The valid keys at every level of the manifest.
TOP_KEYS = (
    "name", "seed", "timepoints", "columns", "patients", "fcs", "strategy",
    "populations_of_interest", "clinical", "outcomes", "subgroup", "counts", "samples",
    "gene_sets", "expression", "correlations", "statistics", "figures", "truth",
)
COLUMNS_KEYS = ("subject", "time")
TIMEPOINTS_KEYS = ("pre", "post")
FCS_KEYS = ("sample", "patient", "timepoint", "path")
POPULATION_KEYS = ("name", "path", "parent", "parent_path")
EXPRESSION_KEYS = ("design", "contrast", "alpha", "score", "numeric", "fit_type")
CORRELATION_KEYS = ("x", "y", "timepoint", "pool_timepoints", "method")
STATISTICS_KEYS = ("paired_test", "correlation", "confidence")
FIGURES_KEYS = ("gate_plot_patient", "key_populations")

_PAIRED_TESTS = ("wilcoxon", "t")
_CORRELATIONS = ("spearman", "pearson")
_SCORES = ("mean_z", "combined_z", "mean")


class StudyError(ValueError):
    """A study manifest is invalid: names the manifest file and the offending key.

    Attributes
    ----------
    manifest
        The manifest file.
    key
        The key that is wrong (``fcs[3].path``, ``correlations[0].x`` ...).
    """

    def __init__(self, manifest: str | os.PathLike[str], key: str, message: str) -> None:
        self.manifest = Path(manifest)
        self.key = key
        super().__init__(f"{self.manifest}: {key}: {message}")


@dataclasses.dataclass(frozen=True)
class FcsSample:
    """One FCS file of the study: its sample name, patient, timepoint and absolute path."""

    sample: str
    patient: str
    timepoint: str
    path: Path


@dataclasses.dataclass(frozen=True)
class Population:
    """A population of interest and the parent its frequency is reported against.

    Attributes
    ----------
    name
        Short name used in tables (``Tc17``).
    path
        Full gating path (``/Lymphocytes/.../CD8+/Tc17``).
    parent
        Short name of the denominator population (``CD8+``).
    parent_path
        Full gating path of the denominator.
    """

    name: str
    path: str
    parent: str
    parent_path: str


@dataclasses.dataclass(frozen=True)
class Correlation:
    """One pair of variables to correlate (clinical columns, population or gene-set names).

    ``timepoint`` picks the samples (e.g. baseline); ``pool_timepoints`` uses both timepoints
    (the points are then not independent: the result carries a warning).
    """

    x: str
    y: str
    timepoint: str
    pool_timepoints: bool
    method: str


@dataclasses.dataclass(frozen=True)
class ExpressionSettings:
    """Skin RNA inputs and the differential-expression / gene-set settings."""

    counts: Path
    samples: Path
    gene_sets: tuple[str, ...]
    design: str
    contrast: tuple[str, str, str]
    alpha: float
    score: str
    numeric: tuple[str, ...] = ()
    fit_type: str = "parametric"


@dataclasses.dataclass(frozen=True)
class Study:
    """A validated study manifest (see the module docstring for the keys).

    ``strategy`` is where the gating strategy came from (a file path or a preset name);
    ``loaded_strategy`` is the strategy itself, read once by :func:`load_study` and reused by
    the whole run (populations check, strategy hash, gate figures). A :class:`Study` built by
    hand may leave it ``None``: :func:`engine.run_study` then reads it once.
    """

    manifest: Path
    name: str
    subject: str
    time: str
    pre: str
    post: str
    patients: tuple[str, ...]
    fcs: tuple[FcsSample, ...]
    strategy: str
    populations: tuple[Population, ...]
    clinical: Path
    outcomes: tuple[str, ...]
    subgroup: str | None
    expression: ExpressionSettings | None
    correlations: tuple[Correlation, ...]
    paired_test: str
    correlation_method: str
    confidence: float
    gate_plot_patient: str | None
    key_populations: tuple[str, ...]
    truth: Path | None
    loaded_strategy: Strategy | FlowJoWorkspace | None = dataclasses.field(
        default=None, repr=False, compare=False
    )

    @property
    def timepoints(self) -> tuple[str, str]:
        """``(pre, post)`` labels."""
        return (self.pre, self.post)

    def input_files(self) -> dict[str, Path]:
        """Every non-FCS input file by its role (strategy only when it is a file)."""
        files = {"manifest": self.manifest, "clinical": self.clinical}
        if Path(self.strategy).is_file():
            files["strategy"] = Path(self.strategy)
        if self.expression is not None:
            files["counts"] = self.expression.counts
            files["samples"] = self.expression.samples
            for k, g in enumerate(self.expression.gene_sets):
                if g != "default":
                    files[f"gene_sets[{k}]"] = Path(g)
        return files


def file_hash(path: str | os.PathLike[str]) -> str:
    """SHA-256 of a file (hex)."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(1 << 22):
            h.update(chunk)
    return h.hexdigest()


class _Reader:
    """Typed access to the raw manifest mapping with errors that name the key."""

    def __init__(self, manifest: Path, raw: Mapping[str, Any]) -> None:
        self.manifest = manifest
        self.raw = raw
        self.base = manifest.parent

    def fail(self, key: str, message: str) -> StudyError:
        return StudyError(self.manifest, key, message)

    def get(self, mapping: Mapping[str, Any], key: str, where: str, *, default: Any = ...) -> Any:
        if key not in mapping or mapping[key] is None:
            if default is ...:
                raise self.fail(where, "required key is missing")
            return default
        return mapping[key]

    def text(self, value: Any, where: str) -> str:
        if isinstance(value, bool) or not isinstance(value, str | int | float) or str(value) == "":
            raise self.fail(where, f"expected a non-empty string, got {value!r}")
        return str(value)

    def mapping(self, value: Any, where: str, keys: Sequence[str] | None = None) -> Mapping[str, Any]:
        if not isinstance(value, Mapping):
            raise self.fail(where, f"expected a mapping, got {type(value).__name__} {value!r}")
        if keys is not None:
            self.known_keys(value, where, keys)
        return value

    def known_keys(self, value: Mapping[Any, Any], where: str, keys: Sequence[str]) -> None:
        """Refuse a key that is not in ``keys``, naming the closest valid one."""
        for key in value:
            name = str(key)
            if name in keys:
                continue
            close = difflib.get_close_matches(name, keys, n=1, cutoff=0.6)
            hint = f"did you mean {close[0]!r}? " if close else ""
            path = f"{where}.{name}" if where else name
            raise self.fail(path, f"unknown key {name!r} ({hint}valid keys: {', '.join(keys)})")

    def sequence(self, value: Any, where: str) -> Sequence[Any]:
        if isinstance(value, str) or not isinstance(value, Sequence):
            raise self.fail(where, f"expected a list, got {type(value).__name__}")
        return value

    def file(self, value: Any, where: str) -> Path:
        p = Path(self.text(value, where)).expanduser()
        p = p if p.is_absolute() else self.base / p
        if not p.is_file():
            raise self.fail(where, f"file not found: {p}")
        return p.resolve()

    def choice(self, value: Any, where: str, options: Sequence[str]) -> str:
        text = self.text(value, where)
        if text not in options:
            raise self.fail(where, f"{text!r} is not one of {list(options)}")
        return text


def _clinical_table(r: _Reader, path: Path) -> Any:
    import pandas as pd

    from engine.runtime import repeated_header_labels

    try:
        repeated = repeated_header_labels(path)
        table = pd.read_csv(path, dtype=str, keep_default_na=False)
    except Exception as exc:
        raise r.fail("clinical", f"cannot read {path}: {exc}") from exc
    if repeated:  # pandas would call the copy "MMRSS.1" and the study read the first column
        label, n = repeated[0]
        raise r.fail("clinical", f"{path.name} names the column {label!r} {n} times; column "
                                 "names must be unique")
    return table


def _load_strategy(r: _Reader, strategy: str) -> Strategy | FlowJoWorkspace:
    """Read the strategy (the study's only read of it: the loaded object travels in the Study)."""
    from gating import load_strategy

    try:
        return load_strategy(strategy)
    except Exception as exc:
        raise r.fail("strategy", f"cannot load {strategy}: {type(exc).__name__}: {exc}") from exc


def _populations(r: _Reader, loaded: Strategy | FlowJoWorkspace) -> list[Population]:
    from gating import Strategy

    known: set[str] | None = None
    if isinstance(loaded, Strategy):
        known = {loaded.path(pid) for pid in loaded.population_order()}
    entries = r.sequence(r.get(r.raw, "populations_of_interest", "populations_of_interest"),
                         "populations_of_interest")
    if not entries:
        raise r.fail("populations_of_interest", "at least one population is needed")
    out: list[Population] = []
    for k, entry in enumerate(entries):
        where = f"populations_of_interest[{k}]"
        entry = r.mapping(entry, where, POPULATION_KEYS)
        path = r.text(r.get(entry, "path", f"{where}.path"), f"{where}.path")
        name = r.text(entry.get("name") or path.rstrip("/").rsplit("/", 1)[-1], f"{where}.name")
        parent_path = entry.get("parent_path")
        if parent_path is None:
            parent_path = path.rstrip("/").rsplit("/", 1)[0]
            parent = entry.get("parent")
            if parent is not None and not parent_path.endswith("/" + str(parent)):
                # the named parent is an ancestor further up: find it on the path
                parts = parent_path.split("/")
                if str(parent) not in parts:
                    raise r.fail(f"{where}.parent", f"{parent!r} is not an ancestor of {path}")
                parent_path = "/".join(parts[: parts.index(str(parent)) + 1])
        parent_path = r.text(parent_path, f"{where}.parent_path")
        parent = r.text(entry.get("parent") or parent_path.rsplit("/", 1)[-1], f"{where}.parent")
        if known is not None:
            for key, value in (("path", path), ("parent_path", parent_path)):
                if value not in known:
                    raise r.fail(f"{where}.{key}", f"unknown population {value!r} in the strategy")
        if not path.startswith(parent_path.rstrip("/") + "/"):
            raise r.fail(f"{where}.parent_path", f"{parent_path!r} is not an ancestor of {path!r}")
        out.append(Population(name=name, path=path, parent=parent, parent_path=parent_path))
    names = [p.name for p in out]
    if len(set(names)) != len(names):
        raise r.fail("populations_of_interest", f"population names are not unique: {names}")
    return out


def _fcs(r: _Reader, subject: str, time: str, timepoints: tuple[str, str]) -> list[FcsSample]:
    entries = r.sequence(r.get(r.raw, "fcs", "fcs"), "fcs")
    if not entries:
        raise r.fail("fcs", "no FCS files listed")
    out: list[FcsSample] = []
    for k, entry in enumerate(entries):
        where = f"fcs[{k}]"
        entry = r.mapping(entry, where, FCS_KEYS)
        path = r.file(r.get(entry, "path", f"{where}.path"), f"{where}.path")
        sample = r.text(entry.get("sample") or path.stem, f"{where}.sample")
        patient = r.text(r.get(entry, "patient", f"{where}.patient"), f"{where}.patient")
        tp = r.choice(r.get(entry, "timepoint", f"{where}.timepoint"), f"{where}.timepoint",
                      timepoints)
        out.append(FcsSample(sample=sample, patient=patient, timepoint=tp, path=path))
    samples = [s.sample for s in out]
    if len(set(samples)) != len(samples):
        raise r.fail("fcs", "sample names are not unique")
    pairs = [(s.patient, s.timepoint) for s in out]
    if len(set(pairs)) != len(pairs):
        raise r.fail("fcs", f"more than one file for one {subject}/{time}")
    return out


def _expression(r: _Reader, subject: str, time: str) -> ExpressionSettings | None:
    if r.raw.get("counts") is None:
        if r.raw.get("expression") is not None or r.raw.get("samples") is not None:
            raise r.fail("counts", "required when 'expression' or 'samples' is given")
        return None
    counts = r.file(r.raw["counts"], "counts")
    samples = r.file(r.get(r.raw, "samples", "samples"), "samples")
    sets_raw = r.raw.get("gene_sets", ["default"])
    sets_raw = [sets_raw] if isinstance(sets_raw, str) else r.sequence(sets_raw, "gene_sets")
    sets = tuple(
        "default" if s == "default" else str(r.file(s, f"gene_sets[{k}]"))
        for k, s in enumerate(sets_raw)
    )
    if not sets:
        raise r.fail("gene_sets", "empty list (use 'default' for the built-in sets)")
    ex = r.mapping(r.raw.get("expression") or {}, "expression", EXPRESSION_KEYS)
    contrast = r.sequence(ex.get("contrast", ["timepoint", "post", "pre"]), "expression.contrast")
    if len(contrast) != 3:
        raise r.fail("expression.contrast", "expected [factor, level, reference]")
    contrast_t = tuple(r.text(c, f"expression.contrast[{k}]") for k, c in enumerate(contrast))
    alpha = ex.get("alpha", 0.1)
    if isinstance(alpha, bool) or not isinstance(alpha, int | float) or not 0 < alpha < 1:
        raise r.fail("expression.alpha", f"expected a number in (0, 1), got {alpha!r}")
    numeric_raw = ex.get("numeric", [])
    numeric_raw = [numeric_raw] if isinstance(numeric_raw, str) else r.sequence(
        numeric_raw, "expression.numeric")
    numeric = tuple(r.text(n, f"expression.numeric[{k}]") for k, n in enumerate(numeric_raw))
    score = r.choice(ex.get("score", "mean_z"), "expression.score", _SCORES)
    fit_type = r.choice(ex.get("fit_type", "parametric"), "expression.fit_type",
                        ("parametric", "mean"))
    from expression import design_variables, prepare_design, read_sample_sheet

    try:
        sheet = read_sample_sheet(samples)
    except Exception as exc:
        raise r.fail("samples", f"cannot read {samples}: {type(exc).__name__}: {exc}") from exc
    for column in (subject, time):
        if column not in sheet.columns:
            raise r.fail("samples", f"{samples.name} has no {column!r} column "
                                    f"({list(sheet.columns)})")
    sheet = sheet.astype({subject: str, time: str})  # as the run reads it: the pairing is a factor
    design = r.text(ex.get("design", "~ patient + timepoint"), "expression.design")
    try:
        variables = design_variables(design)
    except ValueError as exc:
        raise r.fail("expression.design", str(exc)) from exc
    for v in variables:
        if v not in sheet.columns:
            raise r.fail("expression.design", f"{v!r} is not a column of {samples.name} "
                                              f"({list(sheet.columns)})")
    if contrast_t[0] not in sheet.columns:
        raise r.fail("expression.contrast", f"{contrast_t[0]!r} is not a column of "
                                            f"{samples.name} ({list(sheet.columns)})")
    try:
        prepare_design(sheet, design, contrast=contrast_t, numeric=numeric, notify=False)
    except ValueError as exc:
        text = str(exc)
        key = ("expression.contrast" if text.startswith("contrast") else
               "expression.numeric" if "numeric" in text else "expression.design")
        raise r.fail(key, f"{text} (sample sheet {samples.name})") from exc
    return ExpressionSettings(
        counts=counts, samples=samples, gene_sets=sets, design=design,
        contrast=(contrast_t[0], contrast_t[1], contrast_t[2]), alpha=float(alpha),
        score=score, numeric=numeric, fit_type=fit_type,
    )


def _gene_set_names(r: _Reader, expression: ExpressionSettings) -> set[str]:
    from expression import default_gene_sets, read_gmt

    names: set[str] = set()
    for k, entry in enumerate(expression.gene_sets):
        try:
            more = default_gene_sets() if entry == "default" else read_gmt(entry)
        except ValueError as exc:
            raise r.fail(f"gene_sets[{k}]", str(exc)) from exc
        if names & set(more):
            raise r.fail(f"gene_sets[{k}]", f"gene set(s) {sorted(names & set(more))} defined twice")
        names |= set(more)
    return names


def _check_keys(r: _Reader) -> None:
    """Every key of the manifest is a known one (checked first, before any file is read)."""
    r.known_keys(r.raw, "", TOP_KEYS)
    sections = (("columns", COLUMNS_KEYS), ("expression", EXPRESSION_KEYS),
                ("statistics", STATISTICS_KEYS), ("figures", FIGURES_KEYS))
    for key, keys in sections:
        if r.raw.get(key) is not None:
            r.mapping(r.raw[key], key, keys)
    tps = r.raw.get("timepoints")
    if isinstance(tps, Mapping):
        r.known_keys(tps, "timepoints", TIMEPOINTS_KEYS)
    for key, keys in (("fcs", FCS_KEYS), ("populations_of_interest", POPULATION_KEYS),
                      ("correlations", CORRELATION_KEYS)):
        entries = r.raw.get(key)
        if isinstance(entries, Sequence) and not isinstance(entries, str):
            for k, entry in enumerate(entries):
                if isinstance(entry, Mapping):
                    r.known_keys(entry, f"{key}[{k}]", keys)


def load_study(path: str | os.PathLike[str]) -> Study:
    """Read and validate a study manifest.

    Parameters
    ----------
    path
        The YAML manifest; relative paths inside it resolve against its folder.

    Returns
    -------
    Study
        The validated manifest.

    Raises
    ------
    StudyError
        Naming the manifest and the key that is wrong.
    """
    manifest = Path(path).resolve()
    if not manifest.is_file():
        raise StudyError(manifest, "(file)", "manifest not found")
    from engine.runtime import load_yaml_bounded

    try:
        text = manifest.read_text()
    except (OSError, UnicodeDecodeError) as exc:
        raise StudyError(manifest, "(file)", f"cannot be read: {exc}") from None
    raw = load_yaml_bounded(text, lambda message: StudyError(manifest, "(file)", message))
    if not isinstance(raw, Mapping):
        raise StudyError(manifest, "(file)", "expected a mapping at the top level")
    r = _Reader(manifest, raw)
    _check_keys(r)
    columns = r.mapping(raw.get("columns") or {}, "columns", COLUMNS_KEYS)
    subject = r.text(columns.get("subject", "patient"), "columns.subject")
    time = r.text(columns.get("time", "timepoint"), "columns.time")
    tps = r.get(raw, "timepoints", "timepoints", default=["pre", "post"])
    if isinstance(tps, Mapping):
        r.known_keys(tps, "timepoints", TIMEPOINTS_KEYS)
        pre, post = r.text(tps.get("pre"), "timepoints.pre"), r.text(tps.get("post"), "timepoints.post")
    else:
        tps = r.sequence(tps, "timepoints")
        if len(tps) != 2:
            raise r.fail("timepoints", f"expected two timepoints [pre, post], got {list(tps)}")
        pre, post = r.text(tps[0], "timepoints[0]"), r.text(tps[1], "timepoints[1]")
    if pre == post:
        raise r.fail("timepoints", "pre and post must differ")

    clinical = r.file(r.get(raw, "clinical", "clinical"), "clinical")
    clinical_table = _clinical_table(r, clinical)
    clinical_columns = list(clinical_table.columns)
    for key, col in (("columns.subject", subject), ("columns.time", time)):
        if col not in clinical_columns:
            raise r.fail(key, f"{col!r} is not a column of {clinical.name} ({clinical_columns})")
    outcomes = tuple(r.text(o, f"outcomes[{k}]") for k, o in
                     enumerate(r.sequence(r.get(raw, "outcomes", "outcomes"), "outcomes")))
    for k, o in enumerate(outcomes):
        if o not in clinical_columns:
            raise r.fail(f"outcomes[{k}]", f"{o!r} is not a column of {clinical.name}")
    subgroup = raw.get("subgroup")
    if subgroup is not None:
        subgroup = r.text(subgroup, "subgroup")
        if subgroup not in clinical_columns:
            raise r.fail("subgroup", f"{subgroup!r} is not a column of {clinical.name}")

    strategy_raw = r.text(r.get(raw, "strategy", "strategy"), "strategy")
    strategy_path = Path(strategy_raw).expanduser()
    strategy_path = strategy_path if strategy_path.is_absolute() else manifest.parent / strategy_path
    if strategy_path.is_file():
        strategy = str(strategy_path.resolve())
    else:
        from gating import presets

        if strategy_raw not in presets():
            raise r.fail("strategy", f"file not found and not a preset: {strategy_path}")
        strategy = strategy_raw
    loaded = _load_strategy(r, strategy)
    populations = _populations(r, loaded)
    timepoints = (pre, post)
    fcs = _fcs(r, subject, time, timepoints)
    patients_raw = raw.get("patients")
    if patients_raw is None:
        patients = tuple(dict.fromkeys(clinical_table[subject]))
    else:
        patients = tuple(r.text(p, f"patients[{k}]")
                         for k, p in enumerate(r.sequence(patients_raw, "patients")))
    for k, s in enumerate(fcs):
        if s.patient not in patients:
            raise r.fail(f"fcs[{k}].patient", f"{s.patient!r} is not one of the study's patients")
    expression = _expression(r, subject, time)

    stats_raw = r.mapping(raw.get("statistics") or {}, "statistics", STATISTICS_KEYS)
    paired_test = r.choice(stats_raw.get("paired_test", "wilcoxon"), "statistics.paired_test",
                           _PAIRED_TESTS)
    correlation_method = r.choice(stats_raw.get("correlation", "spearman"),
                                  "statistics.correlation", _CORRELATIONS)
    confidence = stats_raw.get("confidence", 0.95)
    if isinstance(confidence, bool) or not isinstance(confidence, int | float) or not 0 < confidence < 1:
        raise r.fail("statistics.confidence", f"expected a number in (0, 1), got {confidence!r}")

    known_vars = set(clinical_columns) | {p.name for p in populations}
    if expression is not None:
        known_vars |= _gene_set_names(r, expression)
    correlations: list[Correlation] = []
    for k, entry in enumerate(r.sequence(raw.get("correlations") or [], "correlations")):
        where = f"correlations[{k}]"
        entry = r.mapping(entry, where, CORRELATION_KEYS)
        xy = []
        for key in ("x", "y"):
            v = r.text(r.get(entry, key, f"{where}.{key}"), f"{where}.{key}")
            if v not in known_vars:
                raise r.fail(f"{where}.{key}",
                             f"{v!r} is not a clinical column, population or gene set")
            xy.append(v)
        pool = entry.get("pool_timepoints", False)
        if not isinstance(pool, bool):
            raise r.fail(f"{where}.pool_timepoints", f"expected true or false, got {pool!r}")
        tp = r.choice(entry.get("timepoint", pre), f"{where}.timepoint", timepoints)
        method = r.choice(entry.get("method", correlation_method), f"{where}.method", _CORRELATIONS)
        correlations.append(Correlation(x=xy[0], y=xy[1], timepoint=tp, pool_timepoints=pool,
                                        method=method))

    figures = r.mapping(raw.get("figures") or {}, "figures", FIGURES_KEYS)
    gate_patient = figures.get("gate_plot_patient")
    if gate_patient is not None:
        gate_patient = r.text(gate_patient, "figures.gate_plot_patient")
        have = {s.timepoint for s in fcs if s.patient == gate_patient}
        if have != set(timepoints):
            raise r.fail("figures.gate_plot_patient",
                         f"{gate_patient!r} does not have both a {pre} and a {post} FCS file")
    key_raw = figures.get("key_populations")
    if key_raw is None:
        key_pops = tuple(p.name for p in populations)
    else:
        key_pops = tuple(r.text(p, f"figures.key_populations[{k}]")
                         for k, p in enumerate(r.sequence(key_raw, "figures.key_populations")))
        for k, p in enumerate(key_pops):
            if p not in {q.name for q in populations}:
                raise r.fail(f"figures.key_populations[{k}]", f"unknown population {p!r}")
    truth = raw.get("truth")
    truth_path = r.file(truth, "truth") if truth is not None else None
    return Study(
        manifest=manifest, name=r.text(raw.get("name", manifest.stem), "name"), subject=subject,
        time=time, pre=pre, post=post, patients=patients, fcs=tuple(fcs), strategy=strategy,
        populations=tuple(populations), clinical=clinical, outcomes=outcomes, subgroup=subgroup,
        expression=expression, correlations=tuple(correlations), paired_test=paired_test,
        correlation_method=correlation_method, confidence=float(confidence),
        gate_plot_patient=gate_patient, key_populations=key_pops, truth=truth_path,
        loaded_strategy=loaded,
    )
