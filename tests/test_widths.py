"""Per-block γ: a configuration is one γ per metamorphic block; generation, sizes and training sampling take it."""

import pytest
import torch

from raymeta.config.loading import load_config
from raymeta.config.migration import stored_config
from raymeta.errors import ConfigError
from raymeta.io.files import RunPaths
from raymeta.method.models import count_params_macs
from raymeta.method.sampling import pool_widths, sample_configurations, sample_gammas
from raymeta.method.widths import block_gammas, canonical, format_gamma, parse_gamma
from raymeta.stages.networks import load_trained


@pytest.fixture(scope="module")
def net(per_block_run):
    network, _, _ = load_trained(RunPaths(per_block_run.run_dir).train_checkpoint)
    return network.eval()


def test_a_per_block_gamma_changes_exactly_the_blocks_it_names(net):
    """Block i of (γ₁, γ₂) is generated as block i of uniform γᵢ, whatever the other block's γ; so the network
    of (0.5, 0) has stage2.block1 at half width and stage3.block1 exactly as at γ = 0."""
    assert net.block_names() == ["stage2.block1", "stage3.block1"]
    mixed, half, full = net.generate((0.5, 0.0)), net.generate(0.5), net.generate(0.0)
    for name, value in mixed.items():
        reference = half if name.startswith("stages.1.1.") else full
        assert torch.equal(value, reference[name]), name
    assert mixed["stages.1.1.conv1.weight"].shape[0] == 4 and mixed["stages.2.1.conv1.weight"].shape[0] == 8
    assert net.hidden_widths((0.5, 0.0)) == {(1, 1): 4, (2, 1): 8}
    x = torch.randn(6, 3, 8, 8, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():  # the function changes (the named block is narrower) ...
        assert not torch.allclose(net(x, mixed), net(x, full))
        # ... and the materialised network computes the per-block generation
        assert torch.allclose(net.materialize((0.5, 0.0))(x), net(x, mixed), atol=1e-5)


def test_macs_and_params_of_a_per_block_vector_are_the_sum_of_per_block_costs(net):
    image = 8
    base_params, base_macs = net.params_macs(0.0, image)
    for gammas in [(0.5, 0.0), (0.0, 0.75), (0.25, -0.25), (0.75, 0.5)]:
        params, macs = net.params_macs(gammas, image)
        parts = [net.params_macs(tuple(g if j == i else 0.0 for j, g in enumerate(gammas)), image) for i in range(2)]
        assert macs - base_macs == sum(m - base_macs for _, m in parts)
        assert params - base_params == sum(p - base_params for p, _ in parts)
        formula = count_params_macs(net.arch, net.hidden_widths(gammas), image)
        assert (params, macs) == (formula[0] + len(net.blocks), formula[1])
    assert net.params_macs((0.25, 0.25), image) == net.params_macs(0.25, image)  # equal entries: uniform γ


def test_per_block_gamma_errors_name_the_value_and_what_is_allowed(net):
    with pytest.raises(ConfigError, match=r"has 3 value\(s\) but the network has 2 .*stage2.block1, stage3.block1"):
        net.hidden_widths((0.1, 0.2, 0.3))
    with pytest.raises(ConfigError, match="out of range"):
        net.hidden_widths((0.1, 1.5))
    with pytest.raises(ConfigError, match="finite number"):
        net.hidden_widths((0.1, float("nan")))
    with pytest.raises(ConfigError, match="a number"):
        parse_gamma("0.1,x")


def test_parse_format_and_canonical_forms():
    assert parse_gamma("0.25") == 0.25 and parse_gamma("0.25, 0.5") == (0.25, 0.5)
    assert format_gamma((0.25, 0.5)) == "0.25,0.5" and format_gamma(0.25) == "0.25"
    assert canonical((0.5, 0.5)) == 0.5 and canonical([0.5, 0.25]) == (0.5, 0.25)
    assert block_gammas(0.5, ["a", "b", "c"]) == [0.5, 0.5, 0.5]


def test_per_block_sampling_draws_each_block_independently_from_the_pool():
    pool, width = [0.0, 0.5], 16
    grid = {1.0 - h / width for h in pool_widths(pool, width)}
    draws = [sample_configurations(3, step, 4, pool, width, "per_block", 3) for step in range(200)]
    assert draws[7] == sample_configurations(3, 7, 4, pool, width, "per_block", 3)  # a pure function of (seed, step)
    assert all(step[0] == (0.0, 0.0, 0.0) for step in draws)  # every block at the prior's width first
    rest = [configuration for step in draws for configuration in step[1:]]
    assert all(len(c) == 3 and set(c) <= grid for c in rest)
    assert sum(len(set(c)) > 1 for c in rest) > 0.8 * len(rest)  # mixed widths, not one γ for all
    for block in range(3):  # every block takes every width of the pool
        assert {c[block] for c in rest} == grid
    assert sample_configurations(3, 7, 4, pool, width) == sample_gammas(3, 7, 4, pool, width)  # uniform: unchanged


def test_the_sandwich_rule_trains_both_ends_of_the_pool_every_step_and_draws_the_rest():
    pool, width = [0.0, 0.5], 64
    narrowest = 1.0 - pool_widths(pool, width)[0] / width
    for step in range(50):
        plain = sample_gammas(3, step, 4, pool, width)
        sandwich = sample_gammas(3, step, 4, pool, width, sandwich=True)
        assert sandwich[:2] == [0.0, narrowest] == [0.0, 0.5] and sandwich[2:] == plain[2:]
        per_block = sample_configurations(3, step, 4, pool, width, "per_block", 3, sandwich=True)
        assert per_block[1] == (0.5, 0.5, 0.5)
        assert per_block[2:] == sample_configurations(3, step, 4, pool, width, "per_block", 3)[2:]
    assert sample_gammas(3, 0, 1, pool, width, sandwich=True) == sample_gammas(3, 0, 1, pool, width)  # M = 1: a draw
    assert load_config(None, ["train.sandwich=true"]).hash() != load_config(None, []).hash()


def test_gamma_sampling_is_validated_and_uniform_keeps_old_hashes():
    with pytest.raises(ConfigError, match=r"train.gamma_sampling='mixed' is not allowed: uniform or per_block"):
        load_config(None, ["train.gamma_sampling=mixed"])
    default = load_config(None, [])
    old = default.to_dict()
    old["train"].pop("gamma_sampling")  # a config saved before the key existed
    assert stored_config(old).hash() == stored_config(default.to_dict()).hash()
    assert load_config(None, ["train.gamma_sampling=per_block"]).hash() != default.hash()
