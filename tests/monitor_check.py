"""A check shared by the training tests of both drivers: the monitor rows are measured on the validation split."""

import pytest

from raymeta.io.data import make_loader
from raymeta.io.files import RunPaths
from raymeta.io.results import read_tables
from raymeta.stages.evaluate import evaluate_gammas
from raymeta.stages.networks import load_trained
from raymeta.stages.runtime import load_data


def assert_monitor_is_validation(config) -> None:
    """The last epoch's monitor rows equal an evaluation of the trained network on the validation split, not on
    the test split, and the monitor table says split = validation."""
    paths = RunPaths(config.run_dir)
    net, _, payload = load_trained(paths.train_checkpoint)
    bundle = load_data(config, augment=False)
    last = payload.state.history[-1].monitor
    gammas = [row["gamma"] for row in last]

    def evaluate(split: str) -> list[dict]:
        loader = make_loader(getattr(bundle, split), config.data.eval_batch_size, shuffle=False)
        return evaluate_gammas(
            net, loader, "cpu", gammas, samples=1, noise=0.0, seed=config.seed, image_size=bundle.info.image_size
        )

    validation, test = evaluate("validation"), evaluate("test")
    assert len(last) == len(validation) >= 1
    for monitored, on_validation, on_test in zip(last, validation, test, strict=True):
        assert monitored["accuracy"] == pytest.approx(on_validation["accuracy"], abs=1e-9)
        assert monitored["loss"] == pytest.approx(on_validation["loss"], rel=1e-5)
        assert monitored["loss"] != pytest.approx(on_test["loss"], rel=1e-3)  # not the test split's numbers
    table = read_tables(paths.results / "train-monitor.parquet")
    assert set(table["split"]) == {"validation"} and set(table["phase"]) == {"train"}
    final_epoch = table[table["epoch"] == table["epoch"].max()].sort_values("gamma")
    assert final_epoch["loss"].tolist() == pytest.approx([row["loss"] for row in validation], rel=1e-5)
