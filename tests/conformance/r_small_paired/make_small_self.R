# R DESeq2 against itself on the small paired designs, for
# tests/conformance/test_deseq2_small_paired.py (written for phenoflow; R is not needed to run the
# tests, only to regenerate this CSV).
#
# Usage (from the repository root, R 4.2.2 + DESeq2 1.38.3 from Debian, reference BLAS):
#   Rscript tests/conformance/r_small_paired/make_small_self.R
#
# For 2, 3 and 4 patients (counts_*patients.csv, samples_*patients.csv beside this script),
# DESeq(~ patient + timepoint) + results(contrast = timepoint post vs pre) is run twice: samples
# in the file's order and in reverse order (the same data and model; only the order of
# floating-point operations changes). Writes self_agreement.csv, one row per design: genes with
# a p-value, how many agree within 1e-6 relative, the largest relative difference, whether the
# padj NA pattern is the same, and the padj < 0.1 counts of both runs.
suppressMessages(library(DESeq2))
dir <- "tests/conformance/r_small_paired"
run <- function(n, reverse) {
  cts <- as.matrix(read.csv(file.path(dir, sprintf("counts_%dpatients.csv", n)), row.names = 1,
                            check.names = FALSE))
  storage.mode(cts) <- "integer"
  if (reverse) cts <- cts[, rev(seq_len(ncol(cts)))]
  cd <- read.csv(file.path(dir, sprintf("samples_%dpatients.csv", n)), row.names = 1,
                 stringsAsFactors = FALSE)[colnames(cts), , drop = FALSE]
  cd$patient <- factor(cd$patient)
  cd$timepoint <- relevel(factor(cd$timepoint), ref = "pre")
  dds <- suppressMessages(DESeq(DESeqDataSetFromMatrix(cts, cd, design = ~ patient + timepoint),
                                quiet = TRUE))
  as.data.frame(results(dds, contrast = c("timepoint", "post", "pre")))
}
rows <- list()
for (n in 2:4) {
  d <- run(n, FALSE)
  r <- run(n, TRUE)[rownames(d), ]
  ok <- !is.na(d$pvalue)
  rel <- abs(r$pvalue[ok] - d$pvalue[ok]) / d$pvalue[ok]
  rows[[n]] <- data.frame(n_patients = n, n_pvalues = sum(ok), n_within_1e6 = sum(rel < 1e-6),
                          max_rel = sprintf("%.17g", max(rel)),
                          same_padj_na = identical(is.na(d$padj), is.na(r$padj)),
                          n_padj_lt_0.1 = sum(d$padj < 0.1, na.rm = TRUE),
                          n_padj_lt_0.1_reversed = sum(r$padj < 0.1, na.rm = TRUE))
}
write.csv(do.call(rbind, rows), file.path(dir, "self_agreement.csv"), row.names = FALSE, quote = FALSE)
