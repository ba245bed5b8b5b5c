"""Negative-binomial skin-biopsy counts with planted interferon and TGF-beta decreases.

Model for gene ``g``, patient ``p``, timepoint ``t`` (0 = pre, 1 = post), sample ``j``::

    mu[g, j]  = s[j] * q[g] * exp(b[g, p] + i[p] * ifn[g] + t * ln2 * lfc[g] * r[p])
    count     ~ NB(mean = mu, dispersion = alpha(q[g]))   (a gamma-Poisson mixture)
    alpha(q)  = (0.08 + 1.5 / q) * exp(N(0, 0.35^2))       (the usual mean-dispersion trend)

``s`` are size factors (library-size differences), ``q`` the gene's base mean, ``b`` a
patient random effect shared by both timepoints, ``i[p]`` a patient-level interferon tone shared
by all interferon genes, ``lfc`` the planted log2 fold change (post vs pre; zero for synthetic
genes) and ``r[p]`` a patient's response strength (mean 1), so the planted fold change is the
cohort-average effect.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

__all__ = ["IFN_GENES", "TGFB_GENES", "CountsResult", "simulate_counts"]

IFN_GENES: tuple[str, ...] = (
    "IFI44",
    "IFI44L",
    "IFI27",
    "ISG15",
    "MX1",
    "MX2",
    "RSAD2",
    "OAS1",
    "OAS2",
    "OAS3",
    "OASL",
    "IFIT1",
    "IFIT2",
    "IFIT3",
    "IFIT5",
    "SIGLEC1",
    "IFI6",
    "HERC5",
    "HERC6",
    "EPSTI1",
    "CMPK2",
    "USP18",
    "XAF1",
    "STAT1",
    "IRF7",
    "BST2",
    "LY6E",
    "IFITM1",
    "IFITM3",
    "RIGI",
    "IFIH1",
    "PLSCR1",
    "SAMD9L",
    "LAMP3",
    "SPATS2L",
    "EIF2AK2",
    "GBP1",
    "CXCL10",
)
"""Interferon-response genes (type I interferon signature)."""

TGFB_GENES: tuple[str, ...] = (
    "TGFB1",
    "TGFB2",
    "TGFB3",
    "TGFBR1",
    "TGFBR2",
    "COMP",
    "THBS1",
    "SERPINE1",
    "CCN2",
    "COL1A1",
    "COL1A2",
    "COL3A1",
    "COL5A1",
    "FN1",
    "POSTN",
    "ACTA2",
    "SMAD7",
    "SKIL",
    "LTBP2",
    "TNC",
    "SERPINH1",
    "ADAM12",
    "CILP",
    "LOX",
    "PLOD2",
)
"""TGF-beta cytokines and TGF-beta-regulated fibrosis genes (CCN2 = CTGF)."""

LFC_RANGE = {"interferon": (-1.6, -0.7), "tgf_beta": (-1.1, -0.5)}
"""Planted log2 fold changes (post vs pre) are uniform on these ranges."""


@dataclass(frozen=True)
class CountsResult:
    """Simulated biopsy counts and what was planted.

    Attributes
    ----------
    counts
        Genes x samples integer matrix; index ``gene``, columns ``P01_pre`` ...
    samples
        Sample sheet: sample, patient, timepoint.
    truth
        Planted log2 fold changes, gene sets, size factors and model parameters.
    """

    counts: pd.DataFrame
    samples: pd.DataFrame
    truth: dict[str, Any]


def simulate_counts(
    rng: np.random.Generator,
    *,
    patients: tuple[str, ...],
    n_genes: int,
) -> CountsResult:
    """Simulate paired pre/post biopsy counts for ``patients``.

    Parameters
    ----------
    rng
        Generator for this part of the study.
    patients
        Biopsied patients, in column order.
    n_genes
        Total genes, including the named interferon and TGF-beta genes.

    Returns
    -------
    CountsResult
        Counts, sample sheet and the planted truth.
    """
    named = IFN_GENES + TGFB_GENES
    if n_genes < len(named) + 1:
        raise ValueError(f"n_genes must be at least {len(named) + 1}, got {n_genes}")
    n_syn = n_genes - len(named)
    width = max(5, len(str(n_syn)))
    genes = np.array(list(named) + [f"GENE{i + 1:0{width}d}" for i in range(n_syn)])
    genes = genes[rng.permutation(n_genes)]
    is_ifn = np.isin(genes, IFN_GENES)
    is_tgf = np.isin(genes, TGFB_GENES)

    base = 10.0 ** rng.normal(1.8, 0.9, n_genes)
    named_mask = is_ifn | is_tgf
    base[named_mask] = 10.0 ** rng.normal(2.6, 0.5, int(named_mask.sum()))
    alpha = (0.08 + 1.5 / base) * np.exp(rng.normal(0.0, 0.35, n_genes))
    lfc = np.zeros(n_genes)
    for mask, key in ((is_ifn, "interferon"), (is_tgf, "tgf_beta")):
        lo, hi = LFC_RANGE[key]
        lfc[mask] = np.round(rng.uniform(lo, hi, int(mask.sum())), 3)

    n_pat = len(patients)
    patient_sd = rng.uniform(0.15, 0.4, n_genes)
    b = patient_sd[:, None] * rng.standard_normal((n_genes, n_pat))
    ifn_tone = rng.normal(0.0, 0.5, n_pat)
    response = np.clip(rng.normal(1.0, 0.3, n_pat), 0.2, None)
    size = np.exp(rng.normal(0.0, 0.3, 2 * n_pat))
    size = np.round(size / np.exp(np.log(size).mean()), 6)

    post = np.tile([0.0, 1.0], n_pat)  # columns: P_pre, P_post, ...
    pat = np.repeat(np.arange(n_pat), 2)
    log_mu = (
        np.log(base)[:, None]
        + b[:, pat]
        + np.outer(is_ifn, ifn_tone[pat])
        + math.log(2.0) * np.outer(lfc, post * response[pat])
    )
    mu = size[None, :] * np.exp(log_mu)
    shape = 1.0 / alpha[:, None]
    counts = rng.poisson(rng.gamma(shape, mu / shape))

    names = [f"{p}_{tp}" for p in patients for tp in ("pre", "post")]
    table = pd.DataFrame(counts.astype(np.int64), index=pd.Index(genes, name="gene"), columns=names)
    samples = pd.DataFrame(
        {"sample": names, "patient": np.repeat(patients, 2), "timepoint": ["pre", "post"] * n_pat}
    )
    truth = {
        "log2_fold_change_post_vs_pre": {
            str(g): float(v) for g, v in zip(genes[named_mask], lfc[named_mask], strict=True)
        },
        "log2_fold_change_other_genes": 0.0,
        "gene_sets": {"interferon": sorted(IFN_GENES), "tgf_beta": sorted(TGFB_GENES)},
        "size_factors": dict(zip(names, size.tolist(), strict=True)),
        "patient_response": dict(zip(patients, np.round(response, 6).tolist(), strict=True)),
        "patient_interferon_tone": dict(zip(patients, np.round(ifn_tone, 6).tolist(), strict=True)),
        "dispersion_trend": "alpha = (0.08 + 1.5 / base_mean) * lognormal(0, 0.35)",
        "n_genes": n_genes,
    }
    return CountsResult(table, samples, truth)
