"""Tests for raymeta.method.tsp: exactness on small inputs, quality of the heuristic, float distances, validation."""

import functools
import itertools

import numpy as np
import pytest
from scipy.spatial.distance import cdist

from raymeta.errors import ConfigError
from raymeta.method.tsp import l1_distance_matrix, path_length, shortest_hamiltonian_path


def _random_symmetric(rng: np.random.Generator, n: int, scale: float = 1.0) -> np.ndarray:
    upper = rng.random((n, n)) * scale
    dist = np.triu(upper, 1)
    return dist + dist.T


@functools.cache
def _all_orders(n: int) -> np.ndarray:
    # All n! orders as one array, built once per n: a Python loop over 9! orders would take seconds.
    return np.array(list(itertools.permutations(range(n))), dtype=np.int64)


def _brute_force_length(dist: np.ndarray) -> float:
    orders = _all_orders(dist.shape[0])
    return float(dist[orders[:, :-1], orders[:, 1:]].sum(axis=1).min())


def _assert_permutation(order: np.ndarray, n: int) -> None:
    assert order.dtype == np.int64
    assert order.shape == (n,)
    assert np.array_equal(np.sort(order), np.arange(n))


@pytest.mark.parametrize("scale", [1.0, 1e-4])
@pytest.mark.parametrize("n", range(2, 9))
def test_exact_solver_matches_brute_force(n, scale):
    # scale=1e-4 puts every distance below 1, where a solver that truncates to integers sees only zeros.
    rng = np.random.default_rng(100 + n)
    dist = _random_symmetric(rng, n, scale)
    order = shortest_hamiltonian_path(dist)
    _assert_permutation(order, n)
    assert path_length(dist, order) == pytest.approx(_brute_force_length(dist), rel=1e-12, abs=0)


def test_heuristic_is_near_optimal_on_small_instances():
    rng = np.random.default_rng(7)
    optimal_count = 0
    for _ in range(10):
        dist = _random_symmetric(rng, 9)
        order = shortest_hamiltonian_path(dist, exact_max=0)
        _assert_permutation(order, 9)
        optimum = _brute_force_length(dist)
        length = path_length(dist, order)
        assert length <= 1.10 * optimum
        optimal_count += length <= optimum + 1e-9
    assert optimal_count >= 8


def test_cities_on_a_line_come_back_sorted():
    rng = np.random.default_rng(3)
    points = rng.permutation(rng.random(100) * 10)
    dist = np.abs(points[:, None] - points[None, :])
    order = shortest_hamiltonian_path(dist)
    _assert_permutation(order, 100)
    assert path_length(dist, order) == pytest.approx(points.max() - points.min(), rel=1e-12)
    visited = points[order]
    assert np.all(np.diff(visited) > 0) or np.all(np.diff(visited) < 0)


def test_random_plane_points_are_much_shorter_than_identity_and_deterministic():
    rng = np.random.default_rng(11)
    dist = l1_distance_matrix(rng.random((200, 2)))
    order = shortest_hamiltonian_path(dist, seed=5)
    _assert_permutation(order, 200)
    assert path_length(dist, order) <= 0.75 * path_length(dist, np.arange(200))
    assert np.array_equal(order, shortest_hamiltonian_path(dist, seed=5))


def test_tiny_float_distances_are_optimised():
    rng = np.random.default_rng(13)
    dist = l1_distance_matrix(rng.random((50, 3)) * 1e-4)
    assert dist.max() < 1e-3
    order = shortest_hamiltonian_path(dist)
    _assert_permutation(order, 50)
    assert not np.array_equal(order, np.arange(50))
    assert path_length(dist, order) < path_length(dist, np.arange(50))


def test_never_longer_than_identity():
    # Cities already in sorted order on a line: the identity is optimal and must not be replaced by worse.
    points = np.arange(30, dtype=np.float64)
    dist = np.abs(points[:, None] - points[None, :])
    order = shortest_hamiltonian_path(dist, restarts=1, seed=0)
    assert path_length(dist, order) == pytest.approx(29.0)


@pytest.mark.parametrize("n", [0, 1, 2])
def test_trivial_sizes(n):
    order = shortest_hamiltonian_path(np.ones((n, n)) - np.eye(n))
    assert order.dtype == np.int64
    assert np.array_equal(order, np.arange(n))


@pytest.mark.parametrize(
    ("dist", "message"),
    [
        (np.zeros((3, 4)), "square"),
        (np.zeros(5), "square"),
        (np.array([[0.0, -1.0], [-1.0, 0.0]]), "non-negative"),
        (np.array([[0.0, np.nan], [np.nan, 0.0]]), "NaN"),
        (np.array([[0.0, 1.0], [2.0, 0.0]]), "symmetric"),
    ],
)
def test_invalid_distance_matrices_are_rejected(dist, message):
    with pytest.raises(ConfigError, match=message):
        shortest_hamiltonian_path(dist)


def test_invalid_options_are_rejected():
    dist = np.ones((4, 4))
    with pytest.raises(ConfigError, match="restarts"):
        shortest_hamiltonian_path(dist, restarts=0)
    with pytest.raises(ConfigError, match="exact_max"):
        shortest_hamiltonian_path(dist, exact_max=40)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_l1_distance_matrix_matches_scipy(dtype):
    rng = np.random.default_rng(17)
    # 300 rows span more than one row block, so the mirrored blocks are checked too.
    features = rng.standard_normal((300, 40)).astype(dtype)
    dist = l1_distance_matrix(features)
    assert dist.dtype == np.float64
    assert dist.shape == (300, 300)
    expected = cdist(features.astype(np.float64), features.astype(np.float64), "cityblock")
    np.testing.assert_allclose(dist, expected, rtol=1e-12, atol=1e-12)
    assert np.array_equal(dist, dist.T)


def test_l1_distance_matrix_rejects_non_matrix():
    with pytest.raises(ConfigError, match="2-D"):
        l1_distance_matrix(np.zeros(4))
