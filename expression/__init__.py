"""Expression: biopsy count matrices, DESeq2-exact normalisation, paired DE, gene-set scores."""

__all__: list[str] = []
