# R references for engine's statistics layer (tests/engine/test_stats_r.py).
# Run from this folder: Rscript make_stats_reference.R   (R 4.2.2; writes cor_test.csv)
# Random cohorts of 3..100 subjects, with ties (rounded values) and zeros, perfect correlations.
set.seed(11)
rows <- list()
k <- 0
add <- function(x, y) {
  for (method in c("spearman", "pearson")) {
    ct <- tryCatch(suppressWarnings(cor.test(x, y, method = method)), error = function(e) NULL)
    if (is.null(ct)) next
    k <<- k + 1
    ci <- if (is.null(ct$conf.int)) c(NA, NA) else ct$conf.int
    rows[[k]] <<- data.frame(
      case = k, method = method, n = length(x),
      x = paste(sprintf("%.17g", x), collapse = ";"), y = paste(sprintf("%.17g", y), collapse = ";"),
      estimate = sprintf("%.17g", unname(ct$estimate)), statistic = sprintf("%.17g", unname(ct$statistic)),
      p = sprintf("%.17g", ct$p.value), ci_low = sprintf("%.17g", ci[1]), ci_high = sprintf("%.17g", ci[2]))
  }
}
for (n in c(3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 15, 20, 30, 60)) {
  for (rep in 1:6) {
    x <- rnorm(n)
    y <- if (rep %% 3 == 0) x + rnorm(n, sd = 0.1) else if (rep %% 3 == 1) rnorm(n) else -x + rnorm(n, sd = 0.5)
    if (rep == 5) x <- round(x)                       # ties
    if (rep == 6) { x[seq(1, n, 2)] <- 0; y <- y * 3 }  # zeros (tied)
    add(x, y)
  }
}
for (n in c(5, 9, 10, 12)) add(1:n, 1:n)          # perfect
for (n in c(5, 9)) add(1:n, n:1)                  # perfect, negative
write.csv(do.call(rbind, rows), "cor_test.csv", row.names = FALSE)
