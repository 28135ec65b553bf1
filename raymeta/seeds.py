"""One way to derive a seed from a run's seed and the keys that place a random draw (a step, an epoch, a name).

Every random stream of a run that must not depend on who draws it, or on what was drawn before, takes its seed
from :func:`derive_seed`: the order of an epoch's batches and their augmentation, the compression ratios of a
step, the coordinate noise of one configuration of one step, the initial INRs of a stage. Each is then a pure
function of its keys, so a resumed run draws what the unbroken run drew and every worker of a distributed run
draws what the single process draws. NumPy's ``SeedSequence`` hashes the keys, so neighbouring keys (step 5 and
step 6, seed 0 and seed 1) give unrelated streams, which arithmetic mixing (``seed * 7919 + step``) does not
promise.
"""

from __future__ import annotations

import numpy as np


def derive_seed(*keys: int | str) -> int:
    """A 64-bit seed that depends on ``keys`` alone, e.g. ``derive_seed(config.seed, "coordinate-noise", step, k)``.

    Integers are non-negative; a string (a stream's name, which keeps two streams with the same numbers apart)
    enters as the integer of its UTF-8 bytes. The result fits ``torch.Generator.manual_seed`` and
    ``numpy.random.default_rng``.
    """
    if not keys:
        raise ValueError("derive_seed needs at least one key (the run's seed)")
    entropy = []
    for key in keys:
        if isinstance(key, str):
            entropy.append(int.from_bytes(key.encode("utf-8"), "little"))
        elif isinstance(key, (int, np.integer)) and not isinstance(key, bool) and key >= 0:
            entropy.append(int(key))
        else:
            raise ValueError(f"derive_seed key {key!r} is not allowed: use a non-negative integer or a string")
    return int(np.random.SeedSequence(entropy).generate_state(1, dtype=np.uint64)[0])
