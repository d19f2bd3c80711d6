"""The matting stage: a trimap (or a coarse mask) and an image in, a soft alpha out.

The solver is closed-form matting (Levin, Lischinski & Weiss, PAMI 2008):
minimise alpha^T L alpha over the unknown pixels with the known pixels fixed,
where L is the matting Laplacian (pymatting's ``cf_laplacian``). Two things
make it fit for video on a CPU:

* it is solved only on the unknown pixels, inside the bounding box of the
  unknown region, by conjugate gradients warm-started from a guess (the
  previous frame's alpha carried by optical flow);
* an optional temporal prior ``lambda_t * (alpha - prior)^2`` keeps pixels that
  did not move close to the previous frame's alpha, which removes flicker.

Foreground colours come from pymatting's multilevel estimator.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse

from ..threads import beside, helps
from .laplacian import unknown_system

__all__ = ["solve_alpha", "estimate_foreground"]

_LAPLACIAN_EPSILON = 1e-7


def _pymatting():
    # pymatting JIT-compiles with numba on first import (~40 s cold): import on first use only
    import sys

    if "pymatting" not in sys.modules and not _kernels_cached():
        import warnings

        from ..errors import Notice

        warnings.warn(Notice("compiling the matting kernels once, ~40 s (later runs reuse them)"), stacklevel=3)
    import pymatting

    return pymatting


def _kernels_cached() -> bool:
    """Whether numba's cache holds pymatting's compiled Laplacian (then the import takes seconds, not ~40 s)."""
    import importlib.util
    import os
    from pathlib import Path

    if os.environ.get("NUMBA_CACHE_DIR"):  # then numba caches there only
        roots = [Path(os.environ["NUMBA_CACHE_DIR"])]
    else:  # next to the package (__pycache__)
        spec = importlib.util.find_spec("pymatting")
        roots = [Path(p) for p in (spec.submodule_search_locations or ())] if spec is not None else []
    try:
        return any(next(root.rglob("*cf_laplacian*.nbi"), None) is not None for root in roots if root.is_dir())
    except OSError:
        return True  # cannot tell: say nothing


def solve_alpha(
    image: np.ndarray,
    trimap: np.ndarray,
    *,
    guess: np.ndarray | None = None,
    prior: np.ndarray | None = None,
    prior_weight: np.ndarray | float | None = None,
    max_iterations: int = 400,
    tolerance: float = 1e-4,
) -> np.ndarray:
    """Closed-form alpha on the unknown region of a trimap.

    Parameters
    ----------
    image : (H, W, 3) ndarray of float in [0, 1]
    trimap : (H, W) ndarray of float
        0 = background, 1 = foreground, anything strictly between = unknown.
    guess : (H, W) ndarray of float in [0, 1], optional
        Starting point of the iterative solver (default 0.5 on unknown pixels).
    prior : (H, W) ndarray of float in [0, 1], optional
        Alpha that unknown pixels are pulled towards with ``prior_weight``.
    prior_weight : float or (H, W) ndarray of float >= 0, optional
        Strength of the prior per pixel (0 = none). Ignored without ``prior``.
    max_iterations, tolerance
        Conjugate-gradient limits (relative residual).

    Returns
    -------
    alpha : (H, W) ndarray of float32 in [0, 1]
        Equal to the trimap on known pixels.
    """
    trimap = np.asarray(trimap, dtype=np.float32)
    alpha = np.where(trimap >= 1.0, 1.0, 0.0).astype(np.float32)
    unknown = (trimap > 0.0) & (trimap < 1.0)
    if not unknown.any():
        return alpha
    rows, cols = np.nonzero(unknown)
    r0, r1 = max(rows.min() - 2, 0), min(rows.max() + 3, trimap.shape[0])
    c0, c1 = max(cols.min() - 2, 0), min(cols.max() + 3, trimap.shape[1])
    crop = (slice(r0, r1), slice(c0, c1))
    image_c = np.ascontiguousarray(image[crop], dtype=np.float64)
    unknown_c = unknown[crop]
    if min(image_c.shape[:2]) < 3:
        alpha[unknown] = 0.5 if guess is None else np.asarray(guess, np.float32)[unknown]
        return alpha
    l_uu, rhs = unknown_system(image_c, unknown_c, alpha[crop], epsilon=_LAPLACIAN_EPSILON)
    u = np.flatnonzero(unknown_c.ravel())

    # a tiny ridge keeps the system positive definite where an unknown pixel touches no known one
    ridge = np.full(u.size, 1e-6)
    rhs = rhs + 1e-6 * 0.5
    if prior is not None and prior_weight is not None:
        weight = np.broadcast_to(np.asarray(prior_weight, np.float64), trimap.shape)[crop].ravel()[u]
        ridge = ridge + weight
        rhs = rhs + weight * np.asarray(prior, np.float64)[crop].ravel()[u]
    # every unknown pixel has its own diagonal entry in the Laplacian: adding to it keeps the sparsity
    l_uu.setdiag(l_uu.diagonal() + ridge)

    x0 = np.full(u.size, 0.5) if guess is None else np.clip(np.asarray(guess, np.float64)[crop].ravel()[u], 0, 1)
    solution = _jacobi_cg(l_uu, rhs, x0, tolerance=tolerance, max_iterations=max_iterations)
    out_c = np.ascontiguousarray(alpha[crop])
    out_c.reshape(-1)[u] = np.clip(solution, 0.0, 1.0)
    alpha[crop] = out_c
    return alpha


def _jacobi_cg(matrix, rhs: np.ndarray, x: np.ndarray, *, tolerance: float, max_iterations: int) -> np.ndarray:
    """Jacobi-preconditioned conjugate gradients.

    Written out instead of scipy's ``cg`` because that one's vector products go
    through multithreaded BLAS, which slows down by 10-100x when other processes
    (parallel workers, a GUI) share the cores; sums of products stay single-threaded.
    The matrix-vector product, most of the time, runs on two threads (see :func:`_product`).
    """
    inverse_diagonal = 1.0 / matrix.diagonal()
    product_of = _product(matrix)
    residual = rhs - product_of(x)
    threshold = (tolerance**2) * float((rhs * rhs).sum())
    z = residual * inverse_diagonal
    direction = z.copy()
    rz = float((residual * z).sum())
    for _ in range(max_iterations):
        if float((residual * residual).sum()) <= threshold:
            break
        product = product_of(direction)
        step = rz / float((direction * product).sum())
        x = x + step * direction
        residual = residual - step * product
        z = residual * inverse_diagonal
        rz_next = float((residual * z).sum())
        direction = z + (rz_next / rz) * direction
        rz = rz_next
    return x


# below this many stored entries a product takes well under a millisecond and handing half of it over does not pay
_SPLIT_ENTRIES = 500_000


def _product(matrix):
    """``x -> matrix @ x``; on a large CSR matrix the bottom half of the rows on the helper thread.

    scipy's sparse product releases the GIL, so the two halves run on two cores at once;
    each row's sum is computed as in one product, so the result is the same to the bit.
    """
    if not isinstance(matrix, scipy.sparse.csr_matrix) or matrix.nnz < _SPLIT_ENTRIES or not helps():
        return matrix.__matmul__
    half = matrix.shape[0] // 2
    top, bottom = matrix[:half], matrix[half:]

    def product(x):
        lower = beside(bottom.__matmul__, x)
        return np.concatenate([top @ x, lower.result()])

    return product


def estimate_foreground(image: np.ndarray, alpha: np.ndarray) -> np.ndarray:
    """Un-premultiplied foreground colours (pymatting's multilevel estimator).

    Parameters
    ----------
    image : (H, W, 3) ndarray of float in [0, 1]
    alpha : (H, W) ndarray of float in [0, 1]

    Returns
    -------
    foreground : (H, W, 3) ndarray of float32 in [0, 1]
    """
    fg = _pymatting().estimate_foreground_ml(
        np.ascontiguousarray(image, np.float64), np.ascontiguousarray(alpha, np.float64)
    )
    return np.clip(fg, 0.0, 1.0).astype(np.float32)
