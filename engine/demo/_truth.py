"""Assemble ``truth.json``: everything the demo generator planted and what it realised."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats

from engine.demo._cohort import MMRSS_HAQ_R, OUTCOMES, TARGETS, TC17, TC17_MMRSS_R, Cohort
from engine.demo._flow import CD4_SUBSETS, CD8_SUBSETS
from engine.demo._panel import FLUOR, spillover_matrix

__all__ = ["build_truth"]


def _correlation(x: np.ndarray, y: np.ndarray) -> dict[str, float | None]:
    if x.size < 3:
        return {"pearson": None, "spearman": None}
    return {
        "pearson": float(np.corrcoef(x, y)[0, 1]),
        "spearman": float(stats.spearmanr(x, y).statistic),
    }


def _summaries(clinical: pd.DataFrame) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name in OUTCOMES:
        out[name] = {}
        for tp in ("pre", "post"):
            v = clinical.loc[clinical["timepoint"] == tp, name].to_numpy(float)
            sd = float(v.std(ddof=1)) if v.size > 1 else None
            sem = sd / math.sqrt(v.size) if sd is not None else None
            out[name][tp] = {"n": int(v.size), "mean": float(v.mean()), "sd": sd, "sem": sem}
    return out


def _patients(cohort: Cohort, mmrss: pd.DataFrame) -> dict[str, Any]:
    return {
        p: {
            "group": cohort.groups[i],
            "baseline_flow": cohort.baseline_flow[i],
            "biopsy": cohort.biopsy[i],
            "tc17_pct_of_cd8": {
                "pre": float(cohort.tc17_pre[i]),
                "post": float(cohort.tc17_post[i]),
            },
            "MMRSS": {"pre": int(mmrss.loc[p, "pre"]), "post": int(mmrss.loc[p, "post"])},
        }
        for i, p in enumerate(cohort.patients)
    }


def build_truth(
    *,
    seed: int,
    parameters: dict[str, Any],
    cohort: Cohort,
    flow_files: dict[str, Any],
    expression: dict[str, Any],
) -> dict[str, Any]:
    """Collect the planted values, targets and realised statistics of one demo study.

    Parameters
    ----------
    seed
        The root seed.
    parameters
        The generator's arguments.
    cohort
        Patient-level draws (planted Tc17, clinical table, selections, draw checks).
    flow_files
        Per-file summaries from the flow generator, keyed by sample (``P01_pre`` ...).
    expression
        The count simulator's truth (fold changes, gene sets, size factors).

    Returns
    -------
    dict
        JSON-serialisable truth record.
    """
    patients = cohort.patients
    has_pre = np.array(cohort.baseline_flow)
    mmrss = cohort.clinical.pivot(index="patient", columns="timepoint", values="MMRSS")
    mm_pre = mmrss.loc[list(patients), "pre"].to_numpy(float)[has_pre]
    generated = np.array(
        [flow_files[f"{p}_pre"]["tc17_pct_of_cd8_generated"] for p in np.array(patients)[has_pre]],
        dtype=float,
    )
    pooled = cohort.clinical[["MMRSS", "HAQ_DI"]].to_numpy(float)
    spill = spillover_matrix().round(6).to_dict(orient="index")
    return {
        "generator": "engine.demo.make_demo_study",
        "seed": seed,
        "parameters": parameters,
        "patients": _patients(cohort, mmrss),
        "patients_without_baseline_flow": [
            p for p, b in zip(patients, has_pre, strict=True) if not b
        ],
        "biopsy_patients": [p for p, b in zip(patients, cohort.biopsy, strict=True) if b],
        "flow": {
            "events_per_file": parameters["n_events"],
            "panel": [{"channel": f.detector, "marker": f.marker} for f in FLUOR],
            "spillover": {"rows_fluorochromes_columns_detectors": spill},
            "tc17_definition": "CD8+ CCR6+ CXCR3+ CCR4-",
            "tc17_parent": "CD8+",
            "tc17_target_mean_sd": {"pre": list(TC17[:2]), "post": list(TC17[2:])},
            "cd8_subsets": list(CD8_SUBSETS),
            "cd4_subsets": list(CD4_SUBSETS),
            "files": flow_files,
        },
        "correlations": {
            "tc17_pre_vs_mmrss_pre": {
                "target": TC17_MMRSS_R,
                "n": int(has_pre.sum()),
                "planted": _correlation(cohort.tc17_pre[has_pre], mm_pre),
                "generated_events": _correlation(generated, mm_pre),
            },
            "mmrss_vs_haq_di_pooled": {
                "target": MMRSS_HAQ_R,
                "n": int(pooled.shape[0]),
                **_correlation(pooled[:, 0], pooled[:, 1]),
            },
        },
        "clinical": {
            "targets_pre_mean_pm_post_mean_pm": {k: list(v[:4]) for k, v in TARGETS.items()},
            "reported_by_paper": [k for k, v in TARGETS.items() if v[5]],
            "realised": _summaries(cohort.clinical),
            "draw_checks": cohort.checks,
        },
        "expression": expression,
    }
