"""Statistics calibration (eval.calibration, REPAIR): what it matches, that it changes nothing at full width, and
that evaluation and export build the same calibrated network."""

import pytest
import torch
from test_evaluate import small_network

from raymeta.config.loading import load_config
from raymeta.errors import ConfigError
from raymeta.method.calibration import calibrate_many, calibration_prefixes, reference_preactivations
from raymeta.method.metamorphic import resample_matrix
from raymeta.stages.export import materialize_like_evaluation


def _images(count: int = 24) -> torch.Tensor:
    return torch.randn(count, 3, 8, 8, generator=torch.Generator().manual_seed(1))


def _moments(values):
    flat = torch.cat([v.transpose(0, 1).flatten(1) for v in values], dim=1)
    return flat.mean(1), flat.std(1)


def test_calibration_matches_each_merged_channel_to_its_cell_and_leaves_full_width_alone():
    net = small_network("prior")
    images = _images()
    full = net.generate(0.0)
    (same,) = calibrate_many(net, [full], [0.0], images)
    for name in full:  # γ = 0: the target is the network's own statistics
        torch.testing.assert_close(same[name], full[name], rtol=1e-4, atol=1e-5)
    plain = net.generate(0.5)
    (calibrated,) = calibrate_many(net, [plain], [0.5], images)
    prefixes = calibration_prefixes(net, images)
    reference = reference_preactivations(net, prefixes)
    record: dict = {}
    observed: dict = {}
    for prefix in prefixes:
        net.forward_after_prefix(prefix, calibrated, preactivations=record)
        for name, value in record.items():
            observed.setdefault(name, []).append(value)
    hidden = net.hidden_widths(0.5)
    for s, b in net.active():
        name = f"{net.arch.module_prefix(s, b)}.conv1"
        matrix = resample_matrix(net.arch.widths[s], hidden[(s, b)])
        target_mean, target_std = (matrix @ m for m in _moments(reference[name]))
        mean, std = _moments(observed[name])
        torch.testing.assert_close(mean, target_mean, rtol=1e-3, atol=1e-4)
        torch.testing.assert_close(std, target_std, rtol=1e-3, atol=1e-4)
        assert not torch.allclose(calibrated[f"{name}.weight"], plain[f"{name}.weight"])  # it did change them
        conv2 = name[:-1] + "2.weight"
        assert torch.equal(calibrated[conv2], plain[conv2])  # conv2's output is the stream's: left as it is


def test_the_exported_network_is_the_calibrated_one_evaluation_scores():
    net = small_network("prior")
    images, x = _images(), _images(5)
    settings = {"samples": 1, "noise": 0.0, "seed": 0}
    exported = materialize_like_evaluation(net, 0.5, **settings, calibration=len(images), images=images)
    (weights,) = calibrate_many(net, [net.generate(0.5)], [0.5], images)
    with torch.no_grad():
        torch.testing.assert_close(exported(x), net(x, weights), rtol=1e-4, atol=1e-5)
        assert not torch.allclose(exported(x), materialize_like_evaluation(net, 0.5, **settings)(x))
    with pytest.raises(ValueError, match="calibration images"):
        materialize_like_evaluation(net, 0.5, **settings, calibration=8)


def test_eval_calibration_is_validated_and_hashed_only_when_set():
    with pytest.raises(ConfigError, match=r"eval.calibration=-1 is not allowed: a number of images ≥ 0"):
        load_config(None, ["eval.calibration=-1"])
    assert load_config(None, ["eval.calibration=0"]).hash() == load_config(None, []).hash()
    assert load_config(None, ["eval.calibration=512"]).hash() != load_config(None, []).hash()
