"""The Numba inference against pydeseq2's DefaultInference (and scipy) on small data.

Tolerances are stated per check with the measured agreement. Where the algorithms differ on
purpose (R's line search stops at a log-likelihood change of 1e-6, pydeseq2 runs L-BFGS-B to
its own tolerance), the check is on the objective, not on bit equality.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from pydeseq2 import utils
from pydeseq2.default_inference import DefaultInference
from scipy.special import digamma, gammaln

from expression import _kernels as k
from expression._dispersion import grid_search
from expression._inference import NumbaInference


@pytest.fixture(scope="module")
def data():
    """12 samples (6 patients x pre/post) x 60 genes of NB counts with means >= 5."""
    rng = np.random.default_rng(11)
    n_pat, n_genes = 6, 60
    patient = np.repeat(np.arange(n_pat), 2)
    post = np.tile([0.0, 1.0], n_pat)
    x = np.column_stack([np.ones(2 * n_pat)] + [(patient == p).astype(float) for p in range(1, n_pat)] + [post])
    base = np.exp(rng.uniform(np.log(20), np.log(2000), n_genes))
    disp = 0.05 + 1.0 / base
    sf = np.exp(rng.normal(0, 0.2, 2 * n_pat))
    mu = sf[:, None] * base[None, :] * np.exp(rng.normal(0, 0.3, (n_pat, n_genes)))[patient]
    counts = rng.negative_binomial(1 / disp, 1 / (1 + mu * disp)).astype(float)
    return counts, sf, x, disp


def test_special_functions():
    xs = np.array([1e-3, 0.3, 1.0, 2.5, 9.99, 10.01, 57.3, 1e4, 3e6, 1e9])
    ours = np.array([k.digamma(v) for v in xs])
    np.testing.assert_allclose(ours, digamma(xs), rtol=1e-13)  # measured 2e-15
    lg = np.array([k.lgamma(v) for v in xs])
    np.testing.assert_allclose(lg, gammaln(xs), rtol=1e-13)  # measured 1e-16
    for y, size, mu in [(0.0, 2.0, 3.0), (5.0, 0.5, 7.0), (120.0, 1e6, 100.0)]:
        expected = (gammaln(y + size) - gammaln(size) - gammaln(y + 1)
                    + size * math.log(size / (size + mu)) + y * math.log(mu / (size + mu)))
        assert k.nb_log_pmf(y, size, mu) == pytest.approx(expected, rel=1e-12)


def test_rough_moments_and_linear_mu(data):
    counts, sf, x, _ = data
    ours, ref = NumbaInference(1), DefaultInference(n_cpus=1)
    normed = counts / sf[:, None]
    np.testing.assert_allclose(ours.fit_rough_dispersions(normed, x),
                               ref.fit_rough_dispersions(normed, x), rtol=1e-10, atol=1e-15)
    np.testing.assert_allclose(ours.fit_moments_dispersions(normed, sf),
                               ref.fit_moments_dispersions(normed, sf), rtol=1e-12, atol=1e-15)
    group_x = x[:, [0, -1]]
    np.testing.assert_allclose(ours.lin_reg_mu(counts, sf, group_x, 0.5),
                               ref.lin_reg_mu(counts, sf, group_x, 0.5), rtol=1e-10)


def test_irls_matches_pydeseq2(data):
    counts, sf, x, disp = data
    beta, mu, hat, conv = NumbaInference(1).irls(counts, sf, x, disp, 0.5, 1e-8)
    rbeta, rmu, rhat, rconv = DefaultInference(n_cpus=1).irls(counts, sf, x, disp, 0.5, 1e-8)
    assert conv.all() and rconv.all()
    # same optimum; each stops at a relative deviance change of 1e-8 (measured 2e-6 abs)
    np.testing.assert_allclose(beta, rbeta, atol=1e-4)
    np.testing.assert_allclose(mu, rmu, rtol=1e-4)
    np.testing.assert_allclose(hat, rhat, atol=1e-4)


def _neg_log_post(counts, mu, x, alpha):
    """pydeseq2's Cox-Reid adjusted negative log likelihood of one gene."""
    w = mu / (1 + mu * alpha)
    return utils.nb_nll(counts, mu, alpha) + 0.5 * np.linalg.slogdet((x.T * w) @ x)[1]


def test_alpha_mle_reaches_pydeseq2_optimum(data):
    counts, sf, x, disp = data
    _, mu, _, _ = DefaultInference(n_cpus=1).irls(counts, sf, x, disp, 0.5, 1e-8)
    start = np.full(counts.shape[1], 0.1)
    ours, _ = NumbaInference(1).alpha_mle(counts, x, mu, start, 1e-8, 12.0)
    theirs, _ = DefaultInference(n_cpus=1).alpha_mle(counts, x, mu, start, 1e-8, 12.0)
    for g in range(counts.shape[1]):
        f_ours = _neg_log_post(counts[:, g], mu[:, g], x, ours[g])
        f_theirs = _neg_log_post(counts[:, g], mu[:, g], x, theirs[g])
        # R's rule stops once a step gains < 1e-6; the remaining gap to the optimum can be
        # larger on flat likelihoods (measured at most 1.4e-5)
        assert f_ours <= f_theirs + 1e-4
    # the line search stops early on flat likelihoods; estimates that are not at the lower
    # bound agree to a few percent (measured 2e-3)
    clear = theirs > 1e-3
    assert clear.sum() > 40
    np.testing.assert_allclose(ours[clear], theirs[clear], rtol=0.05)


def test_map_with_prior_matches_pydeseq2(data):
    counts, sf, x, disp = data
    _, mu, _, _ = DefaultInference(n_cpus=1).irls(counts, sf, x, disp, 0.5, 1e-8)
    ours, conv = NumbaInference(1).alpha_mle(counts, x, mu, disp, 1e-8, 12.0, prior_disp_var=0.5,
                                            prior_reg=True)
    theirs, _ = DefaultInference(n_cpus=1).alpha_mle(counts, x, mu, disp, 1e-8, 12.0,
                                                     prior_disp_var=0.5, prior_reg=True)
    assert conv.all()
    np.testing.assert_allclose(ours, theirs, rtol=0.02)  # measured 3e-3


def test_wald_matches_pydeseq2(data):
    counts, sf, x, disp = data
    beta, mu, _, _ = DefaultInference(n_cpus=1).irls(counts, sf, x, disp, 0.5, 1e-8)
    mu = np.maximum(mu, 1.0)  # above minmu: no flooring difference
    ridge = np.diag(np.full(x.shape[1], 1e-6))
    contrast = np.zeros(x.shape[1])
    contrast[-1] = 1.0
    ours = NumbaInference(1, ridge_log2=False).wald_test(x, disp, beta, mu, ridge, contrast, 0.0)
    theirs = DefaultInference(n_cpus=1).wald_test(x, disp, beta, mu, ridge, contrast, 0.0)
    for a, b in zip(ours, theirs, strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-9)  # measured 1e-13
    # default: the ridge is R's lambda on the log2 scale (divided by log(2)^2)
    r_scale = NumbaInference(1).wald_test(x, disp, beta, mu, ridge, contrast, 0.0)
    theirs_r = DefaultInference(n_cpus=1).wald_test(x, disp, beta, mu, ridge / np.log(2) ** 2,
                                                    contrast, 0.0)
    np.testing.assert_allclose(r_scale[2], theirs_r[2], rtol=1e-9)


def test_grid_search_finds_grid_maximum(data):
    counts, sf, x, disp = data
    _, mu, _, _ = DefaultInference(n_cpus=1).irls(counts, sf, x, disp, 0.5, 1e-8)
    y, m = np.ascontiguousarray(counts.T[:5]), np.ascontiguousarray(mu.T[:5])
    found = grid_search(y, m, x, threads=1)
    for g in range(5):
        fine = np.linspace(np.log(1e-8), np.log(12.0), 4000)
        values = [k.log_posterior(a, y[g], m[g], x, 0.0, 1.0, False, True) for a in fine]
        best = fine[int(np.argmax(values))]
        # the two-level 20-point grid resolves log(alpha) to 2/19 of the coarse step (~0.1)
        assert abs(np.log(found[g]) - best) < 0.1


def test_trend_gamma_glm_matches_pydeseq2():
    rng = np.random.default_rng(5)
    means = np.exp(rng.uniform(0, 8, 400))
    disps = (0.1 + 3.0 / means) * rng.gamma(4.0, 0.25, 400)
    import pandas as pd

    cov, tgt = pd.Series(1 / means), pd.Series(disps)
    ours, pred, ok = NumbaInference(1).dispersion_trend_gamma_glm(cov, tgt)
    theirs, _, ok2 = DefaultInference(n_cpus=1).dispersion_trend_gamma_glm(cov, tgt)
    assert ok and ok2
    np.testing.assert_allclose(ours, theirs, rtol=1e-3)  # same MLE, different optimisers
    np.testing.assert_allclose(pred, ours[0] + ours[1] / means)


def test_n_cpus_setter_and_bad_prior():
    inf = NumbaInference(1)
    inf.n_cpus = 2
    assert inf.n_cpus >= 1
    with pytest.raises(ValueError, match="prior_disp_var"):
        inf.alpha_mle(np.ones((4, 2)), np.ones((4, 1)), np.ones((4, 2)), np.ones(2), 1e-8, 10.0,
                      prior_reg=True)


def test_lfc_shrink_reaches_pydeseq2_optimum(data):
    counts, sf, x, disp = data
    size, offset, shrink = 1 / disp, np.log(sf), x.shape[1] - 1
    ours = NumbaInference(1).lfc_shrink_nbinom_glm(x, counts, size, offset, 15.0, 0.3, "L-BFGS-B", shrink)
    theirs = DefaultInference(n_cpus=1).lfc_shrink_nbinom_glm(x, counts, size, offset, 15.0, 0.3,
                                                              "L-BFGS-B", shrink)
    assert ours[2].all()
    f_ours = np.array([utils.nbinomFn(ours[0][g], x, counts[:, g], size[g], offset, 15.0, 0.3, shrink)
                       for g in range(counts.shape[1])])
    f_theirs = np.array([utils.nbinomFn(theirs[0][g], x, counts[:, g], size[g], offset, 15.0, 0.3,
                                        shrink) for g in range(counts.shape[1])])
    assert (f_ours <= f_theirs + 1e-9).all()  # never worse than L-BFGS-B (measured up to 3e-4 better)
    np.testing.assert_allclose(ours[0], theirs[0], atol=5e-3)  # measured 7e-4
    # the inverse Hessian is the exact one at our optimum
    g = 0
    b = ours[0][g]
    e = np.exp(x @ b + offset)
    frac = (counts[:, g] + size[g]) * size[g] * e / (size[g] + e) ** 2
    prior = np.full(x.shape[1], 1 / 15.0**2)
    prior[shrink] = 2 * (0.3**2 - b[shrink] ** 2) / (0.3**2 + b[shrink] ** 2) ** 2
    hess = (x.T * frac) @ x + np.diag(prior)
    np.testing.assert_allclose(ours[1][g], np.linalg.inv(hess), rtol=1e-8, atol=1e-12)


def test_nb_glm_optimiser_fallback_reaches_irls_optimum(data):
    """Genes the IRLS does not finish (here: an iteration cap of 1) are refitted by L-BFGS-B on
    the same penalised likelihood, as R's ``fitNbinomGLMsOptim``: same optimum as the full IRLS."""
    from expression._dispersion import fit_nb_glm

    counts, sf, x, disp = data
    y = np.ascontiguousarray(counts.T[:10])
    full = fit_nb_glm(y, sf, x, disp[:10], threads=1)
    capped = fit_nb_glm(y, sf, x, disp[:10], maxit=1, threads=1)
    assert full["converged"].all() and capped["converged"].all()
    np.testing.assert_allclose(capped["beta"], full["beta"], atol=2e-3)  # measured 2.2e-4
    np.testing.assert_allclose(capped["mu_raw"], sf * np.exp(capped["beta"] @ x.T))
    assert (capped["beta_var"] > 0).all()


def test_threads_and_the_deprecated_n_cpus_keyword():
    inf = NumbaInference(threads=1)
    assert inf.threads == inf.n_cpus == 1  # n_cpus: pydeseq2's Inference interface
    inf.n_cpus = 2  # as pydeseq2 sets it
    assert inf.threads == inf.n_cpus >= 1
    with pytest.warns(DeprecationWarning, match=r"NumbaInference\(\): the keyword 'n_cpus'"):
        old = NumbaInference(n_cpus=1, ridge_log2=False)
    assert old.threads == 1
