"""The matting Laplacian's rows for the unknown pixels only, as the linear system closed-form matting solves.

Closed-form matting (Levin, Lischinski & Weiss, PAMI 2008) minimises
``alpha^T L alpha`` with the known pixels fixed, i.e. solves
``L_uu alpha_u = -L_uk alpha_k``. pymatting's ``cf_laplacian`` builds ``L`` for
every pixel of the image (a dense ``n x 25`` table) and the solver then slices
out the unknown rows; on a video frame most pixels are known, so building and
slicing the full matrix cost more than the windows' arithmetic. Here only the
3x3 windows that hold an unknown pixel are visited and only the unknown rows
are written, with the same arithmetic as pymatting (same window statistics,
same ``epsilon / 9`` regularisation), and the known neighbours go straight into
the right-hand side.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse

__all__ = ["unknown_system"]

_KERNELS = None


def _compile():
    # numba compiles on first use (cached on disk next to pymatting's kernels, see closed_form._kernels_cached)
    global _KERNELS
    if _KERNELS is None:
        from numba import njit

        _KERNELS = (njit(cache=True, nogil=True)(_window_terms), njit(cache=True, nogil=True)(_assemble))
    return _KERNELS


def unknown_system(image: np.ndarray, unknown: np.ndarray, alpha: np.ndarray, epsilon: float = 1e-7):
    """The closed-form system on the unknown pixels of an image (radius-1 windows).

    Parameters
    ----------
    image : (H, W, 3) ndarray of float64 in [0, 1]
    unknown : (H, W) ndarray of bool
        Pixels to solve for; the others are known.
    alpha : (H, W) ndarray of float
        Alpha of the known pixels (read only there).
    epsilon : float
        Regularisation of each window's colour covariance (divided by the window's 9 pixels, as pymatting).

    Returns
    -------
    matrix : (n, n) scipy.sparse.csr_matrix of float64
        ``L_uu``, rows and columns in the order of ``np.flatnonzero(unknown)``.
    rhs : (n,) ndarray of float64
        ``-L_uk @ alpha_k``.
    """
    window_terms, assemble = _compile()
    image = np.ascontiguousarray(image, dtype=np.float64)
    index = np.full(unknown.shape, -1, dtype=np.int64)
    flat = np.flatnonzero(unknown)
    index.reshape(-1)[flat] = np.arange(flat.size)
    terms = np.zeros((flat.size, 5, 5), dtype=np.float64)
    window_terms(image, float(epsilon), index, terms)
    ys, xs = np.divmod(flat, unknown.shape[1])
    indptr = np.zeros(flat.size + 1, dtype=np.int64)
    indices = np.empty(flat.size * 25, dtype=np.int64)
    values = np.empty(flat.size * 25, dtype=np.float64)
    rhs = np.zeros(flat.size, dtype=np.float64)
    known_alpha = np.ascontiguousarray(alpha, dtype=np.float64)
    used = assemble(ys, xs, index, terms, known_alpha, indptr, indices, values, rhs)
    matrix = scipy.sparse.csr_matrix((values[:used], indices[:used], indptr), shape=(flat.size, flat.size))
    return matrix, rhs


def _window_terms(image, epsilon, index, terms):
    # terms[row, dy + 2, dx + 2] accumulates L between unknown pixel `row` and its neighbour at (dy, dx)
    h, w, _ = image.shape
    area = 9.0
    c = np.zeros((3, 3, 3))
    for y in range(1, h - 1):
        for x in range(1, w - 1):
            touched = False
            for dy in range(3):
                for dx in range(3):
                    if index[y + dy - 1, x + dx - 1] >= 0:
                        touched = True
            if not touched:
                continue
            for ch in range(3):
                s = 0.0
                for dy in range(3):
                    for dx in range(3):
                        s += image[y + dy - 1, x + dx - 1, ch]
                for dy in range(3):
                    for dx in range(3):
                        c[dy, dx, ch] = image[y + dy - 1, x + dx - 1, ch] - s / area
            a00 = epsilon
            a01 = 0.0
            a02 = 0.0
            a11 = epsilon
            a12 = 0.0
            a22 = epsilon
            for dy in range(3):
                for dx in range(3):
                    a00 += c[dy, dx, 0] * c[dy, dx, 0]
                    a01 += c[dy, dx, 0] * c[dy, dx, 1]
                    a02 += c[dy, dx, 0] * c[dy, dx, 2]
                    a11 += c[dy, dx, 1] * c[dy, dx, 1]
                    a12 += c[dy, dx, 1] * c[dy, dx, 2]
                    a22 += c[dy, dx, 2] * c[dy, dx, 2]
            a00 /= area
            a01 /= area
            a02 /= area
            a11 /= area
            a12 /= area
            a22 /= area
            det = a00 * a12 * a12 + a01 * a01 * a22 + a02 * a02 * a11 - a00 * a11 * a22 - 2 * a01 * a02 * a12
            inv_det = 1.0 / det
            m00 = (a12 * a12 - a11 * a22) * inv_det
            m01 = (a01 * a22 - a02 * a12) * inv_det
            m02 = (a02 * a11 - a01 * a12) * inv_det
            m11 = (a02 * a02 - a00 * a22) * inv_det
            m12 = (a00 * a12 - a01 * a02) * inv_det
            m22 = (a01 * a01 - a00 * a11) * inv_det
            for dyi in range(3):
                for dxi in range(3):
                    row = index[y + dyi - 1, x + dxi - 1]
                    if row < 0:
                        continue
                    s = c[dyi, dxi, 0]
                    t = c[dyi, dxi, 1]
                    u = c[dyi, dxi, 2]
                    c0 = m00 * s + m01 * t + m02 * u
                    c1 = m01 * s + m11 * t + m12 * u
                    c2 = m02 * s + m12 * t + m22 * u
                    for dyj in range(3):
                        for dxj in range(3):
                            temp = c0 * c[dyj, dxj, 0] + c1 * c[dyj, dxj, 1] + c2 * c[dyj, dxj, 2]
                            same = 1.0 if (dyi == dyj and dxi == dxj) else 0.0
                            terms[row, dyj - dyi + 2, dxj - dxi + 2] += same - (1.0 + temp) / area


def _assemble(ys, xs, index, terms, alpha, indptr, indices, values, rhs):
    # CSR rows of the unknown pixels (columns ascending); known neighbours move to the right-hand side
    h, w = index.shape
    k = 0
    for row in range(ys.size):
        y = ys[row]
        x = xs[row]
        for dy in range(5):
            yj = y + dy - 2
            if yj < 0 or yj >= h:
                continue
            for dx in range(5):
                xj = x + dx - 2
                if xj < 0 or xj >= w:
                    continue
                value = terms[row, dy, dx]
                column = index[yj, xj]
                if column >= 0:
                    indices[k] = column
                    values[k] = value
                    k += 1
                else:
                    rhs[row] -= value * alpha[yj, xj]
        indptr[row + 1] = k
    return k
