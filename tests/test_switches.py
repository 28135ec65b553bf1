"""Each switch of the recipe (paper Table 1) and each reference-code choice does what its name says."""

import pytest
import torch

from raymeta.config.loading import load_config
from raymeta.io.artifacts import MetamorphicCheckpoint
from raymeta.io.files import RunPaths
from raymeta.io.progress import Progress
from raymeta.method.ema import ExponentialAverage, inr_parameters
from raymeta.method.inr import INRBank
from raymeta.method.metamorphic import MetamorphicNetwork
from raymeta.method.models import Architecture, ResNet, resolve_blocks
from raymeta.method.objective import configuration_loss, reconstruction_error
from raymeta.method.sampling import pool_widths, sample_gammas
from raymeta.method.schedule import initialise_new_blocks, plan_stages, prefit_new_blocks, set_warmup, warmup_position
from raymeta.stages.networks import load_trained
from raymeta.stages.train import objective_of, train

QUIET = Progress(stream=open("/dev/null", "w"))
BLOCKS = [(1, 1), (2, 1)]


def small_network(**kwargs) -> MetamorphicNetwork:
    torch.manual_seed(0)
    prior = ResNet(Architecture(14, (8, 8, 16), 3, 4), batchnorm=False).eval()
    options = dict(
        inr_hidden=16, inr_depth=3, frequencies=3, separate_bias=True, alpha_scaling=True, finetune_head=True
    )
    options.update(kwargs)
    return MetamorphicNetwork(prior, BLOCKS, **options)


def skip_network_output(net: MetamorphicNetwork, x: torch.Tensor) -> torch.Tensor:
    """The prior with the metamorphic blocks' residual branches removed (each block is relu(x))."""
    import torch.nn.functional as F

    with torch.no_grad():
        h = F.relu(net.prior.stem(x))
        for s, b in net.arch.block_positions():
            h = F.relu(h) if (s, b) in net.blocks else net.prior.block(s, b)(h)
        return net.prior.fc(torch.flatten(F.adaptive_avg_pool2d(h, 1), 1))


# ---- α scaling -------------------------------------------------------------------------------------------
def test_alpha_starts_at_zero_is_one_per_block_and_shared_by_every_gamma():
    net = small_network()
    assert isinstance(net.alphas, torch.nn.Parameter) and net.alphas.tolist() == [0.0, 0.0]
    x = torch.randn(5, 3, 8, 8)
    skip = skip_network_output(net, x)
    for gamma in (0.0, 0.25, 0.5):  # α = 0: every γ computes the skip network
        torch.testing.assert_close(net(x, net.generate(gamma)), skip)
    with torch.no_grad():
        net.alphas.copy_(torch.tensor([0.5, -0.3]))
    grads = []
    for gamma in (0.0, 0.5):
        net.zero_grad()
        net(x, net.generate(gamma)).sum().backward()
        grads.append(net.alphas.grad.clone())
    assert all(bool((g != 0).all()) for g in grads), "one α per block, reached from every γ"
    assert not torch.allclose(net(x, net.generate(0.0)), skip), "with α ≠ 0 the generated blocks are in use"


def test_without_alpha_scaling_the_branch_is_added_at_scale_one():
    net = small_network(alpha_scaling=False)
    assert "alphas" not in dict(net.named_parameters()) and net.alphas.tolist() == [1.0, 1.0]
    assert net.parameter_groups()["alpha"] == []


# ---- reconstruction ------------------------------------------------------------------------------------
def reconstruction_only(mode: str):
    """A small network, a config whose loss is the reconstruction term alone (``train.reconstruction=mode``), a batch."""
    config = load_config(
        None,
        [
            "inr.coordinate_noise=0",
            "train.lambda_task=0",
            "train.lambda_reg=0",
            f"train.reconstruction={mode}",
            "train.lambda_distill=0",
        ],
    )
    return small_network(), config, torch.randn(4, 3, 8, 8), torch.randint(0, 4, (4,))


def test_reconstruction_is_the_mean_of_per_tensor_mses_and_only_at_the_prior_shape():
    net, config, images, labels = reconstruction_only("mse")
    total, parts = configuration_loss(net, 0.0, images, labels, objective_of(config), None)
    generated, targets = net.generate(0.0), net.prior_tensors()
    by_hand = sum(((generated[k] - t) ** 2).mean() for k, t in targets.items()) / len(targets)
    assert parts["rec"] == pytest.approx(by_hand.item(), rel=1e-5)
    pooled = torch.cat([(generated[k] - t).flatten() for k, t in targets.items()]).pow(2).mean()
    assert abs(by_hand.item() - pooled.item()) > 1e-3 * by_hand.item(), "not one MSE over all elements"
    assert total.item() == pytest.approx(by_hand.item(), rel=1e-5)
    for gamma in (0.25, 0.5, -0.25):  # any other shape: no reconstruction term
        assert configuration_loss(net, gamma, images, labels, objective_of(config), None)[1]["rec"] == 0.0


def test_relative_reconstruction_divides_each_tensor_by_its_mean_square():
    net, config, images, labels = reconstruction_only("relative")
    _, parts = configuration_loss(net, 0.0, images, labels, objective_of(config), None)
    generated, targets = net.generate(0.0), net.prior_tensors()
    by_hand = sum(((generated[k] - t) ** 2).mean() / t.pow(2).mean() for k, t in targets.items()) / len(targets)
    assert parts["rec"] == pytest.approx(by_hand.item(), rel=1e-5)
    zeros = {k: torch.zeros_like(t) for k, t in targets.items()}
    assert reconstruction_error(zeros, targets, relative=True).item() == pytest.approx(1.0)  # zeros score 1


def test_distillation_term_is_zero_against_its_own_logits_and_positive_otherwise():
    net = small_network()
    config = load_config(None, ["inr.coordinate_noise=0", "train.lambda_distill=1", "train.distill_temperature=2"])
    images, labels = torch.randn(4, 3, 8, 8), torch.randint(0, 4, (4,))
    with torch.no_grad():
        own = net(images, net.generate(0.25))
    objective = objective_of(config)
    assert configuration_loss(net, 0.25, images, labels, objective, None, teacher_logits=own)[1]["distill"] < 1e-6
    other = configuration_loss(net, 0.25, images, labels, objective, None, teacher_logits=torch.randn_like(own))[1]
    assert other["distill"] > 1e-3
    off = load_config(None, ["train.lambda_distill=0"])
    off = objective_of(off)
    assert configuration_loss(net, 0.25, images, labels, off, None, teacher_logits=own * 5)[1]["distill"] == 0.0


def test_reconstruction_error_weighs_a_bias_as_much_as_a_kernel():
    targets = {"w": torch.zeros(100), "b": torch.zeros(1)}
    assert reconstruction_error({"w": torch.zeros(100), "b": torch.ones(1)}, targets).item() == pytest.approx(0.5)


# ---- configuration sampling ----------------------------------------------------------------------------
def test_single_configuration_widths_are_integers_covering_the_pool():
    width = 16
    draws = [sample_gammas(3, step, 1, [0.0, 0.5], width)[0] for step in range(2000)]
    hidden = [(1 - g) * width for g in draws]
    assert all(abs(h - round(h)) < 1e-9 for h in hidden)
    assert sorted({round(h) for h in hidden}) == list(range(8, 17)) == pool_widths([0.0, 0.5], width)
    share = draws.count(0.0) / len(draws)
    assert 0.07 < share < 0.16, f"γ = 0 drawn in {share:.3f} of single-configuration steps, expected ~1/9"
    assert sample_gammas(3, 7, 4, [0.0, 0.5], width)[0] == 0.0  # M ≥ 2: γ = 0 always first
    assert sample_gammas(3, 7, 4, [0.0, 0.5], width) == sample_gammas(3, 7, 4, [0.0, 0.5], width)


def test_pool_widths_stay_inside_the_pool():
    assert pool_widths([-0.25, 0.5], 16) == list(range(8, 21))
    assert pool_widths([0.0, 0.3], 16) == list(range(12, 17))  # 11 would be γ = 0.3125, outside
    assert pool_widths([0.1, 0.11], 16) == [14]  # narrower than one channel: the width nearest the low end


# ---- INR initialisation ---------------------------------------------------------------------------------
def _mlp(bank: INRBank, index: int) -> list[torch.Tensor]:
    return [p[index].clone() for p in bank.parameters()]


def _same(a, b) -> bool:
    return all(torch.equal(x, y) for x, y in zip(a, b, strict=True))


@pytest.mark.parametrize("inr_init", [True, False])
def test_inr_init_copies_only_a_trained_predecessor(inr_init):
    net = small_network()
    with torch.no_grad():  # "train" block 0's INRs
        for bank in net.hyper.banks():
            for p in bank.parameters():
                p[:2].add_(torch.randn_like(p[:2]))
    trained = [t for bank in net.hyper.banks() for i in (0, 1) for t in _mlp(bank, i)]
    initialise_new_blocks(net, 1, 2, seed=0, stage=1, alpha_init=1.0, inr_init=inr_init)  # stage 2: block 1 joins
    new = [t for bank in net.hyper.banks() for i in (2, 3) for t in _mlp(bank, i)]
    assert _same(new, trained) == inr_init
    assert _same([t for bank in net.hyper.banks() for i in (0, 1) for t in _mlp(bank, i)], trained), "block 0 untouched"


def test_non_incremental_runs_start_every_block_at_random_even_with_inr_init():
    net = small_network()
    initialise_new_blocks(net, 0, 2, seed=0, stage=0, alpha_init=1.0, inr_init=True)  # both new: no trained one
    for bank in net.hyper.banks():
        assert not _same(_mlp(bank, 0), _mlp(bank, 2)) and not _same(_mlp(bank, 1), _mlp(bank, 3))


def test_incremental_run_starts_stage_two_from_the_trained_first_block(prepared_run, monkeypatch):
    import raymeta.stages.train as training

    config = prepared_run("train.epochs_per_stage=1", "inr.base=none")  # the papers' INR: no prior base
    path = train(config, stop_after_epochs=1, progress=QUIET)  # stage 1 done: block 0 trained
    trained = MetamorphicCheckpoint.load(path).net_state
    seen = {}

    class Captured(Exception):
        pass

    def capture(setup, *args, **kwargs):
        seen.update({k: v.clone() for k, v in setup.net.hyper.state_dict().items()})
        raise Captured

    monkeypatch.setattr(training, "train_epoch", capture)
    with pytest.raises(Captured):
        train(config, resume=True, progress=QUIET)
    for name in ("weight_bank.w_in", "weight_bank.w_out", "bias_bank.w_res"):
        torch.testing.assert_close(seen[name][2:4], trained[f"hyper.{name}"][0:2], rtol=0, atol=0)
        assert not torch.equal(trained[f"hyper.{name}"][0:2], trained[f"hyper.{name}"][2:4])


# ---- bias INRs -----------------------------------------------------------------------------------------
@pytest.mark.parametrize("separate", [True, False])
def test_each_bias_has_its_own_inr_and_reads_its_first_output(separate):
    net = small_network(separate_bias=separate)
    assert net.hyper.weight_bank.out_dim == 9
    assert net.hyper.bias_bank.out_dim == (1 if separate else 9)
    before = net.generate(0.25)
    biases = [k for k in before if k.endswith(".bias")]
    with torch.no_grad():
        net.hyper.weight_bank.w_out.add_(1.0)  # the kernel INRs do not make the biases
    after = net.generate(0.25)
    assert all(torch.equal(before[k], after[k]) for k in biases)
    if not separate:
        with torch.no_grad():
            net.hyper.bias_bank.w_out[..., 1:].add_(1.0)  # columns 1..8 are generated and discarded
        assert all(torch.equal(before[k], net.generate(0.25)[k]) for k in biases)
    with torch.no_grad():
        net.hyper.bias_bank.b_out[..., 0].add_(1.0)  # the first value is the bias
    shifted = net.generate(0.25)
    assert all(torch.allclose(shifted[k], before[k] + 1.0, atol=1e-5) for k in biases)


# ---- warm-up -------------------------------------------------------------------------------------------
def test_warmup_position_counts_from_the_run_or_from_the_stage():
    # epoch 2 of stage 2, step 3 of 10 per epoch, 37 steps since the run began
    assert warmup_position("once", 37, 1, 3, 10) == 37
    assert warmup_position("per_stage", 37, 1, 3, 10) == 13
    optimizer = torch.optim.AdamW([{"params": [torch.nn.Parameter(torch.zeros(1))], "lr": 1.0, "base_lr": 1.0}])
    assert set_warmup(optimizer, 4, 20) == pytest.approx(0.25) and optimizer.param_groups[0]["lr"] == 0.25
    assert set_warmup(optimizer, 40, 20) == 1.0


@pytest.mark.parametrize("mode", ["once", "per_stage", pytest.param("first_stage", marks=pytest.mark.slow)])
def test_learning_rate_of_a_run_follows_the_warmup_mode(prepared_run, monkeypatch, mode):
    import raymeta.stages.train as training

    # 2 stages × 2 epochs × 3 steps; warm-up over 1 epoch = 3 steps (first_stage: per epoch, over 2 epochs)
    epochs = 2 if mode == "first_stage" else 1
    config = prepared_run("train.epochs_per_stage=2", f"train.warmup_epochs={epochs}", f"train.warmup={mode}")
    rates, optimizers = [], []
    original = training.apply_update

    def record(net, optimizer, clip_value, parameters=None):
        rates.append(next(g["lr"] / g["base_lr"] for g in optimizer.param_groups if g["name"] == "inr"))
        optimizers.append(optimizer)
        original(net, optimizer, clip_value, parameters)

    monkeypatch.setattr(training, "apply_update", record)
    train(config, progress=QUIET)
    if mode == "first_stage":  # HTTY's LinearLR from 1e-5, stepped per epoch; constant in the second stage
        assert rates == [pytest.approx(1e-5)] * 3 + [pytest.approx(0.5 + 0.5e-5)] * 3 + [1.0] * 6
    else:
        warm = [pytest.approx(1 / 3), pytest.approx(2 / 3), 1.0]
        stage_two = warm + [1.0] * 3 if mode == "per_stage" else [1.0] * 6
        assert rates == warm + [1.0] * 3 + stage_two
    # once: one optimiser for the run; per_stage and first_stage: a fresh one in the second stage
    assert (optimizers[6] is optimizers[0]) == (mode == "once") and optimizers[5] is optimizers[0]
    if mode == "once":  # the second block's rows (bank rows 2, 3; α entry 1) count their own 6 steps, not 12
        state = optimizers[-1].state
        kernels, alphas = optimizers[-1].param_groups[0]["params"][0], optimizers[-1].param_groups[1]["params"][0]
        assert state[kernels]["step"].tolist() == [12, 12, 6, 6] and state[alphas]["step"].tolist() == [12, 6]


# ---- full network ---------------------------------------------------------------------------------------
def test_full_network_excludes_the_first_block_of_each_stage_and_the_last_block():
    arch = Architecture(56, (16, 32, 64), 3, 100)
    full = resolve_blocks(["full"], arch)
    assert len(full) == 27 - 3 - 1
    assert all(b != 0 for _, b in full) and arch.last_position() not in full
    assert resolve_blocks(["stage1"], arch) == [(0, b) for b in range(1, 9)]
    assert resolve_blocks(["stage1.block0"], arch) == [(0, 0)]  # still allowed when named


# ---- reference-code details ------------------------------------------------------------------------------
def test_inr_input_activation_and_residual_scale_change_the_mlp():
    x = torch.randn(2, 5, 4)
    torch.manual_seed(0)
    plain = INRBank(2, 4, 8, 3, 9, input_activation="none", residual_scale_init=0.1)
    torch.manual_seed(0)
    relu = INRBank(2, 4, 8, 3, 9, input_activation="relu", residual_scale_init=0.1)
    assert torch.equal(plain.w_in, relu.w_in) and not torch.allclose(plain(x), relu(x))
    assert torch.all(plain.s_res == 0.1)
    with pytest.raises(ValueError, match="input_activation"):
        INRBank(1, 4, 8, 3, 9, input_activation="tanh")


def test_ema_follows_its_decay_and_restarts():
    p = torch.nn.Parameter(torch.zeros(3))
    ema = ExponentialAverage({"p": p}, 0.5)
    with torch.no_grad():
        p.fill_(1.0)
    ema.update()  # decay min(0.5, 1/10) = 0.1
    assert torch.allclose(ema.shadow["p"], torch.full((3,), 0.9))
    with ema.applied():
        assert torch.allclose(p, torch.full((3,), 0.9))
    assert torch.equal(p, torch.ones(3))
    ema.restart()
    assert ema.updates == 0 and torch.equal(ema.shadow["p"], torch.ones(3))


def test_trained_network_is_evaluated_with_the_averaged_inr_weights(prepared_run):
    path = train(prepared_run(), progress=QUIET)
    payload = MetamorphicCheckpoint.load(path)
    net, _, _ = load_trained(path)
    averaged = inr_parameters(net)
    assert payload.ema["updates"] == 3  # restarted at stage 2, 3 steps since
    for name, shadow in payload.ema["shadow"].items():
        assert torch.equal(averaged[name].detach(), shadow)
    assert any(not torch.equal(payload.net_state[name], shadow) for name, shadow in payload.ema["shadow"].items()), (
        "the average differs from the last training weights"
    )
    off = prepared_run("train.ema_decay=0")
    payload = MetamorphicCheckpoint.load(train(off, progress=QUIET))
    assert payload.ema is None
    net, _, _ = load_trained(RunPaths(off.run_dir).train_checkpoint)
    for name, parameter in inr_parameters(net).items():
        assert torch.equal(parameter.detach(), payload.net_state[name])


# ---- incremental stages, fine-tuned head --------------------------------------------------------------------
def test_incremental_adds_one_block_per_stage_and_non_incremental_trains_all_as_long():
    on = plan_stages(True, 3, 4)
    assert [(s.active_blocks, s.epochs) for s in on] == [(1, 3), (2, 3), (3, 3), (4, 3)]
    off = plan_stages(False, 3, 4)
    assert [(s.active_blocks, s.epochs) for s in off] == [(4, 12)]


@pytest.mark.parametrize("finetune_head", [True, False])
def test_finetune_head_trains_the_last_block_and_classifier_or_freezes_them(finetune_head):
    torch.manual_seed(0)
    prior = ResNet(Architecture(14, (8, 8, 16), 3, 4), batchnorm=False).eval()
    net = MetamorphicNetwork(
        prior,
        [(1, 1)],
        inr_hidden=8,
        inr_depth=2,
        frequencies=2,
        separate_bias=True,
        alpha_scaling=True,
        finetune_head=finetune_head,
    )
    last = net.prior.block(*net.arch.last_position())  # not metamorphic here
    head = [*net.prior.fc.parameters(), *last.parameters()]
    assert all(p.requires_grad == finetune_head for p in head)
    assert {id(p) for p in net.parameter_groups()["head"]} == ({id(p) for p in head} if finetune_head else set())
    frozen = [p for name, p in net.prior.named_parameters() if not name.startswith(("fc", "stages.2.1"))]
    assert not any(p.requires_grad for p in frozen), "the rest of the prior never trains"


# ---- raymeta's departures: the prior base, α's start, the warm start, block-output distillation ------------
def test_resample_matrix_is_the_identity_at_the_prior_width_and_averages_otherwise():
    from raymeta.method.metamorphic import resample_matrix

    torch.testing.assert_close(resample_matrix(8, 8), torch.eye(8))
    for width in (3, 4, 5, 16):
        matrix = resample_matrix(8, width)
        torch.testing.assert_close(matrix.sum(1), torch.ones(width))
    torch.testing.assert_close(resample_matrix(8, 4)[1], torch.tensor([0, 0, 0.5, 0.5, 0, 0, 0, 0.0]))


def test_prior_base_starts_as_the_prior_and_gamma_changes_the_function():
    net = small_network(base="prior")
    initialise_new_blocks(net, 0, 2, seed=0, stage=0, alpha_init=1.0, inr_init=True)
    assert net.alphas.tolist() == [1.0, 1.0]
    for bank in net.hyper.banks():  # the correction starts at zero
        assert bank.w_out[:4].abs().sum() == 0 and bank.b_out[:4].abs().sum() == 0
    x = torch.randn(3, 3, 8, 8)
    with torch.no_grad():
        prior = net.prior(x)
        torch.testing.assert_close(net(x, net.generate(0.0)), prior)  # γ = 0: the prior exactly
        torch.testing.assert_close(net(x, net.generate(-1.0)), prior, atol=1e-5, rtol=1e-5)  # each channel twice
        assert (net(x, net.generate(0.5)) - prior).abs().max() > 1e-3  # γ changes the function
        merged = net.generate(0.5)
    state = net.prior.state_dict()
    name = "stages.2.1.conv1.weight" if "stages.2.1.conv1.weight" in merged else next(iter(merged))
    if name.endswith("conv1.weight"):  # hidden channel 0 at half width: the mean of prior channels 0 and 1
        torch.testing.assert_close(merged[name][0], state[name][:2].mean(0))


def test_paper_base_starts_every_block_switched_off():
    net = small_network()
    initialise_new_blocks(net, 0, 2, seed=0, stage=0, alpha_init=0.0, inr_init=True)
    assert net.alphas.tolist() == [0.0, 0.0]
    x = torch.randn(3, 3, 8, 8)
    with torch.no_grad():
        torch.testing.assert_close(net(x, net.generate(0.3)), skip_network_output(net, x))


def test_warm_start_fits_only_the_new_blocks_to_the_prior():
    net = small_network()
    initialise_new_blocks(net, 0, 2, seed=0, stage=0, alpha_init=1.0, inr_init=True)
    net.set_active_blocks(2)
    before = {k: v.clone() for k, v in net.hyper.state_dict().items()}
    block1 = {
        n: t for n, t in net.prior_tensors().items() if n.startswith(net.hyper.layers[2].module.rsplit(".", 1)[0])
    }
    generated = net.generate(0.0)
    before_error = {n: ((generated[n] - t).norm() / t.norm()).item() for n, t in block1.items()}
    fitted = prefit_new_blocks(net, 1, 2, seed=0, stage=1, steps=150, lr=0.01, coordinate_noise=0.0)  # block 1
    assert set(fitted) == set(block1)
    for name, error in fitted.items():  # closer to the prior (a small INR cannot copy noisy kernels: docs/method.md)
        assert error < 0.9 * before_error[name], (name, before_error[name], error)
    after = net.hyper.state_dict()
    for name, value in before.items():  # block 0's MLPs (0 and 1) never move
        torch.testing.assert_close(after[name][:2], value[:2], rtol=0, atol=0)
        assert not torch.equal(after[name][2:4], value[2:4]) or "s_res" in name


def test_block_output_distillation_pairs_each_generated_branch_with_the_prior_branch():
    net = small_network(base="prior")
    initialise_new_blocks(net, 0, 2, seed=0, stage=0, alpha_init=1.0, inr_init=True)
    x = torch.randn(2, 3, 8, 8)
    features = []
    net(x, net.generate(0.0), features)
    assert len(features) == 2
    for branch, target in features:  # at γ = 0 with the base, each block computes the prior block's branch
        torch.testing.assert_close(branch, target)
    config = load_config(
        None,
        [
            "train.lambda_feature=1",
            "train.lambda_distill=0",
            "train.lambda_task=0",
            "train.lambda_reg=0",
            "train.lambda_rec=0",
        ],
    )
    objective, labels = objective_of(config), torch.zeros(2, dtype=torch.long)
    _, parts = configuration_loss(net, 0.5, x, labels, objective, None)
    assert parts["feature"] > 1e-4  # half width: no longer the prior's function
    assert configuration_loss(net, 0.0, x, labels, objective, None)[1]["feature"] < 1e-10
