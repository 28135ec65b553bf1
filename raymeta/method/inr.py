"""The hypernetwork: coordinates of generated elements, Fourier features, and banks of per-tensor MLPs.

Every generated conv (3×3, or 1×1 in a Bottleneck) is one *base layer* with index l among the L generated
layers. Its element (o, i) has raw coordinates ``(l, o, i, L, O, I)``; its bias element o has
``(l, o, I, L, O, I)``. The MLPs see ``(l/L, o/O, i/I, L/L_ref, O/O_ref, I/I_ref)`` (paper Eq. 1) through Fourier features.

Each weight and each bias of every base layer has its own MLP (block-based INR, HTTY §2.1): a weight
bank (one MLP per conv kernel, 9 outputs) and a bias bank (one MLP per bias). With ``separate_bias`` the
bias MLPs have a scalar output (HTTY §3.5); without it they share the kernel MLPs' architecture and
output size, and the first output value is the bias (NeuMeta's layout). All MLPs of a bank have one
shape and run together as batched matrix products. Coordinates are routed to their MLP by the layer index before
any noise is added, and noise is clamped to ±0.49 so it never changes the element it perturbs. Noise perturbs the
position (l, o, i), and with ``noise_shape`` the shape (L, O, I) too, as HTTY's code does.
"""

from __future__ import annotations

import functools
import math
from collections import OrderedDict
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

NOISE_CLAMP = 0.49
KERNEL_ELEMENTS = 9  # 3×3 kernels: one coordinate predicts a whole kernel (a 1×1 kernel is its centre)
KERNEL_CENTRE = 4


@dataclass(frozen=True)
class BaseLayer:
    """One generated conv: which module it replaces, its full-size (reference) shape and which axes are hidden."""

    module: str
    """Module path in the ResNet, e.g. ``stages.2.1.conv1``."""
    block: tuple[int, int]
    """(stage, block) position of the metamorphic block it belongs to."""
    hidden_out: bool
    """Its output channels are the block's hidden channels (conv1; a Bottleneck's conv2 too)."""
    hidden_in: bool
    """Its input channels are hidden channels (conv2; a Bottleneck's conv3 too)."""
    out_channels: int
    in_channels: int
    kernel: int = 3
    """3 (a 3×3 kernel: all nine outputs of its MLP) or 1 (a 1×1 kernel: the centre output alone)."""

    def shape(self, hidden: int) -> tuple[int, int]:
        """(O, I) of this layer when its block's hidden width is ``hidden``."""
        return (hidden if self.hidden_out else self.out_channels), (hidden if self.hidden_in else self.in_channels)


def fourier_features(x: torch.Tensor, frequencies: int) -> torch.Tensor:
    """``[x, sin(2^f π x), cos(2^f π x)]`` for f < F, computed in float64, returned as float32.

    float64 keeps high frequencies meaningful: in float32, 2^f·x loses every significant bit for f ≳ 20.
    """
    x = x.to(torch.float64)
    if frequencies == 0:
        return x.float()
    scales = (2.0 ** torch.arange(frequencies, dtype=torch.float64, device=x.device)) * math.pi
    angles = (x.unsqueeze(-1) * scales).flatten(-2)
    return torch.cat([x, torch.sin(angles), torch.cos(angles)], dim=-1).float()


def coordinate_noise(shape: tuple[int, ...], noise: float, generator: torch.Generator | None) -> torch.Tensor:
    """Uniform noise of half-width ``noise``, clamped to ±0.49 so it never names another element."""
    draw = torch.rand(shape, generator=generator, dtype=torch.float64)
    return ((draw * 2 - 1) * noise).clamp(-NOISE_CLAMP, NOISE_CLAMP)


def add_coordinate_noise(position: torch.Tensor, noise: float, generator: torch.Generator | None) -> torch.Tensor:
    """A new tensor (never in place: the cached coordinates stay intact) of noisy raw positions."""
    if noise <= 0:
        return position
    return position + coordinate_noise(position.shape, noise, generator).to(position.device)


def feature_dim(frequencies: int) -> int:
    return 6 * (1 + 2 * frequencies)


CPU_LOOP_ROWS = 2048
"""On a CPU, MLPs with at least this many rows run one by one (:func:`bank_forward`)."""

INPUT_ACTIVATIONS = ("none", "relu", "elu")
"""What may follow an INR's input layer: nothing (the paper is silent), or ReLU (the NeuMeta code) or ELU."""


class INRBank(nn.Module):
    """N residual ELU MLPs of one shape, stored stacked and evaluated with batched matmuls.

    Each MLP: Linear(in→H) (optionally followed by ``input_activation``), then D−1 blocks
    ``h ← h + s_j · ELU(W_j h + b_j)`` with learnable s_j starting at ``residual_scale_init``, then
    Linear(H→out).
    """

    def __init__(
        self,
        count: int,
        in_dim: int,
        hidden: int,
        depth: int,
        out_dim: int,
        *,
        input_activation: str = "none",
        residual_scale_init: float = 1.0,
    ):
        super().__init__()
        if input_activation not in INPUT_ACTIVATIONS:
            raise ValueError(f"input_activation={input_activation!r}: expected one of {INPUT_ACTIVATIONS}")
        self.count, self.in_dim, self.hidden, self.depth, self.out_dim = count, in_dim, hidden, depth, out_dim
        self.input_activation = input_activation
        self.residual_scale_init = residual_scale_init
        blocks = depth - 1
        self.w_in = nn.Parameter(torch.empty(count, in_dim, hidden))
        self.b_in = nn.Parameter(torch.empty(count, 1, hidden))
        self.w_res = nn.Parameter(torch.empty(count, blocks, hidden, hidden))
        self.b_res = nn.Parameter(torch.empty(count, blocks, 1, hidden))
        self.s_res = nn.Parameter(torch.empty(count, blocks))
        self.w_out = nn.Parameter(torch.empty(count, hidden, out_dim))
        self.b_out = nn.Parameter(torch.empty(count, 1, out_dim))
        for index in range(count):
            self.reset_mlp(index)

    @torch.no_grad()
    def reset_mlp(self, index: int, generator: torch.Generator | None = None) -> None:
        """Random initialisation of one MLP (nn.Linear's uniform bounds)."""

        def uniform(tensor: torch.Tensor, fan_in: int) -> None:
            bound = 1.0 / math.sqrt(fan_in)
            tensor.copy_(torch.rand(tensor.shape, generator=generator, dtype=tensor.dtype) * 2 * bound - bound)

        uniform(self.w_in[index], self.in_dim)
        uniform(self.b_in[index], self.in_dim)
        uniform(self.w_res[index], self.hidden)
        uniform(self.b_res[index], self.hidden)
        self.s_res[index].fill_(self.residual_scale_init)
        uniform(self.w_out[index], self.hidden)
        uniform(self.b_out[index], self.hidden)

    @torch.no_grad()
    def zero_output(self, index: int) -> None:
        """MLP ``index`` outputs zero (its output layer zeroed); its other layers keep their values."""
        self.w_out[index].zero_()
        self.b_out[index].zero_()

    @torch.no_grad()
    def copy_mlp(self, source: int, target: int) -> None:
        """INR initialisation from a predecessor: MLP ``target`` becomes a copy of MLP ``source``."""
        for parameter in self.parameters():
            parameter[target].copy_(parameter[source])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: [n, P, in] for the first n MLPs (n ≤ count) → [n, P, out]."""
        return self.forward_subset(x, list(range(x.shape[0])))

    compiled = False
    """Run :func:`bank_forward` through torch.compile (``train.compile``): the same function, its elementwise
    work fused. A plain attribute (not a compiled module), so state dicts, copies and pickles are unchanged."""

    def forward_subset(self, x: torch.Tensor, indices: list[int]) -> torch.Tensor:
        """x: [len(indices), P, in] for the MLPs ``indices`` (any of the bank's, in any order) → [len(indices), P, out].

        Consecutive indices (every pass at one γ for all blocks, and each stage's blocks of the full network) take
        one view of the parameters, so the backward writes each parameter's gradient once per pass; others
        gather the chosen MLPs' parameters first.
        """
        parameters = (self.w_in, self.b_in, self.w_res, self.b_res, self.s_res, self.w_out, self.b_out)
        first = indices[0]
        if indices == list(range(first, first + len(indices))):
            chosen = tuple(p[first : first + len(indices)] for p in parameters)
        else:
            index = torch.tensor(indices, device=x.device)
            chosen = tuple(p.index_select(0, index) for p in parameters)
        run = compiled_bank_forward() if self.compiled else bank_forward
        return run(x, *chosen, input_activation=self.input_activation)


def bank_forward(
    x: torch.Tensor,
    w_in: torch.Tensor,
    b_in: torch.Tensor,
    w_res: torch.Tensor,
    b_res: torch.Tensor,
    s_res: torch.Tensor,
    w_out: torch.Tensor,
    b_out: torch.Tensor,
    *,
    input_activation: str,
    batched: bool | None = None,
) -> torch.Tensor:
    """The MLPs of a bank on their coordinates, x: [n, P, in] → [n, P, out].

    Each layer is one matrix product with the bias added in the same call, and each residual update
    ``h + s·ELU(W h + b)`` one fused multiply-add (one pass over h, not two). On a GPU the n MLPs run as
    batched products. A CPU's batched product gives each matrix a single thread (n = 1 or 2 MLPs ran at half
    the machine's rate), so there fewer MLPs than threads, or MLPs of many rows (≥ ``CPU_LOOP_ROWS``), run one
    after the other with plain products that use every thread, and many small ones batched (where the crossover
    lay on two cores: benchmarks/RESULTS.md). ``batched`` chooses the way regardless of device and shape.
    """
    if batched is None:  # a CPU's batched product runs its matrices side by side, one thread each
        batched = x.device.type != "cpu" or (x.shape[0] >= torch.get_num_threads() and x.shape[1] < CPU_LOOP_ROWS)
    if not batched:
        # unbind: one view per MLP whose backward stacks the MLPs' gradients once (indexing each would write
        # a zero-filled gradient of the whole tensor per MLP)
        mlps = zip(*(t.unbind(0) for t in (x, w_in, b_in, w_res, b_res, s_res, w_out, b_out)), strict=True)
        return torch.stack([_mlp_forward(*tensors, input_activation) for tensors in mlps])
    h = _activate(torch.baddbmm(b_in, x, w_in), input_activation)
    for j in range(w_res.shape[1]):
        h = residual(h, w_res[:, j], b_res[:, j], s_res[:, j])
    return torch.baddbmm(b_out, h, w_out)


def _mlp_forward(
    x: torch.Tensor,
    w_in: torch.Tensor,
    b_in: torch.Tensor,
    w_res: torch.Tensor,
    b_res: torch.Tensor,
    s_res: torch.Tensor,
    w_out: torch.Tensor,
    b_out: torch.Tensor,
    input_activation: str,
) -> torch.Tensor:
    """One MLP of a bank, x: [P, in] → [P, out]: :func:`bank_forward`'s layers with plain products."""
    h = _activate(torch.addmm(b_in, x, w_in), input_activation)
    for j in range(w_res.shape[0]):
        h = residual(h, w_res[j], b_res[j], s_res[j])
    return torch.addmm(b_out, h, w_out)


class _ELU(torch.autograd.Function):
    """ELU through ``exp``: ``relu(x) + exp(min(x, 0)) − 1``, whose derivative is ``exp(min(x, 0))`` (1 for x > 0),
    the one tensor saved for the backward. ``F.elu`` computes ``expm1``, which this CPU build of torch runs
    element by element: 5–6× slower than ``exp`` (benchmarks/RESULTS.md). Positive values are exact; negative
    ones agree with ``F.elu`` to float rounding (≤ 1 ulp of 1)."""

    @staticmethod
    def forward(ctx, x: torch.Tensor) -> torch.Tensor:
        activation, slope = _elu_and_slope(x, in_place=False)
        ctx.save_for_backward(slope)
        return activation

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        (slope,) = ctx.saved_tensors
        return grad * slope


def _elu_and_slope(x: torch.Tensor, *, in_place: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """(ELU(x), its derivative exp(min(x, 0))) through ``exp``: exact for x > 0 (0 + x), exp(x) − 1 below.
    ``in_place``: ``x`` itself is overwritten (with relu(x)), for callers that do not need it after."""
    slope = torch.clamp(x, max=0).exp_()
    return (slope - 1).add_(x.relu_() if in_place else torch.relu(x)), slope


def elu(x: torch.Tensor) -> torch.Tensor:
    """``F.elu(x)`` (α = 1), faster on a CPU (:class:`_ELU`); ``F.elu`` itself on other devices."""
    return _ELU.apply(x) if x.device.type == "cpu" else F.elu(x)


class _Residual(torch.autograd.Function):
    """One residual block of an INR, ``h + s·ELU(h W + b)``, with a backward of one elementwise pass.

    h: [P, H] with W [H, H], b [1, H] and a scalar s (one MLP), or batched: [n, P, H], [n, H, H], [n, 1, H], [n].
    The forward is :func:`elu`'s arithmetic; the tensors saved are the ones autograd would save (h, W, s, the
    ELU's slope and output). Autograd's backward of the composed ops makes five passes over [P, H] (s·g, its
    product with the slope, g·ELU for ∂s, the sum, then g plus the product's gradient); here ∂z = g·slope is the
    one pass, s scales the small [H, H] products instead, ∂s is a dot product, and ``addmm`` adds g to the input
    gradient in the same call. The same gradients up to float rounding (benchmarks/RESULTS.md, 2026-12-03)."""

    @staticmethod
    def forward(ctx, h, weight, bias, scale):
        activation, slope = _elu_and_slope(_preactivation(h, weight, bias), in_place=True)
        ctx.save_for_backward(h, weight, scale, slope, activation)
        return torch.addcmul(h, _per_mlp(scale, h), activation)

    @staticmethod
    def backward(ctx, grad):
        h, weight, scale, slope, activation = ctx.saved_tensors
        need_h, need_weight, need_bias, need_scale = ctx.needs_input_grad
        grad_h = grad_weight = grad_bias = grad_scale = None
        dz = grad * slope  # ∂loss/∂z over s
        if h.dim() == 3:
            s = _per_mlp(scale, h)
            if need_scale:
                grad_scale = (grad * activation).sum(dim=(1, 2))
            if need_weight:
                grad_weight = torch.bmm(h.transpose(1, 2), dz).mul_(s)
            if need_bias:
                grad_bias = dz.sum(dim=1, keepdim=True).mul_(s)
            if need_h:
                grad_h = torch.baddbmm(grad, dz, (weight * s).transpose(1, 2))
        else:
            if need_scale:
                grad_scale = torch.dot(grad.reshape(-1), activation.reshape(-1))
            if need_weight:
                grad_weight = torch.mm(h.t(), dz).mul_(scale)
            if need_bias:
                grad_bias = dz.sum(dim=0, keepdim=True).mul_(scale)
            if need_h:
                grad_h = torch.addmm(grad, dz, (weight * scale).t())
        return grad_h, grad_weight, grad_bias, grad_scale


def residual(h: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """``h + s·ELU(h W + b)`` (batched when h is [n, P, H]): :class:`_Residual` on a CPU; elsewhere, under autocast
    and when compiled (the compiler fuses the elementwise work itself), the composed ops."""
    if h.device.type == "cpu" and not torch.is_autocast_enabled("cpu") and not torch.compiler.is_compiling():
        return _Residual.apply(h, weight, bias, scale)
    return torch.addcmul(h, _per_mlp(scale, h), elu(_preactivation(h, weight, bias)))


def _preactivation(h: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
    """``h W + b``, for one MLP ([P, H]) or batched ([n, P, H])."""
    return torch.baddbmm(bias, h, weight) if h.dim() == 3 else torch.addmm(bias, h, weight)


def _per_mlp(scale: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
    """The residual scale broadcast over ``h``'s rows: s[n] as [n, 1, 1] when batched, the scalar as it is."""
    return scale[:, None, None] if h.dim() == 3 else scale


def _activate(h: torch.Tensor, activation: str) -> torch.Tensor:
    if activation == "relu":
        return F.relu(h)
    if activation == "elu":
        return elu(h)
    return h


@functools.cache
def compiled_bank_forward():
    """:func:`bank_forward` compiled once per process, with dynamic shapes: the rows P change with every γ and
    the MLP count n with every incremental stage, and neither should trigger a recompile."""
    return torch.compile(bank_forward, dynamic=True)


@dataclass
class _Layout:
    """Coordinates of one bank for one set of shapes, and where each tensor's outputs lie."""

    raw: torch.Tensor  # [n_layers, P_max, 6] float64, never modified after construction
    segments: list[list[tuple[str, int, int, tuple[int, ...]]]]  # per layer: (kind, start, count, shape)
    real: torch.Tensor | None = None
    """[R, 6]: every layer's real (unpadded) rows of ``raw``, layer after layer (:meth:`flat`)."""
    real_index: torch.Tensor | None = None
    """[R]: where those rows lie in ``raw`` flattened to [n_layers · P_max, 6] (to gather a padded noise draw)."""
    real_layer: torch.Tensor | None = None
    """[R]: the layer of each of those rows."""

    def flat(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(real rows, their indices in the flattened ``raw``, their layers), built once per layout: the features of
        all of a bank's layers are computed in one pass over these rows, not one pass per layer."""
        if self.real is None:
            width = self.raw.shape[1]
            counts = [_layer_rows(self, i) for i in range(len(self.segments))]
            index = torch.cat([torch.arange(i * width, i * width + c) for i, c in enumerate(counts)])
            layer = torch.repeat_interleave(torch.arange(len(counts)), torch.tensor(counts))
            device = self.raw.device
            self.real_index, self.real_layer = index.to(device), layer.to(device)
            self.real = self.raw.reshape(-1, self.raw.shape[-1])[self.real_index]
        return self.real, self.real_index, self.real_layer


class Hypernetwork(nn.Module):
    """Generates the conv weights and biases of the metamorphic blocks for any hidden widths."""

    def __init__(
        self,
        layers: list[BaseLayer],
        *,
        hidden: int,
        depth: int,
        frequencies: int,
        separate_bias: bool,
        input_activation: str = "none",
        residual_scale_init: float = 1.0,
        cache_size: int = 128,
    ):
        super().__init__()
        self.layers = layers
        self.frequencies = frequencies
        self.separate_bias = separate_bias
        in_dim = feature_dim(frequencies)
        mlp = dict(input_activation=input_activation, residual_scale_init=residual_scale_init)
        self.weight_bank = INRBank(len(layers), in_dim, hidden, depth, KERNEL_ELEMENTS, **mlp)
        # Separate bias INRs (HTTY §3.5) output a scalar; NeuMeta's bias INRs share the kernel INRs'
        # architecture, output size included, and only the first value is used (HTTY §2.1).
        bias_outputs = 1 if separate_bias else KERNEL_ELEMENTS
        self.bias_bank = INRBank(len(layers), in_dim, hidden, depth, bias_outputs, **mlp)
        self.active_layers = len(layers)
        self._cache: OrderedDict = OrderedDict()
        self._cache_size = cache_size
        self.max_rows = 1 << 20
        """Most coordinates one bank evaluates in one pass (K samples are split into passes of this size)."""
        self.noise_shape = False
        """Perturb the shape coordinates (L, O, I) too, not only the position (l, o, i) (``inr.noise_shape``)."""
        self.cpu_pass_rows = 1 << 15
        """Rows of one bank pass of :meth:`generate_many` on a CPU (at most ``max_rows``): passes that outgrow the
        caches cost several times more per row there (benchmarks/RESULTS.md). Other devices take passes of
        ``max_rows``."""

    def banks(self) -> list[INRBank]:
        return [self.weight_bank, self.bias_bank]

    def _layouts(self, hidden_widths: dict[tuple[int, int], int], device: torch.device) -> list[_Layout]:
        active = self.layers[: self.active_layers]
        key = (tuple(hidden_widths[layer.block] for layer in active), str(device))
        if key in self._cache:
            self._cache.move_to_end(key)
            return self._cache[key]
        total = float(len(self.layers))
        weight_parts, bias_parts = [], []
        for index, layer in enumerate(active):
            out_c, in_c = layer.shape(hidden_widths[layer.block])
            o, i = torch.meshgrid(
                torch.arange(out_c, dtype=torch.float64), torch.arange(in_c, dtype=torch.float64), indexing="ij"
            )
            shape_part = torch.tensor([total, out_c, in_c], dtype=torch.float64)
            weight = torch.stack([torch.full_like(o, index), o, i], dim=-1).reshape(-1, 3)
            bias = torch.stack(
                [
                    torch.full((out_c,), float(index), dtype=torch.float64),
                    torch.arange(out_c, dtype=torch.float64),
                    torch.full((out_c,), float(in_c), dtype=torch.float64),
                ],
                dim=-1,
            )
            weight = torch.cat([weight, shape_part.expand(len(weight), 3)], dim=1)
            bias = torch.cat([bias, shape_part.expand(len(bias), 3)], dim=1)
            weight_parts.append((weight, (out_c, in_c, layer.kernel, layer.kernel)))
            bias_parts.append((bias, (out_c,)))
        groups = [[[("weight", w)] for w in weight_parts], [[("bias", b)] for b in bias_parts]]
        layouts = []
        for group in groups:
            rows, segments = [], []
            for parts in group:
                start, layer_segments, coords = 0, [], []
                for kind, (coord, shape) in parts:
                    layer_segments.append((kind, start, len(coord), shape))
                    coords.append(coord)
                    start += len(coord)
                rows.append(torch.cat(coords))
                segments.append(layer_segments)
            width = max(len(r) for r in rows)
            raw = torch.zeros(len(rows), width, 6, dtype=torch.float64)
            for index, row in enumerate(rows):
                raw[index, : len(row)] = row
                raw[index, len(row) :] = row[-1]  # padding repeats a real coordinate: finite, then dropped
            layouts.append(_Layout(raw.to(device), segments))
        self._cache[key] = layouts
        if len(self._cache) > self._cache_size:
            self._cache.popitem(last=False)
        return layouts

    def reference_shapes(self) -> torch.Tensor:
        """(O_ref, I_ref) per active layer: the prior's full-size shapes."""
        return torch.tensor(
            [[layer.out_channels, layer.in_channels] for layer in self.layers[: self.active_layers]],
            dtype=torch.float64,
        )

    def generate(
        self,
        hidden_widths: dict[tuple[int, int], int],
        *,
        noise: float = 0.0,
        samples: int = 1,
        generator: torch.Generator | None = None,
    ) -> dict[str, torch.Tensor]:
        """Weights and biases of every active base layer, keyed ``{module}.weight`` / ``{module}.bias``.

        With ``samples`` = K > 1 the K noisy coordinate sets are generated (in few passes) and averaged.
        Conv weights are scaled by 1/C_in, as the reference implementations do. One configuration of
        :meth:`generate_many`: what training, evaluation and export all run.
        """
        return self.generate_many([hidden_widths], noise=noise, samples=samples, generators=[generator])[0]

    def generate_many(
        self,
        hidden_widths: list[dict[tuple[int, int], int]],
        *,
        noise: float = 0.0,
        samples: int = 1,
        generators: list[torch.Generator | None] | None = None,
    ) -> list[dict[str, torch.Tensor]]:
        """:meth:`generate` for several configurations at once: entry j equals ``generate(hidden_widths[j],
        noise=noise, samples=samples, generator=generators[j])`` up to float rounding, and consumes
        ``generators[j]`` exactly as that call would.

        Faster because nothing is padded: :meth:`generate` pads every layer's coordinates to the largest layer's
        count, three times the real rows for a ResNet whose stages double in width. Here each MLP runs exactly its
        own rows (every configuration's, every sample's), MLPs with equal row counts together, in passes of at most
        ``max_rows`` rows per bank; on a CPU, of ``cpu_pass_rows``, which stay in cache (configurations, and a
        large one's samples, split between passes).
        """
        generators = [None] * len(hidden_widths) if generators is None else list(generators)
        if len(generators) != len(hidden_widths):
            raise ValueError(f"{len(generators)} generators for {len(hidden_widths)} configurations: give one each")
        if noise <= 0:
            samples = 1  # noise-free samples are all identical
        device = self.weight_bank.w_in.device
        layouts = [self._layouts(widths, device) for widths in hidden_widths]
        references = self.reference_shapes().to(device)
        sums: list[list[list[torch.Tensor | None]]] = [
            [[None] * len(layout.segments) for layout in config_layouts] for config_layouts in layouts
        ]
        rows_per_sample = [
            max(sum(_layer_rows(layout, i) for i in range(len(layout.segments))) for layout in bank) for bank in layouts
        ]
        pass_rows = min(self.max_rows, self.cpu_pass_rows) if device.type == "cpu" else self.max_rows
        for units in self._plan_passes(rows_per_sample, samples, pass_rows):
            draws = [self._draw_noise(layouts[j], count, noise, generators[j]) for j, _, count in units]
            for b, bank in enumerate(self.banks()):
                pieces = [(layouts[j][b], count, draw[b]) for (j, _, count), draw in zip(units, draws, strict=True)]
                outputs = self._run_bank(bank, pieces, references)
                for (j, _, _count), per_layer in zip(units, outputs, strict=True):
                    for i, out in enumerate(per_layer):
                        total = sums[j][b][i]
                        sums[j][b][i] = out if total is None else total + out
        return [
            self._tensors(config_layouts, config_sums, samples)
            for config_layouts, config_sums in zip(layouts, sums, strict=True)
        ]

    @staticmethod
    def _plan_passes(rows_per_sample: list[int], samples: int, pass_rows: int) -> list[list[tuple[int, int, int]]]:
        """Passes of at most ``pass_rows`` rows, each a list of (configuration, first sample, sample count), in the
        order the generators must be drawn from; a pass holds at least one sample, whatever its size."""
        passes: list[list[tuple[int, int, int]]] = []
        current: list[tuple[int, int, int]] = []
        used = 0
        for config, rows in enumerate(rows_per_sample):
            first = 0
            while first < samples:
                room = (pass_rows - used) // rows
                if room < 1 and current:
                    passes.append(current)
                    current, used = [], 0
                    continue
                count = min(samples - first, max(1, room))
                current.append((config, first, count))
                used += count * rows
                first += count
        if current:
            passes.append(current)
        return passes

    def _draw_noise(
        self, layouts: list[_Layout], count: int, noise: float, generator: torch.Generator | None
    ) -> list[torch.Tensor | None]:
        """Noise of ``count`` samples per bank, [count, n, P_max, 3] (the position's columns), or [count, n, P_max,
        6] with :attr:`noise_shape` (the shape's columns after them); None without noise. Drawn sample by sample,
        every bank within a sample, so that K samples in one pass consume the generator exactly as K one-sample
        calls would, and :meth:`generate_many` exactly as :meth:`generate` (padded rows drawn too)."""
        if noise <= 0:
            return [None] * len(layouts)
        columns = 6 if self.noise_shape else 3
        draws: list[list[torch.Tensor]] = [[] for _ in layouts]
        for _ in range(count):
            for bank_draws, layout in zip(draws, layouts, strict=True):
                bank_draws.append(coordinate_noise(layout.raw[..., :columns].shape, noise, generator))
        return [
            torch.stack(bank_draws).to(layout.raw.device) for bank_draws, layout in zip(draws, layouts, strict=True)
        ]

    def _run_bank(
        self, bank: INRBank, pieces: list[tuple[_Layout, int, torch.Tensor | None]], references: torch.Tensor
    ) -> list[list[torch.Tensor]]:
        """One bank over pieces (a configuration's layout, its sample count, their noise): per piece and layer,
        the outputs summed over the piece's samples, [rows, out]. Each MLP gets its pieces' rows end to end, and
        MLPs with the same number of rows share one batched pass."""
        layers = len(pieces[0][0].segments)
        lengths = [sum(count * _layer_rows(layout, i) for layout, count, _ in pieces) for i in range(layers)]
        groups: dict[int, list[int]] = {}
        for i, length in enumerate(lengths):
            groups.setdefault(length, []).append(i)
        outputs: list[list[torch.Tensor | None]] = [[None] * layers for _ in pieces]
        features = self._bank_features(pieces, references)
        for indices in groups.values():
            x = torch.stack([features[i] for i in indices])
            out = bank.forward_subset(x, indices)
            for row, i in enumerate(indices):
                parts = out[row].split([count * _layer_rows(layout, i) for layout, count, _ in pieces])
                for p, (part, (layout, count, _)) in enumerate(zip(parts, pieces, strict=True)):
                    outputs[p][i] = part.reshape(count, _layer_rows(layout, i), bank.out_dim).sum(dim=0)
        return outputs

    def _bank_features(
        self, pieces: list[tuple[_Layout, int, torch.Tensor | None]], references: torch.Tensor
    ) -> list[torch.Tensor]:
        """Per layer, [rows, in]: the features of its unpadded rows in every piece, pieces end to end (each piece's
        samples one after the other). Every layer's features of a piece come from one Fourier pass over all its
        real rows (:meth:`_Layout.flat`): the same numbers as a pass per layer, elementwise, with a bank's few
        dozen small calls per configuration made one."""
        reference = torch.cat([torch.full_like(references[:, :1], float(len(self.layers))), references], dim=1)
        per_layer: list[list[torch.Tensor]] = [[] for _ in pieces[0][0].segments]
        for layout, count, draw in pieces:
            real, index, layer = layout.flat()
            position, shape = real[:, :3].expand(count, -1, 3), real[:, 3:].expand(count, -1, 3)
            if draw is not None:  # new tensors: the cached coordinates stay intact
                perturbation = draw.reshape(count, -1, draw.shape[-1])[:, index]
                position = position + perturbation[..., :3]
                if perturbation.shape[-1] == 6:  # noise_shape
                    shape = shape + perturbation[..., 3:]
            relative = torch.cat([position / shape, shape / reference[layer]], dim=-1)
            features = fourier_features(relative, self.frequencies)  # [count, R, in]
            start = 0
            for i, parts in enumerate(per_layer):
                rows = _layer_rows(layout, i)
                parts.append(features[:, start : start + rows].reshape(count * rows, -1))
                start += rows
        return [parts[0] if len(parts) == 1 else torch.cat(parts) for parts in per_layer]

    def _tensors(self, layouts: list[_Layout], sums: list[list[torch.Tensor]], samples: int) -> dict[str, torch.Tensor]:
        """The named weights and biases of one configuration from its banks' per-layer output sums over samples."""
        generated: dict[str, torch.Tensor] = {}
        for layout, bank_sums in zip(layouts, sums, strict=True):
            self._name_outputs(layout, [total / samples for total in bank_sums], generated)
        return generated

    def _name_outputs(
        self, layout: _Layout, outputs: torch.Tensor | list[torch.Tensor], generated: dict[str, torch.Tensor]
    ) -> None:
        """Adds to ``generated`` the weights and biases in one bank's ``outputs`` (per layer, [rows, out]: the mean
        over samples), cut and shaped by ``layout``'s segments."""
        # self.layers holds every generated layer, the layout only the active ones: zip stops at the shorter
        for layer, segments, out in zip(self.layers, layout.segments, outputs, strict=False):
            for kind, start, count, shape in segments:
                values = out[start : start + count]
                if kind == "weight":
                    if shape[-1] == 1:  # a 1×1 kernel: the centre of the 3×3 the MLP predicts
                        values = values[:, KERNEL_CENTRE : KERNEL_CENTRE + 1]
                    generated[f"{layer.module}.weight"] = values.reshape(shape) / shape[1]
                else:
                    generated[f"{layer.module}.bias"] = values[:, 0]


def _layer_rows(layout: _Layout, index: int) -> int:
    """The real (unpadded) coordinate count of layer ``index`` in ``layout``."""
    _, start, count, _ = layout.segments[index][-1]
    return start + count
