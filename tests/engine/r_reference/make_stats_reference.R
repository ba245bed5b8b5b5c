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

# Paired tests: wilcox.test(post, pre, paired = TRUE) with R's defaults, t.test(post, pre,
# paired = TRUE) with its 95% CI, on cohorts with ties, zeros, 49/50/51 pairs.
set.seed(12)
rows <- list()
k <- 0
for (n in c(2, 3, 4, 5, 6, 8, 10, 12, 15, 20, 30, 49, 50, 51)) {
  for (rep in 1:5) {
    pre <- rnorm(n, 10, 2)
    post <- pre + rnorm(n, if (rep %% 2) 0.8 else 0, 1)
    if (rep == 3) { post <- round(post); pre <- round(pre) }   # ties and zero differences
    if (rep == 4) post[seq(1, n, 3)] <- pre[seq(1, n, 3)]      # zeros
    k <- k + 1
    w <- tryCatch(suppressWarnings(wilcox.test(post, pre, paired = TRUE)), error = function(e) NULL)
    t <- tryCatch(t.test(post, pre, paired = TRUE), error = function(e) NULL)
    f <- function(v) if (is.null(v)) "NA" else sprintf("%.17g", v)
    rows[[k]] <- data.frame(
      case = k, n = n, pre = paste(sprintf("%.17g", pre), collapse = ";"),
      post = paste(sprintf("%.17g", post), collapse = ";"),
      V = f(unname(w$statistic)), wilcox_p = f(w$p.value),
      t = f(unname(t$statistic)), df = f(unname(t$parameter)), t_p = f(t$p.value),
      estimate = f(unname(t$estimate)), ci_low = f(t$conf.int[1]), ci_high = f(t$conf.int[2]))
  }
}
write.csv(do.call(rbind, rows), "paired_tests.csv", row.names = FALSE)
set.seed(13)
p <- c(runif(40), 0, 1, 1e-12, rep(0.03, 5))
write.csv(data.frame(p = sprintf("%.17g", p), padj = sprintf("%.17g", p.adjust(p, "BH"))),
          "p_adjust_bh.csv", row.names = FALSE)
