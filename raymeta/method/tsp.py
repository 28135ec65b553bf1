"""Shortest Hamiltonian paths over channel features, for NeuMeta's intra-network smoothing.

Each channel of a layer is a "city" described by its weights; ordering the channels along a short open path
under L1 distance puts similar channels next to each other. Public code for this step has two faults we avoid
here: fast-tsp rejects the zero-distance dummy city used to turn a path into a cycle, and its old releases
truncate float distances to integers (so small distances all become 0 and the identity order comes back).
LKH-based packages carry a non-commercial licence. This module therefore has its own solver that optimises
float distances directly: an exact Held-Karp programme for small inputs and nearest neighbour + 2-opt + Or-opt
for larger ones.
"""

from __future__ import annotations

import numpy as np
import torch

from raymeta.errors import ConfigError

# Held-Karp needs memory of order 2**n * n; beyond this size the heuristic is the only sensible choice.
_EXACT_LIMIT = 16
# Row block for the distance matrix: torch.cdist itself streams over the feature axis, so this only bounds the
# size of each partial result while letting us skip the lower triangle.
_DISTANCE_ROW_BLOCK = 128
# A move counts as an improvement only if it shortens the tour by more than this fraction of its length, so
# float rounding cannot make the local search cycle forever between equal tours.
_RELATIVE_TOLERANCE = 1e-12
# Distances computed in float32 can differ between (i, j) and (j, i) in the last bits; larger gaps are a bug.
_SYMMETRY_TOLERANCE = 1e-6
_MAX_SEGMENT = 3


def l1_distance_matrix(features: np.ndarray) -> np.ndarray:
    """Return the [n, n] float64 matrix of pairwise L1 distances between the rows of ``features`` [n, d].

    Works on row blocks of the upper triangle and mirrors them, so the result is exactly symmetric and no
    [n, n, d] intermediate is ever allocated (n=512, d=20000 needs only the inputs and the output).
    """
    features = np.asarray(features)
    if features.ndim != 2:
        raise ConfigError(f"features must be a 2-D array [n, d], got shape {features.shape}")
    if not np.issubdtype(features.dtype, np.number) or np.iscomplexobj(features):
        raise ConfigError(f"features must be real numbers, got dtype {features.dtype}")
    if not np.all(np.isfinite(features)):
        raise ConfigError("features contain NaN or infinite values")
    n = features.shape[0]
    # float64 so that distances between near-identical channels are not lost to float32 rounding.
    rows = torch.from_numpy(np.ascontiguousarray(features, dtype=np.float64))
    dist = np.zeros((n, n), dtype=np.float64)
    for start in range(0, n, _DISTANCE_ROW_BLOCK):
        stop = min(start + _DISTANCE_ROW_BLOCK, n)
        block = torch.cdist(rows[start:stop], rows[start:], p=1).numpy()
        dist[start:stop, start:] = block
        dist[start:, start:stop] = block.T
    return dist


def path_length(dist: np.ndarray, order: np.ndarray) -> float:
    """Return the length of the open path visiting the cities in ``order``: sum of dist[order[k], order[k+1]]."""
    order = np.asarray(order, dtype=np.int64)
    if order.size < 2:
        return 0.0
    return float(np.asarray(dist)[order[:-1], order[1:]].sum())


def shortest_hamiltonian_path(dist: np.ndarray, *, restarts: int = 4, seed: int = 0, exact_max: int = 12) -> np.ndarray:
    """Return an order (np.int64 permutation of 0..n-1) that visits every city once along a short open path.

    Inputs with n <= ``exact_max`` are solved exactly by Held-Karp. Larger ones are solved heuristically:
    ``restarts`` nearest-neighbour tours (start cities drawn from ``seed``) each polished by 2-opt and Or-opt;
    the best is returned, and never one longer than the identity order. The result depends only on the inputs.

    Raises ConfigError if ``dist`` is not a square, finite, non-negative, symmetric matrix, or if the options
    are out of range.
    """
    dist = _validated_distances(dist)
    if isinstance(restarts, bool) or not isinstance(restarts, (int, np.integer)) or restarts < 1:
        raise ConfigError(f"restarts must be an integer >= 1, got {restarts!r}")
    if (
        isinstance(exact_max, bool)
        or not isinstance(exact_max, (int, np.integer))
        or not 0 <= exact_max <= _EXACT_LIMIT
    ):
        raise ConfigError(f"exact_max must be an integer in [0, {_EXACT_LIMIT}], got {exact_max!r}")

    n = dist.shape[0]
    if n <= 2:
        # Every order of at most two cities has the same length.
        return np.arange(n, dtype=np.int64)
    if n <= exact_max:
        return _held_karp_path(dist)
    return _heuristic_path(dist, restarts=int(restarts), seed=seed)


def _validated_distances(dist: np.ndarray) -> np.ndarray:
    """Check that ``dist`` is a usable distance matrix and return it as a symmetric float64 array."""
    try:
        dist = np.array(dist, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"distance matrix must be numeric: {exc}") from exc
    if dist.ndim != 2 or dist.shape[0] != dist.shape[1]:
        raise ConfigError(f"distance matrix must be square [n, n], got shape {dist.shape}")
    if not np.all(np.isfinite(dist)):
        raise ConfigError("distance matrix contains NaN or infinite values")
    if np.any(dist < 0):
        raise ConfigError(f"distance matrix must be non-negative, smallest entry is {dist.min()!r}")
    if dist.size:
        asymmetry = float(np.abs(dist - dist.T).max())
        if asymmetry > _SYMMETRY_TOLERANCE * float(dist.max()):
            raise ConfigError(
                f"distance matrix must be symmetric, |dist - dist.T| reaches {asymmetry!r} "
                f"(allowed: {_SYMMETRY_TOLERANCE} x largest distance)"
            )
    # Average the two triangles so both directions of an edge cost the same inside the solvers.
    return (dist + dist.T) / 2


def _held_karp_path(dist: np.ndarray) -> np.ndarray:
    """Exact shortest open path by dynamic programming over (set of visited cities, last city).

    ``cost[mask, last]`` is the shortest path that visits exactly the cities in ``mask`` and ends at ``last``,
    starting anywhere. All masks with the same number of cities are processed in one numpy step.
    """
    n = dist.shape[0]
    full = (1 << n) - 1
    masks = np.arange(1 << n, dtype=np.int64)
    bits = 1 << np.arange(n, dtype=np.int64)
    contains = (masks[:, None] & bits[None, :]) != 0  # [2**n, n]
    popcount = contains.sum(axis=1)

    cost = np.full((1 << n, n), np.inf)
    previous = np.full((1 << n, n), -1, dtype=np.int64)
    cost[bits, np.arange(n)] = 0.0  # a path may start at any city for free
    for size in range(2, n + 1):
        layer = masks[popcount == size]  # [m]
        # Predecessor state of (mask, last): the same mask without ``last``; invalid where last is not in mask.
        without_last = layer[:, None] ^ bits[None, :]  # [m, last]
        # candidates[m, last, before] = cost of reaching ``before`` first, then stepping to ``last``.
        candidates = cost[without_last] + dist.T[None, :, :]
        best_before = candidates.argmin(axis=2)
        best_cost = np.take_along_axis(candidates, best_before[:, :, None], axis=2)[:, :, 0]
        valid = contains[layer]
        cost[layer] = np.where(valid, best_cost, np.inf)
        previous[layer] = np.where(valid, best_before, -1)

    last = int(cost[full].argmin())
    order = [last]
    mask = full
    while len(order) < n:
        before = int(previous[mask, last])
        mask ^= 1 << last
        last = before
        order.append(last)
    return np.array(order[::-1], dtype=np.int64)


def _heuristic_path(dist: np.ndarray, *, restarts: int, seed: int) -> np.ndarray:
    """Best open path found by nearest neighbour + local search from several start cities.

    The open path problem becomes a cycle problem by adding a dummy city at distance 0 from every city: the
    dummy's two cycle edges are free, so the shortest cycle through it, cut at the dummy, is the shortest path.
    """
    n = dist.shape[0]
    dummy = n
    extended = np.zeros((n + 1, n + 1), dtype=np.float64)
    extended[:n, :n] = dist

    rng = np.random.default_rng(seed)
    starts = rng.choice(n, size=min(restarts, n), replace=False)
    best_order = np.arange(n, dtype=np.int64)
    best_length = path_length(dist, best_order)
    for start in starts:
        tour = np.append(_nearest_neighbour_path(dist, int(start)), dummy)
        tour = _local_search(extended, tour)
        cut = int(np.flatnonzero(tour == dummy)[0])
        order = np.concatenate([tour[cut + 1 :], tour[:cut]])
        length = path_length(dist, order)
        # Strictly shorter only, so ties keep the earlier result and the outcome does not depend on float noise.
        if length < best_length:
            best_order, best_length = order, length
    return best_order


def _nearest_neighbour_path(dist: np.ndarray, start: int) -> np.ndarray:
    """Open path that starts at ``start`` and always moves to the closest unvisited city."""
    n = dist.shape[0]
    visited = np.zeros(n, dtype=bool)
    order = np.empty(n, dtype=np.int64)
    current = start
    for step in range(n):
        order[step] = current
        visited[current] = True
        if step + 1 < n:
            candidates = np.where(visited, np.inf, dist[current])
            current = int(candidates.argmin())
    return order


def _tour_length(dist: np.ndarray, tour: np.ndarray) -> float:
    """Length of the closed tour, including the edge from the last city back to the first."""
    return float(dist[tour, np.roll(tour, -1)].sum())


def _local_search(dist: np.ndarray, tour: np.ndarray) -> np.ndarray:
    """Alternate 2-opt and Or-opt until neither shortens the closed tour."""
    tour = tour.copy()
    while True:
        _two_opt(dist, tour)
        tolerance = _RELATIVE_TOLERANCE * _tour_length(dist, tour)
        tour, improved = _or_opt(dist, tour, tolerance)
        if not improved:
            return tour


def _two_opt(dist: np.ndarray, tour: np.ndarray) -> None:
    """Improve the closed ``tour`` in place with 2-opt moves until none helps.

    For each position i the gains of replacing edges (t[i], t[i+1]) and (t[j], t[j+1]) by (t[i], t[j]) and
    (t[i+1], t[j+1]) are computed for all j at once, and the best improving j is applied by reversing t[i+1..j].
    """
    size = len(tour)
    tolerance = _RELATIVE_TOLERANCE * _tour_length(dist, tour)
    improved = True
    while improved:
        improved = False
        following = np.roll(tour, -1)
        for i in range(size - 2):
            a, b = tour[i], tour[i + 1]
            # With i == 0 the last edge (t[-1], t[0]) shares city t[0] with the first, so it is no candidate.
            j_stop = size - 1 if i == 0 else size
            c, d = tour[i + 2 : j_stop], following[i + 2 : j_stop]
            gains = dist[a, b] + dist[c, d] - dist[a, c] - dist[b, d]
            best = int(gains.argmax())
            if gains[best] > tolerance:
                j = i + 2 + best
                tour[i + 1 : j + 1] = tour[i + 1 : j + 1][::-1]
                following = np.roll(tour, -1)
                improved = True


def _or_opt(dist: np.ndarray, tour: np.ndarray, tolerance: float) -> tuple[np.ndarray, bool]:
    """One pass of Or-opt over the closed ``tour``: move segments of 1..3 cities to a better edge.

    Each segment may be inserted in either orientation between any two consecutive cities outside it; all
    insertion points are scored at once and the best improving one is applied. Returns the new tour and
    whether any move was made.
    """
    size = len(tour)
    improved = False
    for length in range(1, _MAX_SEGMENT + 1):
        # Moving a segment needs at least two other cities to form the edge it is inserted into.
        if size - length < 3:
            break
        position = 0
        while position < size:
            # Rotate so the segment is tour[0:length]; the rest then runs from its successor to its predecessor.
            rotated = np.roll(tour, -position)
            first, last = rotated[0], rotated[length - 1]
            rest = rotated[length:]
            predecessor, successor = rest[-1], rest[0]
            removal_gain = dist[predecessor, first] + dist[last, successor] - dist[predecessor, successor]
            # Insertion edges are (rest[k], rest[k+1]); the closing edge (predecessor, successor) is where the
            # segment came from, so it is left out.
            left, right = rest[:-1], rest[1:]
            edge = dist[left, right]
            forward = dist[left, first] + dist[last, right] - edge
            backward = dist[left, last] + dist[first, right] - edge
            insertion = np.minimum(forward, backward)
            best = int(insertion.argmin())
            if removal_gain - insertion[best] > tolerance:
                segment = rotated[:length]
                if backward[best] < forward[best]:
                    segment = segment[::-1]
                tour = np.concatenate([rest[: best + 1], segment, rest[best + 1 :]])
                improved = True
            position += 1
    return tour, improved
