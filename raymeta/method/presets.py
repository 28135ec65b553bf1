"""The methods a run can follow, as plain data: raymeta's own (the config's defaults), the papers' method with
HTTY's full recipe (and its optimisation as HTTY's code runs it), and the original NeuMeta baseline.

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


RECIPE_OPTIMISATION = {
    "train.head_updates": "per_configuration",
    "train.head_weight_decay": 0.01,
    "train.warmup": "first_stage",
    "train.ema_decay": 0.0,
    "inr.input_activation": "elu",
    "inr.residual_scale_init": 0.1,
    "inr.noise_shape": True,
    "eval.noise": "every_sample",
}
"""HTTY's optimisation as its public code runs it (``neumeta_main/train_cifar100_iterative.py``,
``neumeta/utils``, ``neumeta/hypermodel.py``, ``Cifar100_resnet56_myConf_Iterative.yaml``; docs/method.md): α and
the head stepped after every configuration by their own AdamW (weight decay 1e-2, no warm-up, no clipping), a
fresh INR AdamW every stage warmed up in the first stage only, no EMA, ELU after the INR's input layer, residual
scales from 0.1, coordinate noise on all six coordinates, in training and at evaluation. ``--method recipe``
applies these over PAPER_METHOD; ``--method neumeta`` does not (NeuMeta's code: ReLU, an EMA, noise on the
position only, as the jobs configure). Kept apart from PAPER_METHOD, which also fills the keys of checkpoints
older than raymeta's own method: those runs were trained without any of these."""


def preset(method: str) -> dict[str, object]:
    """The ``group.key`` → value settings of a ``--method`` (empty for raymeta: the config as written)."""
    if method not in METHODS:
        raise ConfigError(f"--method {method!r} is not allowed: {', '.join(METHODS[:-1])} or {METHODS[-1]}")
    if method == "raymeta":
        return {}
    settings = dict(PAPER_METHOD)
    if method == "neumeta":
        settings.update({f"train.{key}": value for key, value in NEUMETA_SWITCHES.items()})
    else:
        settings.update(RECIPE_OPTIMISATION)
    return settings
