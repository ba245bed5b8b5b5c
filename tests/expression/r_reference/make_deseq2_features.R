# R DESeq2 references for LRT, lfcThreshold/altHypothesis and several contrasts from one fit
# (tests/expression/test_de_features.py). Written for phenoflow; R is only needed to regenerate.
#
# Usage (from the repository root, R 4.2.2 + DESeq2 1.38.3 from Debian):
#   Rscript tests/expression/r_reference/make_deseq2_features.R [PASILLA_DIR [FULL_DIR]]
# PASILLA_DIR defaults to ../shared/realworld/rnaseq/pasilla (counts.tsv, samples.csv).
# FULL_DIR (optional, not committed): the complete per-gene tables of every case, for measuring
# agreement on all genes.
#
# Writes into tests/expression/r_reference/ (doubles as %.12g: 12 significant digits):
#   pasilla_features_summary.csv  one row per pasilla case: genes with padj < 0.1, padj NA count,
#                                 the padj-NA and padj < 0.1 patterns over all 14,599 genes (in
#                                 counts.tsv order) as hex of packed bits (first gene = most
#                                 significant bit of the first byte), filter threshold
#   pasilla_features_values.csv   every 40th gene with a p-value in the LRT case: log2FoldChange,
#                                 lfcSE, stat, pvalue, padj per case
#   features_sim_counts.csv       simulated paired study: 300 genes x 12 samples (4 patients x
#                                 timepoints t0, t1, t2; set.seed(14); rnbinom), genes x samples
#   features_sim_samples.csv      its sample sheet
#   features_sim_results.csv      per gene: log2FoldChange, lfcSE, stat, pvalue, padj for the
#                                 contrasts t1 vs t0, t2 vs t0, t2 vs t1 (one DESeq fit,
#                                 ~ patient + time, reference t0), the LRT ~ patient, and
#                                 t2 vs t1 with lfcThreshold 0.5 (greaterAbs)
suppressMessages(library(DESeq2))
options(warn = 1)
a <- commandArgs(trailingOnly = TRUE)
pdir <- if (length(a) >= 1) a[1] else "../shared/realworld/rnaseq/pasilla"
full_dir <- if (length(a) >= 2) a[2] else ""
out <- "tests/expression/r_reference"
g12 <- function(x) ifelse(is.na(x), "NA", sprintf("%.12g", x))
wcsv <- function(df, f, dir = out, fmt = g12) {
  for (n in names(df)) if (is.double(df[[n]])) df[[n]] <- fmt(df[[n]])
  write.csv(df, file.path(dir, f), row.names = FALSE, quote = FALSE)
}
g17 <- function(x) ifelse(is.na(x), "NA", sprintf("%.17g", x))
bits_hex <- function(b) {
  b <- c(as.integer(b), rep(0L, (8 - length(b) %% 8) %% 8))
  bytes <- colSums(matrix(b, nrow = 8) * c(128L, 64L, 32L, 16L, 8L, 4L, 2L, 1L))
  paste(sprintf("%02x", bytes), collapse = "")
}
cols <- c("log2FoldChange", "lfcSE", "stat", "pvalue", "padj")

# --- pasilla, ~ type + condition ----------------------------------------------------------------
cts <- as.matrix(read.table(file.path(pdir, "counts.tsv"), sep = "\t", header = TRUE, row.names = 1,
                            check.names = FALSE, comment.char = ""))
storage.mode(cts) <- "integer"
cd <- read.csv(file.path(pdir, "samples.csv"), row.names = 1, check.names = FALSE)[colnames(cts), ]
cd$condition <- relevel(factor(cd$condition), ref = "untreated")
cd$type <- factor(cd$type)
dds <- DESeqDataSetFromMatrix(cts, cd, design = ~ type + condition)
wald <- DESeq(dds, quiet = TRUE)
lrt <- DESeq(dds, test = "LRT", reduced = ~ type, quiet = TRUE)
cases <- list(
  LRT = results(lrt),
  greaterAbs = results(wald, contrast = c("condition", "treated", "untreated"), lfcThreshold = 1,
                       altHypothesis = "greaterAbs"),
  lessAbs = results(wald, contrast = c("condition", "treated", "untreated"), lfcThreshold = 1,
                    altHypothesis = "lessAbs"),
  greater = results(wald, contrast = c("condition", "treated", "untreated"), lfcThreshold = 1,
                    altHypothesis = "greater"),
  less = results(wald, contrast = c("condition", "treated", "untreated"), lfcThreshold = 1,
                 altHypothesis = "less")
)
summ <- do.call(rbind, lapply(names(cases), function(n) {
  r <- cases[[n]]
  data.frame(case = n, n_sig = sum(r$padj < 0.1, na.rm = TRUE), n_padj_na = sum(is.na(r$padj)),
             n_pvalue_na = sum(is.na(r$pvalue)),
             filter_threshold = unname(metadata(r)$filterThreshold),
             padj_na_bits = bits_hex(is.na(r$padj)),
             sig_bits = bits_hex(!is.na(r$padj) & r$padj < 0.1))
}))
wcsv(summ, "pasilla_features_summary.csv")
keep <- which(!is.na(cases$LRT$pvalue))
keep <- keep[seq(1, length(keep), by = 40)]
vals <- data.frame(gene = rownames(cts)[keep])
for (n in names(cases)) {
  r <- as.data.frame(cases[[n]])[keep, ]
  for (c in cols) vals[[paste0(n, ".", c)]] <- r[[c]]
}
wcsv(vals, "pasilla_features_values.csv")
if (nzchar(full_dir)) {
  dir.create(full_dir, showWarnings = FALSE, recursive = TRUE)
  for (n in names(cases)) wcsv(as.data.frame(cases[[n]]), paste0("pasilla_", n, ".csv"),
                               dir = full_dir, fmt = g17)
}

# --- simulated paired study, 3 timepoints ----------------------------------------------------------
set.seed(14)
n_genes <- 300; patients <- paste0("P", 1:4); times <- c("t0", "t1", "t2")
sheet <- data.frame(patient = rep(patients, each = 3), time = rep(times, 4))
rownames(sheet) <- paste0(sheet$patient, "_", sheet$time)
base <- exp(rnorm(n_genes, 4, 1.6))
pat <- matrix(rnorm(n_genes * 4, 0, 0.4), n_genes)
eff <- cbind(0, rnorm(n_genes, 0, 0.8) * (runif(n_genes) < 0.3),
             rnorm(n_genes, 0, 0.8) * (runif(n_genes) < 0.3))
sf <- exp(rnorm(12, 0, 0.2))
disp <- 0.04 + 0.8 / base
mu <- base * exp(pat[, match(sheet$patient, patients)] + eff[, match(sheet$time, times)]) *
  rep(sf, each = n_genes)
counts <- matrix(rnbinom(length(mu), mu = mu, size = rep(1 / disp, 12)), n_genes)
counts[n_genes, ] <- 0L                                          # all zero
counts[n_genes - 1, sheet$time != "t0"] <- 0L                    # zero in t1 and t2
counts[n_genes - 2, sheet$time == "t1"] <- 0L                    # zero in t1
counts[n_genes - 3, 5] <- counts[n_genes - 3, 5] * 40L + 500L    # an outlier (Cook's)
dimnames(counts) <- list(sprintf("g%03d", seq_len(n_genes)), rownames(sheet))
write.csv(data.frame(gene = rownames(counts), counts, check.names = FALSE),
          file.path(out, "features_sim_counts.csv"), row.names = FALSE, quote = FALSE)
write.csv(data.frame(sample = rownames(sheet), sheet), file.path(out, "features_sim_samples.csv"),
          row.names = FALSE, quote = FALSE)
sheet$patient <- factor(sheet$patient); sheet$time <- factor(sheet$time, levels = times)
sim <- DESeqDataSetFromMatrix(counts, sheet, design = ~ patient + time)
sw <- DESeq(sim, quiet = TRUE)
sl <- DESeq(sim, test = "LRT", reduced = ~ patient, quiet = TRUE)
sim_cases <- list(
  t1_t0 = results(sw, contrast = c("time", "t1", "t0")),
  t2_t0 = results(sw, contrast = c("time", "t2", "t0")),
  t2_t1 = results(sw, contrast = c("time", "t2", "t1")),
  t0_t1 = results(sw, contrast = c("time", "t0", "t1")),
  LRT = results(sl),
  t2_t1_thr = results(sw, contrast = c("time", "t2", "t1"), lfcThreshold = 0.5)
)
sv <- data.frame(gene = rownames(counts))
for (n in names(sim_cases)) {
  r <- as.data.frame(sim_cases[[n]])
  for (c in cols) sv[[paste0(n, ".", c)]] <- r[[c]]
}
wcsv(sv, "features_sim_results.csv")
