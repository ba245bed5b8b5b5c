# Small paired designs (2, 3 and 4 patients, pre/post) referenced with R DESeq2 1.38.3:
# 1-3 residual degrees of freedom, where R estimates the dispersion prior variance by
# simulation. Run from this folder: Rscript make_small_paired.R (writes counts_*.csv, results_*.csv)
suppressPackageStartupMessages(library(DESeq2))
set.seed(31)
n_genes <- 1200
for (n_patients in 2:4) {
  mean_expr <- rlnorm(n_genes, meanlog = 4, sdlog = 1.6)
  disp <- (0.05 + 2 / mean_expr) * rlnorm(n_genes, 0, 1.2)  # genes scattered around the trend
  patient_effect <- matrix(rnorm(n_genes * n_patients, 0, 0.4), n_genes, n_patients)
  lfc <- ifelse(runif(n_genes) < 0.1, rnorm(n_genes, 0, 1.5), 0)
  cols <- list(); sheet <- data.frame()
  for (p in 1:n_patients) for (t in c("pre", "post")) {
    mu <- mean_expr * exp(patient_effect[, p] + (t == "post") * lfc * log(2))
    cols[[paste0("P", p, "_", t)]] <- rnbinom(n_genes, mu = mu, size = 1 / disp)
    sheet <- rbind(sheet, data.frame(sample = paste0("P", p, "_", t), patient = paste0("P", p), timepoint = t))
  }
  counts <- do.call(cbind, cols)
  rownames(counts) <- sprintf("g%04d", seq_len(n_genes))
  write.csv(counts, sprintf("counts_%dpatients.csv", n_patients))
  write.csv(sheet, sprintf("samples_%dpatients.csv", n_patients), row.names = FALSE)
  sheet$patient <- factor(sheet$patient); sheet$timepoint <- relevel(factor(sheet$timepoint), "pre")
  dds <- DESeqDataSetFromMatrix(counts, sheet, ~ patient + timepoint)
  dds <- DESeq(dds, quiet = TRUE)
  res <- results(dds, contrast = c("timepoint", "post", "pre"))
  out <- data.frame(gene = rownames(res), pvalue = sprintf("%.17g", res$pvalue), padj = sprintf("%.17g", res$padj))
  write.csv(out, sprintf("results_%dpatients.csv", n_patients), row.names = FALSE)
  cat(n_patients, "patients: prior var", attr(dispersionFunction(dds), "dispPriorVar"),
      "sig", sum(res$padj < 0.1, na.rm = TRUE), "\n")
}
writeLines(capture.output(sessionInfo())[1:3], "sessionInfo.txt")
