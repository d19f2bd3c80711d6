"""The closed-form system built on the unknown pixels only: the same numbers as pymatting's full Laplacian."""

from __future__ import annotations

import numpy as np
import pytest

from napari_iconmat.core import threads
from napari_iconmat.core.matting import closed_form
from napari_iconmat.core.matting.laplacian import unknown_system


def _scene(seed=0, shape=(40, 56)):
    rng = np.random.default_rng(seed)
    image = rng.random((*shape, 3))
    unknown = np.zeros(shape, bool)
    unknown[8:30, 4:50] = rng.random((22, 46)) > 0.3
    unknown[:2, :] = True  # unknown pixels on the border: windows there are cut off, as in pymatting
    unknown[:, -1] = True
    alpha = (rng.random(shape) > 0.5).astype(np.float64)
    return image, unknown, alpha


@pytest.mark.parametrize("seed", [0, 1])
def test_equals_the_unknown_rows_of_pymattings_laplacian(seed):
    pymatting = pytest.importorskip("pymatting")
    image, unknown, alpha = _scene(seed)
    matrix, rhs = unknown_system(image, unknown, alpha, epsilon=1e-7)
    full = pymatting.cf_laplacian(image, epsilon=1e-7, radius=1, is_known=~unknown).tocsr()
    u, k = np.flatnonzero(unknown), np.flatnonzero(~unknown)
    np.testing.assert_array_equal(matrix.toarray(), full[u][:, u].toarray())
    np.testing.assert_array_equal(rhs, -(full[u][:, k] @ alpha.ravel()[k]))


def test_a_known_neighbour_moves_into_the_right_hand_side():
    # one unknown pixel among known ones: its row holds only its diagonal, the rest is -L_uk alpha_k
    image = np.random.default_rng(2).random((9, 9, 3))
    unknown = np.zeros((9, 9), bool)
    unknown[4, 4] = True
    ones, zeros = np.ones((9, 9)), np.zeros((9, 9))
    matrix, rhs_one = unknown_system(image, unknown, ones)
    _, rhs_zero = unknown_system(image, unknown, zeros)
    assert matrix.shape == (1, 1) and matrix[0, 0] > 0
    assert rhs_zero[0] == 0.0
    # each row of the Laplacian sums to zero: with every known alpha 1 the rhs equals the diagonal
    np.testing.assert_allclose(rhs_one[0], matrix[0, 0], rtol=1e-9)


def test_the_split_product_equals_the_single_one(monkeypatch):
    image, unknown, alpha = _scene(3, shape=(80, 90))
    matrix, _ = unknown_system(image, unknown, alpha)
    x = np.random.default_rng(0).random(matrix.shape[0])
    monkeypatch.setattr(closed_form, "_SPLIT_ENTRIES", 1)
    monkeypatch.setattr(closed_form, "helps", lambda: True)
    split = closed_form._product(matrix)
    assert split is not matrix.__matmul__
    np.testing.assert_array_equal(split(x), matrix @ x)


def test_work_beside_returns_its_result_and_raises_its_error():
    assert threads.beside(sum, [1, 2, 3]).result() == 6
    with pytest.raises(ZeroDivisionError):
        threads.beside(lambda: 1 / 0).result()


def test_the_look_ahead_thread_runs_its_work_in_one_piece():
    assert threads.ahead_of_caller(threads.helps).result() is False


def test_with_upcoming_names_the_next_frame_to_an_engine_that_looks_ahead():
    from napari_iconmat.core import make_engine
    from napari_iconmat.core.engine import looks_ahead, with_upcoming

    classical = make_engine("classical")
    assert looks_ahead(classical)
    pairs = [(0, "a"), (1, "b"), (2, "c")]
    assert list(with_upcoming(classical, pairs)) == [(0, "a", {"upcoming": "b"}), (1, "b", {"upcoming": "c"}), (2, "c", {})]
    assert list(with_upcoming(classical, [])) == []

    class Plain:  # an engine without the capability
        def matte_frame(self, frame, query, *, state=None, with_foreground=False): ...

    assert not looks_ahead(Plain())
    assert list(with_upcoming(Plain(), pairs)) == [(0, "a", {}), (1, "b", {}), (2, "c", {})]
