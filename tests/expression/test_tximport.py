"""read_quantifications (salmon, kallisto, RSEM) against R tximport 1.26.1 and against a
straightforward loop computation of tximport's definitions; read_counts refusing quantifier
outputs; the sample-id suffix hint.

The R reference (``r_reference/tximport/``) was made by ``r_reference/make_tximport.R``: it
simulates the quantifier files (committed beside the references) and runs tximport and
DESeq2's ``DESeqDataSetFromTximport`` on them.
"""

from __future__ import annotations

import logging
import math
from pathlib import Path

import anndata as ad
import numpy as np
import pandas as pd
import pytest

from expression import CountsError, read_counts, read_quantifications

REF = Path(__file__).parent / "r_reference" / "tximport"
SAMPLES = ["S1", "S2", "S3", "S4"]
REFERENCE = pd.read_csv(REF / "tximport.csv", na_values="NA")
TX2GENE = {"": "tx2gene.csv", "unversioned": "tx2gene_unversioned.csv",
           "partial": "tx2gene_partial.csv"}


def _files(kind: str) -> list[Path]:
    return {
        "salmon": [REF / "salmon" / s for s in SAMPLES],
        "kallisto": [REF / "kallisto" / s / "abundance.tsv" for s in SAMPLES],
        "rsem": [REF / "rsem" / f"{s}.isoforms.results" for s in SAMPLES],
        "rsem_genes": [REF / "rsem" / f"{s}.genes.results" for s in SAMPLES],
    }[kind]


def _read_case(case: str) -> ad.AnnData:
    kind, mode, *rest = case.split(":")
    extra = rest[0] if rest else ""
    options: dict = {"counts_from_abundance": mode}
    if extra == "txout":
        options["tx_out"] = True
    elif kind != "rsem_genes":
        options["tx2gene"] = REF / TX2GENE[extra]
    if extra == "unversioned":
        options["ignore_tx_version"] = True
    if extra == "partial":
        options["missing_transcripts"] = "drop"
    return read_quantifications(_files(kind), type=kind.split("_")[0], **options)


@pytest.mark.parametrize("case", list(dict.fromkeys(REFERENCE["case"])))
def test_equal_to_r_tximport(case):
    adata = _read_case(case)
    assert adata.uns["tximport"]["counts_from_abundance"] == case.split(":")[1]
    for matrix, expected in REFERENCE[REFERENCE["case"] == case].groupby("matrix"):
        expected = expected.set_index("row")[SAMPLES]
        layer = {"counts": "estimated_counts", "deseq2_counts": "counts"}.get(matrix, matrix)
        got = pd.DataFrame(adata.layers[layer].T, index=adata.var_names, columns=adata.obs_names)
        assert list(got.index) == list(expected.index), (case, matrix)
        assert list(got.columns) == SAMPLES
        if matrix == "deseq2_counts":  # DESeqDataSetFromTximport's round(): exact integers
            np.testing.assert_array_equal(got.to_numpy(), expected.to_numpy())
        else:
            np.testing.assert_allclose(got.to_numpy(), expected.to_numpy(), rtol=1e-12, atol=0,
                                       err_msg=f"{case} {matrix}")


def test_reference_covers_the_edge_cases():
    no = REFERENCE[REFERENCE["case"] == "salmon:no"].set_index(["matrix", "row"])[SAMPLES]
    # a gene with zero abundance everywhere, one with zero abundance in one sample
    assert (no.loc[("abundance", "ENSG00000000009")] == 0).all()
    assert (no.loc[("abundance", "ENSG00000000008")] == 0).sum() == 1
    # .5 counts rounded half to even by R
    assert no.loc[("counts", "ENSG00000000002")].tolist() == [2.5, 3.5, 10.5, 11.5]
    assert no.loc[("deseq2_counts", "ENSG00000000002")].tolist() == [2, 4, 10, 12]
    assert len(REFERENCE[REFERENCE["case"] == "salmon:lengthScaledTPM:partial"]) == 27


# --- a seeded simulation checked against loops over tximport's definitions ----------------------


def _simulate(tmp_path: Path, *, seed: int = 3, n_genes: int = 30, n_samples: int = 5):
    rng = np.random.default_rng(seed)
    genes, txs = [], []
    for g in range(n_genes):
        for t in range(int(rng.integers(1, 5))):
            genes.append(f"ENSG{g:06d}")
            txs.append(f"ENST{len(txs):06d}.{t + 1}")
    n = len(txs)
    length = rng.integers(200, 8000, n)
    counts = np.round(np.exp(rng.normal(3, 2.5, (n, n_samples))) * (rng.random((n, n_samples)) > 0.2), 3)
    counts[np.array(genes) == "ENSG000004"] = 0.0  # zero everywhere
    counts[np.array(genes) == "ENSG000005", 1] = 0.0  # zero in one sample
    eff = length[:, None] - rng.uniform(150, 250, n_samples)[None, :] + rng.uniform(-3, 3, (n, n_samples))
    eff = np.round(np.maximum(eff, 1.0), 3)
    tpm = counts / eff
    tpm = tpm / tpm.sum(axis=0) * 1e6
    samples = [f"P{j + 1}" for j in range(n_samples)]
    for j, s in enumerate(samples):
        (tmp_path / "salmon" / s).mkdir(parents=True)
        pd.DataFrame({"Name": txs, "Length": length, "EffectiveLength": eff[:, j],
                      "TPM": tpm[:, j], "NumReads": counts[:, j]}).to_csv(
            tmp_path / "salmon" / s / "quant.sf", sep="\t", index=False, float_format="%.17g")
        (tmp_path / "kallisto" / s).mkdir(parents=True)
        pd.DataFrame({"target_id": txs, "length": length, "eff_length": eff[:, j],
                      "est_counts": counts[:, j], "tpm": tpm[:, j]}).to_csv(
            tmp_path / "kallisto" / s / "abundance.tsv", sep="\t", index=False,
            float_format="%.17g")
    tx2gene = tmp_path / "tx2gene.tsv"
    pd.DataFrame({"tx": txs, "gene": genes}).to_csv(tx2gene, sep="\t", index=False, header=False)
    return samples, txs, genes, counts, tpm, eff, tx2gene


def _loop_tximport(txs, genes, counts, tpm, eff, mode):
    """tximport's gene-level definitions, one gene and one sample at a time."""
    by_gene: dict[str, list[int]] = {}
    for i, g in enumerate(genes):
        by_gene.setdefault(g, []).append(i)
    names = sorted(by_gene)
    n_s = counts.shape[1]
    A = np.array([[sum(tpm[i, j] for i in by_gene[g]) for j in range(n_s)] for g in names])
    C = np.array([[sum(counts[i, j] for i in by_gene[g]) for j in range(n_s)] for g in names])
    L = np.full(A.shape, np.nan)
    for r, g in enumerate(names):
        for j in range(n_s):
            if A[r, j] > 0:
                L[r, j] = sum(tpm[i, j] * eff[i, j] for i in by_gene[g]) / A[r, j]
        defined = [v for v in L[r] if not math.isnan(v)]
        for j in range(n_s):
            if math.isnan(L[r, j]):
                if defined:
                    L[r, j] = math.exp(sum(math.log(v) for v in defined) / len(defined))
                else:
                    L[r, j] = sum(sum(eff[i]) / n_s for i in by_gene[g]) / len(by_gene[g])
    if mode == "scaledTPM":
        C = np.array([[A[r, j] * C[:, j].sum() / A[:, j].sum() for j in range(n_s)]
                      for r in range(len(names))])
    elif mode == "lengthScaledTPM":
        N = np.array([[A[r, j] * sum(L[r]) / n_s for j in range(n_s)] for r in range(len(names))])
        C = np.array([[N[r, j] * C[:, j].sum() / N[:, j].sum() for j in range(n_s)]
                      for r in range(len(names))])
    return names, A, C, L


@pytest.mark.parametrize("mode", ["no", "scaledTPM", "lengthScaledTPM"])
@pytest.mark.parametrize("kind", ["salmon", "kallisto"])
def test_definitions_on_a_simulation(tmp_path, kind, mode):
    samples, txs, genes, counts, tpm, eff, tx2gene = _simulate(tmp_path)
    adata = read_quantifications(sorted((tmp_path / kind).iterdir()), type=kind,
                                 tx2gene=tx2gene, counts_from_abundance=mode)
    names, A, C, L = _loop_tximport(txs, genes, counts, tpm, eff, mode)
    assert list(adata.obs_names) == samples
    assert list(adata.var_names) == names
    np.testing.assert_allclose(adata.layers["abundance"].T, A, rtol=1e-12)
    np.testing.assert_allclose(adata.layers["estimated_counts"].T, C, rtol=1e-12)
    np.testing.assert_allclose(adata.layers["length"].T, L, rtol=1e-12)
    np.testing.assert_array_equal(adata.layers["counts"], np.rint(adata.layers["estimated_counts"]))
    assert adata.layers["counts"].dtype == np.int64
    np.testing.assert_array_equal(adata.X, adata.layers["counts"])
    record = adata.uns["tximport"]
    assert record["type"] == kind and record["level"] == "gene"
    assert record["length_offset"] is (mode == "no")
    assert int(adata.var["n_transcripts"].sum()) == len(txs)


def test_kallisto_h5_as_tximport_reads_it(tmp_path):
    h5py = pytest.importorskip("h5py")
    samples, txs, genes, counts, tpm, eff, tx2gene = _simulate(tmp_path)
    for j, s in enumerate(samples):
        folder = tmp_path / "h5" / s
        folder.mkdir(parents=True)
        with h5py.File(folder / "abundance.h5", "w") as h5:
            h5["est_counts"] = counts[:, j]
            h5["aux/ids"] = np.array(txs, dtype="S")
            h5["aux/eff_lengths"] = eff[:, j]
            h5["aux/lengths"] = np.zeros(len(txs))
    adata = read_quantifications(sorted((tmp_path / "h5").iterdir()), tx2gene=tx2gene)
    assert adata.uns["tximport"]["format"] == "kallisto_h5"
    # the h5 has no TPM: tximport computes 1e6 (c / l) / sum(c / l), which _simulate wrote
    names, A, C, L = _loop_tximport(txs, genes, counts, tpm, eff, "no")
    assert list(adata.var_names) == names
    np.testing.assert_allclose(adata.layers["abundance"].T, A, rtol=1e-12)
    np.testing.assert_allclose(adata.layers["estimated_counts"].T, C, rtol=1e-12)
    np.testing.assert_allclose(adata.layers["length"].T, L, rtol=1e-12)


# --- refusals, options and records -----------------------------------------------------------


def test_missing_transcripts_are_an_error_or_dropped_and_counted(caplog):
    with pytest.raises(CountsError, match=r"2 quantified transcript\(s\) are not in tx2gene.*"
                                          r"ENST00000000003\.1.*missing_transcripts='drop'"):
        read_quantifications(_files("salmon"), tx2gene=REF / "tx2gene_partial.csv")
    with caplog.at_level(logging.WARNING, logger="expression"):
        adata = read_quantifications(_files("salmon"), tx2gene=REF / "tx2gene_partial.csv",
                                     missing_transcripts="drop")
    assert adata.uns["tximport"]["dropped_transcripts"] == 2
    assert "dropped 2 quantified transcript(s)" in caplog.text


def test_tx2gene_problems():
    with pytest.raises(CountsError, match=r"none of the quantified transcripts.*ignore_tx_version"):
        read_quantifications(_files("salmon"), tx2gene=REF / "tx2gene_unversioned.csv")
    with pytest.raises(CountsError, match=r"pass tx2gene=.*tx_out=True"):
        read_quantifications(_files("kallisto"))
    table = pd.read_csv(REF / "tx2gene.csv")
    table.loc[len(table)] = [table.iat[0, 0], "ENSG_OTHER"]
    with pytest.raises(CountsError, match=r"maps transcript 'ENST00000000001\.2' to several genes"):
        read_quantifications(_files("salmon"), tx2gene=table)
    # a mapping works as well as a file; exact duplicate rows are harmless
    mapping = dict(zip(table.iloc[:-1, 0], table.iloc[:-1, 1], strict=True))
    a = read_quantifications(_files("salmon"), tx2gene=mapping)
    b = read_quantifications(_files("salmon"), tx2gene=pd.concat([table.iloc[:-1]] * 2))
    np.testing.assert_array_equal(a.layers["estimated_counts"], b.layers["estimated_counts"])


def test_rounding_is_half_to_even_recorded_and_logged(caplog):
    with caplog.at_level(logging.INFO, logger="expression"):
        adata = read_quantifications(_files("salmon"), tx2gene=REF / "tx2gene.csv")
    gene = list(adata.var_names).index("ENSG00000000002")
    assert adata.layers["estimated_counts"][:, gene].tolist() == [2.5, 3.5, 10.5, 11.5]
    assert adata.layers["counts"][:, gene].tolist() == [2, 4, 10, 12]
    assert adata.uns["tximport"]["rounded"] > 0
    assert "DESeqDataSetFromTximport" in adata.uns["tximport"]["rounding"]
    assert "rounded (half to even" in caplog.text


def test_modes_and_types_refused_where_tximport_would_ignore_them():
    with pytest.raises(CountsError, match=r"genes\.results are gene-level"):
        read_quantifications(_files("rsem_genes"), counts_from_abundance="scaledTPM")
    with pytest.raises(CountsError, match="a salmon output, but type='kallisto'"):
        read_quantifications(_files("salmon"), type="kallisto", tx2gene=REF / "tx2gene.csv")
    with pytest.raises(ValueError, match="counts_from_abundance must be one of"):
        read_quantifications(_files("salmon"), counts_from_abundance="dtuScaledTPM")
    with pytest.raises(CountsError, match="mix formats"):
        read_quantifications([*_files("salmon")[:2], *_files("kallisto")[2:]],
                             tx2gene=REF / "tx2gene.csv")


def test_samples_with_different_or_shuffled_transcripts(tmp_path):
    *_, tx2gene = _simulate(tmp_path, n_samples=3)
    reference = read_quantifications(sorted((tmp_path / "salmon").iterdir()), tx2gene=tx2gene)
    quant = tmp_path / "salmon" / "P2" / "quant.sf"
    table = pd.read_csv(quant, sep="\t", dtype={"Name": str})
    table.sample(frac=1, random_state=0).to_csv(quant, sep="\t", index=False, float_format="%.17g")
    shuffled = read_quantifications(sorted((tmp_path / "salmon").iterdir()), tx2gene=tx2gene)
    for layer in ("estimated_counts", "abundance", "length"):
        np.testing.assert_allclose(shuffled.layers[layer], reference.layers[layer], rtol=1e-14)
    table.iloc[1:].to_csv(quant, sep="\t", index=False, float_format="%.17g")
    with pytest.raises(CountsError, match=r"different ids: 'ENST000000\.1' is in 'P1' but not in 'P2'"):
        read_quantifications(sorted((tmp_path / "salmon").iterdir()), tx2gene=tx2gene)


def test_sample_ids_sheet_order_and_suffix_hint(tmp_path):
    sheet = pd.DataFrame({"group": ["b", "a", "a", "b"]}, index=["S4", "S1", "S2", "S3"])
    adata = read_quantifications(_files("rsem_genes"), samples=sheet)
    assert list(adata.obs_names) == ["S4", "S1", "S2", "S3"]
    plain = read_quantifications(_files("rsem_genes"))
    np.testing.assert_array_equal(adata.layers["counts"], plain.layers["counts"][[3, 0, 1, 2]])
    named = {f"{s}_quant": p for s, p in zip(SAMPLES, _files("salmon"), strict=True)}
    with pytest.raises(CountsError, match=r"'S1_quant' looks like sample 'S1'") as err:
        read_quantifications(named, tx2gene=REF / "tx2gene.csv", samples=sheet)
    assert "suffix '_quant'" in str(err.value) and "nothing was matched" in str(err.value)


def test_h5ad_round_trip(tmp_path):
    adata = read_quantifications(_files("kallisto"), tx2gene=REF / "tx2gene.csv",
                                 counts_from_abundance="lengthScaledTPM")
    adata.write_h5ad(tmp_path / "q.h5ad")
    back = ad.read_h5ad(tmp_path / "q.h5ad")
    assert back.uns["tximport"]["counts_from_abundance"] == "lengthScaledTPM"
    np.testing.assert_array_equal(back.layers["length"], adata.layers["length"])


# --- read_counts ----------------------------------------------------------------------------


@pytest.mark.parametrize(("path", "hint"), [
    (REF / "salmon" / "S1" / "quant.sf", r"salmon quantification output.*read_quantifications"
                                         r"\(paths, type='salmon', tx2gene="),
    (REF / "salmon" / "S1", "salmon quantification output"),
    (REF / "kallisto" / "S1" / "abundance.tsv", "type='kallisto', tx2gene="),
    (REF / "rsem" / "S1.isoforms.results", "type='rsem', tx2gene="),
    (REF / "rsem" / "S1.genes.results", r"read_quantifications\(paths, type='rsem'\), which"),
])
def test_read_counts_refuses_quantifier_outputs(path, hint):
    with pytest.raises(CountsError, match=hint):
        read_counts(path)
    with pytest.raises(CountsError, match=hint):
        read_counts([path])


@pytest.mark.parametrize(("matrix_ids", "sheet_ids", "expected"), [
    (["S1_quant", "S2_quant"], ["S1", "S2"], "'S1_quant' looks like sample 'S1'"),
    (["S1.sf", "S10.sf", "S2.sf"], ["S1", "S10", "S2"], "suffix '.sf'"),
    (["S1", "S2"], ["S1_L001", "S2_L001"], "sheet id 'S1_L001' looks like count-matrix sample 'S1'"),
    (["run7_S1", "run7_S2"], ["S1", "S2"], "prefix 'run7_'"),
])
def test_read_counts_sample_sheet_suffix_hint(tmp_path, matrix_ids, sheet_ids, expected):
    table = pd.DataFrame(np.arange(6 * len(matrix_ids)).reshape(6, -1) + 1,
                         index=[f"G{i}" for i in range(6)], columns=matrix_ids)
    table.to_csv(tmp_path / "c.csv")
    sheet = pd.DataFrame({"x": range(len(sheet_ids))}, index=sheet_ids)
    with pytest.raises(CountsError, match="nothing was matched") as err:
        read_counts(tmp_path / "c.csv", samples=sheet, orientation="genes_x_samples")
    assert expected in str(err.value)


def test_no_hint_for_unrelated_ids(tmp_path):
    table = pd.DataFrame(np.ones((6, 2), dtype=int), index=[f"G{i}" for i in range(6)],
                         columns=["A", "B"])
    table.to_csv(tmp_path / "c.csv")
    with pytest.raises(CountsError) as err:
        read_counts(tmp_path / "c.csv", samples=pd.DataFrame({"x": [1, 2]}, index=["C", "D"]),
                    orientation="genes_x_samples")
    assert "looks like" not in str(err.value)


def test_deseq2_methods_refuse_counts_that_need_length_offsets():
    import expression

    plain = _read_case("salmon:no")
    assert plain.uns["tximport"]["length_offset"]
    plain.obs["timepoint"] = ["pre", "post"] * (plain.n_obs // 2) + ["pre"] * (plain.n_obs % 2)
    for call in (
        lambda a: expression.normalize_counts(a, method="ratio", copy=True),
        lambda a: expression.vst(a),
        lambda a: expression.differential_expression(a, design="~ timepoint"),
    ):
        with pytest.raises(expression.CountsError, match="lengthScaledTPM"):
            call(plain)
    scaled = _read_case("salmon:lengthScaledTPM")
    assert not scaled.uns["tximport"]["length_offset"]
    assert expression.normalize_counts(scaled, method="ratio", copy=True) is not None
    expression.cpm(scaled)  # no DESeq2 model, no offsets involved
    assert "cpm" in scaled.layers
