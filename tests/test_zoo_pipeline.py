"""A Bottleneck network (a small ResNet-50 of torchvision's family) through the whole pipeline: its prior imported
from a state-dict file and fine-tuned, smoothed, trained, evaluated, exported and deployed to a budget."""

import pandas as pd
import pytest
import torch
from conftest import BASE

import raymeta.stages.latency as latency
from raymeta.config.loading import load_config
from raymeta.config.schema import DeployConfig
from raymeta.io.artifacts import PriorCheckpoint, SmoothedCheckpoint
from raymeta.io.files import RunPaths
from raymeta.io.progress import Progress
from raymeta.method.models import ResNet, fold_batchnorm, torchvision_architecture
from raymeta.stages.deploy import deploy
from raymeta.stages.evaluate import run_evaluate
from raymeta.stages.export import export_network, load_exported, load_program, onnx_available
from raymeta.stages.networks import load_trained, prior_network
from raymeta.stages.pretrain import pretrain
from raymeta.stages.smooth import smooth
from raymeta.stages.train import train

QUIET = Progress(stream=open("/dev/null", "w"))
MODEL = ["model.family=resnet50", "model.stage_blocks=[1,1,1,2]", "model.base_width=4"]


@pytest.mark.slow
def test_a_bottleneck_network_from_a_state_dict_file_runs_pretrain_to_deploy(tmp_path, monkeypatch):
    monkeypatch.setattr(latency, "MIN_SECONDS", 0.0)
    monkeypatch.setattr(latency, "FINAL_SECONDS", 0.0)
    arch = torchvision_architecture("resnet50", 3, 4, stage_blocks=(1, 1, 1, 2), base_width=4)
    torch.manual_seed(3)
    trained_elsewhere = ResNet(arch)
    weights = tmp_path / "resnet50-small.pt"
    torch.save(trained_elsewhere.state_dict(), weights)
    base = [item for item in BASE if not item.startswith(("model.", "train.blocks"))]
    config = load_config(
        None,
        base
        + MODEL
        + [
            f"run_dir={tmp_path / 'run'}",
            f"pretrain.init_from={weights}",
            "pretrain.epochs=1",  # a fine-tune of the imported weights
            "train.blocks=[stage4.block1]",
        ],
    )

    prior = PriorCheckpoint.load(pretrain(config, QUIET), expect_hash=config.prior_hash())
    assert prior.done and prior.source["kind"] == "file" and prior.source["path"] == str(weights.resolve())
    assert "validation_accuracy" in prior.metrics
    assert set(prior.state_dict) == set(trained_elsewhere.state_dict())  # torchvision's names throughout

    smoothed = SmoothedCheckpoint.load(smooth(config, QUIET))
    x = torch.randn(4, 3, 8, 8)
    with torch.no_grad():  # folding and permuting kept the fine-tuned prior's function
        folded = fold_batchnorm(prior_network(prior))
        torch.testing.assert_close(prior_network(smoothed)(x), folded(x), rtol=1e-4, atol=1e-4)

    train(config, progress=QUIET)
    results = pd.read_parquet(run_evaluate(config, QUIET))
    assert set(results["gamma"]) == {-0.25, 0.0, 0.25, 0.5, 0.75}
    assert (results["architecture"] == "resnet50-4-1-1-1-2").all()
    macs = results.drop_duplicates("gamma").set_index("gamma")["macs"]
    assert macs[0.75] < macs[0.25] < macs[0.0] < macs[-0.25]

    net, stored, checkpoint = load_trained(RunPaths(config.run_dir).train_checkpoint)
    export = tmp_path / "export"
    paths = export_network(net, stored, checkpoint.dataset, 0.5, export, samples=1, onnx=None)
    model, spec = load_exported(export)
    assert spec["architecture"]["family"] == "bottleneck"
    with torch.no_grad():
        expected = net(x, net.generate(0.5))
        torch.testing.assert_close(model(x), expected, rtol=1e-4, atol=1e-5)
        torch.testing.assert_close(load_program(export).module()(x), expected, rtol=1e-4, atol=1e-5)
    assert model.layer4[1].conv2.weight.shape == (16, 16, 3, 3)  # h = 0.5 · 32 throughout the bottleneck
    assert ("onnx" in paths) == onnx_available()
    if "onnx" in paths:  # CI installs the export extra; without it the two formats above are the check
        ort = pytest.importorskip("onnxruntime")
        session = ort.InferenceSession(str(paths["onnx"]), providers=["CPUExecutionProvider"])
        (logits,) = session.run(None, {"x": x.numpy()})
        torch.testing.assert_close(torch.from_numpy(logits), expected, rtol=1e-4, atol=1e-4)

    budget = int(macs[0.25])
    options = DeployConfig(max_macs=budget, onnx=False, gammas=[0.0, 0.25, 0.5, 0.75], output=str(tmp_path / "deploy"))
    summary = deploy(config.run_dir, options, progress=QUIET)
    assert summary["macs"] <= budget
    deployed, _ = load_exported(tmp_path / "deploy")
    assert deployed.arch.family == "bottleneck"
