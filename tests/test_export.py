"""Export: the standalone network (state dict + spec, and TorchScript) computes what the INR generates."""

import warnings

import pytest
import torch

from raymeta.cli import main
from raymeta.stages.export import export_network, load_exported
from raymeta.stages.networks import load_trained
from raymeta.stages.train import train
from raymeta.io.files import RunPaths
from raymeta.io.progress import Progress


@pytest.fixture(scope="module")
def trained(prepared_run):
    config = prepared_run("eval.samples=3")
    train(config, progress=Progress(stream=open("/dev/null", "w")))
    return config


def load_script(path):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        return torch.jit.load(str(path))


@pytest.mark.parametrize("gamma", [0.0, 0.25, 0.75, -0.25])
def test_exported_network_matches_the_generated_one(trained, tmp_path, gamma):
    net, config, payload = load_trained(RunPaths(trained.run_dir).train_checkpoint)
    paths = export_network(net, config, payload.dataset, gamma, tmp_path, samples=1)
    model, spec = load_exported(tmp_path)
    assert spec["gamma"] == gamma and spec["generation"]["samples"] == 1
    assert {tuple(map(int, k.split(","))): h for k, h in spec["hidden_widths"].items()} == net.hidden_widths(gamma)
    x = torch.randn(5, 3, 8, 8, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        expected = net(x, net.generate(gamma))
        assert torch.allclose(model(x), expected, atol=1e-5)
        assert torch.allclose(load_script(paths["torchscript"])(x), expected, atol=1e-5)


def test_export_with_k_samples_is_the_network_evaluation_scores(trained, tmp_path):
    net, config, payload = load_trained(RunPaths(trained.run_dir).train_checkpoint)
    export_network(net, config, payload.dataset, 0.5, tmp_path)  # default: the run's eval.samples = 3
    model, spec = load_exported(tmp_path)
    assert spec["generation"] == {"samples": 3, "noise": config.inr.coordinate_noise, "seed": config.seed}
    x = torch.randn(4, 3, 8, 8)
    with torch.no_grad():  # exactly how evaluate_gammas draws its K samples
        weights = net.generate(0.5, samples=3, noise=config.inr.coordinate_noise,
                               generator=torch.Generator().manual_seed(config.seed))
        assert torch.allclose(model(x), net(x, weights), atol=1e-5)
        name = next(iter(weights))
        assert torch.equal(model.state_dict()[name], weights[name])
        assert not torch.equal(weights[name], net.generate(0.5)[name])  # K noisy samples, not the noise-free one


def test_export_command_and_its_errors(trained, tmp_path, capsys):
    out = tmp_path / "g25"
    assert main(["export", "--run-dir", trained.run_dir, "--gamma", "0.25", "-o", str(out)]) == 0
    assert {p.name for p in out.iterdir()} == {"network.json", "network.pt", "network.torchscript.pt"}
    for gamma, message in [("1.5", "out of range"), ("0.99", "leaves no hidden channel"), ("nan", "finite")]:
        assert main(["export", "--run-dir", trained.run_dir, "--gamma", gamma, "-o", str(tmp_path / "x")]) == 2
        assert message in capsys.readouterr().err
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"nope")
    assert main(["export", "--checkpoint", str(bad), "--gamma", "0.25"]) == 2
    assert "corrupt" in capsys.readouterr().err


def test_training_writes_validated_train_rows_per_epoch(trained):
    from raymeta.io.results import read_tables

    rows = read_tables(RunPaths(trained.run_dir).results / "train-monitor.parquet")
    assert (rows["phase"] == "train").all() and (rows["split"] == "validation").all()
    assert rows["stage"].tolist() == [0, 0, 1, 1] and rows["epoch"].tolist() == [1, 1, 2, 2]
    assert rows["gamma"].tolist() == [0.0, 0.5, 0.0, 0.5] and rows["train_time_s"].is_monotonic_increasing
    assert rows["loss"].notna().all()
