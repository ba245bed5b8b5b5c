# R DESeq2 against itself on pasilla, for tests/conformance/test_deseq2_pasilla.py (written for
# phenoflow; R is not needed to run the tests, only to regenerate this CSV).
#
# Usage (from the repository root, R 4.2.2 + DESeq2 1.38.3 from Debian, reference BLAS):
#   Rscript tests/conformance/r_pasilla_self/make_pasilla_self.R [PASILLA_DIR]
# PASILLA_DIR defaults to ../shared/realworld/rnaseq/pasilla (counts.tsv, samples.csv).
#
# For each design, DESeq() + results(contrast = condition treated vs untreated) is run twice:
# samples in the file's order and in reverse order (the same data and model; only the order of
# floating-point operations changes). Writes self_agreement.csv, one row per design: genes with
# a p-value, how many agree within 1e-6 relative, the largest relative difference, whether the
# padj NA pattern is the same, and the padj < 0.1 counts of both runs.
suppressMessages(library(DESeq2))
a <- commandArgs(trailingOnly = TRUE)
dir <- if (length(a) >= 1) a[1] else "../shared/realworld/rnaseq/pasilla"
out <- "tests/conformance/r_pasilla_self"
cts0 <- as.matrix(read.table(file.path(dir, "counts.tsv"), sep = "\t", header = TRUE, row.names = 1,
                             check.names = FALSE, comment.char = ""))
storage.mode(cts0) <- "integer"
run <- function(design, reverse) {
  cts <- if (reverse) cts0[, rev(seq_len(ncol(cts0)))] else cts0
  cd <- read.csv(file.path(dir, "samples.csv"), row.names = 1, stringsAsFactors = FALSE)[colnames(cts), , drop = FALSE]
  for (v in all.vars(design)) cd[[v]] <- factor(cd[[v]])
  cd$condition <- relevel(cd$condition, ref = "untreated")
  dds <- suppressMessages(DESeq(DESeqDataSetFromMatrix(cts, cd, design = design), quiet = TRUE))
  as.data.frame(results(dds, contrast = c("condition", "treated", "untreated")))
}
rows <- list()
for (f in c("~ condition", "~ type + condition")) {
  d <- run(as.formula(f), FALSE)
  r <- run(as.formula(f), TRUE)[rownames(d), ]
  ok <- !is.na(d$pvalue)
  rel <- abs(r$pvalue[ok] - d$pvalue[ok]) / d$pvalue[ok]
  rows[[f]] <- data.frame(design = f, n_pvalues = sum(ok), n_within_1e6 = sum(rel < 1e-6),
                          max_rel = sprintf("%.17g", max(rel)),
                          same_padj_na = identical(is.na(d$padj), is.na(r$padj)),
                          n_padj_lt_0.1 = sum(d$padj < 0.1, na.rm = TRUE),
                          n_padj_lt_0.1_reversed = sum(r$padj < 0.1, na.rm = TRUE))
}
write.csv(do.call(rbind, rows), file.path(out, "self_agreement.csv"), row.names = FALSE, quote = FALSE)
writeLines(capture.output(sessionInfo()), file.path(out, "sessionInfo.txt"))
