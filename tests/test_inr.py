import torch
import torch.nn.functional as F

from raymeta.method.inr import NOISE_CLAMP, add_coordinate_noise, coordinate_noise, fourier_features
from raymeta.method.metamorphic import MetamorphicNetwork
from raymeta.method.models import Architecture, ResNet


def small_network(**kwargs):
    torch.manual_seed(0)
    prior = ResNet(Architecture(14, (8, 8, 16), 3, 4), batchnorm=False).eval()
    options = dict(
        inr_hidden=32, inr_depth=3, frequencies=4, separate_bias=True, alpha_scaling=True, finetune_head=True
    )
    options.update(kwargs)
    return MetamorphicNetwork(prior, [(1, 1), (2, 1)], **options)


def test_noise_never_changes_the_named_element():
    raw = torch.arange(0, 1000, dtype=torch.float64).reshape(-1, 1).repeat(1, 3)
    for noise in (0.1, 0.49, 0.5):
        noisy = add_coordinate_noise(raw, noise, torch.Generator().manual_seed(1))
        assert torch.equal(noisy.round(), raw)
        assert (noisy - raw).abs().max() <= NOISE_CLAMP + 1e-9
        assert (noisy - raw).abs().max() > 0.5 * min(noise, NOISE_CLAMP)


def test_noise_is_routed_after_the_layer_index_and_leaves_the_cache_intact():
    net = small_network()
    widths = net.hidden_widths(0.25)
    layouts = net.hyper._layouts(widths, torch.device("cpu"))
    before = [layout.raw.clone() for layout in layouts]
    g = torch.Generator().manual_seed(0)
    for _ in range(3):
        net.generate(0.25, noise=0.5, generator=g)
    for layout, copy in zip(net.hyper._layouts(widths, torch.device("cpu")), before, strict=True):
        assert torch.equal(layout.raw, copy)
    # row r of a bank's coordinates all name layer r: MLP r only ever sees its own tensor
    for layout in layouts:
        for row, coords in enumerate(layout.raw):
            assert torch.all(coords[:, 0] == row)


def test_generated_shapes_follow_gamma_and_bias_modes():
    for separate in (True, False):
        net = small_network(separate_bias=separate)
        weights = net.generate(0.5)
        assert weights["stages.1.1.conv1.weight"].shape == (4, 8, 3, 3)
        assert weights["stages.2.1.conv2.weight"].shape == (16, 8, 3, 3)
        assert weights["stages.2.1.conv1.bias"].shape == (8,)
        assert weights["stages.2.1.conv2.bias"].shape == (16,)


def test_k_samples_in_one_pass_equal_the_mean_of_single_samples():
    net = small_network()
    batched = net.generate(0.25, noise=0.4, samples=5, generator=torch.Generator().manual_seed(3))
    generator = torch.Generator().manual_seed(3)
    singles = [net.generate(0.25, noise=0.4, generator=generator) for _ in range(5)]
    noise_free = net.generate(0.25)
    net.hyper.max_rows = 2 * 8 * 8 * 2  # a few samples per pass: the chunked path gives the same average
    chunked = net.generate(0.25, noise=0.4, samples=5, generator=torch.Generator().manual_seed(3))
    for name in batched:
        mean = torch.stack([w[name] for w in singles]).mean(0)
        torch.testing.assert_close(batched[name], mean, rtol=1e-4, atol=1e-6)
        torch.testing.assert_close(chunked[name], mean, rtol=1e-4, atol=1e-6)
        assert not torch.allclose(singles[0][name], noise_free[name])


def test_fourier_features_are_float32_and_exact_in_float64():
    x = torch.tensor([[0.125, 0.5]], dtype=torch.float64)
    features = fourier_features(x, 20)
    assert features.dtype == torch.float32 and features.shape == (1, 2 * 41)
    # sin(2^19·π·0.125) = 0 exactly in float64 arithmetic; float32 would give a visibly wrong value
    assert abs(features[0, 2 + 19 * 2 + 0].item()) < 1e-6


def test_frozen_prefix_computes_no_gradients():
    net = small_network()
    seen = {}
    net.prior.block(1, 0).register_forward_hook(lambda m, i, o: seen.setdefault("prefix_out", o))
    net.prior.block(2, 0).register_forward_hook(lambda m, i, o: seen.setdefault("middle_out", o))
    with torch.no_grad():
        net.alphas.fill_(0.5)
    x = torch.randn(2, 3, 8, 8)
    loss = net(x, net.generate(0.0)).sum()
    loss.backward()
    assert not seen["prefix_out"].requires_grad  # stage2.block0 runs before the first metamorphic block
    assert seen["middle_out"].requires_grad  # stage3.block0 is frozen but must pass gradients back
    frozen = [p for n, p in net.prior.named_parameters() if not n.startswith(("fc", "stages.2.2"))]
    assert all(p.grad is None for p in frozen)
    assert net.prior.fc.weight.grad is not None and net.hyper.weight_bank.w_in.grad is not None


def test_materialized_network_matches_the_generated_one():
    net = small_network()
    with torch.no_grad():
        net.alphas.copy_(torch.tensor([0.7, -0.3]))
    x = torch.randn(3, 3, 8, 8)
    for gamma in (0.0, 0.3, -0.25, 0.75):
        plain = net.materialize(gamma)
        torch.testing.assert_close(plain(x), net(x, net.generate(gamma)), rtol=1e-4, atol=1e-5)


def reference_mlp(bank, index: int, x: torch.Tensor) -> torch.Tensor:
    """MLP ``index`` of ``bank`` on features x [P, in], layer by layer with plain products (INRBank's docstring)."""
    activate = {"relu": F.relu, "elu": F.elu}.get(bank.input_activation, lambda h: h)
    h = activate(x @ bank.w_in[index] + bank.b_in[index])
    for j in range(bank.depth - 1):
        h = h + bank.s_res[index, j] * F.elu(h @ bank.w_res[index, j] + bank.b_res[index, j])
    return h @ bank.w_out[index] + bank.b_out[index]


def reference_generate(net, gamma, *, noise=0.0, samples=1, generator=None) -> dict[str, torch.Tensor]:
    """What generation is specified to compute, tensor by tensor and sample by sample, with none of
    Hypernetwork's layouts, caches, passes or batching: element (o, i) of base layer l has raw coordinates
    (l, o, i, L, O, I) and its bias element o (l, o, I, L, O, I) (raymeta.method.inr); the MLP of that tensor
    sees (l/L, o/O, i/I, L/L, O/O_ref, I/I_ref) through Fourier features; a kernel is scaled by 1/I; K noisy
    samples are averaged, the noise of a sample drawn for the weight bank's then the bias bank's coordinates, each
    padded to its largest layer ([layers, widest, 3]); ``inr.base = prior`` adds the resampled prior."""
    hyper = net.hyper
    hidden = net.hidden_widths(gamma)
    active = hyper.layers[: hyper.active_layers]
    total = float(len(hyper.layers))
    positions = {"weight": [], "bias": []}
    for index, layer in enumerate(active):
        out_c, in_c = layer.shape(hidden[layer.block])
        o, i = torch.meshgrid(torch.arange(out_c), torch.arange(in_c), indexing="ij")
        positions["weight"].append(torch.stack([torch.full_like(o, index), o, i], -1).reshape(-1, 3).double())
        positions["bias"].append(
            torch.stack([torch.full((out_c,), index), torch.arange(out_c), torch.full((out_c,), in_c)], -1).double()
        )
    banks = {"weight": hyper.weight_bank, "bias": hyper.bias_bank}
    samples = samples if noise > 0 else 1
    sums: dict[str, torch.Tensor] = {}
    for _ in range(samples):
        draws = {
            kind: coordinate_noise((len(active), max(len(p) for p in positions[kind]), 3), noise, generator)
            if noise > 0
            else None
            for kind in banks
        }
        for kind, bank in banks.items():
            for index, layer in enumerate(active):
                out_c, in_c = layer.shape(hidden[layer.block])
                position = positions[kind][index]
                if draws[kind] is not None:
                    position = position + draws[kind][index, : len(position)]
                shape = torch.tensor([total, out_c, in_c], dtype=torch.float64)
                reference = torch.tensor([total, layer.out_channels, layer.in_channels], dtype=torch.float64)
                relative = torch.cat([position / shape, (shape / reference).expand(len(position), 3)], dim=1)
                out = reference_mlp(bank, index, fourier_features(relative, hyper.frequencies))
                value = out.reshape(out_c, in_c, 3, 3) / in_c if kind == "weight" else out[:, 0]
                name = f"{layer.module}.{kind}"
                sums[name] = value if name not in sums else sums[name] + value
    weights = {name: value / samples for name, value in sums.items()}
    if net.base == "prior":
        for name, value in net.prior_base(hidden).items():
            weights[name] = weights[name] + value
    return weights


def test_generate_many_computes_each_configuration_as_specified_and_draws_the_same_noise():
    gammas = [0.25, -0.25, (0.5, 0.0), 0.75]  # uniform γ, a wider network and per-block γ
    for options, active, noise, samples in [
        ({}, 2, 0.4, 5),
        ({"separate_bias": False, "base": "prior"}, 1, 0.4, 3),
        ({"input_activation": "elu"}, 2, 0.0, 4),
    ]:
        net = small_network(**options)
        net.set_active_blocks(active)
        expected, next_draws = [], []
        with torch.no_grad():
            for gamma in gammas:
                generator = torch.Generator().manual_seed(7)
                expected.append(reference_generate(net, gamma, noise=noise, samples=samples, generator=generator))
                next_draws.append(torch.rand(3, generator=generator))  # what follows the draws in the generator
        for pass_rows in (1 << 15, 1000, 200):  # one pass; passes that split configurations; a sample a pass
            net.hyper.cpu_pass_rows = pass_rows
            generators = [torch.Generator().manual_seed(7) for _ in gammas]
            many = net.generate_many(gammas, noise=noise, samples=samples, generators=generators)
            for reference, batched, generator, next_draw in zip(expected, many, generators, next_draws, strict=True):
                assert reference.keys() == batched.keys()
                for name in reference:
                    torch.testing.assert_close(batched[name], reference[name], rtol=1e-4, atol=1e-6)
                assert torch.equal(torch.rand(3, generator=generator), next_draw)
        single = net.generate(gammas[0], noise=noise, samples=samples, generator=torch.Generator().manual_seed(7))
        for name in single:
            torch.testing.assert_close(single[name], expected[0][name], rtol=1e-4, atol=1e-6)


def test_a_subset_of_a_bank_computes_what_those_mlps_compute_in_the_whole_bank():
    bank = small_network().hyper.weight_bank
    x = torch.randn(bank.count, 7, bank.in_dim)
    whole = bank(x)
    for indices in ([2, 0], [1], [0, 1, 2]):
        torch.testing.assert_close(bank.forward_subset(x[indices], indices), whole[indices])


def test_the_inrs_elu_is_torchs_in_value_and_gradient():
    from raymeta.method.inr import elu

    x = torch.cat([torch.linspace(-30, 30, 2001), torch.tensor([0.0, -1e-8, 1e-8])]).requires_grad_()
    reference = x.detach().clone().requires_grad_()
    torch.testing.assert_close(elu(x), torch.nn.functional.elu(reference), rtol=0, atol=2.5e-7)
    grad = torch.randn_like(x)
    elu(x).backward(grad)
    torch.nn.functional.elu(reference).backward(grad)
    torch.testing.assert_close(x.grad, reference.grad, rtol=1e-6, atol=1e-7)


def test_the_fused_residual_block_has_the_composed_ops_values_and_gradients():
    # _Residual computes its own backward (one elementwise pass, s on the small products): it must equal autograd's
    # through h + s·ELU(hW + b), one MLP ([P, H], scalar s) and batched ([n, P, H], s per MLP)
    from raymeta.method.inr import _Residual

    generator = torch.Generator().manual_seed(0)
    for lead in ((), (3,)):
        h, weight, bias = (
            torch.randn(*lead, *shape, dtype=torch.float64, generator=generator) for shape in ((9, 5), (5, 5), (1, 5))
        )
        scale = torch.randn(lead, dtype=torch.float64, generator=generator)
        inputs = [t.requires_grad_() for t in (h, weight, bias, scale)]
        assert torch.autograd.gradcheck(_Residual.apply, inputs)
        s = scale[:, None, None] if lead else scale
        z = torch.baddbmm(bias, h, weight) if lead else torch.addmm(bias, h, weight)
        composed = h + s * F.elu(z)
        fused = _Residual.apply(*inputs)
        torch.testing.assert_close(fused, composed, rtol=0, atol=1e-15)
        grad = torch.randn(composed.shape, dtype=torch.float64, generator=generator)
        expected = torch.autograd.grad(composed, inputs, grad)
        for got, want in zip(torch.autograd.grad(fused, inputs, grad), expected, strict=True):
            torch.testing.assert_close(got, want)


def test_a_banks_features_in_one_pass_are_each_layers_own():
    # _bank_features computes every layer's features from one pass over a layout's unpadded rows: each layer's
    # rows must be the features of its own coordinates and noise, the samples one after the other
    net = small_network()
    hyper, widths = net.hyper, net.hidden_widths(0.3)
    layouts = hyper._layouts(widths, torch.device("cpu"))
    references = hyper.reference_shapes()
    samples, noise = 3, 0.4
    for b, layout in enumerate(layouts):
        draw = hyper._draw_noise(layouts, samples, noise, torch.Generator().manual_seed(2))[b]
        features = hyper._bank_features([(layout, samples, draw)], references)
        assert len(features) == len(layout.segments)
        for i, got in enumerate(features):
            rows = sum(count for _, _, count, _ in layout.segments[i])
            position = layout.raw[i, :rows, :3] + draw[:, i, :rows]  # [samples, rows, 3]
            shape = layout.raw[i, :rows, 3:].expand(samples, rows, 3)
            reference = torch.tensor([len(hyper.layers), *references[i].tolist()], dtype=torch.float64)
            expected = fourier_features(torch.cat([position / shape, shape / reference], dim=-1), hyper.frequencies)
            assert torch.equal(got, expected.reshape(samples * rows, -1)), (b, i)


def test_the_resampled_prior_is_kept_per_width_until_the_prior_changes():
    # prior_base keeps each set of widths' resampled prior; loading other weights into the prior (in place) or
    # changing one of its tensors must give the new prior's resampling, not the kept one
    net = small_network(base="prior")
    hidden = net.hidden_widths(0.5)
    first = net.prior_base(hidden)
    assert all(torch.equal(first[k], v) for k, v in net.prior_base(hidden).items())
    other = ResNet(net.arch, batchnorm=False)
    net.prior.load_state_dict(other.state_dict())
    expected = small_network(base="prior")
    expected.prior.load_state_dict(other.state_dict())
    reloaded = net.prior_base(hidden)
    assert all(torch.equal(reloaded[k], v) for k, v in expected.prior_base(hidden).items())
    assert not all(torch.equal(reloaded[k], first[k]) for k in first)
    name = next(k for k in first if k.endswith("conv1.weight"))
    with torch.no_grad():
        dict(net.prior.named_parameters())[name].mul_(2)  # an in-place change of one tensor
    assert torch.allclose(net.prior_base(hidden)[name], 2 * reloaded[name])
