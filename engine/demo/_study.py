"""Write a complete synthetic study: FCS files, strategy, counts, clinical table, truth, listing."""

from __future__ import annotations

import datetime as dt
import importlib.resources
import json
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import yaml

from engine.demo._cohort import OUTCOMES, draw_cohort
from engine.demo._counts import IFN_GENES, TGFB_GENES, simulate_counts
from engine.demo._flow import draw_profile, generate_events
from engine.demo._panel import TIMESTEP, channel_table, spillover_matrix
from engine.demo._truth import build_truth
from engine.runtime import atomic_write_bytes, atomic_write_text
from gating import write_fcs

__all__ = ["DemoStudy", "make_demo_study"]

logger = logging.getLogger(__name__)

STRATEGY_PRESET = "study_panel.yaml"
_CD3 = "/Lymphocytes/Singlets/Live/CD3+"
_STUDY_START = dt.datetime(2017, 3, 1, 9, 30)


@dataclass(frozen=True)
class DemoStudy:
    """Paths written by :func:`make_demo_study`.

    Attributes
    ----------
    out_dir
        The study folder.
    fcs
        FCS files, ``fcs/P01_pre.fcs`` ... (no pre file for patients without baseline flow).
    strategy, counts, samples, clinical, truth, study
        ``strategy.yaml``, ``counts.csv``, ``samples.csv``, ``clinical.csv``, ``truth.json``
        and ``study.yaml``, the study manifest (see :func:`engine.load_study`).
    gene_sets
        ``gene_sets.gmt``: the planted interferon and TGF-beta gene sets.
    """

    out_dir: Path
    fcs: tuple[Path, ...]
    strategy: Path
    counts: Path
    samples: Path
    clinical: Path
    truth: Path
    study: Path
    gene_sets: Path

    @property
    def files(self) -> tuple[Path, ...]:
        """Every file written, FCS files first."""
        return (
            *self.fcs,
            self.strategy,
            self.counts,
            self.samples,
            self.clinical,
            self.truth,
            self.study,
            self.gene_sets,
        )


def _populations() -> list[dict[str, str]]:
    pops = []
    for parent, names in (
        ("CD8+", ("Tc17", "Tc1", "Tc2", "Tc17_classical")),
        ("CD4+", ("Th1-17", "Th1", "Th2", "Th17")),
    ):
        for name in names:
            pops.append(
                {
                    "name": name,
                    "path": f"{_CD3}/{parent}/{name}",
                    "parent": parent,
                    "parent_path": f"{_CD3}/{parent}",
                }
            )
    return pops


def _write_flow(
    out_dir: Path,
    cohort_patients: tuple[str, ...],
    baseline: tuple[bool, ...],
    tc17: dict[str, np.ndarray],
    ss_flow: np.random.SeedSequence,
    n_events: int,
) -> tuple[list[dict[str, str]], dict[str, Any]]:
    """Generate and write every FCS file; return the listing and per-file summaries."""
    (out_dir / "fcs").mkdir(parents=True, exist_ok=True)
    channels = channel_table()
    spill = spillover_matrix()
    listing: list[dict[str, str]] = []
    summaries: dict[str, Any] = {}
    for i, (patient, seq) in enumerate(
        zip(cohort_patients, ss_flow.spawn(len(cohort_patients)), strict=True)
    ):
        profile_seq, *file_seqs = seq.spawn(3)
        profile = draw_profile(np.random.default_rng(profile_seq))
        for k, tp in enumerate(("pre", "post")):
            if tp == "pre" and not baseline[i]:
                continue
            sample = f"{patient}_{tp}"
            events, summary = generate_events(
                np.random.default_rng(file_seqs[k]),
                n_events=n_events,
                profile=profile,
                tc17_pct=float(tc17[tp][i]),
            )
            start = _STUDY_START + dt.timedelta(days=7 * i + 14 * k)
            end = start + dt.timedelta(seconds=float(events[-1, -1]) * TIMESTEP)
            metadata = {
                "$TIMESTEP": f"{TIMESTEP}",
                "$CYT": "phenoflow-demo",
                "$SRC": sample,
                "$DATE": start.strftime("%d-%b-%Y").upper(),
                "$BTIM": start.strftime("%H:%M:%S"),
                "$ETIM": end.strftime("%H:%M:%S"),
                "PATIENT": patient,
                "TIMEPOINT": tp,
            }
            rel = f"fcs/{sample}.fcs"
            write_fcs(out_dir / rel, events, channels, metadata=metadata, spill=spill)
            listing.append({"sample": sample, "patient": patient, "timepoint": tp, "path": rel})
            summaries[sample] = summary
    return listing, summaries


def make_demo_study(
    out_dir: str | Path,
    *,
    seed: int = 20190419,
    n_events: int = 50_000,
    n_patients: int = 15,
    n_biopsy_patients: int = 10,
    n_genes: int = 20_000,
    missing_baseline_flow: int = 3,
    clinical_spread: Literal["sem", "sd"] = "sem",
) -> DemoStudy:
    """Write a synthetic version of the scleromyxedema IVIG study with known effects.

    Parameters
    ----------
    out_dir
        Folder to write into (created if needed; existing files are overwritten).
    seed
        Root seed; the same seed gives byte-identical files.
    n_events
        Events per FCS file.
    n_patients
        Patients (each with pre and post clinical scores and a post flow file).
    n_biopsy_patients
        Patients with paired pre/post skin-biopsy counts.
    n_genes
        Genes in the count matrix (the named interferon/TGF-beta genes included).
    missing_baseline_flow
        Patients without a usable baseline flow file (their pre file is not written).
    clinical_spread
        Read the paper's clinical ± values as SEMs (``"sem"``, default; see STUDY.md) or SDs.

    Returns
    -------
    DemoStudy
        The paths written.
    """
    if n_patients < 3:
        raise ValueError("n_patients must be at least 3")
    if not 1 <= n_biopsy_patients <= n_patients:
        raise ValueError("n_biopsy_patients must be between 1 and n_patients")
    if not 0 <= missing_baseline_flow <= n_patients - 3:
        raise ValueError("missing_baseline_flow must leave at least 3 patients with baseline flow")
    if n_genes <= len(IFN_GENES) + len(TGFB_GENES):
        raise ValueError(f"n_genes must exceed the {len(IFN_GENES) + len(TGFB_GENES)} named genes")
    if n_events < 1000:
        raise ValueError("n_events must be at least 1000")
    if clinical_spread not in ("sem", "sd"):
        raise ValueError("clinical_spread must be 'sem' or 'sd'")
    started = time.perf_counter()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    ss_cohort, ss_flow, ss_counts = np.random.SeedSequence(seed).spawn(3)

    cohort = draw_cohort(
        ss_cohort,
        n_patients=n_patients,
        n_biopsy_patients=n_biopsy_patients,
        missing_baseline_flow=missing_baseline_flow,
        spread=clinical_spread,
    )
    patients = cohort.patients
    tc17 = {"pre": cohort.tc17_pre, "post": cohort.tc17_post}
    listing, flow_summaries = _write_flow(
        out, patients, cohort.baseline_flow, tc17, ss_flow, n_events
    )
    logger.info("demo: wrote %d FCS files", len(listing))

    biopsied = tuple(p for p, b in zip(patients, cohort.biopsy, strict=True) if b)
    expr = simulate_counts(np.random.default_rng(ss_counts), patients=biopsied, n_genes=n_genes)
    paths = {
        name: out / name
        for name in (
            "strategy.yaml",
            "counts.csv",
            "samples.csv",
            "clinical.csv",
            "truth.json",
            "study.yaml",
            "gene_sets.gmt",
        )
    }
    # every file written atomically (temporary name, then rename): never a truncated input
    atomic_write_text(paths["counts.csv"], expr.counts.to_csv(lineterminator="\n"))
    atomic_write_text(paths["samples.csv"],
                      expr.samples.to_csv(index=False, lineterminator="\n"))
    atomic_write_text(paths["clinical.csv"],
                      cohort.clinical.to_csv(index=False, lineterminator="\n"))
    preset = importlib.resources.files("gating").joinpath("presets", STRATEGY_PRESET)
    atomic_write_bytes(paths["strategy.yaml"], preset.read_bytes())

    parameters = {
        "n_events": n_events,
        "n_patients": n_patients,
        "n_biopsy_patients": n_biopsy_patients,
        "n_genes": n_genes,
        "missing_baseline_flow": missing_baseline_flow,
        "clinical_spread": clinical_spread,
    }
    truth = build_truth(
        seed=seed,
        parameters=parameters,
        cohort=cohort,
        flow_files=flow_summaries,
        expression=expr.truth,
    )
    atomic_write_text(paths["truth.json"], json.dumps(truth, sort_keys=True, indent=2) + "\n")
    atomic_write_text(
        paths["gene_sets.gmt"],
        "".join(
            f"{name}\tplanted by the phenoflow demo\t" + "\t".join(genes) + "\n"
            for name, genes in expr.truth["gene_sets"].items()
        )
    )
    with_both = [p for p, b in zip(patients, cohort.baseline_flow, strict=True) if b]
    study = {
        "name": "scleromyxedema-ivig-demo",
        "seed": seed,
        "patients": list(patients),
        "timepoints": ["pre", "post"],
        "fcs": listing,
        "strategy": "strategy.yaml",
        "counts": "counts.csv",
        "samples": "samples.csv",
        "clinical": "clinical.csv",
        "truth": "truth.json",
        "outcomes": list(OUTCOMES),
        "populations_of_interest": _populations(),
        "columns": {"subject": "patient", "time": "timepoint"},
        "subgroup": "group",
        "gene_sets": ["gene_sets.gmt", "default"],
        "expression": {
            "design": "~ patient + timepoint",
            "contrast": ["timepoint", "post", "pre"],
            "alpha": 0.1,
            "score": "mean_z",
        },
        "correlations": [
            {"x": "Tc17", "y": "MMRSS", "timepoint": "pre", "method": "spearman"},
            {"x": "Tc17", "y": "MMRSS", "timepoint": "pre", "method": "pearson"},
            {"x": "MMRSS", "y": "HAQ_DI", "pool_timepoints": True, "method": "pearson"},
        ],
        "statistics": {"paired_test": "wilcoxon", "correlation": "spearman", "confidence": 0.95},
        "figures": {
            "gate_plot_patient": with_both[0],
            "key_populations": ["Tc17", "Tc1", "Th1-17", "Th17"],
        },
    }
    atomic_write_text(paths["study.yaml"], yaml.safe_dump(study, sort_keys=False))
    logger.info("demo: study written to %s in %.1f s", out, time.perf_counter() - started)
    return DemoStudy(
        out_dir=out,
        fcs=tuple(out / f["path"] for f in listing),
        strategy=paths["strategy.yaml"],
        counts=paths["counts.csv"],
        samples=paths["samples.csv"],
        clinical=paths["clinical.csv"],
        truth=paths["truth.json"],
        study=paths["study.yaml"],
        gene_sets=paths["gene_sets.gmt"],
    )
