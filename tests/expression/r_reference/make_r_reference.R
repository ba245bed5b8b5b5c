# R references for tests/expression/test_r_numerics.py (written for phenoflow; R is not needed
# to run the tests, only to regenerate these CSVs).
#
# Usage (from the repository root, R 4.2.2 + DESeq2 1.38.3 from Debian):
#   Rscript tests/expression/r_reference/make_r_reference.R [PASILLA_COUNTS]
# PASILLA_COUNTS defaults to ../shared/realworld/rnaseq/pasilla/counts.tsv (the real pasilla
# counts; its samples.csv sits beside it).
#
# Writes into tests/expression/r_reference/ (all doubles as %.17g, i.e. exact):
#   rng.csv          R's random streams: set.seed states, runif/rnorm/rexp/rgamma/rchisq draws,
#                    the DESeq2 draw pattern (rchisq(1e4, df) then rnorm(1e4, 0, sd)) including
#                    checkpoints of the full 200-step sequence, and qnorm at chosen p
#   prior_cases.csv  one row per case: df, n residuals, R's dispPriorVar, which.min index
#   prior_hist.csv   per case, the observed residual histogram counts (breaks -20:20/2)
#   prior_kl.csv     R's klDivs (the input of DESeq2's loess), one column per case
#   prior_fit.csv    per case, R's predict(loess(klDivs ~ grid, span = .2), fine grid) (every
#                    25th point, the last, and the 11 points around the minimum)
#   prior_resid.csv  residuals of the cases built from given residual vectors (bin edges etc.)
#   loess.csv        loess inputs and R's predictions for synthetic curves
#   lowess.csv       lowess inputs and R's fits
suppressMessages(library(DESeq2))
options(warn = 1)
a <- commandArgs(trailingOnly = TRUE)
pasilla <- if (length(a) >= 1) a[1] else "../shared/realworld/rnaseq/pasilla/counts.tsv"
out <- "tests/expression/r_reference"
dir.create(out, showWarnings = FALSE, recursive = TRUE)
g17 <- function(x) ifelse(is.na(x), "NA", sprintf("%.17g", x))
wcsv <- function(df, f) {
  for (n in names(df)) if (is.double(df[[n]])) df[[n]] <- g17(df[[n]])
  write.csv(df, file.path(out, f), row.names = FALSE, quote = FALSE)
}

# ---------------------------------------------------------------- random streams
rows <- list()
add <- function(case, v) rows[[length(rows) + 1]] <<- data.frame(case = case, i = seq_along(v), value = as.double(v))
for (s in c(2L, 42L, -7L, 123456789L)) {
  set.seed(s)
  st <- .Random.seed[-1]
  add(sprintf("seed_state_%d", s), c(st[1:6], st[620:625], sum(as.double(st))))
}
set.seed(42); add("runif_42", runif(40))
set.seed(42); add("rnorm_42", rnorm(40))
set.seed(7); add("rnorm_7_mean3_sd0.5", rnorm(40, 3, 0.5))
set.seed(7); z0 <- rnorm(5, 0, 0); add("rnorm_7_sd0_then_runif", c(z0, runif(5)))
set.seed(3); add("rexp_3", rexp(60))
for (sh in c(0.3, 0.5, 1, 1.5, 2.5, 5, 20)) {
  set.seed(4); add(sprintf("rgamma_4_shape%g", sh), rgamma(20, sh))
}
set.seed(5); add("rgamma_5_shape0.7_scale3", rgamma(20, 0.7, scale = 3))
for (df in 1:3) {
  set.seed(2)
  x <- rchisq(1e4, df)
  y <- rnorm(1e4, 0, 0.5)
  idx <- c(1:10, seq(1000, 1e4, by = 1000))
  add(sprintf("pattern_df%d_chisq_idx", df), idx)
  add(sprintf("pattern_df%d_chisq", df), x[idx])
  add(sprintf("pattern_df%d_norm", df), y[idx])
  add(sprintf("pattern_df%d_sums", df), c(sum(x), sum(y)))
  # DESeq2's whole sequence: 200 pairs of draws, sd = sqrt(seq(0, 8, length = 200))
  grid <- seq(from = 0, to = 8, length = 200)
  set.seed(2)
  chk <- c()
  for (g in seq_along(grid)) {
    cx <- rchisq(1e4, df)
    nz <- rnorm(1e4, 0, sqrt(grid[g]))
    if (g %in% c(1, 2, 50, 100, 150, 199, 200)) chk <- c(chk, g, cx[1], cx[1e4], nz[1], nz[1e4], sum(cx), sum(nz))
  }
  add(sprintf("sequence_df%d_checkpoints", df), chk)
  add(sprintf("sequence_df%d_final_state", df), .Random.seed[-1][c(1:6, 620:625)])
}
ps <- c(1e-300, 1e-100, 1e-20, 1.3e-11, 1.4e-11, 1e-8, 0.001, 0.0749, 0.075, 0.0751, 0.2, 0.5,
        0.6, 0.925, 0.93, 0.999, 1 - 1e-10, 1 - 1e-15, 2^-27, 3 / 2^27)
add("qnorm_p", ps)
add("qnorm", qnorm(ps))
add("seq_0_8_200_check", c(seq(0, 8, length = 200)[c(1, 2, 3, 100, 150, 199, 200)],
                           seq(0, 8, length = 1000)[c(1, 2, 3, 500, 999, 1000)]))
wcsv(do.call(rbind, rows), "rng.csv")

# ---------------------------------------------------------------- prior variance
# capture DESeq2's klDivs (the loess input) when it calls stats::loess
trace(stats::loess, tracer = quote({
  e <- environment(formula)
  if (exists("klDivs", envir = e, inherits = FALSE))
    assign(".kl_capture", list(x = get("obsVarGrid", envir = e), y = get("klDivs", envir = e),
                               resid = get("obsDist", envir = e)), envir = globalenv())
}), print = FALSE)
brks <- -20:20 / 2
fine <- seq(from = 0, to = 8, length = 1000)
cases <- list(); hists <- list(); kls <- list(); fits <- list(); resids <- list()
record <- function(name, df, pv) {
  cap <- get(".kl_capture", envir = globalenv())
  h <- hist(cap$resid, breaks = brks, plot = FALSE)
  lf <- predict(loess(cap$y ~ cap$x, span = 0.2), fine)
  w <- which.min(lf)
  cases[[length(cases) + 1]] <<- data.frame(case = name, df = df, n = length(cap$resid),
                                            prior_var = pv, which_min = w)
  hists[[length(hists) + 1]] <<- data.frame(case = name, bin = seq_along(h$counts), count = h$counts)
  kls[[length(kls) + 1]] <<- data.frame(case = name, i = seq_along(cap$y), kl = cap$y)
  keep <- sort(unique(c(seq(1, 1000, by = 25), 1000, max(1, w - 5):min(1000, w + 5))))
  fits[[length(fits) + 1]] <<- data.frame(case = name, i = keep, fit = lf[keep])
}
run_deseq <- function(name, counts, coldata, design) {
  dds <- DESeqDataSetFromMatrix(counts, coldata, design)
  dds <- estimateSizeFactors(dds)
  dds <- suppressMessages(estimateDispersions(dds, quiet = TRUE))
  mm <- model.matrix(design, coldata)
  df <- nrow(mm) - ncol(mm)
  record(name, df, attr(dispersionFunction(dds), "dispPriorVar"))
}
cnt <- as.matrix(read.delim(pasilla, row.names = 1, check.names = FALSE))
smp <- read.csv(file.path(dirname(pasilla), "samples.csv"), row.names = 1)
smp$condition <- factor(smp$condition, levels = c("untreated", "treated"))
smp$type <- factor(smp$type)
pas <- list(
  pasilla_df1 = c("untreated1", "untreated2", "treated1"),
  pasilla_df2 = c("untreated1", "untreated2", "treated1", "treated2"),
  pasilla_df3 = c("untreated1", "untreated2", "untreated3", "treated1", "treated2"),
  pasilla_pe_df2 = c("untreated3", "untreated4", "treated2", "treated3"))
for (nm in names(pas)) {
  s <- pas[[nm]]
  run_deseq(nm, cnt[, s], smp[s, , drop = FALSE], ~ condition)
}
# ~ type + condition on 5 samples: m - p = 2
s5 <- c("untreated1", "untreated3", "untreated4", "treated1", "treated2")
run_deseq("pasilla_type_df2", cnt[, s5], smp[s5, , drop = FALSE], ~ type + condition)
# simulated paired designs, 2-4 patients, ~ patient + treatment (m - p = patients - 1)
for (np in 2:4) {
  set.seed(100 + np)
  G <- 3000
  mu0 <- exp(rnorm(G, 4, 1.5))
  disp <- 0.02 + 1 / mu0 + exp(rnorm(G, 0, c(0.9, 1.1, 1.3)[np - 1])) * 0.05
  lfc <- ifelse(runif(G) < 0.1, rnorm(G, 0, 1.5), 0)
  pat <- factor(rep(seq_len(np), each = 2))
  trt <- factor(rep(c("pre", "post"), np), levels = c("pre", "post"))
  peff <- matrix(rnorm(G * np, 0, 0.3), G, np)
  m <- sapply(seq_len(2 * np), function(j) mu0 * exp(peff[, as.integer(pat[j])] + (trt[j] == "post") * lfc))
  y <- matrix(rnbinom(G * 2 * np, mu = m, size = 1 / disp), G)
  colnames(y) <- paste0("s", seq_len(2 * np))
  cd <- data.frame(patient = pat, treatment = trt, row.names = colnames(y))
  run_deseq(sprintf("paired_%dpatients", np), y, cd, ~ patient + treatment)
}
# given residual vectors (values on and next to the bin edges, outside (-10, 10), big tails)
for (df in 1:3) {
  set.seed(200 + df)
  r <- c(rnorm(130, 0, c(1.2, 1.6, 2.0)[df]), -10, 10, -10.2, 10.7, -9.5, 9.5, 0, 0.5, -0.5,
         2, -3.5, 4 + 1e-9, -4 - 1e-9, rnorm(20, -2, 3))
  G <- length(r)
  m <- df + 2
  dds <- DESeqDataSetFromMatrix(matrix(10L, G, m), data.frame(g = factor(rep(c("a", "b"), length.out = m))), ~ g)
  mcols(dds)$allZero <- FALSE
  mcols(dds)$dispGeneEst <- exp(r)
  mcols(dds)$dispFit <- rep(1, G)
  f <- function(q) rep(1, length(q))
  attr(f, "varLogDispEsts") <- 1
  dds@dispersionFunction <- f
  mmat <- cbind(1, rep(c(0, 1), length.out = m))
  pv <- DESeq2:::estimateDispersionsPriorVar(dds, modelMatrix = mmat)
  nm <- sprintf("given_df%d", df)
  resids[[length(resids) + 1]] <- data.frame(case = nm, i = seq_len(G),
                                             resid = log(mcols(dds)$dispGeneEst) - log(mcols(dds)$dispFit))
  record(nm, df, pv)
}
untrace(stats::loess)
wcsv(do.call(rbind, cases), "prior_cases.csv")
wcsv(do.call(rbind, hists), "prior_hist.csv")
kw <- do.call(cbind, lapply(kls, function(k) k$kl)); colnames(kw) <- sapply(kls, function(k) k$case[1])
wcsv(as.data.frame(kw), "prior_kl.csv")
wcsv(do.call(rbind, fits), "prior_fit.csv")
wcsv(do.call(rbind, resids), "prior_resid.csv")

# ---------------------------------------------------------------- loess (synthetic)
lrows <- list(); prows <- list()
lcase <- function(name, x, y, span, degree = 2, newx) {
  fit <- loess(y ~ x, span = span, degree = degree)
  p <- predict(fit, newx)
  lrows[[length(lrows) + 1]] <<- data.frame(case = name, span = span, degree = degree, role = "data", x = x, y = y)
  prows[[length(prows) + 1]] <<- data.frame(case = name, span = span, degree = degree, role = "pred", x = newx, y = p)
}
set.seed(11)
xg <- seq(0, 8, length = 200)
lcase("kl_like_a", xg, 0.04 * (xg - 1.7)^2 + 0.01 * sin(5 * xg) + rnorm(200, 0, 0.003), 0.2,
      newx = seq(0, 8, length = 1000)[seq(1, 1000, by = 17)])
x100 <- seq(0, 8, length = 100)
lcase("kl_like_b", x100, 0.3 * exp(-x100) + 0.02 * x100 + abs(rnorm(100, 0, 0.01)), 0.2,
      newx = seq(0, 8, length = 1000)[seq(3, 1000, by = 23)])
xu <- sort(runif(77, -3, 5))
lcase("uneven_77", xu, sin(xu) + rnorm(77, 0, 0.2), 0.3, newx = seq(-3.5, 5.5, length = 40))
xt <- sort(round(runif(60, 0, 10)))
lcase("ties_60", xt, xt^0.5 + rnorm(60, 0, 0.3), 0.5, newx = seq(0, 10, length = 41))
x70 <- sort(runif(70, 0, 8))
lcase("degree1_70", x70, cos(x70) + rnorm(70, 0, 0.1), 0.25, degree = 1, newx = seq(0, 8, length = 33))
wcsv(rbind(do.call(rbind, lrows), do.call(rbind, prows)), "loess.csv")

# ---------------------------------------------------------------- lowess
wrows <- list()
wcase <- function(name, x, y, ...) {
  lf <- lowess(x, y, ...)
  args <- list(...)
  wrows[[length(wrows) + 1]] <<- data.frame(
    case = name, f = if (is.null(args$f)) 2 / 3 else args$f,
    iter = if (is.null(args$iter)) 3L else args$iter,
    delta = if (is.null(args$delta)) NA_real_ else args$delta,
    x = x, y = y, sx = lf$x, fit = lf$y)
}
set.seed(21)
theta <- seq(0, 0.95, length = 50)
numrej <- round(1300 + 60 * theta - 800 * theta^4 + rnorm(50, 0, 8))
wcase("numrej_f0.2", theta, numrej, f = 1 / 5)
xn <- runif(90, 0, 10)
yn <- sin(xn) + rnorm(90, 0, 0.3) + ifelse(runif(90) < 0.05, 4, 0)
wcase("noisy_default", xn, yn)
xt <- round(runif(60, 0, 20))
wcase("ties_iter0", xt, xt * 0.3 + rnorm(60), iter = 0L)
wcase("ties_delta0", xt, log1p(xt) + rnorm(60, 0, 0.2), f = 0.3, delta = 0)
wcase("flat", 1:30 + 0, rep(5, 30))
wcsv(do.call(rbind, wrows), "lowess.csv")
cat(capture.output(sessionInfo()), file = file.path(out, "sessionInfo.txt"), sep = "\n")
cat("done\n")
