"""read_counts on every input format, orientation detection, and the ``normalize`` command."""

from __future__ import annotations

import logging

import anndata as ad
import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

from engine.cli import main
from expression import normalize_counts, read_counts, read_sample_sheet, size_factors

GENES = [f"G{j}" for j in range(6)]
SAMPLES = ["P1_pre", "P1_post", "P2_pre"]


@pytest.fixture
def table() -> pd.DataFrame:
    """Genes x samples counts (more genes than samples)."""
    values = np.arange(1, 19).reshape(6, 3) * np.array([1, 2, 3])
    return pd.DataFrame(values, index=GENES, columns=SAMPLES)


@pytest.fixture
def sheet(tmp_path) -> pd.DataFrame:
    frame = pd.DataFrame(
        {"patient": ["P1", "P1", "P2"], "timepoint": ["pre", "post", "pre"]}, index=SAMPLES
    )
    return frame.loc[["P2_pre", "P1_pre", "P1_post"]]  # a different order from the matrix


def _check(adata: ad.AnnData, table: pd.DataFrame, samples=SAMPLES) -> None:
    assert list(adata.obs_names) == samples
    assert list(adata.var_names) == GENES
    expected = table.loc[GENES, samples].to_numpy().T
    np.testing.assert_array_equal(adata.layers["counts"], expected)
    np.testing.assert_array_equal(adata.X, expected)
    assert adata.layers["counts"].dtype == np.int64


def test_csv_genes_by_samples_longer_axis(tmp_path, table, caplog):
    path = tmp_path / "c.csv"
    table.to_csv(path)
    with caplog.at_level(logging.INFO, logger="expression"):
        adata = read_counts(path)
    _check(adata, table)
    assert adata.uns["orientation"] == "genes_x_samples"
    assert "longer axis" in adata.uns["orientation_detected_by"]
    assert "genes x samples" in caplog.text


def test_tsv_samples_by_genes(tmp_path, table):
    path = tmp_path / "c.tsv"
    table.T.to_csv(path, sep="\t")
    adata = read_counts(path)
    _check(adata, table)
    assert adata.uns["orientation"] == "samples_x_genes"


def test_sheet_decides_orientation_and_obs(tmp_path, table, sheet):
    wide = pd.DataFrame(np.ones((2, 3), dtype=int), index=["G0", "G1"], columns=SAMPLES)
    path = tmp_path / "wide.csv"
    wide.to_csv(path)  # 2 genes x 3 samples: the longer axis would be wrong
    sheet_path = tmp_path / "sheet.csv"
    sheet.to_csv(sheet_path)
    adata = read_counts(path, samples=sheet_path)
    assert adata.uns["orientation"] == "genes_x_samples"
    assert adata.uns["orientation_detected_by"].startswith("sample sheet")
    assert list(adata.obs_names) == list(sheet.index)
    assert list(adata.obs["timepoint"]) == ["pre", "pre", "post"]
    assert read_counts(path).uns["orientation"] == "samples_x_genes"  # without the sheet
    assert read_counts(path, orientation="genes_x_samples").shape == (3, 2)


def test_featurecounts(tmp_path, table):
    path = tmp_path / "fc.txt"
    annot = pd.DataFrame(
        {"Chr": "chr1", "Start": 1, "End": 100, "Strand": "+", "Length": 100}, index=GENES
    )
    body = pd.concat([annot, table.rename(columns=lambda s: f"/data/bam/{s}.bam")], axis=1)
    body.index.name = "Geneid"
    path.write_text('# Program:featureCounts v2.0.1; Command:"featureCounts" ...\n' + body.to_csv(sep="\t"))
    adata = read_counts(path)
    _check(adata, table)
    assert adata.uns["orientation_detected_by"] == "file format"


def _write_htseq(path, counts) -> None:
    lines = [f"{g}\t{c}" for g, c in counts.items()]
    lines += ["__no_feature\t17", "__ambiguous\t3", "__too_low_aQual\t0", "__not_aligned\t5",
              "__alignment_not_unique\t9"]
    path.write_text("\n".join(lines) + "\n")


def test_htseq_one_file_per_sample(tmp_path, table):
    paths = []
    for sample in SAMPLES:
        paths.append(tmp_path / f"{sample}.htseq.txt")
        _write_htseq(paths[-1], table[sample])
    adata = read_counts(paths)
    _check(adata, table)
    assert not any(g.startswith("__") for g in adata.var_names)
    single = read_counts(paths[0])  # one file: detected from its content
    assert single.shape == (1, 6) and list(single.obs_names) == ["P1_pre"]


def test_h5ad_and_parquet(tmp_path, table, sheet):
    source = ad.AnnData(
        X=np.zeros((3, 6)), obs=pd.DataFrame(index=SAMPLES), var=pd.DataFrame(index=GENES),
        layers={"counts": table.to_numpy().T},
    )
    source.write_h5ad(tmp_path / "c.h5ad")
    _check(read_counts(tmp_path / "c.h5ad"), table)  # the counts layer wins over X
    table.to_parquet(tmp_path / "c.parquet")
    _check(read_counts(tmp_path / "c.parquet"), table)
    table.reset_index(names="gene").to_parquet(tmp_path / "plain.parquet")
    _check(read_counts(tmp_path / "plain.parquet"), table)
    sheet.to_parquet(tmp_path / "sheet.parquet")
    pd.testing.assert_frame_equal(read_sample_sheet(tmp_path / "sheet.parquet"), sheet)


def test_decimal_counts_become_float(tmp_path, table):
    path = tmp_path / "f.csv"
    table.astype(float).to_csv(path)
    assert read_counts(path).layers["counts"].dtype == np.float64


@pytest.mark.parametrize("method", ["ratio", "poscounts", "cpm", "log2p1"])
@pytest.mark.parametrize("suffix", [".csv", ".parquet", ".h5ad"])
def test_cli_normalize(tmp_path, table, sheet, method, suffix):
    counts_path, sheet_path = tmp_path / "c.csv", tmp_path / "s.csv"
    table.to_csv(counts_path)
    sheet.to_csv(sheet_path)
    out, sf = tmp_path / f"out{suffix}", tmp_path / "sf.csv"
    args = ["normalize", str(counts_path), "--samples", str(sheet_path), "--method", method,
            "--out", str(out)]
    if method != "cpm":
        args += ["--size-factors", str(sf)]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    expected_adata = read_counts(counts_path, samples=sheet)
    factors = size_factors(expected_adata.layers["counts"], method="poscounts" if method == "poscounts" else "ratio")
    counts = expected_adata.layers["counts"].astype(float)
    expected = {
        "ratio": counts / factors[:, None],
        "poscounts": counts / factors[:, None],
        "cpm": counts / counts.sum(axis=1, keepdims=True) * 1e6,
        "log2p1": np.log2(counts / factors[:, None] + 1),
    }[method]
    if suffix == ".h5ad":
        key = {"ratio": "normalized", "poscounts": "normalized"}.get(method, method)
        got = ad.read_h5ad(out).layers[key]
    else:
        frame = pd.read_csv(out, index_col=0, float_precision="round_trip") if suffix == ".csv" else pd.read_parquet(out)
        assert list(frame.index) == GENES and list(frame.columns) == list(sheet.index)
        got = frame.to_numpy().T
    np.testing.assert_allclose(got, expected, rtol=1e-15)
    if method != "cpm":
        written = pd.read_csv(sf, float_precision="round_trip")
        assert list(written.columns) == ["sample", "size_factor"]
        assert list(written["sample"]) == list(sheet.index)
        np.testing.assert_array_equal(written["size_factor"], factors)


def test_cli_reports_bad_counts(tmp_path, table):
    table.iloc[2, 1] = -4
    path = tmp_path / "bad.csv"
    table.to_csv(path)
    result = CliRunner().invoke(main, ["normalize", str(path), "--out", str(tmp_path / "o.csv")])
    assert result.exit_code != 0
    assert "CountsError" in result.output and "'G2'" in result.output and "'P1_post'" in result.output
    assert not (tmp_path / "o.csv").exists()


def test_normalize_counts_uses_x_without_counts_layer(table):
    adata = ad.AnnData(X=table.to_numpy().T.astype(float))
    normalize_counts(adata)
    assert adata.uns["size_factors"]["layer"] == "counts"
    np.testing.assert_array_equal(adata.obs["size_factors"], size_factors(adata.X))


# --- wide samples x genes tables: NumPy's reader where the file allows, pandas' frame exactly ---


def _wide(n_genes: int = 1500) -> pd.DataFrame:
    rng = np.random.default_rng(11)
    values = rng.negative_binomial(2, 0.01, size=(6, n_genes))
    return pd.DataFrame(values, index=pd.Index([f"S{i}" for i in range(6)], name="sample"),
                        columns=[f"ENSG{j:08d}.{j % 7}" for j in range(n_genes)])


@pytest.mark.parametrize("sep", [",", "\t"])
def test_wide_table_equals_pandas(tmp_path, sep):
    from expression._io import _wide_table

    path = tmp_path / ("wide.csv" if sep == "," else "wide.tsv")
    _wide().to_csv(path, sep=sep)
    fast = _wide_table(path, sep)
    assert fast is not None
    pd.testing.assert_frame_equal(fast, pd.read_csv(path, sep=sep, index_col=0))


@pytest.mark.parametrize("spoil", [
    "missing", "decimal", "numeric_ids", "quoted", "ragged", "tall", "empty_label",
])
def test_wide_table_leaves_other_files_to_pandas(tmp_path, spoil):
    from expression._io import _wide_table, read_count_table

    table = _wide()
    path = tmp_path / "wide.csv"
    if spoil == "tall":
        table = table.iloc[:, :4]
    if spoil == "numeric_ids":
        table.index = [f"{i:03d}" for i in range(6)]  # pandas reads these as numbers
    table.to_csv(path)
    text = path.read_text().splitlines()
    if spoil == "missing":
        text[2] = text[2].rsplit(",", 1)[0] + ",NA"
    if spoil == "decimal":
        text[2] = text[2].rsplit(",", 1)[0] + ",3.5"
    if spoil == "quoted":
        text[0] = text[0].replace("ENSG00000001.1", '"ENSG00000001.1"')
    if spoil == "ragged":
        text[3] = text[3].rsplit(",", 1)[0]
    if spoil == "empty_label":
        text[0] = text[0].replace("ENSG00000002.2", "")
    path.write_text("\n".join(text) + "\n")
    assert _wide_table(path, ",") is None
    if spoil != "ragged":
        counts = read_count_table(path, orientation="samples_x_genes")
        expected = pd.read_csv(path, index_col=0)
        assert counts.X.shape == expected.shape
        assert list(counts.var_names) == [str(c) for c in expected.columns]


def test_wide_and_tall_files_read_the_same(tmp_path):
    from expression._io import read_count_table

    table = _wide()
    table.to_csv(tmp_path / "wide.csv")
    table.T.to_csv(tmp_path / "tall.csv")  # genes x samples: pandas' reader
    wide = read_count_table(tmp_path / "wide.csv")
    tall = read_count_table(tmp_path / "tall.csv")
    np.testing.assert_array_equal(wide.X, tall.X)
    assert wide.X.dtype == tall.X.dtype == np.int64
    assert list(wide.var_names) == list(tall.var_names)
    assert list(wide.obs_names) == list(tall.obs_names)


@pytest.mark.parametrize("layout", ["wide", "tall"])
def test_a_repeated_header_label_is_refused_not_renamed(tmp_path, layout):
    """pandas reads a header naming a gene (wide file) or a sample (tall file) twice as two
    ids, ``A`` and ``A.1``: refused, naming the label."""
    from expression import CountsError
    from expression._io import read_count_table

    if layout == "wide":  # samples x genes: a gene id twice
        table = _wide(1200)
        label = table.columns[3]
        table = table.rename(columns={table.columns[7]: label})
    else:  # genes x samples: a sample id twice
        table = _wide(1200).T
        label = "S1"
        table = table.rename(columns={"S4": label})
    table.to_csv(tmp_path / "c.csv")
    with pytest.raises(CountsError, match=f"names '{label}' 2 times"):
        read_count_table(tmp_path / "c.csv")
    with pytest.raises(CountsError, match="must be unique"):
        read_counts(tmp_path / "c.csv")


def test_a_sample_sheet_naming_a_column_twice_is_refused(tmp_path):
    """Two ``timepoint`` columns (a merge gone wrong): pandas would call the second
    ``timepoint.1`` and a design would silently use the first."""
    from expression import CountsError

    path = tmp_path / "samples.csv"
    path.write_text("sample,patient,timepoint,timepoint\ns1,P1,pre,post\ns2,P1,post,pre\n")
    with pytest.raises(CountsError, match=r"names 'timepoint' 2 times.*sample-sheet columns"):
        read_sample_sheet(path)
