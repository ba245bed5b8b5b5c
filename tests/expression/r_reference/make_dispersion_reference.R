# R references for tests/expression/test_r_dispersion.py: DESeq2's gene-wise dispersion inputs
# and its line search's log posterior, derivative and iteration counts, for a bit-for-bit check
# (written for phenoflow; R is not needed to run the tests, only to regenerate these CSVs).
#
# Usage (from the repository root, R 4.2.2 + DESeq2 1.38.3 from Debian, reference BLAS):
#   Rscript tests/expression/r_reference/make_dispersion_reference.R
#
# Writes into tests/expression/r_reference/ (all doubles as %.17g, i.e. exact):
#   digamma.csv          x, R's digamma(x) and lgamma(x) over (0.001, 1e9)
#   dispersion_cases.csv one row per gene of a 7-sample, two-group data set (the pasilla size
#                        factors; the first gene is pasilla's FBgn0011300, whose first line-search
#                        step is decided by the last bits of the log posterior): counts, R's
#                        baseMean/baseVar, rough and moments estimates, the linear-model mu,
#                        fitDisp's log posterior and derivative at the start and its iterations
suppressMessages(library(DESeq2))
out <- "tests/expression/r_reference"
g17 <- function(x) ifelse(is.na(x), "NA", sprintf("%.17g", x))
wcsv <- function(df, f) {
  for (n in names(df)) if (is.double(df[[n]])) df[[n]] <- g17(df[[n]])
  write.csv(df, file.path(out, f), row.names = FALSE, quote = FALSE)
}
set.seed(3)
x <- c(runif(150, 0.001, 1), runif(150, 1, 9), runif(150, 9, 200), exp(runif(150, log(200), log(1e9))))
wcsv(data.frame(x = x, digamma = digamma(x), lgamma = lgamma(x)), "digamma.csv")

sf <- c(1.1382629765908434, 1.7930003553503908, 0.64954703060372565, 0.75168922342648814,
        1.635575096576068, 0.76126976804231616, 0.83265263532883327)
cond <- factor(c(rep("untreated", 4), rep("treated", 3)), levels = c("untreated", "treated"))
n_sim <- 299
mean_sim <- exp(runif(n_sim, log(5), log(5000)))
disp_sim <- exp(runif(n_sim, log(0.005), log(0.5)))
sim <- t(sapply(seq_len(n_sim), function(i) rnbinom(7, mu = mean_sim[i] * sf * ifelse(cond == "treated", exp(rnorm(1, 0, 0.3)), 1), size = 1 / disp_sim[i])))
cts <- rbind(c(1338, 2625, 819, 933, 2091, 757, 820), sim)
storage.mode(cts) <- "integer"
rownames(cts) <- c("FBgn0011300", sprintf("sim%03d", seq_len(n_sim)))
cts <- cts[rowSums(cts) > 0, ]
colnames(cts) <- sprintf("s%d", 1:7)
dds <- DESeqDataSetFromMatrix(cts, data.frame(condition = cond, row.names = colnames(cts)), ~ condition)
sizeFactors(dds) <- sf
dds <- DESeq2:::getBaseMeansAndVariances(dds)
mm <- model.matrix(~ condition, colData(dds))
rough <- DESeq2:::roughDispEstimate(counts(dds, normalized = TRUE), mm)
mom <- DESeq2:::momentsDispEstimate(dds)
alpha <- pmin(pmax(1e-8, pmin(rough, mom)), 10)
mu <- DESeq2:::linearModelMuNormalized(dds, mm)
mu[mu < 0.5] <- 0.5
fit <- function(maxit) DESeq2:::fitDispWrapper(ySEXP = counts(dds), xSEXP = mm, mu_hatSEXP = mu,
  log_alphaSEXP = log(alpha), log_alpha_prior_meanSEXP = log(alpha), log_alpha_prior_sigmasqSEXP = 1,
  min_log_alphaSEXP = log(1e-9), kappa_0SEXP = 1, tolSEXP = 1e-6, maxitSEXP = maxit, usePriorSEXP = FALSE,
  weightsSEXP = matrix(1, nrow(dds), ncol(dds)), useWeightsSEXP = FALSE, weightThresholdSEXP = 0.01,
  useCRSEXP = TRUE)
r <- fit(100L)
res <- data.frame(gene = rownames(dds), as.data.frame(counts(dds)))
colnames(res)[2:8] <- sprintf("count%d", 1:7)
res <- cbind(res, base_mean = mcols(dds)$baseMean, base_var = mcols(dds)$baseVar, rough = rough,
             moments = mom, alpha_init = alpha)
for (j in 1:7) res[[sprintf("mu%d", j)]] <- mu[, j]
res <- cbind(res, initial_lp = r$initial_lp, initial_dlp = r$initial_dlp, iter = r$iter,
             log_alpha = r$log_alpha, last_lp = r$last_lp)
wcsv(res, "dispersion_cases.csv")
