"""The step's arithmetic (train.precision) and the compiled INR banks (train.compile): what they change and what not."""

import shutil

import pytest
import torch

from raymeta.config.loading import load_config
from raymeta.errors import ConfigError
from raymeta.method.inr import INRBank, bank_forward, compiled_bank_forward
from raymeta.method.models import Architecture, ResNet
from raymeta.method.objective import autocast
from raymeta.method.schedule import trainable_parameters
from raymeta.stages.collective import WorkUnit, accumulate_gradients
from raymeta.stages.networks import build_network
from raymeta.stages.train import objective_of

SMALL = [
    "model.depth=14",
    "model.widths=[8,16,16]",
    "inr.hidden_width=32",
    "inr.depth=3",
    "inr.fourier_frequencies=4",
    "train.blocks=[stage2.block1,stage3.block1]",
    "train.configs_per_step=2",
]


def small_network(*overrides: str):
    config = load_config(None, [*SMALL, *overrides])
    torch.manual_seed(0)
    prior = ResNet(Architecture(14, (8, 16, 16), 3, 10), batchnorm=False).eval()
    return build_network(config, prior), config


def relative_rms(value: torch.Tensor, reference: torch.Tensor) -> float:
    return ((value.float() - reference).pow(2).mean().sqrt() / reference.pow(2).mean().sqrt()).item()


def test_precision_is_checked_and_bf16_is_a_different_run():
    with pytest.raises(ConfigError, match=r"train\.precision.*fp16.*fp32 or bf16"):
        load_config(None, ["train.precision=fp16"])
    fp32, bf16 = load_config(None, []), load_config(None, ["train.precision=bf16"])
    assert fp32.hash() != bf16.hash()
    # Compiling runs the same function: the same run, resumable either way.
    assert load_config(None, ["train.compile=true"]).hash() == fp32.hash()


def test_bf16_generation_stays_within_a_percent_or_two_of_fp32():
    net, config = small_network("inr.base=none", "train.precision=bf16")
    with torch.no_grad():
        for bank in net.hyper.banks():  # a live INR output, not the zero output layer a fresh stage starts with
            torch.nn.init.normal_(bank.w_out, std=0.05)
        reference = net.generate(0.25)
        with autocast(config.train.precision, torch.device("cpu")):
            reduced = net.generate(0.25)
    errors = {name: relative_rms(reduced[name], reference[name]) for name in reference}
    assert any(value.dtype == torch.bfloat16 for value in reduced.values())  # the switch reaches the INRs
    assert max(errors.values()) < 0.03, errors  # bf16 keeps 8 bits: ~0.4 % per product, ~1 % after 3 layers
    assert min(errors.values()) > 1e-4, errors  # and it does change the numbers


def test_a_bf16_step_moves_the_parameters_as_an_fp32_step_does():
    net, _ = small_network()
    images, labels = torch.randn(16, 3, 16, 16), torch.randint(0, 10, (16,))
    units = [WorkUnit(0, 0.0), WorkUnit(1, 0.5)]

    def gradients(precision: str) -> torch.Tensor:
        config = load_config(None, [*SMALL, f"train.precision={precision}"])
        net.zero_grad(set_to_none=True)
        parts = accumulate_gradients(
            net, 1, units, [(images, labels)] * 2, 2, objective_of(config), config.seed, torch.device("cpu")
        )
        assert all(torch.isfinite(torch.tensor(value)) for value in parts.values())
        return torch.cat([p.grad.flatten() for p in trainable_parameters(net) if p.grad is not None])

    fp32, bf16 = gradients("fp32"), gradients("bf16")
    assert bf16.dtype == torch.float32  # master weights and their gradients stay in fp32
    cosine = torch.nn.functional.cosine_similarity(fp32, bf16, dim=0).item()
    assert cosine > 0.98 and not torch.equal(fp32, bf16), cosine


@pytest.mark.parametrize("batched", [True, False])
def test_the_residual_blocks_are_the_papers_update_one_pass_at_a_time(batched):
    # bank_forward fuses h + s·ELU(Wh + b) into one addcmul, and runs the MLPs batched (GPUs) or one by one
    # (CPUs): the same numbers as the three separate operations on the stacked MLPs.
    bank = INRBank(3, 10, 16, 4, 9, input_activation="elu", residual_scale_init=0.7)
    with torch.no_grad():
        bank.s_res.uniform_(0.1, 1.0)
    x = torch.randn(2, 50, 10)
    h = torch.nn.functional.elu(torch.baddbmm(bank.b_in[:2], x, bank.w_in[:2]))
    for j in range(3):
        h = h + bank.s_res[:2, j, None, None] * torch.nn.functional.elu(
            torch.baddbmm(bank.b_res[:2, j], h, bank.w_res[:2, j])
        )
    expected = torch.baddbmm(bank.b_out[:2], h, bank.w_out[:2])
    parameters = (
        bank.w_in[:2],
        bank.b_in[:2],
        bank.w_res[:2],
        bank.b_res[:2],
        bank.s_res[:2],
        bank.w_out[:2],
        bank.b_out[:2],
    )
    assert torch.allclose(bank_forward(x, *parameters, input_activation="elu", batched=batched), expected, atol=1e-6)
    assert torch.allclose(bank(x), expected, atol=1e-6)


@pytest.mark.slow
@pytest.mark.skipif(
    shutil.which("c++") is None and shutil.which("g++") is None, reason="torch.compile on a CPU needs a C++ compiler"
)
def test_compiled_banks_compute_the_same_outputs_and_gradients_at_every_width():
    net, _ = small_network("train.compile=true", "inr.base=none")
    eager, _ = small_network("inr.base=none")
    eager.load_state_dict(net.state_dict())
    assert all(bank.compiled for bank in net.hyper.banks()) and not eager.hyper.weight_bank.compiled
    for gamma in (0.0, 0.5, 0.25):  # new row counts each time: dynamic shapes, no recompile per width
        outputs = [sum(w.pow(2).sum() for w in model.generate(gamma).values()) for model in (net, eager)]
        for model, output in zip((net, eager), outputs, strict=True):
            model.zero_grad(set_to_none=True)
            output.backward()
        assert torch.allclose(outputs[0], outputs[1], rtol=1e-5)
        for a, b in zip(net.hyper.parameters(), eager.hyper.parameters(), strict=True):
            assert torch.allclose(a.grad, b.grad, rtol=1e-4, atol=1e-7)
    assert compiled_bank_forward() is compiled_bank_forward() and compiled_bank_forward() is not bank_forward


@pytest.mark.parametrize("rows", [8, 2100])  # CPU: batched below 2048 rows, one by one at or above
def test_a_banks_subsets_get_the_gradients_of_their_own_mlps(rows):
    # Consecutive MLPs share one view of the parameters and the one-by-one path unbinds it; either way each
    # parameter's gradient must be what the MLPs it belongs to contributed, and zero for the others.
    torch.set_num_threads(2)  # so that 2 MLPs may take either CPU path
    bank = INRBank(5, 6, 8, 3, 2, residual_scale_init=0.5)
    x = torch.randn(5, rows, 6)
    for indices in ([1, 2, 3], [4, 0], [3]):
        bank.zero_grad(set_to_none=True)
        bank.forward_subset(x[indices], indices).pow(2).sum().backward()
        got = [p.grad.clone() for p in bank.parameters()]
        bank.zero_grad(set_to_none=True)
        sum(bank.forward_subset(x[[k]], [k]).pow(2).sum() for k in indices).backward()  # one MLP at a time
        for a, b in zip(got, (p.grad for p in bank.parameters()), strict=True):
            torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)
        untouched = [k for k in range(5) if k not in indices]
        assert all(g[untouched].abs().max() == 0 for g in got) and all(g[indices].abs().max() > 0 for g in got)
