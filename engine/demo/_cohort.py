"""Patient-level draws: who has which data, planted Tc17 frequencies and the clinical table.

Every per-patient quantity is a Gaussian latent mapped through a target marginal (a Gaussian
copula), so correlations are planted on the latent scale and means/SDs on the observed scale.
One latent *severity* per patient drives baseline MMRSS, baseline Tc17 and the other scores.
Each block of variables is redrawn (deterministically, from its own stream) until the realised
sample reproduces the paper's findings in kind: see :data:`TARGETS` and the ``checks`` returned.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import pandas as pd
from scipy import stats

__all__ = ["OUTCOMES", "TARGETS", "Cohort", "draw_cohort"]

logger = logging.getLogger(__name__)

REFERENCE_N = 15
"""The paper's cohort size, used to turn a reported SEM into an SD."""

# name -> (pre mean, pre ±, post mean, post ±, upper bound, reported by the paper)
TARGETS: dict[str, tuple[float, float, float, float, float, bool]] = {
    "MMRSS": (13.6, 2.6, 10.3, 1.9, 60.0, True),
    "BSA_percent": (38.0, 22.0, 31.0, 20.0, 100.0, False),
    "VAS_pain": (4.2, 2.6, 3.1, 2.4, 10.0, False),
    "VAS_itch": (3.8, 2.8, 2.7, 2.5, 10.0, False),
    "VAS_flexibility": (5.4, 0.8, 3.2, 0.7, 10.0, True),
    "VAS_softness": (4.9, 0.9, 2.6, 0.6, 10.0, True),
    "VAS_global": (5.6, 2.4, 3.9, 2.3, 10.0, False),
    "HAQ_DI": (0.9, 0.6, 0.75, 0.55, 3.0, False),
}
"""Clinical targets; a reported ± is read as an SEM (see STUDY.md) unless ``spread='sd'``."""

TC17 = (3.4, 3.2, 1.3, 1.7)
"""Tc17 (CD8+ CCR6+ CXCR3+ CCR4-) as % of CD8+: pre mean, SD, post mean, SD."""

TC17_MMRSS_R = 0.7
MMRSS_HAQ_R = 0.47
OUTCOMES: tuple[str, ...] = tuple(TARGETS)
_MAX_TRIES = 5000


@dataclass(frozen=True)
class Cohort:
    """The patient-level part of a demo study.

    Attributes
    ----------
    patients
        Patient ids, ``P01`` ...
    groups
        ``treatment-naive`` or ``maintenance`` per patient.
    baseline_flow, biopsy
        Whether each patient has a usable baseline flow file / paired skin biopsies.
    tc17_pre, tc17_post
        Planted Tc17 % of CD8+ per patient (pre is planted even where no file is written).
    clinical
        One row per patient x timepoint: patient, timepoint, group, then :data:`OUTCOMES`.
    checks
        Realised statistics of the accepted draw, the acceptance criteria and tries per block.
    """

    patients: tuple[str, ...]
    groups: tuple[str, ...]
    baseline_flow: tuple[bool, ...]
    biopsy: tuple[bool, ...]
    tc17_pre: np.ndarray
    tc17_post: np.ndarray
    clinical: pd.DataFrame
    checks: dict[str, Any]


def _lognormal(z: np.ndarray, mean: float, sd: float) -> np.ndarray:
    sigma2 = math.log1p((sd / mean) ** 2)
    return np.exp(math.log(mean) - sigma2 / 2.0 + math.sqrt(sigma2) * z)


def _bounded(z: np.ndarray, mean: float, sd: float, upper: float) -> np.ndarray:
    """Map a standard-normal latent to a scaled beta on ``[0, upper]`` with the given moments."""
    m, v = mean / upper, (sd / upper) ** 2
    v = min(v, 0.9 * m * (1.0 - m))
    k = m * (1.0 - m) / v - 1.0
    return upper * stats.beta.ppf(stats.norm.cdf(z), m * k, (1.0 - m) * k)


def _wilcoxon_p(pre: np.ndarray, post: np.ndarray) -> float:
    diff = np.asarray(pre, float) - np.asarray(post, float)
    if np.all(diff == 0):
        return 1.0
    return float(stats.wilcoxon(diff, method="approx", zero_method="wilcox").pvalue)


def _near(value: float, target: float, rel: float) -> bool:
    return abs(value - target) <= rel * abs(target)


def _accept(
    rng: np.random.Generator,
    draw: Callable[[np.random.Generator], tuple[dict[str, np.ndarray], dict[str, bool]]],
    block: str,
) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    """Redraw a block until every criterion holds; fall back to the best draw with a warning."""
    values, criteria = draw(rng)
    best = (sum(not ok for ok in criteria.values()), values, criteria)
    for attempt in range(1, _MAX_TRIES + 1):
        if attempt > 1:
            values, criteria = draw(rng)
        failed = sum(not ok for ok in criteria.values())
        if failed < best[0]:
            best = (failed, values, criteria)
        if failed == 0:
            return values, {"tries": attempt, "criteria": criteria, "met": True}
    logger.warning(
        "demo cohort: block %r misses %d criteria after %d tries", block, best[0], _MAX_TRIES
    )
    return best[1], {"tries": _MAX_TRIES, "criteria": best[2], "met": False}


def _sd_factor(spread: Literal["sem", "sd"], reported: bool) -> float:
    return math.sqrt(REFERENCE_N) if spread == "sem" and reported else 1.0


def _marginal(
    name: str, z_pre: np.ndarray, z_post: np.ndarray, spread: Literal["sem", "sd"]
) -> tuple[np.ndarray, np.ndarray]:
    m0, s0, m1, s1, upper, reported = TARGETS[name]
    f = _sd_factor(spread, reported)
    pre, post = _bounded(z_pre, m0, s0 * f, upper), _bounded(z_post, m1, s1 * f, upper)
    if name == "MMRSS" or name == "BSA_percent":
        return np.round(pre), np.round(post)
    if name == "HAQ_DI":
        return np.round(pre * 8) / 8, np.round(post * 8) / 8
    return np.round(pre, 1), np.round(post, 1)


def _moments_ok(name: str, pre: np.ndarray, post: np.ndarray, rel: float) -> bool:
    m0, _, m1, _, _, _ = TARGETS[name]
    return _near(float(pre.mean()), m0, rel) and _near(float(post.mean()), m1, rel)


def draw_cohort(
    seed_sequence: np.random.SeedSequence,
    *,
    n_patients: int,
    n_biopsy_patients: int,
    missing_baseline_flow: int,
    spread: Literal["sem", "sd"] = "sem",
) -> Cohort:
    """Draw the patient-level quantities of a demo study.

    Parameters
    ----------
    seed_sequence
        Stream for this part of the study; split internally into one stream per block.
    n_patients, n_biopsy_patients, missing_baseline_flow
        Cohort size, patients with paired biopsies, patients without a baseline flow file.
    spread
        Whether the paper's clinical ± values are SEMs (``"sem"``, default, per STUDY.md) or SDs.

    Returns
    -------
    Cohort
        Patients, planted Tc17 %, clinical table and realised checks.
    """
    s_select, s_core, s_haq, s_vas, s_other = (
        np.random.default_rng(s) for s in seed_sequence.spawn(5)
    )
    n = n_patients
    patients = tuple(f"P{i + 1:02d}" for i in range(n))
    n_naive = min(n, max(1, round(n * 3 / REFERENCE_N)))
    naive = set(s_select.choice(n, size=n_naive, replace=False).tolist())
    groups = tuple("treatment-naive" if i in naive else "maintenance" for i in range(n))
    missing = set(s_select.choice(n, size=missing_baseline_flow, replace=False).tolist())
    baseline_flow = tuple(i not in missing for i in range(n))
    biopsied = set(s_select.choice(n, size=n_biopsy_patients, replace=False).tolist())
    biopsy = tuple(i in biopsied for i in range(n))
    has_pre = np.array(baseline_flow)
    strict = n >= 10  # P-value criteria are attainable only with enough patients
    tc = TC17

    def core(rng: np.random.Generator) -> tuple[dict[str, np.ndarray], dict[str, bool]]:
        s, e1, e2, e3 = rng.standard_normal((4, n))
        mm_post_z = 0.95 * s + math.sqrt(1 - 0.95**2) * e1
        t_pre_z = 0.78 * s + math.sqrt(1 - 0.78**2) * e2
        t_post_z = 0.7 * t_pre_z + math.sqrt(1 - 0.7**2) * e3
        mm_pre, mm_post = _marginal("MMRSS", s, mm_post_z, spread)
        t_pre = np.clip(np.round(_lognormal(t_pre_z, tc[0], tc[1]), 4), 0.01, 25.0)
        t_post = np.clip(np.round(_lognormal(t_post_z, tc[2], tc[3]), 4), 0.01, 25.0)
        x, y = t_pre[has_pre], mm_pre[has_pre]
        r = float(np.corrcoef(x, y)[0, 1]) if x.size > 2 else float("nan")
        rho = float(stats.spearmanr(x, y).statistic) if x.size > 2 else float("nan")
        crit = {
            "tc17_mmrss_pearson": not x.size > 2 or abs(r - TC17_MMRSS_R) <= 0.1,
            "tc17_mmrss_spearman": not x.size > 2 or abs(rho - TC17_MMRSS_R) <= 0.1,
            "tc17_pre_mean": _near(float(x.mean()) if x.size else tc[0], tc[0], 0.25),
            "tc17_post_mean": _near(float(t_post.mean()), tc[2], 0.3),
            "tc17_pre_sd": x.size < 3 or _near(float(x.std(ddof=1)), tc[1], 0.4),
            "mmrss_means": _moments_ok("MMRSS", mm_pre, mm_post, 0.1),
            "mmrss_wilcoxon": not strict or _wilcoxon_p(mm_pre, mm_post) < 0.01,
            "tc17_wilcoxon": not strict or _wilcoxon_p(x, t_post[has_pre]) < 0.02,
        }
        values = {
            "s": s,
            "mm_pre_z": s,
            "mm_post_z": mm_post_z,
            "MMRSS_pre": mm_pre,
            "MMRSS_post": mm_post,
            "tc17_pre": t_pre,
            "tc17_post": t_post,
        }
        return values, crit

    core_v, core_c = _accept(s_core, core, "tc17+MMRSS")
    cols: dict[str, np.ndarray] = {
        "MMRSS_pre": core_v["MMRSS_pre"],
        "MMRSS_post": core_v["MMRSS_post"],
    }

    def haq(rng: np.random.Generator) -> tuple[dict[str, np.ndarray], dict[str, bool]]:
        shared, h0, h1 = rng.standard_normal((3, n))
        noise = math.sqrt(1 - 0.55**2)
        z0 = 0.55 * core_v["mm_pre_z"] + noise * (0.8 * shared + 0.6 * h0)
        z1 = 0.55 * core_v["mm_post_z"] + noise * (0.8 * shared + 0.6 * h1)
        pre, post = _marginal("HAQ_DI", z0, z1, spread)
        mm = np.concatenate([cols["MMRSS_pre"], cols["MMRSS_post"]])
        r = float(np.corrcoef(mm, np.concatenate([pre, post]))[0, 1])
        crit = {
            "mmrss_haq_pooled_pearson": abs(r - MMRSS_HAQ_R) <= 0.07,
            "haq_means": _moments_ok("HAQ_DI", pre, post, 0.25),
        }
        return {"HAQ_DI_pre": pre, "HAQ_DI_post": post}, crit

    def vas(rng: np.random.Generator) -> tuple[dict[str, np.ndarray], dict[str, bool]]:
        out: dict[str, np.ndarray] = {}
        crit: dict[str, bool] = {}
        for name in ("VAS_flexibility", "VAS_softness"):
            v0, v1 = rng.standard_normal((2, n))
            z0 = 0.45 * core_v["s"] + math.sqrt(1 - 0.45**2) * v0
            z1 = 0.85 * z0 + math.sqrt(1 - 0.85**2) * v1
            pre, post = _marginal(name, z0, z1, spread)
            out[f"{name}_pre"], out[f"{name}_post"] = pre, post
            crit[f"{name}_means"] = _moments_ok(name, pre, post, 0.15)
            crit[f"{name}_wilcoxon"] = not strict or _wilcoxon_p(pre, post) < 0.05
        return out, crit

    haq_v, haq_c = _accept(s_haq, haq, "HAQ-DI")
    vas_v, vas_c = _accept(s_vas, vas, "VAS")
    cols |= haq_v | vas_v

    def other(rng: np.random.Generator) -> tuple[dict[str, np.ndarray], dict[str, bool]]:
        out: dict[str, np.ndarray] = {}
        crit: dict[str, bool] = {}
        for name, load, anchor in (
            ("BSA_percent", 0.6, "mm"),
            ("VAS_pain", 0.4, "s"),
            ("VAS_itch", 0.3, "s"),
            ("VAS_global", 0.5, "s"),
        ):
            o0, o1 = rng.standard_normal((2, n))
            a0 = core_v["mm_pre_z"] if anchor == "mm" else core_v["s"]
            a1 = core_v["mm_post_z"] if anchor == "mm" else core_v["s"]
            z0 = load * a0 + math.sqrt(1 - load**2) * o0
            o1 = 0.75 * o0 + math.sqrt(1 - 0.75**2) * o1
            z1 = load * a1 + math.sqrt(1 - load**2) * o1
            out[f"{name}_pre"], out[f"{name}_post"] = _marginal(name, z0, z1, spread)
            crit[f"{name}_means"] = _moments_ok(name, out[f"{name}_pre"], out[f"{name}_post"], 0.25)
        return out, crit

    other_v, other_c = _accept(s_other, other, "other scores")
    cols |= other_v

    rows = []
    for i, patient in enumerate(patients):
        for tp in ("pre", "post"):
            row: dict[str, Any] = {"patient": patient, "timepoint": tp, "group": groups[i]}
            for name in OUTCOMES:
                value = float(cols[f"{name}_{tp}"][i])
                row[name] = int(value) if name in ("MMRSS", "BSA_percent") else value
            rows.append(row)
    clinical = pd.DataFrame(rows, columns=["patient", "timepoint", "group", *OUTCOMES])
    checks = {
        "tc17_mmrss": core_c,
        "haq": haq_c,
        "vas": vas_c,
        "other": other_c,
        "spread": spread,
        "strict_p_criteria": strict,
    }
    return Cohort(
        patients,
        groups,
        baseline_flow,
        biopsy,
        core_v["tc17_pre"],
        core_v["tc17_post"],
        clinical,
        checks,
    )
