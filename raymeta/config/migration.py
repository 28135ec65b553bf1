"""The configuration stored in a checkpoint, read back: a checkpoint's config of an older day lacks the keys
added since, and each missing key takes the value the run was trained with, which is not always today's
default."""

from raymeta.config.loading import config_from_dict
from raymeta.config.schema import Config
from raymeta.method.presets import PAPER_METHOD


def stored_config(values: dict) -> Config:
    """The configuration stored in a checkpoint (always complete: ``Config.to_dict()`` of its day).

    One written before raymeta's method departed from the papers' (no ``train.alpha_init`` in it) was trained
    with the papers' method, so the keys it lacks take PAPER_METHOD's values, not today's defaults."""
    values = {group: dict(v) if isinstance(v, dict) else v for group, v in values.items()}
    if isinstance(values.get("train"), dict) and "alpha_init" not in values["train"]:
        for key, value in PAPER_METHOD.items():
            group, name = key.split(".")
            values.setdefault(group, {}).setdefault(name, value)
    return config_from_dict(values)
