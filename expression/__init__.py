"""Expression: biopsy count matrices, DESeq2-exact normalisation, paired DE, gene-set scores.

The names load lazily (PEP 562): ``from expression import cpm`` imports the normalisation code
only, not pydeseq2, scipy.stats or matplotlib; each command pays only for what it uses.
"""

from engine.runtime import lazy_namespace

#: public name -> the module that defines it
_EXPORTS: dict[str, str] = {
    "CountTable": "expression._io",
    "CountsError": "expression._validate",
    "DEFit": "expression._de",
    "DEResult": "expression._de",
    "OrientationError": "expression._validate",
    "OutputError": "expression._io",
    "PairedMethod": "expression._paired",
    "PairedTest": "expression._paired",
    "PreparedDesign": "expression._design",
    "SizeFactorFit": "expression._size_factors",
    "Summary": "expression._paired",
    "TrendFitError": "expression._dispersion",
    "WilcoxonExact": "expression._paired",
    "benjamini_hochberg": "expression._multiple",
    "check_output": "expression._io",
    "cpm": "expression._normalize",
    "de_file": "expression._de",
    "de_fit": "expression._de",
    "default_gene_sets": "expression._genesets",
    "design_variables": "expression._de",
    "differential_expression": "expression._de",
    "fit_size_factors": "expression._size_factors",
    "geneset_scores": "expression._genesets",
    "log2p1": "expression._normalize",
    "log_geo_means": "expression._size_factors",
    "normalize_counts": "expression._normalize",
    "normalize_file": "expression._normalize",
    "paired_score_tests": "expression._genesets",
    "paired_slope_plot": "expression._plot",
    "paired_test": "expression._paired",
    "plot_mean_sd": "expression._plot",
    "plot_paired_scores": "expression._plot",
    "plot_size_factors": "expression._plot",
    "plot_volcano": "expression._plot",
    "prepare_design": "expression._design",
    "read_count_table": "expression._io",
    "read_counts": "expression._io",
    "read_gmt": "expression._genesets",
    "read_quantifications": "expression._tximport",
    "read_sample_sheet": "expression._io",
    "size_factors": "expression._size_factors",
    "validate_counts": "expression._validate",
    "vst": "expression._vst",
    "write_matrix": "expression._io",
}

__all__: list[str] = sorted(_EXPORTS)


__getattr__, __dir__ = lazy_namespace(__name__, _EXPORTS, globals())
