"""One seed derivation: derive_seed is a pure function of its keys, and each key tells streams apart."""

import numpy as np
import pytest

from raymeta.seeds import derive_seed


def test_a_derived_seed_depends_on_every_key_and_on_nothing_else():
    assert derive_seed(0, "coordinate-noise", 5, 1) == derive_seed(0, "coordinate-noise", 5, 1)
    seeds = {derive_seed(seed, name, step) for seed in (0, 1) for name in ("a", "b") for step in (5, 6)}
    assert len(seeds) == 8 and all(0 <= seed < 2**64 for seed in seeds)
    assert derive_seed(0, 5, 6) != derive_seed(0, 6, 5)  # the order of the keys counts


def test_integer_keys_give_the_seed_sequences_numbers():
    # the data order and augmentation of every existing prior were drawn from these numbers
    expected = int(np.random.SeedSequence([3, 2, 1]).generate_state(1, dtype=np.uint64)[0])
    assert derive_seed(3, 2, 1) == expected == derive_seed(np.int64(3), 2, 1)


@pytest.mark.parametrize("key", [-1, 1.5, True, None])
def test_a_key_that_is_no_non_negative_integer_or_string_is_refused(key):
    with pytest.raises(ValueError, match=f"derive_seed key {key!r} is not allowed: use a non-negative integer"):
        derive_seed(0, key)
