"""Tiny image folders written by the tests: a few dozen small PNGs, one colour per class plus noise."""

from pathlib import Path

import numpy as np
from PIL import Image

CLASSES = ("circle", "square", "triangle")


def write_image_folder(
    root: Path,
    per_class: dict[str, int] | None = None,
    classes: tuple[str, ...] = CLASSES,
    seed: int = 0,
) -> Path:
    """``root`` holding ``train/``, ``test/`` (and ``val/`` where ``per_class`` names it), each with one folder of
    PNGs per class: ``per_class[split]`` images of sizes between 16 and 20 pixels, so resizing is exercised."""
    per_class = per_class or {"train": 16, "test": 6}
    rng = np.random.default_rng(seed)
    for split, count in per_class.items():
        for label, name in enumerate(classes):
            folder = root / split / name
            folder.mkdir(parents=True, exist_ok=True)
            colour = np.array([(label * 90) % 256, (255 - label * 70) % 256, (label * 40 + 60) % 256])
            for index in range(count):
                height, width = (int(v) for v in rng.integers(16, 21, size=2))
                noise = rng.integers(-60, 61, size=(height, width, 3))
                pixels = np.clip(colour + noise, 0, 255).astype(np.uint8)
                Image.fromarray(pixels).save(folder / f"{index:03d}.png")
    return root
