"""No silent wrong answers in expression (issue 13).

- integer codes in a design (patient ``1..10``) are fitted as factors, with a logged notice and a
  record, by the one rule of :mod:`expression._design`, in ``differential_expression``/``de_file``
  and ``vst``/``normalize_file --method vst``; ``numeric=`` keeps them continuous;
- every public function refuses (or, when asked, transposes) a genes x samples matrix;
- ``de_file``/``normalize_file`` check their outputs before any work, and every writer is atomic:
  a write that fails half-way (the file-size limit of a real process, as on a full disk) leaves
  no partial file.

Every case runs on files the test writes.
"""

from __future__ import annotations

import json
import logging
import subprocess
import sys
import textwrap
from pathlib import Path

import anndata as ad
import numpy as np
import pandas as pd
import pytest

import expression
from expression import (
    CountsError,
    OrientationError,
    OutputError,
    cpm,
    de_file,
    differential_expression,
    fit_size_factors,
    geneset_scores,
    log2p1,
    log_geo_means,
    normalize_counts,
    normalize_file,
    prepare_design,
    read_counts,
    read_sample_sheet,
    size_factors,
    validate_counts,
    vst,
    write_matrix,
)


def _paired(n_patients: int = 10, n_genes: int = 300, seed: int = 11) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Paired pre/post counts (genes x samples, as count files are) and an integer-id sheet.

    Each patient has its own baseline (a strong patient effect that is not monotone in the
    patient number); 30 genes go up 3-fold after treatment.
    """
    rng = np.random.default_rng(seed)
    samples = [f"S{p:02d}_{tp}" for p in range(1, n_patients + 1) for tp in ("pre", "post")]
    sheet = pd.DataFrame(
        {"patient": np.repeat(np.arange(1, n_patients + 1), 2), "timepoint": ["pre", "post"] * n_patients},
        index=pd.Index(samples, name="sample"),
    )
    base = np.exp(rng.normal(4.0, 1.2, n_genes))
    patient_effect = np.exp(rng.normal(0.0, 0.6, (n_patients, n_genes)))
    mu = base[None, :] * np.repeat(patient_effect, 2, axis=0)
    mu[sheet["timepoint"].to_numpy() == "post", :30] *= 3.0
    counts = rng.negative_binomial(20, 20 / (20 + mu)).astype(np.int64)
    table = pd.DataFrame(counts.T, index=pd.Index([f"g{j:04d}" for j in range(n_genes)], name="gene"),
                         columns=samples)
    return table, sheet


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("paired")
    table, sheet = _paired()
    table.to_csv(root / "counts.csv")
    sheet.to_csv(root / "samples.csv")
    sheet.assign(patient=[f"P{p:02d}" for p in sheet["patient"]]).to_csv(root / "samples_text.csv")
    return {"counts": root / "counts.csv", "samples": root / "samples.csv",
            "samples_text": root / "samples_text.csv", "root": root}


# --- 1. integer codes in a design -------------------------------------------------------------


def test_integer_patient_ids_are_factors_with_a_notice_and_a_record(files, caplog):
    adata = read_counts(files["counts"], samples=files["samples"])
    assert adata.obs["patient"].dtype.kind == "i"  # read as integers from the file
    with caplog.at_level(logging.WARNING, logger="expression._design"):
        as_ids = differential_expression(adata, threads=1)
    notice = [r.getMessage() for r in caplog.records if "integer codes" in r.getMessage()]
    assert notice and "'patient'" in notice[0] and "numeric=('patient',)" in notice[0]
    assert as_ids.params["variables"] == {"patient": "factor (integer codes)", "timepoint": "factor"}
    assert as_ids.params["integer_factors"] == ["patient"]
    assert as_ids.params["levels"]["patient"] == [str(p) for p in range(1, 11)]
    json.dumps(as_ids.params)
    # the same fit as text patient ids: the pairing is kept
    text = read_counts(files["counts"], samples=files["samples_text"])
    as_text = differential_expression(text, threads=1)
    np.testing.assert_allclose(as_ids.table["pvalue"], as_text.table["pvalue"], rtol=1e-12)
    # opting out fits one slope over the patient numbers (R's behaviour): a different answer
    slope = differential_expression(adata, threads=1, numeric=("patient",))
    assert slope.params["variables"]["patient"] == "numeric (requested)"
    assert slope.params["integer_factors"] == [] and slope.params["numeric"] == ["patient"]
    assert len(slope.params["coefficients"]) == 3 < len(as_ids.params["coefficients"])
    assert not np.allclose(slope.table["pvalue"], as_ids.table["pvalue"])
    assert as_ids.params["n_significant"] > slope.params["n_significant"]


def test_the_rule_keeps_continuous_and_two_valued_columns_numeric():
    sheet = pd.DataFrame({
        "patient": np.repeat([1, 2, 3, 4], 2), "timepoint": ["pre", "post"] * 4,
        "age": np.repeat([41.5, 52.0, 60.25, 33.0], 2),        # not whole numbers
        "dose": [0, 1] * 4,                                    # two values: same model either way
        "count": np.arange(8),                                  # all distinct: a covariate
    })
    prepared = prepare_design(sheet, "~ patient + age + dose + count + timepoint",
                              contrast="timepoint,post,pre")
    assert prepared.kinds == {"age": "numeric", "count": "numeric", "dose": "numeric",
                              "patient": "factor (integer codes)", "timepoint": "factor"}
    assert prepared.frame["age"].dtype == np.float64
    with pytest.raises(ValueError, match="numeric= names \\['donor'\\]"):
        prepare_design(sheet, "~ patient + timepoint", numeric=("donor",))
    with pytest.raises(ValueError, match="cannot also be listed in numeric="):
        prepare_design(sheet, "~ patient + timepoint", contrast="patient,2,1", numeric=("patient",))


def test_vst_and_normalize_file_follow_the_same_rule(files, tmp_path, caplog):
    adata = read_counts(files["counts"], samples=files["samples"])
    with caplog.at_level(logging.WARNING, logger="expression._design"):
        vst(adata, blind=False, threads=1)
    assert any("integer codes" in r.getMessage() for r in caplog.records)
    assert adata.uns["vst"]["variables"]["patient"] == "factor (integer codes)"
    text = read_counts(files["counts"], samples=files["samples_text"])
    vst(text, blind=False, threads=1)
    np.testing.assert_allclose(adata.layers["vst"], text.layers["vst"], rtol=1e-12)
    slope = read_counts(files["counts"], samples=files["samples"])
    vst(slope, blind=False, threads=1, numeric=("patient",))
    assert slope.uns["vst"]["variables"]["patient"] == "numeric (requested)"
    assert not np.allclose(slope.layers["vst"], adata.layers["vst"])
    # the file path (phenoflow normalize --method vst --no-blind) gives the factor fit too
    out = tmp_path / "vst.csv"
    normalize_file(files["counts"], out=out, method="vst", samples=files["samples"], blind=False)
    written = pd.read_csv(out, index_col=0)
    np.testing.assert_allclose(written.T.to_numpy(), adata.layers["vst"], rtol=1e-12)


def test_de_file_records_the_rule_and_takes_numeric(files, tmp_path):
    out = tmp_path / "de.csv"
    result = de_file(files["counts"], samples=files["samples"], out=out)
    assert result.params["integer_factors"] == ["patient"]
    kept = de_file(files["counts"], samples=files["samples"], out=tmp_path / "de2.csv",
                   numeric=["patient"])
    assert kept.params["variables"]["patient"] == "numeric (requested)"
    assert len(pd.read_csv(out)) == 300


# --- 3. orientation in every public function --------------------------------------------------


@pytest.fixture(scope="module")
def deseq2_layout(tmp_path_factory: pytest.TempPathFactory) -> pd.DataFrame:
    """A 17,043 genes x 8 samples count table as R writes it (write.csv: unnamed row names)."""
    rng = np.random.default_rng(5)
    counts = rng.negative_binomial(5, 0.05, (17_043, 8)) + 1
    path = tmp_path_factory.mktemp("deseq2") / "counts.csv"
    pd.DataFrame(counts, index=[f"FBgn{j:07d}" for j in range(17_043)],
                 columns=[f"sample{i}" for i in range(8)]).to_csv(path)
    return pd.read_csv(path, index_col=0)


def test_size_factors_refuse_deseq2s_layout(deseq2_layout):
    with pytest.raises(OrientationError, match=r"17043 x 8.*genes x samples.*counts\.T") as info:
        size_factors(deseq2_layout)
    assert info.value.shape == (17_043, 8) and isinstance(info.value, CountsError)
    right = size_factors(deseq2_layout.T)
    assert right.shape == (8,)
    np.testing.assert_array_equal(size_factors(deseq2_layout, orientation="genes_x_samples"), right)
    np.testing.assert_array_equal(
        fit_size_factors(deseq2_layout.to_numpy(), orientation="genes_x_samples").size_factors, right)
    for call in (lambda m: fit_size_factors(m), lambda m: log_geo_means(m),
                 lambda m: vst(m, threads=1)):
        with pytest.raises(OrientationError):
            call(deseq2_layout)
        with pytest.raises(OrientationError):
            call(deseq2_layout.to_numpy())
    import dask.array as da

    with pytest.raises(OrientationError):
        size_factors(da.from_array(deseq2_layout.to_numpy(), chunks=(4000, 8)))


def test_labels_give_the_orientation_away_on_small_matrices(files, tmp_path):
    table = pd.read_csv(files["counts"], index_col=0)  # genes x samples, index named "gene"
    assert table.index.name == "gene"
    with pytest.raises(OrientationError, match="row labels look like genes"):
        size_factors(table)
    ensembl = table.rename(index=lambda g: f"ENSG{int(g[1:]):011d}")
    ensembl.index.name = None
    with pytest.raises(OrientationError, match="Ensembl"):
        size_factors(ensembl)
    sheet = read_sample_sheet(files["samples"])
    unlabelled = table.set_axis(range(len(table)), axis=0)
    with pytest.raises(OrientationError, match="sample ids of the sample sheet"):
        vst(unlabelled, blind=False, obs=sheet, threads=1)
    # samples x genes is accepted as it is
    assert size_factors(table.T).shape == (20,)
    assert size_factors(table, orientation="samples_x_genes").shape == (300,)  # trusted as asked


def test_anndata_functions_refuse_a_transposed_anndata(files):
    table = pd.read_csv(files["counts"], index_col=0)
    wrong = ad.AnnData(table.astype(np.int64))  # genes as observations
    wrong.layers["counts"] = wrong.X.copy()
    wrong.layers["normalized"] = wrong.X.astype(float)
    calls = {
        "normalize_counts": lambda a: normalize_counts(a),
        "cpm": lambda a: cpm(a),
        "log2p1": lambda a: log2p1(a),
        "validate_counts": lambda a: validate_counts(a),
        "vst": lambda a: vst(a, threads=1),
        "differential_expression": lambda a: differential_expression(a, threads=1),
        "geneset_scores": lambda a: geneset_scores(a, {"S": ["g0001", "g0002"]}),
    }
    for name, call in calls.items():
        with pytest.raises(OrientationError, match=rf"{name}: .*adata\.T"):
            call(wrong.copy())
    right = read_counts(files["counts"], samples=files["samples"])
    normalize_counts(right)
    cpm(right)
    log2p1(right)


def test_geneset_scores_refuse_samples_x_genes(files):
    table = pd.read_csv(files["counts"], index_col=0).astype(float)
    sets = {"S": ["g0001", "g0002", "g0003"]}
    good = geneset_scores(np.log2(table + 1), sets)
    with pytest.raises(OrientationError, match=r"column labels are genes of the gene sets.*matrix\.T"):
        geneset_scores(np.log2(table + 1).T, sets)
    pd.testing.assert_frame_equal(
        geneset_scores(np.log2(table + 1).T, sets, orientation="samples_x_genes"), good)


# --- 4. outputs checked first, written atomically ------------------------------------------------


def test_de_file_and_normalize_file_check_the_output_before_any_work(files, tmp_path):
    missing_counts = tmp_path / "not-read.csv"  # never opened: the output is checked first
    cases = [
        (tmp_path / "de.xlsx", "unsupported output suffix"),
        (tmp_path / "no-such-folder" / "de.csv", "does not exist"),
        (files["counts"].parent, "unsupported output suffix"),
    ]
    (tmp_path / "a-folder.csv").mkdir()
    cases.append((tmp_path / "a-folder.csv", "is a folder"))
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    cases.append((blocker / "de.csv", "does not exist"))
    for out, message in cases:
        with pytest.raises(OutputError, match=message):
            de_file(missing_counts, samples=files["samples"], out=out)
        with pytest.raises(OutputError, match=message):
            normalize_file(missing_counts, out=out)
    with pytest.raises(OutputError, match="size factors"):
        normalize_file(missing_counts, out=tmp_path / "n.csv", size_factors_out=tmp_path / "sf.txt")
    with pytest.raises(ValueError, match="unknown method"):
        normalize_file(missing_counts, out=tmp_path / "n.csv", method="tmm")
    assert not any(p.name.endswith(".probe") for p in tmp_path.rglob("*"))


_LIMITED = """
import resource, signal, sys
sys.path.insert(0, {repo!r})
{setup}
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
resource.setrlimit(resource.RLIMIT_FSIZE, ({limit}, {limit}))
try:
{body}
except OSError as exc:
    print("FAILED", type(exc).__name__, exc.errno)
    sys.exit(3)
print("WROTE")
"""


def run_with_file_size_limit(setup: str, body: str, limit: int, cwd: Path) -> str:
    """Run ``body`` in a real process whose files cannot grow past ``limit`` bytes (a full disk
    for that process: the write fails part-way with EFBIG) and return its output."""
    script = _LIMITED.format(repo=str(Path(__file__).resolve().parents[2]), setup=textwrap.dedent(setup),
                             body=textwrap.indent(textwrap.dedent(body), "    "), limit=limit)
    done = subprocess.run([sys.executable, "-c", script], cwd=cwd, capture_output=True, text=True,
                          timeout=300)
    return done.stdout + done.stderr


def _no_partial(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.rglob("*") if ".partial" in p.name or p.suffix == ".probe")


def test_a_write_that_fails_half_way_leaves_no_partial_file(files, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    setup = f"""
        import numpy as np, pandas as pd
        import expression
        from expression import DEResult
        rng = np.random.default_rng(0)
        genes = pd.Index([f"g{{j}}" for j in range(20000)], name="gene")
        table = pd.DataFrame(rng.random((20000, 6)), index=genes,
                             columns=["baseMean", "log2FoldChange", "lfcSE", "stat", "pvalue", "padj"])
        adata = expression.read_counts({str(files['counts'])!r}, samples={str(files['samples'])!r})
        expression.normalize_counts(adata)
    """
    # the DE table: 20,000 genes do not fit in 200 kB; before, a truncated de.csv stayed behind
    text = run_with_file_size_limit(setup, f"DEResult(table).write({str(out / 'de.csv')!r})",
                                    200_000, tmp_path)
    assert "FAILED OSError 27" in text, text
    assert not (out / "de.csv").exists() and _no_partial(out) == []
    # an earlier complete file is kept, not replaced by a truncated one
    (out / "de.csv").write_text("previous\n")
    run_with_file_size_limit(setup, f"DEResult(table).write({str(out / 'de.csv')!r})", 200_000, tmp_path)
    assert (out / "de.csv").read_text() == "previous\n" and _no_partial(out) == []
    # write_matrix, each format
    for name in ("norm.csv", "norm.tsv", "norm.h5ad"):
        text = run_with_file_size_limit(
            setup, f"expression.write_matrix(adata, {str(out / name)!r}, layer='normalized')",
            20_000, tmp_path)
        assert "FAILED OSError" in text, text
        assert not (out / name).exists() and _no_partial(out) == [], name
    # normalize_file: the matrix fits, the size factors do not -> neither file appears
    text = run_with_file_size_limit(
        "import expression",
        f"expression.normalize_file({str(files['counts'])!r}, out={str(out / 'n.csv')!r}, "
        f"size_factors_out={str(out / 'sf.csv')!r})",
        4096 * 64, tmp_path)
    assert "WROTE" in text, text  # generous limit: both written
    assert (out / "n.csv").is_file() and (out / "sf.csv").is_file()
    (out / "n.csv").unlink()
    (out / "sf.csv").unlink()
    text = run_with_file_size_limit(
        "import expression",
        f"expression.normalize_file({str(files['counts'])!r}, out={str(out / 'n.csv')!r}, "
        f"size_factors_out={str(out / 'sf.csv')!r})",
        20_000, tmp_path)
    assert "FAILED OSError" in text, text
    assert not (out / "n.csv").exists() and not (out / "sf.csv").exists() and _no_partial(out) == []
    # a figure
    text = run_with_file_size_limit(
        setup, f"expression.plot_size_factors(adata.obs['size_factors'], out={str(out / 'sf.png')!r})",
        2_000, tmp_path)
    assert "FAILED OSError" in text, text
    assert not (out / "sf.png").exists() and _no_partial(out) == []


def test_write_matrix_rejects_a_bad_suffix_before_writing(files, tmp_path):
    adata = read_counts(files["counts"], samples=files["samples"])
    with pytest.raises(OutputError, match="unsupported output suffix"):
        write_matrix(adata, tmp_path / "m.xlsx", layer="counts")
    assert list(tmp_path.iterdir()) == []
    assert expression.check_output(tmp_path / "m.csv", suffixes=(".csv",)) == tmp_path / "m.csv"
