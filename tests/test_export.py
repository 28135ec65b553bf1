"""Export: the standalone network (state dict + spec, torch.export program, ONNX) computes what the INR generates."""

import pytest
import torch

from raymeta.cli import main
from raymeta.io.files import RunPaths
from raymeta.io.progress import Progress
from raymeta.stages.export import export_network, load_exported, load_program
from raymeta.stages.networks import load_trained
from raymeta.stages.train import train


@pytest.fixture(scope="module")
def trained(prepared_run):
    config = prepared_run("eval.samples=3")
    train(config, progress=Progress(stream=open("/dev/null", "w")))
    return config


@pytest.mark.parametrize("gamma", [0.0, 0.25, 0.75, -0.25])
def test_exported_network_matches_the_generated_one(trained, tmp_path, gamma):
    net, config, payload = load_trained(RunPaths(trained.run_dir).train_checkpoint)
    export_network(net, config, payload.dataset, gamma, tmp_path, samples=1, onnx=False)
    model, spec = load_exported(tmp_path)
    assert spec["gamma"] == gamma and spec["generation"]["samples"] == 1
    assert {tuple(map(int, k.split(","))): h for k, h in spec["hidden_widths"].items()} == net.hidden_widths(gamma)
    x = torch.randn(5, 3, 8, 8, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        expected = net(x, net.generate(gamma))
        assert torch.allclose(model(x), expected, atol=1e-5)
        assert torch.allclose(load_program(tmp_path).module()(x), expected, atol=1e-5)


def test_an_export_whose_dataset_record_lacks_the_image_size_reads_it_from_the_data(trained, tmp_path):
    """Checkpoints from before the dataset record carried ``image_size``: the size comes from the run's data."""
    net, config, payload = load_trained(RunPaths(trained.run_dir).train_checkpoint)
    dataset = {key: value for key, value in payload.dataset.items() if key != "image_size"}
    export_network(net, config, dataset, 0.25, tmp_path, samples=1, onnx=False)
    model, spec = load_exported(tmp_path)
    assert spec["image_size"] == payload.dataset["image_size"] == 8
    assert spec["dataset"] == dataset


def test_export_with_k_samples_is_the_network_evaluation_scores(trained, tmp_path):
    net, config, payload = load_trained(RunPaths(trained.run_dir).train_checkpoint)
    export_network(net, config, payload.dataset, 0.5, tmp_path, onnx=False)  # default: the run's eval.samples = 3
    model, spec = load_exported(tmp_path)
    assert spec["generation"] == {
        "samples": 3,
        "noise": config.inr.coordinate_noise,
        "seed": config.seed,
        "calibration": 0,
    }
    x = torch.randn(4, 3, 8, 8)
    with torch.no_grad():  # exactly how evaluate_gammas draws its K samples
        weights = net.generate(
            0.5, samples=3, noise=config.inr.coordinate_noise, generator=torch.Generator().manual_seed(config.seed)
        )
        assert torch.allclose(model(x), net(x, weights), atol=1e-5)
        name = next(iter(weights))
        assert torch.equal(model.state_dict()[name], weights[name])
        assert not torch.equal(weights[name], net.generate(0.5)[name])  # K noisy samples, not the noise-free one


@pytest.mark.slow
def test_export_command_and_its_errors(trained, tmp_path, capsys):
    out = tmp_path / "g25"
    assert main(["export", "--run-dir", trained.run_dir, "--gamma", "0.25,0.5", "-o", str(out), "--no-onnx"]) == 0
    assert {p.name for p in out.iterdir()} == {"network.json", "network.pt", "network.pt2"}
    assert load_exported(out)[1]["hidden_widths"] == {"1,1": 6, "2,1": 4}
    for gamma, message in [
        ("1.5", "out of range"),
        ("0.99", "leaves no hidden channel"),
        ("nan", "a number"),
        ("0.25,0.5,0", "has 3 value(s) but the network has 2"),
        ("0.2x", "a number"),
    ]:
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


def test_per_block_export_matches_the_generated_network(trained, tmp_path):
    """A per-block configuration exported as state dict and torch.export program: each computes what the INR
    generates at that configuration, at another batch size than the one exported with."""
    net, config, payload = load_trained(RunPaths(trained.run_dir).train_checkpoint)
    gamma = (0.5, 0.0)
    export_network(net, config, payload.dataset, gamma, tmp_path, samples=1, onnx=False)
    model, spec = load_exported(tmp_path)
    assert spec["gamma"] == [0.5, 0.0] and spec["block_gammas"] == {"stage2.block1": 0.5, "stage3.block1": 0.0}
    assert spec["hidden_widths"] == {"1,1": 4, "2,1": 8}
    x = torch.randn(5, 3, 8, 8, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        expected = net(x, net.generate(gamma))
        assert torch.allclose(model(x), expected, atol=1e-5)
        assert torch.allclose(load_program(tmp_path).module()(x), expected, atol=1e-5)


@pytest.mark.slow  # torch's dynamo ONNX exporter takes a few seconds even for the tiny network
def test_onnx_export_computes_the_generated_network(trained, tmp_path):
    """ONNX run with onnxruntime where it is installed (CI installs it: the export extra), else the ONNX checker."""
    net, config, payload = load_trained(RunPaths(trained.run_dir).train_checkpoint)
    gamma = (0.25, 0.75)
    paths = export_network(net, config, payload.dataset, gamma, tmp_path, samples=1, onnx=None)
    x = torch.randn(5, 3, 8, 8, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        expected = net(x, net.generate(gamma))
    if "onnx" not in paths:
        pytest.skip("onnx/onnxscript not installed: ONNX export not checked (pip install 'raymeta[export]')")
    onnx = pytest.importorskip("onnx")
    onnx.checker.check_model(onnx.load(str(paths["onnx"])))
    ort = pytest.importorskip("onnxruntime", reason="onnxruntime not installed: the ONNX file passed the checker only")
    session = ort.InferenceSession(str(paths["onnx"]), providers=["CPUExecutionProvider"])
    (logits,) = session.run(None, {"x": x.numpy()})
    assert torch.allclose(torch.from_numpy(logits), expected, atol=1e-4)


def test_a_program_archive_that_asks_for_pickle_is_refused(trained, tmp_path):
    """torch.export.load would unpickle a weight the archive marks use_pickle; load_program refuses the archive."""
    import json
    import zipfile

    from raymeta.errors import ConfigError

    net, config, payload = load_trained(RunPaths(trained.run_dir).train_checkpoint)
    export_network(net, config, payload.dataset, 0.25, tmp_path / "good", samples=1, onnx=False)
    load_program(tmp_path / "good")  # raymeta's own archive passes the check
    (tmp_path / "bad").mkdir()
    with (
        zipfile.ZipFile(tmp_path / "good" / "network.pt2") as source,
        zipfile.ZipFile(tmp_path / "bad" / "network.pt2", "w") as target,
    ):
        for item in source.infolist():
            data = source.read(item)
            if item.filename.endswith("_weights_config.json"):
                content = json.loads(data)
                next(iter(content["config"].values()))["use_pickle"] = True
                data = json.dumps(content).encode()
            target.writestr(item, data)
    with pytest.raises(ConfigError, match="pickled or custom object"):
        load_program(tmp_path / "bad")
    (tmp_path / "junk").mkdir()
    (tmp_path / "junk" / "network.pt2").write_bytes(b"not a zip")
    with pytest.raises(ConfigError, match="not a readable torch.export archive"):
        load_program(tmp_path / "junk")
