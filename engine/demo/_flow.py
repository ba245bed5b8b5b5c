"""Synthetic PBMC events for one FCS file of the demo panel.

Cells are drawn as labelled populations (debris, monocytes, granulocyte-like cells, dead cells,
doublets and live single lymphocytes with T/B/NK subsets, chemokine-receptor combinations and
memory phenotypes), placed in logicle space (see :mod:`engine.demo._panel`), mapped to linear
"true" fluorochrome intensities, then mixed by the spillover matrix (``observed = true @ S``)
with electronic and proportional noise. Everything is vectorised over events.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from engine.demo._panel import FLUOR, NEG, POS, RANGE, TIMESTEP, logicle_inverse, spillover_matrix

__all__ = ["CD4_SUBSETS", "CD8_SUBSETS", "FlowProfile", "draw_profile", "generate_events"]

N_FLUOR = len(FLUOR)
LD, CD3, CD4, CD8, CXCR3, CCR4, CCR6, CD45RA, CCR7, CD19 = range(N_FLUOR)

CLASSES = ("debris", "monocyte", "granulocyte", "dead", "doublet", "lymphocyte")
_CLASS_BASE = np.array([0.07, 0.17, 0.06, 0.06, 0.05, 0.59])
# scatter per class: FSC-A mean, sd, SSC-A mean, sd, FSC-H/FSC-A mean, sd (fractions of RANGE)
_SCATTER = np.array(
    [
        [0.06, 0.030, 0.030, 0.015, 0.90, 0.050],
        [0.42, 0.040, 0.220, 0.030, 0.90, 0.025],
        [0.52, 0.050, 0.480, 0.080, 0.90, 0.025],
        [0.22, 0.030, 0.080, 0.020, 0.88, 0.030],
        [0.37, 0.040, 0.090, 0.015, 0.62, 0.040],
        [0.28, 0.030, 0.060, 0.012, 0.90, 0.025],
    ]
)

LYMPH = ("CD4 T", "CD8 T", "DN T", "DP T", "B", "NK")
_LYMPH_BASE = np.array([0.42, 0.19, 0.03, 0.01, 0.12, 0.23])
#                      LD    CD3   CD4   CD8   CXCR3 CCR4  CCR6  CD45RA CCR7 CD19
_LYMPH_LEVELS = np.array(
    [
        [NEG, 0.68, 0.64, NEG, NEG, NEG, NEG, NEG, NEG, NEG],
        [NEG, 0.68, NEG, 0.72, NEG, NEG, NEG, NEG, NEG, NEG],
        [NEG, 0.66, NEG, NEG, NEG, NEG, NEG, NEG, NEG, NEG],
        [NEG, 0.68, 0.62, 0.70, NEG, NEG, NEG, NEG, NEG, NEG],
        [NEG, NEG, NEG, NEG, 0.30, NEG, 0.60, 0.65, 0.55, 0.66],
        [NEG, NEG, NEG, 0.38, 0.35, NEG, NEG, 0.62, NEG, NEG],
    ]
)
_OTHER_LEVELS = {  # class -> (logicle means, sd) for the non-lymphocyte classes
    "debris": ([0.50] + [0.18] * 9, [0.15] + [0.06] * 9),
    "monocyte": ([0.22, 0.22, 0.47, 0.22, 0.25, 0.25, 0.25, 0.40, 0.22, 0.22], [0.05] * 10),
    "granulocyte": ([0.25] + [0.30] * 9, [0.06] * 10),
}
LYMPH_SD = 0.045
DEAD_LIVEDEAD = 0.78

# Chemokine-receptor combination index = CXCR3 + 2*CCR4 + 4*CCR6.
CD8_SUBSETS = (
    "CR-negative",
    "Tc1",
    "Tc2",
    "CXCR3+CCR4+",
    "CCR6-only",
    "Tc17",
    "Tc17_classical",
    "CR-triple",
)
CD4_SUBSETS = (
    "CR-negative",
    "Th1",
    "Th2",
    "CXCR3+CCR4+",
    "CCR6-only",
    "Th1-17",
    "Th17",
    "CR-triple",
)
TC17 = 5
_CD8_CR_BASE = np.array([0.0, 0.26, 0.04, 0.03, 0.03, 0.0, 0.015, 0.01])
_CD4_CR_BASE = np.array([0.0, 0.15, 0.12, 0.03, 0.04, 0.04, 0.06, 0.01])
# memory index: 0 naive (CD45RA+CCR7+), 1 CM (-,+), 2 EM (-,-), 3 TEMRA (+,-);
# rows: (CD4-like, CR-), (CD4-like, CR+), (CD8, CR-), (CD8, CR+)
MEMORY = ("Naive", "CM", "EM", "TEMRA")
_MEMORY_P = np.array(
    [
        [0.65, 0.20, 0.10, 0.05],
        [0.05, 0.50, 0.40, 0.05],
        [0.55, 0.08, 0.12, 0.25],
        [0.04, 0.26, 0.52, 0.18],
    ]
)
_MEM_RA = np.array([True, False, False, True])
_MEM_CCR7 = np.array([True, True, False, False])


@dataclass(frozen=True)
class FlowProfile:
    """A patient's stable blood composition (shared by the pre and post files).

    Attributes
    ----------
    classes
        Event-class probabilities in :data:`CLASSES` order.
    lymph
        Live-lymphocyte subset probabilities in :data:`LYMPH` order.
    cd8_cr, cd4_cr
        Chemokine-receptor combination probabilities; ``cd8_cr`` excludes Tc17 (set per file).
    """

    classes: np.ndarray
    lymph: np.ndarray
    cd8_cr: np.ndarray
    cd4_cr: np.ndarray


def _with_rest(p: np.ndarray) -> np.ndarray:
    p = p.copy()
    p[0] = 1.0 - p[1:].sum()
    return p


def draw_profile(rng: np.random.Generator) -> FlowProfile:
    """Draw one patient's composition around the panel's base frequencies."""
    cd8 = _with_rest(_CD8_CR_BASE)
    cd8 = rng.dirichlet(np.delete(cd8, TC17) * 200.0)
    return FlowProfile(
        classes=rng.dirichlet(_CLASS_BASE * 300.0),
        lymph=rng.dirichlet(_LYMPH_BASE * 80.0),
        cd8_cr=np.insert(cd8, TC17, 0.0),
        cd4_cr=rng.dirichlet(_with_rest(_CD4_CR_BASE) * 200.0),
    )


def file_fractions(
    profile: FlowProfile, tc17_pct: float, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """Per-file CD8 and CD4 subset probabilities: the patient's, jittered, with Tc17 planted."""
    others = np.delete(profile.cd8_cr, TC17)
    others = rng.dirichlet(others * 1500.0) * (1.0 - tc17_pct / 100.0)
    cd8 = np.insert(others, TC17, tc17_pct / 100.0)
    cd4 = rng.dirichlet(profile.cd4_cr * 1500.0)
    return cd8, cd4


def _categorical(rng: np.random.Generator, table: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """Draw one category per event from per-event probability rows ``table[rows]``."""
    cum = np.cumsum(table, axis=1)[rows]
    u = rng.random(rows.size)[:, None] * cum[:, -1:]
    return np.minimum((u >= cum).sum(axis=1), table.shape[1] - 1)


def _lymphocytes(
    rng: np.random.Generator, n: int, lymph: np.ndarray, cd8: np.ndarray, cd4: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Logicle-space means and labels (subset, CR combination) for ``n`` lymphocytes."""
    subset = rng.choice(len(LYMPH), size=n, p=lymph)
    is_t = subset <= 3
    is_cd8 = subset == 1
    cr = np.where(is_cd8, rng.choice(8, size=n, p=cd8), rng.choice(8, size=n, p=cd4))
    cr = np.where(is_t, cr, -1)
    mem = _categorical(rng, _MEMORY_P, 2 * is_cd8 + (cr > 0))
    means = _LYMPH_LEVELS[subset].copy()
    for col, bit in ((CXCR3, 1), (CCR4, 2), (CCR6, 4)):
        means[is_t, col] = np.where(cr[is_t] & bit, POS, NEG)
    means[is_t, CD45RA] = np.where(_MEM_RA[mem[is_t]], 0.65, NEG)
    means[is_t, CCR7] = np.where(_MEM_CCR7[mem[is_t]], POS, NEG)
    return means, subset, cr


def _scatter(rng: np.random.Generator, cls: np.ndarray) -> np.ndarray:
    p = _SCATTER[cls]
    z = rng.standard_normal((cls.size, 3))
    fsc_a = np.maximum(p[:, 0] + p[:, 1] * z[:, 0], 0.004)
    ssc_a = np.maximum(p[:, 2] + p[:, 3] * z[:, 1], 0.002)
    fsc_h = fsc_a * np.clip(p[:, 4] + p[:, 5] * z[:, 2], 0.3, 1.1)
    return np.column_stack([fsc_a, fsc_h, ssc_a]) * RANGE


def generate_events(
    rng: np.random.Generator,
    *,
    n_events: int,
    profile: FlowProfile,
    tc17_pct: float,
) -> tuple[np.ndarray, dict[str, Any]]:
    """Generate one file's events in panel channel order.

    Parameters
    ----------
    rng
        This file's generator.
    n_events
        Events in the file.
    profile
        The patient's composition.
    tc17_pct
        Planted Tc17 (CD8+ CCR6+ CXCR3+ CCR4-) frequency, % of CD8+ T cells.

    Returns
    -------
    events : numpy.ndarray
        ``(n_events, 14)``: FSC-A, FSC-H, SSC-A, the ten detectors, Time (raw ticks).
    summary : dict
        Generated counts per class and T-cell subset and the file's planted subset frequencies.
    """
    cd8_p, cd4_p = file_fractions(profile, tc17_pct, rng)
    counts = rng.multinomial(n_events, rng.dirichlet(profile.classes * 2000.0))
    n_debris, n_mono, n_gran, n_dead, n_dbl, n_lym = (int(c) for c in counts)

    lym_mean, subset, cr = _lymphocytes(rng, n_lym, profile.lymph, cd8_p, cd4_p)
    dead_mean, _, _ = _lymphocytes(rng, n_dead, profile.lymph, cd8_p, cd4_p)
    dead_mean[:, LD] = DEAD_LIVEDEAD
    blocks = [lym_mean, dead_mean]
    sds = [np.full(lym_mean.shape, LYMPH_SD), np.full(dead_mean.shape, LYMPH_SD)]
    for name, n in (("debris", n_debris), ("monocyte", n_mono), ("granulocyte", n_gran)):
        mean, sd = _OTHER_LEVELS[name]
        blocks.append(np.tile(mean, (n, 1)))
        sds.append(np.tile(sd, (n, 1)))
    mean, sd = np.vstack(blocks), np.vstack(sds)
    true = logicle_inverse(mean + sd * rng.standard_normal(mean.shape))
    pair_mean, _, _ = _lymphocytes(rng, 2 * n_dbl, profile.lymph, cd8_p, cd4_p)
    pairs = logicle_inverse(pair_mean + LYMPH_SD * rng.standard_normal(pair_mean.shape))
    true = np.vstack([true, pairs[:n_dbl] + pairs[n_dbl:]])

    cls = np.repeat([5, 3, 0, 1, 2, 4], [n_lym, n_dead, n_debris, n_mono, n_gran, n_dbl])
    observed = true @ spillover_matrix().to_numpy()
    observed *= 1.0 + 0.01 * rng.standard_normal(observed.shape)
    observed += 15.0 * rng.standard_normal(observed.shape)
    events = np.column_stack([_scatter(rng, cls), observed])

    order = rng.permutation(n_events)
    rate = rng.uniform(1500.0, 3000.0)  # events per second
    clock = np.cumsum(rng.exponential(1.0 / rate, n_events))
    ticks = np.floor(clock / TIMESTEP)
    events = np.column_stack([np.minimum(events[order], RANGE - 1.0), ticks])

    n_cd8 = int(np.sum(subset == 1))
    n_tc17 = int(np.sum((subset == 1) & (cr == TC17)))
    summary: dict[str, Any] = {
        "n_events": n_events,
        "class_counts": dict(zip(CLASSES, (int(c) for c in counts), strict=True)),
        "lymphocyte_counts": {s: int(np.sum(subset == i)) for i, s in enumerate(LYMPH)},
        "cd8_subset_counts": {
            s: int(np.sum((subset == 1) & (cr == i))) for i, s in enumerate(CD8_SUBSETS)
        },
        "cd4_subset_counts": {
            s: int(np.sum((subset == 0) & (cr == i))) for i, s in enumerate(CD4_SUBSETS)
        },
        "cd8_subset_planted": dict(zip(CD8_SUBSETS, np.round(cd8_p, 6).tolist(), strict=True)),
        "cd4_subset_planted": dict(zip(CD4_SUBSETS, np.round(cd4_p, 6).tolist(), strict=True)),
        "tc17_pct_of_cd8_planted": tc17_pct,
        "tc17_pct_of_cd8_generated": 100.0 * n_tc17 / n_cd8 if n_cd8 else None,
        "acquisition_rate_per_s": round(rate, 3),
    }
    return events, summary
