# tximport references for tests/expression/test_tximport.py (written for phenoflow; R is not
# needed to run the tests, only to regenerate these files).
#
# Usage (from the repository root; R 4.2.2, tximport 1.26.1 and DESeq2 1.38.3 from Debian:
# apt-get install r-bioc-tximport r-bioc-deseq2):
#   Rscript tests/expression/r_reference/make_tximport.R
#
# 1. Simulates (set.seed(14)) small quantifier outputs for 4 samples, 10 genes, 24 transcripts:
#    salmon quant.sf, kallisto abundance.tsv, RSEM isoforms.results and genes.results, written
#    as the tools write them, under tests/expression/r_reference/tximport/. The simulation has
#    a gene with zero abundance in every sample, a gene with zero abundance in one sample,
#    single-isoform genes, an RSEM transcript with effective length 0, estimated counts ending
#    in .5 (R's round() goes half to even) and per-sample effective lengths (as salmon's are).
# 2. Runs tximport() on them and writes tximport.csv (one row per case, matrix and gene or transcript: case, matrix, row,
#    S1..S4; doubles as %.17g, i.e. exact) for the cases listed in `cases` below, and
#    DESeqDataSetFromTximport()'s counts (matrix "deseq2_counts") for the countsFromAbundance
#    = "no" cases.
suppressMessages({
  library(tximport)
  library(DESeq2)
})
options(warn = 1)
out <- "tests/expression/r_reference/tximport"
dir.create(out, showWarnings = FALSE, recursive = TRUE)
set.seed(14)

samples <- paste0("S", 1:4)
n_tx_per_gene <- c(3, 1, 4, 2, 1, 3, 2, 3, 2, 3)  # 24 transcripts
genes <- sprintf("ENSG%011d", seq_along(n_tx_per_gene))
gene_of <- rep(genes, n_tx_per_gene)
tx <- sprintf("ENST%011d.%d", seq_along(gene_of), 1 + seq_along(gene_of) %% 3)
n_tx <- length(tx)
tx_len <- as.integer(round(exp(runif(n_tx, log(250), log(6000)))))
tx_len[5] <- 120L  # short: RSEM effective length 0

# true abundance (reads) per transcript and sample
base <- exp(rnorm(n_tx, 4, 2))
reads <- sapply(seq_along(samples), function(j) base * exp(rnorm(n_tx, 0, 0.4)))
reads[gene_of == genes[9], ] <- 0            # gene 9: zero in every sample
reads[gene_of == genes[8], 2] <- 0           # gene 8: zero in sample 2
reads[5, ] <- 0                              # the short transcript is never seen
reads[tx == tx[gene_of == genes[2]], ] <- c(2.5, 3.5, 10.5, 11.5)  # single isoform, .5 counts
reads <- round(reads, 3)
reads[reads < 0.001 & reads > 0] <- 0
reads[, ] <- pmax(reads, 0)

write_tsv <- function(df, path) {
  write.table(df, path, sep = "\t", quote = FALSE, row.names = FALSE)
}
fmt6 <- function(x) trimws(formatC(x, digits = 6, format = "g"))
fmt3 <- function(x) sprintf("%.3f", x)
fmt2 <- function(x) sprintf("%.2f", x)
tpm_of <- function(count, eff) {
  rate <- ifelse(eff > 0, count / eff, 0)
  rate / sum(rate) * 1e6
}

for (j in seq_along(samples)) {
  s <- samples[j]
  frag <- 180 + 20 * j  # per-sample mean fragment length
  # salmon
  eff <- pmax(tx_len - frag + round(runif(n_tx, -5, 5), 3), 1)
  eff <- as.numeric(fmt3(eff))
  dir.create(file.path(out, "salmon", s), showWarnings = FALSE, recursive = TRUE)
  write_tsv(data.frame(Name = tx, Length = tx_len, EffectiveLength = fmt3(eff),
                       TPM = fmt6(tpm_of(reads[, j], eff)), NumReads = fmt3(reads[, j])),
            file.path(out, "salmon", s, "quant.sf"))
  # kallisto
  keff <- as.numeric(fmt6(pmax(tx_len - frag - 3 + runif(n_tx, 0, 2), 1)))
  kc <- round(reads[, j] * exp(rnorm(n_tx, 0, 0.05)), 5)
  dir.create(file.path(out, "kallisto", s), showWarnings = FALSE, recursive = TRUE)
  write_tsv(data.frame(target_id = tx, length = tx_len, eff_length = fmt6(keff),
                       est_counts = fmt6(kc), tpm = fmt6(tpm_of(kc, keff))),
            file.path(out, "kallisto", s, "abundance.tsv"))
  # RSEM (isoforms and genes)
  reff <- pmax(tx_len - frag, 0)
  reff[5] <- 0
  rc <- round(reads[, j], 2)
  rtpm <- tpm_of(rc, reff)
  rfpkm <- ifelse(reff > 0, rc / reff, 0) / sum(rc) * 1e9
  gtpm <- tapply(rtpm, gene_of, sum)
  iso <- ifelse(gtpm[gene_of] > 0, rtpm / gtpm[gene_of] * 100, 0)
  dir.create(file.path(out, "rsem"), showWarnings = FALSE)
  write_tsv(data.frame(transcript_id = tx, gene_id = gene_of, length = tx_len,
                       effective_length = fmt2(reff), expected_count = fmt2(rc),
                       TPM = fmt2(rtpm), FPKM = fmt2(rfpkm), IsoPct = fmt2(iso)),
            file.path(out, "rsem", paste0(s, ".isoforms.results")))
  w <- function(v) {
    tot <- tapply(rtpm, gene_of, sum)
    num <- tapply(rtpm * v, gene_of, sum)
    ifelse(tot > 0, num / tot, tapply(v, gene_of, mean))
  }
  write_tsv(data.frame(gene_id = genes,
                       `transcript_id(s)` = tapply(tx, gene_of, paste, collapse = ","),
                       length = fmt2(w(tx_len)), effective_length = fmt2(w(reff)),
                       expected_count = fmt2(tapply(rc, gene_of, sum)),
                       TPM = fmt2(gtpm), FPKM = fmt2(tapply(rfpkm, gene_of, sum)),
                       check.names = FALSE),
            file.path(out, "rsem", paste0(s, ".genes.results")))
}

tx2gene <- data.frame(TXNAME = tx, GENEID = gene_of)
# the table also lists a transcript absent from the quantifications (tximport ignores it)
write.csv(rbind(tx2gene, data.frame(TXNAME = "ENST99999999999.1", GENEID = genes[1])),
          file.path(out, "tx2gene.csv"), row.names = FALSE, quote = FALSE)
# unversioned ids (ignoreTxVersion) and a table missing two transcripts (tximport drops them)
write.csv(data.frame(TXNAME = sub("\\..*", "", tx), GENEID = gene_of),
          file.path(out, "tx2gene_unversioned.csv"), row.names = FALSE, quote = FALSE)
write.csv(tx2gene[-c(3, 11), ], file.path(out, "tx2gene_partial.csv"), row.names = FALSE,
          quote = FALSE)
t2g <- read.csv(file.path(out, "tx2gene.csv"))
t2g_unv <- read.csv(file.path(out, "tx2gene_unversioned.csv"))
t2g_part <- read.csv(file.path(out, "tx2gene_partial.csv"))

files <- function(type) {
  f <- switch(type,
    salmon = file.path(out, "salmon", samples, "quant.sf"),
    kallisto = file.path(out, "kallisto", samples, "abundance.tsv"),
    rsem = file.path(out, "rsem", paste0(samples, ".isoforms.results")),
    rsem_genes = file.path(out, "rsem", paste0(samples, ".genes.results")))
  names(f) <- samples
  f
}
run <- function(type, cfa, t2g = NULL, ...) {
  suppressMessages(tximport(files(type), type = sub("_genes", "", type),
                            countsFromAbundance = cfa, tx2gene = t2g, ...))
}
cases <- list()
for (type in c("salmon", "kallisto", "rsem")) {
  for (cfa in c("no", "scaledTPM", "lengthScaledTPM")) {
    cases[[paste(type, cfa, sep = ":")]] <- run(type, cfa, t2g)
  }
}
cases[["rsem_genes:no"]] <- run("rsem_genes", "no")
cases[["salmon:no:txout"]] <- run("salmon", "no", txOut = TRUE)
cases[["salmon:lengthScaledTPM:txout"]] <- run("salmon", "lengthScaledTPM", txOut = TRUE)
cases[["salmon:no:unversioned"]] <- run("salmon", "no", t2g_unv, ignoreTxVersion = TRUE)
cases[["salmon:lengthScaledTPM:partial"]] <- run("salmon", "lengthScaledTPM", t2g_part)

g17 <- function(x) ifelse(is.na(x), "NA", sprintf("%.17g", x))
wide <- function(case, what, m) {
  values <- apply(m, 2, g17)
  data.frame(case = case, matrix = what, row = rownames(m), matrix(values, nrow = nrow(m),
             dimnames = list(NULL, colnames(m))))
}
rows <- list()
for (case in names(cases)) {
  txi <- cases[[case]]
  for (what in c("counts", "abundance", "length")) {
    rows[[length(rows) + 1]] <- wide(case, what, txi[[what]])
  }
  if (txi$countsFromAbundance == "no" && !grepl("txout", case)) {
    coldata <- data.frame(row.names = samples, x = factor(c("a", "a", "b", "b")))
    dds <- suppressMessages(DESeqDataSetFromTximport(txi, coldata, ~x))
    rows[[length(rows) + 1]] <- wide(case, "deseq2_counts", counts(dds))
  }
}
write.csv(do.call(rbind, rows), file.path(out, "tximport.csv"), row.names = FALSE, quote = FALSE)
writeLines(c(paste("tximport", packageVersion("tximport")),
             paste("DESeq2", packageVersion("DESeq2")), R.version.string),
           file.path(out, "versions.txt"))
