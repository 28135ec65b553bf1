"""Result rows made by hand, for tests of the schema and the report (no training needed)."""

import numpy as np
import pandas as pd

from raymeta.io.results import RESULT_COLUMNS, validate_frame

GAMMAS = [-0.25, 0.0, 0.25, 0.5, 0.75]


def rows(
    method: str,
    run_id: str,
    *,
    phase: str = "final",
    split: str | None = None,
    gammas=GAMMAS,
    stage: int = 0,
    epoch: int = 10,
    accuracy: float = 0.9,
    train_time_s: float = 60.0,
    **extra,
) -> pd.DataFrame:
    """Rows of one run; ``split`` defaults to what raymeta writes: test for final rows, validation for train rows."""
    split = split or ("validation" if phase == "train" else "test")
    frame = pd.DataFrame(
        {
            "run_id": run_id,
            "method": method,
            "config_hash": "abc123",
            "git_commit": "deadbee",
            "dataset": "synthetic",
            "architecture": "resnet14-8-8-8",
            "phase": phase,
            "split": split,
            "stage": stage,
            "epoch": epoch,
            "gamma": [float(g) for g in gammas],
            "seen": [0.0 <= g <= 0.5 for g in gammas],
            "samples": 1,
            "accuracy": [accuracy - 0.1 * abs(g) for g in gammas],
            "loss": [0.5 + g for g in gammas],
            "params": [int(1000 * (1 - g)) for g in gammas],
            "macs": [int(50000 * (1 - g)) for g in gammas],
            "wall_time_s": 0.5,
            "train_time_s": train_time_s,
        }
    )
    for key, value in extra.items():
        frame[key] = value
    return validate_frame(frame[RESULT_COLUMNS + list(extra)])


def example_frame(with_trials: bool = False) -> pd.DataFrame:
    parts = [
        rows("metamorphic", "run-a", accuracy=0.9),
        rows("neumeta", "run-b", accuracy=0.7),
        rows("prune-l1", "run-a/prune-l1", gammas=[0.0, 0.25, 0.5, 0.75], accuracy=0.8, train_time_s=1.0),
    ]
    parts += [
        rows("individual", f"ind/gamma={g:g}", gammas=[g], accuracy=0.92 + 0.01 * i, train_time_s=30.0)
        for i, g in enumerate(GAMMAS)
    ]
    parts.append(rows("skip", "run-a/skip", accuracy=0.75, train_time_s=5.0).assign(accuracy=0.75))  # flat in γ
    for stage in range(3):
        for epoch in range(1, 4):
            global_epoch = stage * 3 + epoch
            # the health signals of the epoch; a block joins at its stage (incremental), NaN before
            health = {
                f"alpha.stage3.block{b + 1}": 0.1 * global_epoch if b <= stage else float("nan") for b in range(3)
            }
            health.update(
                {
                    f"rec.stages.2.{b + 1}.{conv}.{kind}": 1.0 / (global_epoch + b) if b <= stage else float("nan")
                    for b in range(3)
                    for conv in ("conv1", "conv2")
                    for kind in ("weight", "bias")
                }
            )
            for prefix, scale in (("balance.", 0.01 * global_epoch), ("balance_at_zero.", 0.02)):
                health.update(
                    {
                        f"{prefix}stages.2.{b + 1}.{conv}.{kind}": (scale if kind == "weight" else 50.0)
                        if b <= stage
                        else float("nan")
                        for b in range(3)
                        for conv in ("conv1", "conv2")
                        for kind in ("weight", "bias")
                    }
                )
            parts.append(
                rows(
                    "metamorphic",
                    "run-a",
                    phase="train",
                    gammas=[0.0, 0.5],
                    stage=stage,
                    epoch=global_epoch,
                    accuracy=0.5 + 0.05 * global_epoch,
                    train_time_s=10.0 * global_epoch,
                    **health,
                )
            )
    if with_trials:  # like a sweep writes them: final rows on validation and on test
        rng = np.random.default_rng(0)
        for trial in range(4):
            columns = {
                "trial_id": f"trial_{trial:05d}",
                "trial_status": "stopped early" if trial == 3 else "finished",
                "param.train.lr": 10.0 ** -(trial + 2),
                "param.train.incremental": bool(trial % 2),
            }
            accuracy = 0.6 + 0.1 * rng.random()
            for split, shift in (("validation", 0.02), ("test", 0.0)):
                parts.append(
                    rows("metamorphic", f"sweep/trial{trial}", split=split, accuracy=accuracy + shift, **columns)
                )
    return pd.concat(parts, ignore_index=True)
