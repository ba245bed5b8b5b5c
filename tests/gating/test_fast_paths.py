"""Fast paths that must decide exactly as the general code: the fused pass's polygon rule,
the reader's TEXT split for plain segments, and our own root finder for the logicle constant
(so that importing ``scipy.optimize`` is not part of every command's start)."""

from __future__ import annotations

import math
import random

import numpy as np


def test_logicle_d_is_the_root_to_rounding() -> None:
    """Our own root finder for the logicle constant: the residual is as small as SciPy's
    ``brentq`` gets (both at the evaluation noise of ``g``) and the roots agree to 1e-13."""
    from scipy.optimize import brentq

    from gating._transforms._biex import _logicle_d

    rng = random.Random(7)
    cases = [(w, b) for w in (0.1, 0.5, 1.0, 2.0, 2.25) for b in (0.5, 1.0, math.log(10), 10.0, 50.0)]
    cases += [(rng.uniform(1e-6, 3.0), rng.uniform(1e-3, 20.0)) for _ in range(2000)]
    for w, b in cases:
        def g(d: float, w: float = w, b: float = b) -> float:
            return 2.0 * (math.log(d) - math.log(b)) + w * (b + d)

        lo = b * math.exp(-w * b - 1.0)
        ref = float(brentq(g, lo, b, xtol=1e-300, rtol=8.9e-16, maxiter=500))
        ours = _logicle_d(w, b)
        assert abs(ours - ref) <= 1e-13 * ref, (w, b, ours, ref)
        noise = 8 * math.ulp(2.0 * abs(math.log(b)) + w * (b + ref))
        assert abs(g(ours)) <= max(abs(g(ref)), noise), (w, b)
    assert _logicle_d(0.0, 3.0) == 3.0


def test_text_fast_path_splits_as_the_general_parser() -> None:
    from gating._fcs import _text

    def general(buf: bytes) -> dict[str, str]:
        tokens = _text._tokens(buf[1:], buf[:1])
        assert len(tokens) % 2 == 0
        out: dict[str, str] = {}
        for key, value in zip(tokens[::2], tokens[1::2], strict=True):
            out.setdefault(_text._decode(key).strip().upper(), _text._decode(value))
        return out

    rng = random.Random(3)
    pieces = [b"$P1N", b"FSC-A", b" ", b"a b", b"\x1c", b"\r\n", b"1,2", b"$tot", b"x"]
    checked = 0
    for _ in range(3000):
        delim = rng.choice([b"/", b"|", b"*", b"\x0c"])
        fields = [rng.choice(pieces) for _ in range(2 * rng.randint(1, 6))]
        buf = delim + delim.join(fields) + rng.choice([delim, delim + b"  ", b""])
        try:
            want = general(buf)
        except Exception:  # an odd field or an empty keyword: the parsers' errors are tested elsewhere
            continue
        if any(not k.strip() for k in want):
            continue
        assert _text.parse_keywords(buf, path="p", segment="TEXT", offset=0) == want, buf
        checked += 1
    assert checked > 500


def _reference_inside(x: float, y: float, vx: np.ndarray, vy: np.ndarray) -> bool:
    """The polygon rule written plainly, point by point: on an edge or a vertex is inside,
    otherwise the crossing parity of a ray towards +x."""
    inside = False
    n = len(vx)
    for k in range(n):
        x1, y1, x2, y2 = vx[k - 1], vy[k - 1], vx[k], vy[k]
        if (min(x1, x2) <= x <= max(x1, x2) and min(y1, y2) <= y <= max(y1, y2)
                and (x2 - x1) * (y - y1) == (y2 - y1) * (x - x1)):
            return True
        if (y1 > y) != (y2 > y) and x < x1 + (y - y1) * (x2 - x1) / (y2 - y1):
            inside = not inside
    return inside


def test_polygon_rule_decides_as_the_plain_rule() -> None:
    """The one polygon rule (edge by edge over many points; the evaluator's ``in_polygon`` and
    the fused pass both use it) against the rule written point by point: concave and
    degenerate polygons, points on vertices and edges, infinities and NaN."""
    from gating._evaluate._kernels import in_polygon, polygon_rule

    rng = np.random.default_rng(11)
    for trial in range(200):
        nv = int(rng.integers(3, 9))
        vx = rng.integers(-4, 5, nv).astype(np.float64) * (0.1 if trial % 2 else 1.0)
        vy = rng.integers(-4, 5, nv).astype(np.float64) * (0.1 if trial % 3 else 1.0)
        px = np.concatenate([rng.uniform(-5, 5, 300), vx, (vx + np.roll(vx, 1)) / 2,
                             rng.integers(-5, 6, 100).astype(np.float64), [np.inf, -np.inf, np.nan]])
        py = np.concatenate([rng.uniform(-5, 5, 300), vy, (vy + np.roll(vy, 1)) / 2,
                             rng.integers(-5, 6, 100).astype(np.float64), [0.0, np.nan, 1.0]])
        crossed = np.empty(len(px), dtype=np.bool_)
        on_edge = np.empty(len(px), dtype=np.bool_)
        polygon_rule(px, py, len(px), vx, vy, nv, crossed, on_edge)
        # the kernel takes points inside the vertices' box only (the box rejects the rest)
        box = (px >= vx.min()) & (px <= vx.max()) & (py >= vy.min()) & (py <= vy.max())
        want = [bool(b) and _reference_inside(x, y, vx, vy)
                for x, y, b in zip(px, py, box, strict=True)]
        assert ((crossed | on_edge) & box).tolist() == want, trial
        got = np.empty(len(px), dtype=np.bool_)
        in_polygon(px, py, vx, vy, got)
        assert got.tolist() == want, trial
