from pathlib import Path

import pytest

from raymeta.config.loading import load_config
from raymeta.config.schema import Config, method_name
from raymeta.errors import ConfigError
from raymeta.method.models import Architecture, resolve_blocks
from raymeta.stages.runtime import model_architecture

ROOT = Path(__file__).resolve().parent.parent

JOBS = sorted(
    path for path in (Path(__file__).resolve().parents[1] / "jobs").glob("*.yaml") if path.name != "runtime_env.yaml"
)  # Ray's runtime environment for job submission, not an experiment


def test_there_are_job_configs():
    assert {p.stem for p in JOBS} >= {
        "debug",
        "quickstart",
        "fashion_mnist_resnet20",
        "cifar100_resnet56",
        "cifar100_resnet56_wide",
    }


@pytest.mark.parametrize("path", JOBS, ids=lambda p: p.stem)
def test_every_job_config_loads_and_validates(path):
    config = load_config(path)
    assert isinstance(config, Config)
    assert path.read_text().startswith("#"), "each job YAML starts with a header naming its command"
    assert (
        "raymeta"
        in path.read_text().splitlines()[1] + path.read_text().splitlines()[2] + path.read_text().splitlines()[3]
    )
    arch = model_architecture(config, 3, 10)
    assert resolve_blocks(config.train.blocks, arch)


def test_paper_config_has_the_paper_hyperparameters():
    config = load_config(Path(JOBS[0]).parent / "cifar100_resnet56.yaml")
    assert config.model.depth == 56 and config.model.widths == [16, 32, 64]
    assert config.train.configs_per_step == 4 and config.train.epochs_per_stage == 50
    assert config.train.lr == 8e-4 and config.train.warmup_epochs == 20 and config.train.clip_value == 10
    assert (config.train.lambda_task, config.train.lambda_rec, config.train.lambda_reg) == (1.0, 1.0, 1e-4)
    assert (config.inr.hidden_width, config.inr.depth) == (512, 8)
    arch = Architecture(56, (16, 32, 64), 3, 100)
    assert resolve_blocks(config.train.blocks, arch) == [(2, b) for b in range(1, 8)]


def test_a_validation_split_is_on_by_default():
    assert load_config(None).data.validation_fraction == 0.1
    config = load_config(None, ["data.validation_fraction=0"])
    assert config.data.validation_fraction == 0.0 and config.hash() != load_config(None).hash()


def test_overrides_apply_and_are_typed():
    config = load_config(None, ["train.lr=1e-3", "model.widths=[8, 8, 16]", "data.limit_train=null"])
    assert config.train.lr == 1e-3 and config.model.widths == [8, 8, 16] and config.data.limit_train is None
    assert config.hash() != load_config(None, ["train.lr=2e-3"]).hash()
    assert config.hash() == load_config(None, ["train.lr=1e-3", "model.widths=[8,8,16]", "run_dir=x"]).hash()


@pytest.mark.parametrize(
    "override, message",
    [
        ("train.lrr=1", "unknown key train.lrr"),
        ("train.lr=-1", "train.lr=-1"),
        ("train.lr=fast", "expected a number"),
        ("model.depth=21", "6n\\+2"),
        ("train.gamma_pool=[0.5,0.1]", "gamma_pool"),
        ("eval.gammas=[0.0,1.0]", "eval.gammas"),
        ("inr.coordinate_noise=0.7", "coordinate_noise"),
        ("train.incremental=maybe", "true or false"),
        ("train.warmup=twice", "train.warmup='twice' is not allowed: once, per_stage or first_stage"),
        ("train.ema_decay=1", "train.ema_decay=1.0 is not allowed"),
        ("inr.input_activation=tanh", "inr.input_activation='tanh' is not allowed: none, relu or elu"),
        ("lr", "group.key=value"),
        ("data.validation_fraction=1", r"data.validation_fraction=1.0 is not allowed: a number in \[0, 1\)"),
        ("data.validation_fraction=-0.1", "data.validation_fraction=-0.1 is not allowed"),
        ("data.validation_fraction=most", "data.validation_fraction='most' is not allowed: expected a number"),
        ("data.limit_validation=0", "data.limit_validation=0 is not allowed"),
    ],
)
def test_bad_values_are_one_clear_error(override, message):
    with pytest.raises(ConfigError, match=message):
        load_config(None, [override])


def test_unparsable_yaml_names_the_file(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("train: [unclosed\n")
    with pytest.raises(ConfigError, match="bad.yaml"):
        load_config(path)
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path / "missing.yaml")


def test_a_checkpoint_config_from_before_the_departures_loads_as_the_papers_method():
    from raymeta.config.migration import stored_config
    from raymeta.method.presets import PAPER_METHOD

    old = Config().to_dict()
    for key in PAPER_METHOD:  # what a checkpoint written before these keys existed holds
        group, name = key.split(".")
        old[group].pop(name)
    config = stored_config(old)
    assert method_name(config) == "recipe"
    assert config.inr.base == "none" and config.train.alpha_init == 0.0 and config.train.reconstruction == "mse"
    today = stored_config(Config().to_dict())  # a current checkpoint keeps what it says
    assert today.inr.base == "prior" and method_name(today) == "metamorphic"


def test_method_flags_reach_the_papers_method_whatever_the_defaults():
    from raymeta.config.loading import method_overrides

    recipe = load_config(None, method_overrides("recipe"))
    assert method_name(recipe) == "recipe"
    # HTTY's optimisation as its code runs it (docs/method.md), for the recipe only
    assert (recipe.train.head_updates, recipe.train.head_weight_decay, recipe.train.warmup) == (
        "per_configuration",
        0.01,
        "first_stage",
    )
    assert (recipe.train.ema_decay, recipe.inr.input_activation, recipe.inr.residual_scale_init) == (0.0, "elu", 0.1)
    assert recipe.inr.noise_shape and recipe.eval.noise == "every_sample"
    neumeta = load_config(None, method_overrides("neumeta"))
    assert method_name(neumeta) == "neumeta" and neumeta.inr.base == "none" and not neumeta.train.alpha_scaling
    assert neumeta.train.head_updates == "per_step" and not neumeta.inr.noise_shape
    assert method_name(load_config(None, method_overrides("raymeta"))) == "metamorphic"
    with pytest.raises(ConfigError, match="raymeta, recipe or neumeta"):
        method_overrides("paper")


# ---- the ray:, sweep: and baseline: groups, and the flags made from them -----------------------------------------


def test_how_and_where_work_runs_is_outside_the_config_hash():
    base = load_config()
    changed = load_config(None, ["ray.workers=4", "sweep.num_samples=9", "baseline.epochs=2", "ray.address=x"])
    assert changed.hash() == base.hash() and changed.prior_hash() == base.prior_hash()
    assert changed.ray.workers == 4 and changed.sweep.num_samples == 9 and changed.baseline.epochs == 2


def test_keeping_the_data_on_the_device_is_outside_the_config_hash():
    base = load_config()
    assert base.data.resident is True  # on by default: on the CPU it changes nothing
    on_host = load_config(None, ["data.resident=false"])
    assert on_host.data.resident is False
    assert on_host.hash() == base.hash() and on_host.prior_hash() == base.prior_hash()


@pytest.mark.parametrize("value", ["auto", "1", "[true]"])
def test_a_bad_residency_is_one_clear_error(value):
    with pytest.raises(ConfigError, match=r"data\.resident=.* is not allowed: expected true or false"):
        load_config(None, [f"data.resident={value}"])


@pytest.mark.parametrize(
    "command, group, cls, names",
    [
        (["train"], "ray", "RayConfig", None),
        (["run"], "ray", "RayConfig", None),
        (["sweep"], "sweep", "SweepConfig", None),
        (
            ["baseline", "prune"],
            "baseline",
            "BaselineConfig",
            ["gammas", "importance", "finetune_epochs", "finetune_lr", "gradient_batches"],
        ),
        (["baseline", "individual"], "baseline", "BaselineConfig", ["gammas", "epochs", "lr"]),
        (["deploy"], "deploy", "DeployConfig", None),
        (["export"], "export", "ExportConfig", None),
    ],
)
def test_every_setting_of_a_group_is_a_flag_whose_help_is_its_docstring(command, group, cls, names):
    import dataclasses

    import raymeta.config.schema as schema
    from raymeta.cli import build_parser
    from raymeta.config.docs import field_docs

    cls = getattr(schema, cls)
    docs = field_docs(cls)
    assert set(docs) == {f.name for f in dataclasses.fields(cls)}, "a field without a docstring"
    parser = build_parser()
    sub = parser._subparsers._group_actions[0].choices[command[0]]
    if len(command) > 1:
        sub = sub._subparsers._group_actions[0].choices[command[1]]
    flags = {}
    for action in sub._actions:
        flags.setdefault(action.dest, action)  # the generated flag, not a shorthand sharing its key (--no-onnx)
    for name in names or docs:
        action = (
            flags[f"flag:{group}.{name}"] if f"flag:{group}.{name}" in flags else flags[f"flag-text:{group}.{name}"]
        )
        assert action.option_strings[-1] == f"--{name.replace('_', '-')}"
        assert action.help.startswith(docs[name].replace("%", "%%")), name


def test_a_flag_sets_its_config_key_over_the_yaml(tmp_path):
    from raymeta.cli import _config, build_parser

    job = tmp_path / "job.yaml"
    job.write_text("ray:\n  workers: 3\n  address: auto\nsweep:\n  space: a.yaml\n  num_samples: 5\n")
    args = build_parser().parse_args(["train", "--config", str(job), "--workers", "1", "--storage-path", "/x: y"])
    config = _config(args)
    assert config.ray.workers == 1 and config.ray.address == "auto" and config.ray.storage_path == "/x: y"
    args = build_parser().parse_args(["sweep", "--config", str(job), "--score-gammas", "0,0.25", "--search", "grid"])
    config = _config(args)
    assert config.sweep.space == "a.yaml" and config.sweep.num_samples == 5 and config.sweep.search == "grid"
    assert config.sweep.score_gammas == [0.0, 0.25]
    with pytest.raises(ConfigError, match="ray.workers=-2 is not allowed"):
        _config(build_parser().parse_args(["train", "--workers", "-2"]))


def test_a_job_file_extends_another_and_changes_only_what_differs(tmp_path):
    job = load_config(ROOT / "jobs" / "debug_distributed.yaml")
    debug = load_config(ROOT / "jobs" / "debug.yaml")
    assert job.ray.workers == 2 and job.run_dir == "runs/debug-distributed"
    assert job.hash() == debug.hash()  # the same experiment, run on two Ray Train workers
    sweep = load_config(ROOT / "jobs" / "debug_sweep.yaml")
    assert sweep.sweep.space == "tune_spaces/lambdas.yaml" and sweep.data.limit_train == 256
    assert sweep.model == debug.model
    (tmp_path / "a.yaml").write_text("extends: b.yaml\n")
    (tmp_path / "b.yaml").write_text("extends: a.yaml\n")
    with pytest.raises(ConfigError, match="extends itself"):
        load_config(tmp_path / "a.yaml")
    (tmp_path / "c.yaml").write_text("extends: missing.yaml\n")
    with pytest.raises(ConfigError, match="missing.yaml does not exist .extended by"):
        load_config(tmp_path / "c.yaml")


# ---- the config hash: what it holds is marked on the fields ------------------------------------------------------

JOB_HASHES = {
    "cifar100_resnet56": "57b03ae6baab",  # HTTY's optimisation as its code runs it (train.head_updates, …)
    "cifar100_resnet56_neumeta": "dd7d5f578431",
    "cifar100_resnet56_wide": "8577d4298d4e",  # likewise
    "cifar10_resnet20_hub": "8d551aaeab24",
    "debug": "d1944785f645",
    "debug_distributed": "d1944785f645",
    "debug_sweep": "374f5d26df06",
    "fashion_mnist_bench": "7f8000c00b77",
    "fashion_mnist_full": "883f98c49eb2",
    "fashion_mnist_recipe": "a3a360a7a446",
    "fashion_mnist_resnet20": "99d33e9cb9d0",
    "imagenet_resnet18": "9bc9f74193d0",  # with the image_folder data keys (data.image_size, …) in the schema
    "quickstart": "2ad6a5b455ea",
}
"""The hash of every job config: runs made with them are found by it (checkpoints resume, tables join), so a change
of the schema or of the hash must leave them as they are, or migrate them."""


def test_every_job_config_keeps_its_hash():
    jobs = {
        path.stem: load_config(path).hash()
        for path in sorted((ROOT / "jobs").glob("*.yaml"))
        if path.name != "runtime_env.yaml"
    }
    assert jobs == JOB_HASHES


def test_the_defaults_keep_their_hash_and_prior_hash():
    assert (Config().hash(), Config().prior_hash()) == ("1a0e6da0b975", "76bcd6f99ba8")


@pytest.mark.parametrize(
    "override",
    [
        "run_dir=elsewhere",
        "device=cuda",
        "threads=2",
        "data.resident=false",
        "train.compile=true",
        "train.monitor_gammas=[0.1]",
        "ray.workers=3",
        "sweep.num_samples=2",
        "baseline.epochs=1",
        "deploy.max_macs=20M",
        "deploy.candidates=5",
        "export.gamma=0.25",
        "export.onnx=false",
    ],
)
def test_a_field_marked_outside_the_hash_does_not_change_it(override):
    config = load_config(None, [override])
    assert config != Config()  # the override took
    assert config.hash() == Config().hash() and config.prior_hash() == Config().prior_hash()


@pytest.mark.parametrize(
    "override",
    [
        "train.lr=1e-3",
        "inr.depth=4",
        "eval.samples=3",
        "smooth.restarts=2",
        "train.precision=bf16",
        "train.gamma_sampling=per_block",
    ],
)
def test_a_field_inside_the_hash_changes_it(override):
    assert load_config(None, [override]).hash() != Config().hash()


def test_a_field_left_out_at_its_default_is_hashed_at_any_other_value():
    from raymeta.config.schema import hashed_content

    assert "precision" not in hashed_content(Config())["train"]
    assert hashed_content(load_config(None, ["train.precision=bf16"]))["train"]["precision"] == "bf16"
    assert load_config(None, ["train.precision=fp32"]).hash() == Config().hash()


@pytest.mark.parametrize(
    "override, changes_prior",
    [
        ("seed=1", True),
        ("data.batch_size=7", True),
        ("model.depth=14", True),
        ("pretrain.epochs=3", True),
        ("train.lr=1e-3", False),
        ("inr.depth=4", False),
        ("data.resident=false", False),
    ],
)
def test_the_prior_hash_holds_the_data_model_pretraining_and_seed(override, changes_prior):
    assert (load_config(None, [override]).prior_hash() != Config().prior_hash()) == changes_prior


@pytest.mark.parametrize("key", ["run_dir", "ray.storage_path", "sweep.sweep_dir"])
@pytest.mark.parametrize(
    "uri", ["s3://bucket/runs/x", "gs://bucket/x", "abfs://container@account/x", "HDFS://nn:8020/x"]
)
def test_run_folders_may_be_object_storage_uris(key, uri):
    config = load_config(None, [f"{key}={uri}"])
    assert {
        "run_dir": config.run_dir,
        "ray.storage_path": config.ray.storage_path,
        "sweep.sweep_dir": config.sweep.sweep_dir,
    }[key] == uri


@pytest.mark.parametrize("key", ["run_dir", "ray.storage_path", "sweep.sweep_dir"])
@pytest.mark.parametrize("uri", ["ftp://host/x", "s4://bucket/x", "file:///tmp/x"])
def test_a_uri_of_an_unknown_scheme_is_refused_naming_the_key_and_the_schemes(key, uri):
    # Path("ftp://host/x").resolve() would be the local folder $PWD/ftp:/host/x: refused, not written there
    with pytest.raises(ConfigError) as error:
        load_config(None, [f"{key}={uri}"])
    assert f"{key}={uri!r} is not allowed: a folder path, or a URI of object storage: s3://, gs://" in str(error.value)


@pytest.mark.parametrize("key", ["deploy.output", "export.output"])
@pytest.mark.parametrize("uri", ["s3://bucket/runs/x", "gs://bucket/x"])
def test_folders_written_only_locally_refuse_uris_naming_the_key(key, uri):
    with pytest.raises(ConfigError) as error:
        load_config(None, [f"{key}={uri}"])
    scheme = uri.split(":")[0]
    assert f"{key}={uri!r} is not allowed" in str(error.value)
    assert f"{scheme}://" in str(error.value) and "NFS" in str(error.value) and "not here" in str(error.value)


@pytest.mark.parametrize("path", ["runs/x", "/mnt/nfs/runs/x", "C:/runs/x", "runs/s3:/x"])
def test_folder_paths_stay_allowed(path):
    assert load_config(None, [f"run_dir={path}", f"ray.storage_path={path}"]).ray.storage_path == path
