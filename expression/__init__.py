"""Expression: biopsy count matrices, DESeq2-exact normalisation, paired DE, gene-set scores."""

from expression._de import (
    DEFit,
    DEResult,
    de_file,
    de_fit,
    design_variables,
    differential_expression,
)
from expression._design import PreparedDesign, prepare_design
from expression._genesets import (
    default_gene_sets,
    geneset_scores,
    paired_score_tests,
    read_gmt,
)
from expression._io import OutputError, check_output, read_counts, read_sample_sheet, write_matrix
from expression._normalize import cpm, log2p1, normalize_counts, normalize_file
from expression._paired import PairedMethod, PairedTest, Summary, WilcoxonExact, paired_test
from expression._plot import (
    paired_slope_plot,
    plot_mean_sd,
    plot_paired_scores,
    plot_size_factors,
    plot_volcano,
)
from expression._size_factors import SizeFactorFit, fit_size_factors, log_geo_means, size_factors
from expression._tximport import read_quantifications
from expression._validate import CountsError, OrientationError, validate_counts
from expression._vst import vst

__all__: list[str] = [
    "CountsError",
    "DEFit",
    "DEResult",
    "OrientationError",
    "OutputError",
    "PairedMethod",
    "PairedTest",
    "PreparedDesign",
    "SizeFactorFit",
    "Summary",
    "WilcoxonExact",
    "check_output",
    "cpm",
    "de_file",
    "de_fit",
    "default_gene_sets",
    "design_variables",
    "differential_expression",
    "fit_size_factors",
    "geneset_scores",
    "log2p1",
    "log_geo_means",
    "normalize_counts",
    "normalize_file",
    "paired_score_tests",
    "paired_slope_plot",
    "paired_test",
    "plot_mean_sd",
    "plot_paired_scores",
    "plot_size_factors",
    "plot_volcano",
    "prepare_design",
    "read_counts",
    "read_gmt",
    "read_quantifications",
    "read_sample_sheet",
    "size_factors",
    "validate_counts",
    "vst",
    "write_matrix",
]
