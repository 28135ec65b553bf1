"""The methods a run can follow, as plain data: raymeta's own (the config's defaults), the papers' method with
HTTY's full recipe, and the original NeuMeta baseline.

Presets are ``group.key`` → value maps over the job config; :mod:`raymeta.config` applies them as overrides
(``--method``) and names a configuration's method from them (the ``method`` column of result rows). They stay
data here, not YAML files reached by ``extends:``, because they are applied *over* a job's own YAML (a job
that sets ``train.blocks`` keeps it under ``--method neumeta``) and because the migration of old checkpoints
fills missing keys from ``PAPER_METHOD`` without reading any file.
"""

from raymeta.errors import ConfigError

METHODS = ("raymeta", "recipe", "neumeta")
"""The ``--method`` choices: raymeta (the config as written), recipe (the papers' method with the full recipe's
switches as configured), neumeta (the papers' method with every recipe switch off)."""

NEUMETA_SWITCHES = {
    "incremental": False,
    "alpha_scaling": False,
    "configs_per_step": 1,
    "inr_init": False,
    "separate_bias_inr": False,
    "finetune_head": False,
}
"""The original NeuMeta baseline: every component of the full recipe switched off (``train.*`` keys)."""

PAPER_METHOD = {
    "inr.base": "none",
    "train.alpha_init": 0.0,
    "train.reconstruction": "mse",
    "train.lambda_distill": 0.0,
    "train.lambda_feature": 0.0,
    "train.prefit_steps": 0,
}
"""The papers' method, where raymeta's defaults depart from it (docs/method.md): the INR
generates the weights outright, each generated block starts switched off (α = 0), the reconstruction term is
the per-tensor MSE, and nothing is distilled from the prior. ``--method recipe`` and ``--method neumeta`` apply
these, so the paper's rows stay reachable whatever the defaults."""


def preset(method: str) -> dict[str, object]:
    """The ``group.key`` → value settings of a ``--method`` (empty for raymeta: the config as written)."""
    if method not in METHODS:
        raise ConfigError(f"--method {method!r} is not allowed: {', '.join(METHODS[:-1])} or {METHODS[-1]}")
    if method == "raymeta":
        return {}
    settings = dict(PAPER_METHOD)
    if method == "neumeta":
        settings.update({f"train.{key}": value for key, value in NEUMETA_SWITCHES.items()})
    return settings
