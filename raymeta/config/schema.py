"""The configuration's schema: one dataclass per concern, a docstring under every field, ranges checked in
``__post_init__`` so that a bad value fails at load time with a message naming the key, the value and what is
allowed; and the config hash.

What the hash leaves out is marked on the field itself (``metadata=HASH_EXCLUDE`` or ``HASH_OMIT_IF_DEFAULT``),
and what the prior depends on likewise (``metadata=PRIOR``): one place says what a setting is, what it may be
and whether it changes results.
"""

import dataclasses
import hashlib
import json
import re
from dataclasses import dataclass, field

from raymeta.errors import ConfigError
from raymeta.method.presets import NEUMETA_SWITCHES, PAPER_METHOD

MODEL_FAMILIES = ("cifar", "resnet18", "resnet34", "resnet50", "resnet101")
"""The networks a prior may be: raymeta's CIFAR ResNets and torchvision's ResNets."""

HASH_EXCLUDE = {"hash": "exclude"}
"""Field metadata: the setting says how or where work runs, or what is watched, not what is computed, so the
config hash leaves it out."""

HASH_OMIT_IF_DEFAULT = {"hash": "omit_if_default"}
"""Field metadata: the config hash leaves the setting out while it holds its default, so that runs from before
the setting existed (which ran at the default) keep their hash; any other value is hashed."""

PRIOR = {"prior": "include"}
"""Field metadata of ``Config``: the prior (the γ = 0 network, with BatchNorm) depends on this setting, so
``prior_hash`` holds it."""


def _require(condition: bool, key: str, value, allowed: str) -> None:
    if not condition:
        raise ConfigError(f"{key}={value!r} is not allowed: {allowed}")


_URI = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*)://")

STORAGE_SCHEMES = ("s3", "gs", "gcs", "abfs", "abfss", "hdfs", "viewfs")
"""URI schemes of the filesystems ``pyarrow.fs`` opens (S3 and S3-compatible stores, Google Cloud Storage, Azure
(ADLS Gen2 / Blob), HDFS): where run_dir, sweep.sweep_dir and ray.storage_path may be."""


def uri_scheme(value: str | None) -> str | None:
    """The scheme of a URI (``s3`` of ``s3://bucket/x``, lower-cased); None for a path."""
    match = _URI.match(value) if value is not None else None
    return match.group(1).lower() if match else None


def _require_storage(key: str, value: str | None) -> None:
    """A folder raymeta writes to may be a path or a URI of object storage it knows; any other scheme is refused
    (it would otherwise become a local folder named ``scheme:``)."""
    scheme = uri_scheme(value)
    _require(
        scheme is None or scheme in STORAGE_SCHEMES,
        key,
        value,
        "a folder path, or a URI of object storage: " + ", ".join(f"{s}://" for s in STORAGE_SCHEMES),
    )


def _require_folder(key: str, value: str | None) -> None:
    """A folder only written through local file operations (the export and deploy outputs): a URI would silently
    become a local folder named ``s3:``, so it is refused with the way that works."""
    scheme = uri_scheme(value)
    _require(
        scheme is None,
        key,
        value,
        f"a folder path, local or on storage every node mounts (NFS); {scheme}:// and other object-storage URIs "
        "are supported for run_dir, sweep.sweep_dir and ray.storage_path, not here",
    )


@dataclass
class DataConfig:
    name: str = "digits"
    """Dataset: digits (bundled, default), synthetic, fashion_mnist, cifar10, cifar100 (held in memory), or
    image_folder (your own images, streamed from disk: see data_dir)."""
    data_dir: str | None = None
    """Folder holding the dataset files (fashion_mnist: idx files; cifar: the python-version folders;
    image_folder: the root holding train/, test/ and optionally val/, one folder of images per class in each)."""
    download: bool = False
    """Download CIFAR into data_dir when its files are missing (never done unless asked)."""
    batch_size: int = 128
    """Training micro-batch size: one configuration of a step sees one micro-batch."""
    eval_batch_size: int = 512
    """Batch size for evaluation."""
    augment: bool = True
    """Random crop (and flip where the dataset allows it) on training images."""
    validation_fraction: float = 0.1
    """Share of the training split held out as the validation split (stratified by class, drawn with a fixed
    seed, so every run seed sees the same images). Per-epoch monitoring, a sweep's early stopping and its
    best trial use it; the test split is only for final evaluation. 0: no validation split, and no
    per-epoch monitoring (sweeps refuse it)."""
    limit_train: int | None = None
    """Keep only the first N training examples, after the validation split is held out (fast runs)."""
    limit_validation: int | None = None
    """Keep only the first N validation examples (fast runs)."""
    limit_test: int | None = None
    """Keep only the first N test examples (fast runs)."""
    resident: bool = field(default=True, metadata=HASH_EXCLUDE)
    """Keep the training split on the training device for the whole run, moved there once: on CUDA no copy
    from the host per step (CIFAR's split is about 0.6 GB). false: copy each batch over, for a GPU with no
    room for the split. Nothing changes on the CPU. Where the data is held, not what is computed: outside the
    config hash."""

    image_size: int = field(default=224, metadata=HASH_OMIT_IF_DEFAULT)
    """image_folder only: the side of the square images the network sees. Training takes a random-resized crop
    of this size (and a mirror), evaluation the centre crop after resizing to resize_size."""
    resize_size: int | None = field(default=None, metadata=HASH_OMIT_IF_DEFAULT)
    """image_folder only: evaluation resizes the shorter side to this many pixels before the centre crop (null:
    image_size / 0.875 rounded, 256 for 224, the usual ImageNet ratio)."""
    crop_scale: list[float] = field(default_factory=lambda: [0.08, 1.0], metadata=HASH_OMIT_IF_DEFAULT)
    """image_folder only: [min, max] share of an image's area a training crop covers (0.08–1, the usual
    ImageNet range)."""
    mean: list[float] | None = field(default=None, metadata=HASH_OMIT_IF_DEFAULT)
    """image_folder only: per-channel (RGB) mean subtracted from pixels in [0, 1] (null: measured on the
    training split, at most 1000 images drawn with a fixed seed)."""
    std: list[float] | None = field(default=None, metadata=HASH_OMIT_IF_DEFAULT)
    """image_folder only: per-channel (RGB) standard deviation pixels are divided by (null: measured, as mean)."""
    loader_workers: int = field(default=2, metadata=HASH_EXCLUDE)
    """image_folder only: DataLoader worker processes decoding images (per training process, so per Ray Train
    worker; 0: decode in the training process). How images are read, not which: outside the config hash."""

    def __post_init__(self) -> None:
        _require(self.image_size >= 1, "data.image_size", self.image_size, "a positive integer (pixels)")
        _require(
            self.resize_size is None or self.resize_size >= self.image_size,
            "data.resize_size",
            self.resize_size,
            f"null or an integer >= data.image_size={self.image_size} (the centre crop is taken from it)",
        )
        _require(
            isinstance(self.crop_scale, (list, tuple))
            and len(self.crop_scale) == 2
            and 0 < self.crop_scale[0] <= self.crop_scale[1] <= 1,
            "data.crop_scale",
            self.crop_scale,
            "[min, max] with 0 < min <= max <= 1 (shares of the image area)",
        )
        for key, positive in (("mean", False), ("std", True)):
            value = getattr(self, key)
            _require(
                value is None
                or (isinstance(value, (list, tuple)) and len(value) == 3 and all(v > 0 or not positive for v in value)),
                f"data.{key}",
                value,
                "null (measured on the training split) or three numbers, one per RGB channel"
                + (", each > 0" if positive else ""),
            )
        _require(self.loader_workers >= 0, "data.loader_workers", self.loader_workers, "an integer >= 0")
        _require(self.batch_size >= 1, "data.batch_size", self.batch_size, "a positive integer")
        _require(self.eval_batch_size >= 1, "data.eval_batch_size", self.eval_batch_size, "a positive integer")
        _require(
            0 <= self.validation_fraction < 1,
            "data.validation_fraction",
            self.validation_fraction,
            "a number in [0, 1): the share of the training split held out for validation (0: none)",
        )
        for key in ("limit_train", "limit_validation", "limit_test"):
            value = getattr(self, key)
            _require(value is None or value >= 1, f"data.{key}", value, "null or a positive integer")


@dataclass
class ModelConfig:
    depth: int = 20
    """ResNet depth 6n+2: 20 is ResNet-20 (n=3), 56 is ResNet-56 (n=9). The cifar family only."""
    widths: list[int] = field(default_factory=lambda: [16, 32, 64])
    """Widths of the three stages; the paper's high-capacity variant is [64, 128, 256]. The cifar family only."""
    family: str = field(default="cifar", metadata=HASH_OMIT_IF_DEFAULT)
    """cifar (raymeta's CIFAR ResNets, depth and widths above), or one of torchvision's ResNets: resnet18,
    resnet34 (BasicBlocks), resnet50, resnet101 (Bottlenecks; the metamorphic width is the bottleneck width),
    with torchvision's module names, so zoo weights load as they are, and the ImageNet stem (7×7 stride-2 conv,
    max pool)."""
    stage_blocks: list[int] | None = field(default=None, metadata=HASH_OMIT_IF_DEFAULT)
    """torchvision families: blocks in each of the four stages (null: the family's own, e.g. [2, 2, 2, 2] for
    resnet18); fewer make a small network of the family for quick runs."""
    base_width: int | None = field(default=None, metadata=HASH_OMIT_IF_DEFAULT)
    """torchvision families: the first stage's width, the others 2×, 4×, 8× it (null: torchvision's 64)."""

    def __post_init__(self) -> None:
        _require(
            self.family in MODEL_FAMILIES,
            "model.family",
            self.family,
            ", ".join(MODEL_FAMILIES),
        )
        if self.family != "cifar":
            for key, default in (("depth", 20), ("widths", [16, 32, 64])):
                _require(
                    getattr(self, key) == default,
                    f"model.{key}",
                    getattr(self, key),
                    f"left out with model.family={self.family} (it describes cifar ResNets): set the network's "
                    "size with model.stage_blocks and model.base_width",
                )
            _require(
                self.stage_blocks is None or (len(self.stage_blocks) == 4 and all(n >= 1 for n in self.stage_blocks)),
                "model.stage_blocks",
                self.stage_blocks,
                "null or four positive integers",
            )
            _require(
                self.base_width is None or self.base_width >= 1,
                "model.base_width",
                self.base_width,
                "a positive integer",
            )
            return
        for key in ("stage_blocks", "base_width"):
            _require(getattr(self, key) is None, f"model.{key}", getattr(self, key), "null with model.family=cifar")
        _require(
            self.depth >= 8 and (self.depth - 2) % 6 == 0,
            "model.depth",
            self.depth,
            "6n+2 with n ≥ 1 (8, 14, 20, …, 56)",
        )
        _require(
            len(self.widths) == 3 and all(w >= 1 for w in self.widths),
            "model.widths",
            self.widths,
            "three positive integers",
        )


@dataclass
class PretrainConfig:
    epochs: int = 30
    """Epochs of ordinary training of the prior (the γ = 0 network, with BatchNorm); with init_from, of
    fine-tuning the imported weights, and 0 uses them as they are."""
    lr: float = 0.1
    """Peak SGD learning rate (cosine decay to zero)."""
    momentum: float = 0.9
    """SGD momentum."""
    weight_decay: float = 5e-4
    """SGD weight decay."""
    init_from: str | None = field(default=None, metadata=HASH_OMIT_IF_DEFAULT)
    """Start the prior from existing weights (null: at random): torchvision:NAME[:WEIGHTS] (a torchvision model
    with its zoo weights, e.g. torchvision:resnet18:IMAGENET1K_V1; DEFAULT when left out), hub:OWNER/REPO:REF:ENTRY
    (a torch.hub entry, e.g. hub:chenyaofo/pytorch-cifar-models:master:cifar10_resnet20; it runs the repository's
    hubconf.py, as torch.hub does), or a state-dict file (.pt, .pth or .safetensors; read weights-only). Keys are
    mapped onto model.family's names and every shape checked."""
    input_mean: list[float] | None = field(default=None, metadata=HASH_OMIT_IF_DEFAULT)
    """The per-channel mean of the [0, 1] pixels the imported weights were trained on (null: a torchvision
    model's weights' own, else the data's): the network maps the data's normalisation onto it."""
    input_std: list[float] | None = field(default=None, metadata=HASH_OMIT_IF_DEFAULT)
    """The per-channel standard deviation that goes with input_mean."""

    def __post_init__(self) -> None:
        _require(
            self.epochs >= (0 if self.init_from else 1),
            "pretrain.epochs",
            self.epochs,
            "a non-negative integer with pretrain.init_from (0: the imported weights as they are)"
            if self.init_from
            else "a positive integer (0 only with pretrain.init_from)",
        )
        _require(self.lr > 0, "pretrain.lr", self.lr, "a positive number")
        _require(
            (self.input_mean is None) == (self.input_std is None),
            "pretrain.input_mean",
            self.input_mean,
            "given together with pretrain.input_std (or both null)",
        )
        if self.input_std is not None:
            _require(
                self.init_from is not None,
                "pretrain.input_std",
                self.input_std,
                "null without pretrain.init_from (a prior trained here uses the data's normalisation)",
            )
            _require(
                len(self.input_std) == len(self.input_mean) and all(v > 0 for v in self.input_std),
                "pretrain.input_std",
                self.input_std,
                "positive numbers, one per channel of input_mean",
            )


@dataclass
class SmoothConfig:
    enabled: bool = True
    """Permute channels to shorten the weights' total variation (NeuMeta intra-network smoothing)."""
    restarts: int = 4
    """Tours tried per channel group by the Hamiltonian-path solver."""

    def __post_init__(self) -> None:
        _require(self.restarts >= 1, "smooth.restarts", self.restarts, "a positive integer")


@dataclass
class INRConfig:
    hidden_width: int = 256
    """Width H of every INR MLP (paper: 512)."""
    depth: int = 8
    """Depth D of every INR MLP: an input layer, D-1 residual ELU blocks, an output layer (paper: 8)."""
    fourier_frequencies: int = 16
    """Fourier frequencies F per coordinate (paper: 32). Features are computed in float64, so F ≤ 32 is exact enough."""
    coordinate_noise: float = 0.5
    """Half-width of the uniform noise added to raw coordinates in training (clamped to ±0.49)."""
    input_activation: str = "none"
    """Activation after each INR's input layer: none, relu or elu. The papers are silent; NeuMeta's code
    applies ReLU (the paper configs in jobs/ do). Without it the INR fits the prior's weights far better
    (docs/method.md), hence the default."""
    residual_scale_init: float = 1.0
    """Initial value of the learnable scale s_j of each INR residual block. Papers silent; NeuMeta's code
    starts it at 0.1 (the paper configs in jobs/ do); 1.0 fits the prior's weights better here."""
    noise_shape: bool = field(default=False, metadata=HASH_OMIT_IF_DEFAULT)
    """Add the coordinate noise to the shape coordinates (L, O, I) too, not only to the element's position
    (l, o, i). HTTY's code perturbs all six raw coordinates before dividing position by shape; NeuMeta's code
    and raymeta's default perturb the position only."""

    base: str = "prior"
    """What the INR's output is added to. none: nothing, the INR generates the weights (the papers). prior: the
    prior's own weights resampled to the configuration's widths (each hidden channel the overlap-weighted mean
    of the prior channels its coordinate cell covers: the weight function that an INR fitting the prior
    exactly would give), so the INR learns a correction, starting at zero (its output layers start at zero)
    and the network starts as the prior at γ = 0 (docs/method.md)."""

    def __post_init__(self) -> None:
        _require(self.base in ("none", "prior"), "inr.base", self.base, "none or prior")
        _require(self.hidden_width >= 1, "inr.hidden_width", self.hidden_width, "a positive integer")
        _require(self.depth >= 1, "inr.depth", self.depth, "a positive integer")
        _require(
            0 <= self.fourier_frequencies <= 32,
            "inr.fourier_frequencies",
            self.fourier_frequencies,
            "an integer in [0, 32] (beyond 2^32 the float64 features are noise)",
        )
        _require(
            0 <= self.coordinate_noise <= 0.5,
            "inr.coordinate_noise",
            self.coordinate_noise,
            "a number in [0, 0.5] (noise is clamped to ±0.49 so it never changes the element)",
        )
        _require(
            self.input_activation in ("none", "relu", "elu"),
            "inr.input_activation",
            self.input_activation,
            "none, relu or elu",
        )


GAMMA_SAMPLING = ("uniform", "per_block")
"""Values of ``train.gamma_sampling``."""

PRECISIONS = ("fp32", "bf16")
"""Values of ``train.precision``."""

WARMUPS = ("once", "per_stage", "first_stage")
"""Values of ``train.warmup``."""

HEAD_UPDATES = ("per_step", "per_configuration")
"""Values of ``train.head_updates``."""

EVAL_NOISE = ("multi_sample", "every_sample")
"""Values of ``eval.noise``."""


@dataclass
class TrainConfig:
    blocks: list[str] = field(default_factory=lambda: ["stage3"])
    """Metamorphic blocks in training order: names like stage3.block1, ranges stage3.block1-7,
    a whole stage (stage3: its blocks but the first and the network's last), 'full' (the paper's full
    network: every block but the first of each stage and the last) or 'last' (only the last block)."""
    epochs_per_stage: int = 50
    """Epochs of each incremental stage (non-incremental runs train stages × this many epochs)."""
    steps_per_epoch: int | None = None
    """Cap on optimiser steps per epoch (fast runs); null = one pass over the training data."""
    lr: float = 8e-4
    """AdamW learning rate of the INRs."""
    weight_decay: float = 1e-4
    """AdamW weight decay of the INRs."""
    alpha_lr: float = 1e-4
    """Learning rate of the residual scales α."""
    head_lr: float = 7e-5
    """Learning rate of the fine-tuned last block and classifier."""
    warmup_epochs: float = 20
    """Length of the linear warm-up of every learning rate (see ``warmup``), then constant."""
    warmup: str = "once"
    """once: one optimiser and one warm-up for the whole run, after which the rates stay constant (the paper's
    reading, HTTY §4.1); a block that joins in a later stage starts its own Adam moments and step count (its
    first update has a fresh Adam's size). per_stage: a fresh optimiser every stage, its warm-up restarting.
    first_stage: a fresh optimiser every stage, warmed up in the first stage only, per epoch from 1e-5 × the
    rate (HTTY's code: LinearLR stepped per epoch), constant in later stages."""
    head_updates: str = field(default="per_step", metadata=HASH_OMIT_IF_DEFAULT)
    """per_step: α and the fine-tuned head step with the INRs, once per optimiser step, in one AdamW.
    per_configuration (HTTY's code): α and the head have their own AdamW (no warm-up, no clipping) and step
    after every configuration on that configuration's gradient, while the INRs accumulate over the M
    configurations and step once. With N workers a step runs in rounds (docs/method.md): α and the head step
    once per round, on the sum of the round's N configurations."""
    head_weight_decay: float | None = field(default=None, metadata=HASH_OMIT_IF_DEFAULT)
    """AdamW weight decay of α and the head. null: α none, the head ``weight_decay``. A number: that decay for
    both (HTTY's code: 1e-2)."""
    clip_value: float = 10.0
    """Gradient value clipping (0 disables)."""
    configs_per_step: int = 4
    """M: configurations whose gradients are accumulated per optimiser step (1 = NeuMeta)."""
    gamma_pool: list[float] = field(default_factory=lambda: [0.0, 0.5])
    """Training pool [low, high] of compression ratios. Each configuration's hidden width is a uniform integer
    over the widths the pool allows for the widest metamorphic block (as NeuMeta's code draws it), so γ = 0,
    the only configuration the reconstruction term supervises, comes up even with M = 1."""
    gamma_sampling: str = field(default="uniform", metadata=HASH_OMIT_IF_DEFAULT)
    """How a configuration's γ is drawn: uniform (one γ for every metamorphic block, the papers) or per_block
    (each block's γ drawn independently from the same pool, "mix and match", so that the network is trained
    for the per-block configurations ``raymeta deploy`` searches). γ = 0 stays the first configuration of a
    step either way (every block at the prior's width, where the reconstruction term applies)."""
    lambda_task: float = 1.0
    """Weight of the cross-entropy of the generated network."""
    lambda_rec: float = 1.0
    """Weight of the reconstruction MSE to the smoothed prior (full-width configurations only)."""
    lambda_reg: float = 1e-4
    """Weight of the sum of L2 norms of the generated tensors."""
    reconstruction: str = "relative"
    """How the reconstruction term measures a generated tensor against the prior's: mse (the papers' and
    NeuMeta's code: the mean over tensors of each tensor's MSE) or relative (each tensor's MSE divided by
    the mean square of its target, so that a 3×3 kernel of RMS 0.03 weighs as much as a bias of RMS 0.3 and
    the term is of the task loss's order). See docs/method.md."""
    lambda_distill: float = 1.0
    """Weight of the distillation term: KL from the prior's logits (the smoothed prior before any head
    fine-tuning) to every sampled configuration's, at temperature distill_temperature (the in-place
    distillation of US-Nets and Once-for-All). 0: off (the papers)."""
    lambda_feature: float = 0.0
    """Weight of block-output distillation: for every configuration, each metamorphic block's scaled residual
    branch α·branch(x) is compared with the prior block's branch on the same input x (relative MSE, the mean
    over blocks). It asks the generated block to compute the prior block's *function*, which a small INR can
    match where it cannot copy the prior's noisy kernels. 0: off (the papers)."""
    distill_temperature: float = 1.0
    """Softmax temperature T of the distillation term (the term is scaled by T²)."""
    alpha_init: float = 1.0
    """Initial value of a new block's residual scale α (alpha_scaling only). 0: the paper (each generated
    block starts switched off). With prefit_steps the INRs start as the prior's block, so α = 1 starts the
    network as the prior."""
    prefit_steps: int = 0
    """Warm start: before its stage, each new block's INRs are fitted to the prior's block by the relative
    reconstruction error alone for this many Adam steps (cosine-decayed from prefit_lr), at γ = 0 with the
    training coordinate noise. 0: off (the papers)."""
    prefit_lr: float = 3e-3
    """Peak learning rate of the warm start."""
    incremental: bool = True
    """Make one more block metamorphic per stage (False: all blocks at once)."""
    alpha_scaling: bool = True
    """Learnable residual scale α (init 0) on metamorphic blocks (False: α fixed to 1)."""
    inr_init: bool = True
    """A new block's INRs start as a copy of its predecessor's *trained* INRs (HTTY §3.3); a block whose
    predecessor has not been trained yet (the first block, every block of a non-incremental run) starts at
    random. False: always random."""
    separate_bias_inr: bool = True
    """Bias INRs with a scalar output (HTTY §3.5). False: NeuMeta's layout, each bias its own INR of the
    kernel INRs' shape (9 outputs), the first output value used as the bias (HTTY §2.1)."""
    ema_decay: float = 0.995
    """Exponential moving average of the INR weights, used for monitoring, evaluation and export (papers
    silent; NeuMeta's code: 0.995). The decay is min(ema_decay, (1+n)/(10+n)) after n updates since the
    stage began, so short runs are not dominated by the initial weights. 0 disables it."""
    finetune_head: bool = True
    """Fine-tune the last block and classifier across configurations (False: frozen)."""
    precision: str = field(default="fp32", metadata=HASH_OMIT_IF_DEFAULT)
    """Arithmetic of the training step: fp32, or bf16 (autocast of the INRs and the generated network to
    bfloat16; master weights, optimiser state, losses and evaluation stay in fp32). bf16 pays only where the
    hardware has bf16 matrix units (recent GPUs, CPUs with AVX512-BF16 or AMX): elsewhere it is emulated and
    slower (benchmarks/RESULTS.md). It changes the numbers trained, so it is part of the config hash."""
    compile: bool = field(default=False, metadata=HASH_EXCLUDE)
    """torch.compile the INR banks (their elementwise work fused into few kernels): a one-off compile of tens of
    seconds, then faster steps where it pays (benchmarks/RESULTS.md). Needs a C++ compiler on a CPU. The same
    function, so outside the config hash."""
    monitor_gammas: list[float] | None = field(default=None, metadata=HASH_EXCLUDE)
    """γ values evaluated on the validation split after every epoch (K = 1); null: the ends of gamma_pool.
    The epoch's ``score`` (what a sweep's early stopping ranks trials by) is their mean accuracy over
    those inside gamma_pool. Monitoring changes no weight, so it is not part of the config hash."""

    def __post_init__(self) -> None:
        _require(len(self.blocks) >= 1, "train.blocks", self.blocks, "at least one block name")
        _require(self.epochs_per_stage >= 1, "train.epochs_per_stage", self.epochs_per_stage, "a positive integer")
        _require(
            self.steps_per_epoch is None or self.steps_per_epoch >= 1,
            "train.steps_per_epoch",
            self.steps_per_epoch,
            "null or a positive integer",
        )
        for key in ("lr", "alpha_lr", "head_lr"):
            _require(getattr(self, key) > 0, f"train.{key}", getattr(self, key), "a positive number")
        for key in ("weight_decay", "warmup_epochs", "clip_value", "lambda_task", "lambda_rec", "lambda_reg"):
            _require(getattr(self, key) >= 0, f"train.{key}", getattr(self, key), "a number ≥ 0")
        _require(
            self.reconstruction in ("mse", "relative"), "train.reconstruction", self.reconstruction, "mse or relative"
        )
        for key in ("lambda_distill", "lambda_feature", "prefit_steps"):
            _require(getattr(self, key) >= 0, f"train.{key}", getattr(self, key), "a number ≥ 0")
        for key in ("distill_temperature", "prefit_lr"):
            _require(getattr(self, key) > 0, f"train.{key}", getattr(self, key), "a positive number")
        _require(self.warmup in WARMUPS, "train.warmup", self.warmup, ", ".join(WARMUPS[:-1]) + " or " + WARMUPS[-1])
        _require(self.head_updates in HEAD_UPDATES, "train.head_updates", self.head_updates, " or ".join(HEAD_UPDATES))
        _require(
            self.head_weight_decay is None or self.head_weight_decay >= 0,
            "train.head_weight_decay",
            self.head_weight_decay,
            "null or a number ≥ 0",
        )
        _require(self.precision in PRECISIONS, "train.precision", self.precision, " or ".join(PRECISIONS))
        _require(
            self.gamma_sampling in GAMMA_SAMPLING,
            "train.gamma_sampling",
            self.gamma_sampling,
            " or ".join(GAMMA_SAMPLING),
        )
        _require(0 <= self.ema_decay < 1, "train.ema_decay", self.ema_decay, "a number in [0, 1) (0 disables the EMA)")
        _require(self.configs_per_step >= 1, "train.configs_per_step", self.configs_per_step, "a positive integer")
        low_high = self.gamma_pool
        _require(
            len(low_high) == 2 and -1 <= low_high[0] <= low_high[1] < 1,
            "train.gamma_pool",
            low_high,
            "[low, high] with -1 ≤ low ≤ high < 1",
        )
        _require(
            self.monitor_gammas is None
            or (len(self.monitor_gammas) >= 1 and all(-1 <= g < 1 for g in self.monitor_gammas)),
            "train.monitor_gammas",
            self.monitor_gammas,
            "null or a non-empty list of numbers in [-1, 1)",
        )

    @property
    def switches(self) -> dict[str, object]:
        """The ablation switches of paper Table 1 (all off with M = 1 is the NeuMeta baseline)."""
        return {
            "incremental": self.incremental,
            "alpha_scaling": self.alpha_scaling,
            "grad_accumulation": self.configs_per_step,
            "inr_init": self.inr_init,
            "separate_bias_inr": self.separate_bias_inr,
            "finetune_head": self.finetune_head,
        }


@dataclass
class EvalConfig:
    gammas: list[float] = field(default_factory=lambda: [-0.25, 0.0, 0.125, 0.25, 0.375, 0.5, 0.625, 0.75])
    """Compression ratios to evaluate; those outside train.gamma_pool are marked unseen."""
    samples: int = 1
    """K noisy coordinate samples averaged per γ (1 = the noise-free coordinates; references use 100)."""
    noise: str = field(default="multi_sample", metadata=HASH_OMIT_IF_DEFAULT)
    """Which of the K samples carry the training coordinate noise. multi_sample: all of them when K > 1, none
    when K = 1 (the noise-free coordinates). every_sample: every sample, K = 1 too (HTTY's code, whose INR
    adds the noise at evaluation as in training)."""

    def __post_init__(self) -> None:
        _require(
            len(self.gammas) >= 1 and all(-1 <= g < 1 for g in self.gammas),
            "eval.gammas",
            self.gammas,
            "a non-empty list of numbers in [-1, 1)",
        )
        _require(self.samples >= 1, "eval.samples", self.samples, "a positive integer")
        _require(self.noise in EVAL_NOISE, "eval.noise", self.noise, " or ".join(EVAL_NOISE))

    def noise_of(self, coordinate_noise: float, samples: int | None = None) -> float:
        """The coordinate noise of evaluating with ``samples`` (default ``self.samples``) samples per γ."""
        samples = self.samples if samples is None else samples
        return coordinate_noise if samples > 1 or self.noise == "every_sample" else 0.0


# ---- how and where a run executes: outside the config hash, like run_dir ---------------------------------


@dataclass
class RayConfig:
    """How ``raymeta train`` / ``run`` train on Ray Train (flags --workers, --gpus-per-worker, …)."""

    workers: int | None = None
    """Ray Train workers; null: as many as the cluster allows, at most M = train.configs_per_step (more cut each
    micro-batch into slices); 0 trains in this process without Ray."""
    gpus_per_worker: float = 0.0
    """GPUs per worker (NCCL when > 0)."""
    cpus_per_worker: float | None = None
    """CPUs per worker; null: the cluster's CPUs shared evenly over the workers (at least 1)."""
    address: str | None = None
    """The Ray cluster to join (train and sweep); null: RAY_ADDRESS if set, else an embedded local Ray."""
    storage_path: str | None = None
    """Where Ray Train keeps the run's checkpoints; null: RUN_DIR/ray."""
    max_failures: int = 3
    """Worker-group failures to recover from, each from the last checkpoint (-1: forever)."""
    timeout_s: int = 1800
    """Seconds a collective may wait before the process group gives up."""
    log_level: str = "WARNING"
    """Ray Train's own log level (INFO shows every report of every worker)."""

    def __post_init__(self) -> None:
        _require(
            self.workers is None or self.workers >= 0,
            "ray.workers",
            self.workers,
            "null (as many as fit), 0 (no Ray) or a positive integer",
        )
        _require(self.gpus_per_worker >= 0, "ray.gpus_per_worker", self.gpus_per_worker, "0 or more")
        _require_storage("ray.storage_path", self.storage_path)
        _require(
            self.cpus_per_worker is None or self.cpus_per_worker > 0,
            "ray.cpus_per_worker",
            self.cpus_per_worker,
            "null or a positive number",
        )
        _require(self.max_failures >= -1, "ray.max_failures", self.max_failures, "-1 (forever) or more")
        _require(self.timeout_s >= 1, "ray.timeout_s", self.timeout_s, "a positive integer")
        _require(
            self.log_level in ("DEBUG", "INFO", "WARNING", "ERROR"),
            "ray.log_level",
            self.log_level,
            "DEBUG, INFO, WARNING or ERROR",
        )


@dataclass
class SweepConfig:
    """How ``raymeta sweep`` runs its Ray Tune trials (flags --space, --workers, --num-samples, …)."""

    space: str | None = None
    """Search-space YAML, e.g. tune_spaces/lambdas.yaml (required by raymeta sweep, here or as --space)."""
    sweep_dir: str | None = None
    """The sweep's folder; null: RUN_DIR/sweeps/<space name>."""
    workers: int = 1
    """Ray Train workers per trial (a sweep parallelises over trials first)."""
    cpus_per_worker: float = 1.0
    """CPUs per worker of a trial."""
    gpus_per_worker: float = 0.0
    """GPUs per worker of a trial."""
    trial_cpus: float = 1.0
    """CPUs of each trial's driver, which also evaluates the trained network."""
    max_concurrent_trials: int | None = None
    """At most this many trials at once; null: the space's limit, else as many as the cluster fits."""
    num_samples: int | None = None
    """Trials to sample; null: the space's num_samples."""
    search: str | None = None
    """random, grid or optuna; null: the space's."""
    scheduler: str | None = None
    """asha (early stopping on the monitored validation score) or fifo (none); null: the space's."""
    score_gammas: list[float] | None = None
    """γ monitored each epoch, on the validation split, for the score; null: the seen γ of eval.gammas."""
    trial_retries: int = 1
    """Retries of an errored trial (each continues from the trial's last checkpoint)."""
    verbose: int = 1
    """Tune's console output: 0 silent, 1 status tables, 2 every result."""

    def __post_init__(self) -> None:
        _require(self.workers >= 1, "sweep.workers", self.workers, "1 or more (each trial trains on Ray Train)")
        _require_storage("sweep.sweep_dir", self.sweep_dir)
        _require(self.cpus_per_worker > 0, "sweep.cpus_per_worker", self.cpus_per_worker, "a positive number")
        _require(self.gpus_per_worker >= 0, "sweep.gpus_per_worker", self.gpus_per_worker, "0 or more")
        _require(self.trial_cpus > 0, "sweep.trial_cpus", self.trial_cpus, "a positive number")
        _require(
            self.max_concurrent_trials is None or self.max_concurrent_trials >= 1,
            "sweep.max_concurrent_trials",
            self.max_concurrent_trials,
            "null or 1 or more",
        )
        _require(
            self.num_samples is None or self.num_samples >= 1,
            "sweep.num_samples",
            self.num_samples,
            "null or 1 or more",
        )
        _require(
            self.search in (None, "random", "grid", "optuna"),
            "sweep.search",
            self.search,
            "null, random, grid or optuna",
        )
        _require(self.scheduler in (None, "asha", "fifo"), "sweep.scheduler", self.scheduler, "null, asha or fifo")
        _require(
            self.score_gammas is None or (len(self.score_gammas) >= 1 and all(-1 <= g < 1 for g in self.score_gammas)),
            "sweep.score_gammas",
            self.score_gammas,
            "null or a list of numbers in [-1, 1)",
        )
        _require(self.trial_retries >= 0, "sweep.trial_retries", self.trial_retries, "0 or more")
        _require(self.verbose in (0, 1, 2), "sweep.verbose", self.verbose, "0, 1 or 2")


@dataclass
class BaselineConfig:
    """Settings of ``raymeta baseline individual|prune|skip|slimmable|merge|inr-off`` (flags --gammas, --epochs,
    …)."""

    gammas: list[float] | None = None
    """γ values of the baseline rows; null: eval.gammas (prune and slimmable skip γ < 0)."""
    epochs: int | None = None
    """Training epochs: individual, per γ (null: pretrain.epochs); skip (null: the metamorphic run's, every
    stage together); slimmable (null: as many seconds as the metamorphic run trained)."""
    lr: float | None = None
    """Peak learning rate of an individual network (null: pretrain.lr) or of the slimmable network (null:
    finetune_lr)."""
    importance: list[str] = field(default_factory=lambda: ["all"])
    """Pruning importance criteria: random, l1, l2, taylor, hessian, or all."""
    finetune_epochs: int = 3
    """Epochs of fine-tuning after pruning; rows prune-X+ft (0: no such rows)."""
    finetune_budget: str | None = None
    """equal: also fine-tune each pruned network for the metamorphic run's training time divided over the γ ≥ 0
    pruned (equal total training cost); rows prune-X+ft-equal. null: no such rows."""
    finetune_lr: float = 0.01
    """Peak learning rate of the pruning fine-tune."""
    gradient_batches: int = 4
    """Training batches for the Taylor and Hessian importance gradients."""
    recalibration_batches: int = 20
    """slimmable: training batches its BatchNorm statistics are recomputed on at each evaluated width."""

    def __post_init__(self) -> None:
        _require(
            self.gammas is None or (len(self.gammas) >= 1 and all(-1 <= g < 1 for g in self.gammas)),
            "baseline.gammas",
            self.gammas,
            "null or a non-empty list of numbers in [-1, 1)",
        )
        _require(self.epochs is None or self.epochs >= 0, "baseline.epochs", self.epochs, "null or 0 or more")
        _require(self.lr is None or self.lr > 0, "baseline.lr", self.lr, "null or a positive number")
        _require(self.finetune_epochs >= 0, "baseline.finetune_epochs", self.finetune_epochs, "0 or more")
        _require(self.finetune_lr > 0, "baseline.finetune_lr", self.finetune_lr, "a positive number")
        _require(self.gradient_batches >= 1, "baseline.gradient_batches", self.gradient_batches, "1 or more")
        _require(
            self.finetune_budget in (None, "equal"), "baseline.finetune_budget", self.finetune_budget, "null or equal"
        )
        _require(
            self.recalibration_batches >= 1, "baseline.recalibration_batches", self.recalibration_batches, "1 or more"
        )


@dataclass
class DeployConfig:
    """Settings of ``raymeta deploy``: the budget and how the search is run (flags --max-macs, --candidates, …).

    Exactly one budget is given (here or as its flag); the other two stay null."""

    max_macs: str | float | None = None
    """Budget of multiply-accumulates per image, e.g. 20M (a number with an optional k, M or G suffix)."""
    max_params: str | float | None = None
    """Budget of parameters, e.g. 200k (a number with an optional k, M or G suffix)."""
    max_latency_ms: str | float | None = None
    """Budget of measured latency in milliseconds per batch, e.g. 1.5."""
    device: str = "cpu"
    """Where latency is measured: cpu or cuda."""
    batch_size: int = 1
    """Batch size latency is measured at."""
    threads: int = 1
    """torch threads latency is measured with (the search uses the process's own)."""
    gammas: list[float] | None = None
    """The γ grid every block takes values from; null: -0.25 to 0.75 in steps of 0.125."""
    candidates: int = 60
    """Most configurations to evaluate: every per-block one when they fit, else an evolutionary search."""
    samples: int | None = None
    """K noisy weight samples averaged; null: eval.samples of the run (as raymeta evaluate and export)."""
    seed: int = 0
    """Seed of the evolutionary search's random choices."""
    address: str | None = None
    """Evaluate candidates as tasks on this Ray cluster; null: Ray tasks when this process is already connected
    to one, else in this process."""
    report_test: bool = False
    """Also evaluate the uniform γ and the validation fronts on the test split, for the report (never used to
    choose)."""
    onnx: bool | None = None
    """Write network.onnx (the slowest format to export); null: where the onnx and onnxscript packages are
    installed."""
    output: str | None = None
    """Output folder; null: RUN_DIR/deploy/<budget>."""

    def __post_init__(self) -> None:
        _require(self.device in ("cpu", "cuda"), "deploy.device", self.device, "cpu or cuda")
        _require_folder("deploy.output", self.output)
        _require(self.batch_size >= 1, "deploy.batch_size", self.batch_size, "a positive integer")
        _require(self.threads >= 1, "deploy.threads", self.threads, "a positive integer")
        _require(
            self.gammas is None or (len(self.gammas) >= 1 and all(-1 <= g < 1 for g in self.gammas)),
            "deploy.gammas",
            self.gammas,
            "null or a non-empty list of numbers in [-1, 1)",
        )
        _require(self.candidates >= 1, "deploy.candidates", self.candidates, "a positive integer")
        _require(
            self.samples is None or self.samples >= 1,
            "deploy.samples",
            self.samples,
            "null or a positive integer (1 = noise-free weights)",
        )

    def budget(self) -> tuple[str, str]:
        """The one budget given, as (kind, text): kind macs, params or latency_ms."""
        given = [
            (kind, str(value))
            for kind, value in (
                ("macs", self.max_macs),
                ("params", self.max_params),
                ("latency_ms", self.max_latency_ms),
            )
            if value is not None
        ]
        if len(given) != 1:
            named = ", ".join(f"max_{kind}={text}" for kind, text in given) or "none"
            raise ConfigError(
                f"raymeta deploy needs exactly one budget, got {named}: --max-macs (e.g. 20M), "
                f"--max-params (e.g. 200k) or --max-latency-ms (e.g. 1.5), or deploy.max_… in the "
                f"job config"
            )
        return given[0]


@dataclass
class ExportConfig:
    """Settings of ``raymeta export`` (flags --gamma, --samples, …)."""

    gamma: float | list[float] | None = None
    """Compression ratio γ of the exported network, or one γ per metamorphic block in train.blocks order (e.g.
    0.25,0.5). Required, here or as --gamma."""
    samples: int | None = None
    """K noisy weight samples averaged; null: eval.samples of the run."""
    checkpoint: str | None = None
    """Metamorphic checkpoint to export; null: RUN_DIR/train/checkpoint.pt."""
    onnx: bool | None = None
    """Write network.onnx (the slowest format to export); null: where the onnx and onnxscript packages are
    installed."""
    output: str | None = None
    """Output folder; null: RUN_DIR/export/gamma=G."""

    def __post_init__(self) -> None:
        _require_folder("export.output", self.output)
        # γ's range and its number of values are the network's to check (hidden_width), where the message can
        # name the blocks
        _require(
            self.gamma is None or isinstance(self.gamma, (int, float)) or len(self.gamma) >= 1,
            "export.gamma",
            self.gamma,
            "null, a number, or one number per metamorphic block",
        )
        _require(
            self.samples is None or self.samples >= 1,
            "export.samples",
            self.samples,
            "null or a positive integer (1 = noise-free weights)",
        )


TRACKERS = ("mlflow", "wandb", "tensorboard")
"""The experiment trackers a run can report to (``tracking.<name>: true``)."""


@dataclass
class TrackingConfig:
    """Experiment trackers a run reports to, any of them (all off by default; flags --mlflow, --wandb,
    --tensorboard). Each gets the resolved config as parameters, every epoch's loss parts, validation accuracy
    at the monitored γ, α and worst reconstruction error per block as metrics, and the result tables, the
    report and exported networks as files. The tracked run is named by the config hash and the run folder, so
    a resumed run continues it. In a sweep every trial is one tracked run (Tune's logger callbacks). What is
    watched, not what is computed: outside the config hash."""

    mlflow: bool = False
    """Log to MLflow (needs mlflow or mlflow-skinny: pip install 'raymeta[tracking]')."""
    mlflow_uri: str | None = None
    """MLflow tracking URI: a server (http://host:5000), a database (sqlite:////abs/mlflow.db, with sqlalchemy)
    or a file store (file:///abs/mlruns, which MLflow accepts with MLFLOW_ALLOW_FILE_STORE=true); null:
    MLFLOW_TRACKING_URI (one of the two is required; a local path in it is made absolute). On a cluster, a
    server every node reaches."""
    mlflow_experiment: str = "raymeta"
    """MLflow experiment the runs go to (created when missing)."""
    wandb: bool = False
    """Log to Weights & Biases (needs wandb: pip install 'raymeta[tracking]'); WANDB_MODE=offline writes the
    run under RUN_DIR/wandb/ only, for ``wandb sync`` later."""
    wandb_project: str = "raymeta"
    """W&B project the runs go to."""
    wandb_entity: str | None = None
    """W&B entity (team or user); null: the account's default."""
    tensorboard: bool = False
    """Write TensorBoard event files (tensorboardX, installed with Ray Tune): ``tensorboard --logdir`` on
    tensorboard_dir."""
    tensorboard_dir: str | None = None
    """Folder of the event files; null: RUN_DIR/tensorboard."""

    def __post_init__(self) -> None:
        _require(bool(self.mlflow_experiment), "tracking.mlflow_experiment", self.mlflow_experiment, "a name")
        _require(bool(self.wandb_project), "tracking.wandb_project", self.wandb_project, "a name")
        _require_folder("tracking.tensorboard_dir", self.tensorboard_dir)

    def enabled(self) -> list[str]:
        """The trackers switched on, in :data:`TRACKERS` order."""
        return [name for name in TRACKERS if getattr(self, name)]


@dataclass
class Config:
    run_dir: str = field(default="runs/default", metadata=HASH_EXCLUDE)
    """Folder for every file a run writes: prior, smoothed prior, training checkpoint, results."""
    seed: int = field(default=0, metadata=PRIOR)
    """Seed of every random choice (data order, configuration sampling, initialisation)."""
    device: str = field(default="cpu", metadata=HASH_EXCLUDE)
    """torch device: cpu, cuda, cuda:1, or auto (cuda when available)."""
    threads: int | None = field(default=None, metadata=HASH_EXCLUDE)
    """torch CPU threads (null: torch's default)."""
    data: DataConfig = field(default_factory=DataConfig, metadata=PRIOR)
    model: ModelConfig = field(default_factory=ModelConfig, metadata=PRIOR)
    pretrain: PretrainConfig = field(default_factory=PretrainConfig, metadata=PRIOR)
    smooth: SmoothConfig = field(default_factory=SmoothConfig)
    inr: INRConfig = field(default_factory=INRConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    # how and where work runs, not what it computes: outside the config hash
    ray: RayConfig = field(default_factory=RayConfig, metadata=HASH_EXCLUDE)
    sweep: SweepConfig = field(default_factory=SweepConfig, metadata=HASH_EXCLUDE)
    baseline: BaselineConfig = field(default_factory=BaselineConfig, metadata=HASH_EXCLUDE)
    deploy: DeployConfig = field(default_factory=DeployConfig, metadata=HASH_EXCLUDE)
    export: ExportConfig = field(default_factory=ExportConfig, metadata=HASH_EXCLUDE)
    tracking: TrackingConfig = field(default_factory=TrackingConfig, metadata=HASH_EXCLUDE)

    def __post_init__(self) -> None:
        _require(
            self.device == "auto" or self.device == "cpu" or self.device.startswith("cuda"),
            "device",
            self.device,
            "cpu, cuda, cuda:N or auto",
        )
        _require(self.threads is None or self.threads >= 1, "threads", self.threads, "null or a positive integer")
        _require_storage("run_dir", self.run_dir)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def hash(self) -> str:
        """Short hash of everything that changes results (not where files go or which device runs them)."""
        return short_hash(hashed_content(self))

    def prior_hash(self) -> str:
        """Short hash of what the prior depends on: data, model, pretraining and seed."""
        content = hashed_content(self)
        return short_hash({f.name: content[f.name] for f in dataclasses.fields(self) if f.metadata.get("prior")})


def hashed_content(group) -> dict:
    """A config dataclass as a dict, without the fields its metadata leaves out of the hash (recursively)."""
    content = {}
    for item in dataclasses.fields(group):
        value = getattr(group, item.name)
        rule = item.metadata.get("hash")
        if rule == "exclude" or (rule == "omit_if_default" and value == _default(item)):
            continue
        content[item.name] = hashed_content(value) if dataclasses.is_dataclass(value) else value
    return content


def _default(item: dataclasses.Field):
    return item.default_factory() if item.default is dataclasses.MISSING else item.default


def short_hash(content) -> str:
    """The 12 hex digits of the SHA-256 of ``content`` as sorted JSON: the config hash and the hashes derived from it."""
    return hashlib.sha256(json.dumps(content, sort_keys=True).encode()).hexdigest()[:12]


def method_name(config: Config) -> str:
    """The method column of result rows: "neumeta" (every switch NeuMeta's, the papers' method), "recipe" (the
    papers' method with the recipe's switches) or "metamorphic" (raymeta's method)."""
    if not all(_setting(config, key) == value for key, value in PAPER_METHOD.items()):
        return "metamorphic"
    neumeta = all(getattr(config.train, key) == value for key, value in NEUMETA_SWITCHES.items())
    return "neumeta" if neumeta else "recipe"


def _setting(config: Config, dotted: str):
    group, name = dotted.split(".")
    return getattr(getattr(config, group), name)
