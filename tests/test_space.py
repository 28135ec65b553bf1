"""Search-space files: every file under tune_spaces/ validates; a bad file is one error naming the key."""

from pathlib import Path

import pytest
from ray import tune

from raymeta.config.loading import load_config
from raymeta.config.schema import Config, SweepConfig
from raymeta.drivers.space import SpaceError, load_space, max_total_epochs
from raymeta.drivers.sweep import _block_count, _plan_trials, effective_space, score_gammas, trial_config
from raymeta.errors import ConfigError

ROOT = Path(__file__).resolve().parent.parent
SPACES = sorted((ROOT / "tune_spaces").glob("*.yaml"))


def test_the_project_ships_its_search_spaces():
    assert {p.stem for p in SPACES} >= {"lambdas", "schedule", "inr", "ablation"}


@pytest.mark.parametrize("path", SPACES, ids=lambda p: p.name)
@pytest.mark.parametrize("job", ["jobs/quickstart.yaml", "jobs/debug.yaml", "jobs/cifar100_resnet56.yaml"])
def test_every_space_validates_against_the_job_configs(path, job):
    base = load_config(ROOT / job)
    space = load_space(path, base)
    assert space.trial_count() >= 1 and space.searched_params
    domains = space.param_space()
    assert set(domains) == set(space.params) | ({"variant"} if space.variants else set())
    # each trial's configuration is a valid config: the variant first, then the sampled values
    for name in space.variants or [None]:
        params = {"variant": name} if name else {}
        for key, param in space.params.items():
            params[key] = param.candidates()[-1]
        config = trial_config(base, space, params, Path("/tmp/trial"), [0.0])
        assert config.run_dir == "/tmp/trial" and config.train.monitor_gammas == [0.0]


def test_the_ablation_grid_is_paper_table_1():
    space = load_space(ROOT / "tune_spaces/ablation.yaml")
    assert space.search == "grid" and space.scheduler == "fifo" and space.trial_count() == 7
    switches = ("incremental", "alpha_scaling", "inr_init", "separate_bias_inr", "finetune_head")
    configs = {
        name: trial_config(Config(), space, {"variant": name}, Path("/tmp/x"), [0.0]).train for name in space.variants
    }
    assert not any(getattr(configs["neumeta"], s) for s in switches) and configs["neumeta"].configs_per_step == 1
    assert all(getattr(configs["recipe"], s) for s in switches) and configs["recipe"].configs_per_step == 4
    # HTTY's optimisation as its code runs it in every recipe row (presets.RECIPE_OPTIMISATION), not NeuMeta's
    recipe_rows = [train for name, train in configs.items() if name.startswith("recipe")]
    assert {(t.head_updates, t.warmup, t.ema_decay) for t in recipe_rows} == {("per_configuration", "first_stage", 0.0)}
    assert (configs["neumeta"].head_updates, configs["neumeta"].warmup) == ("per_step", "once")
    # leave-one-out: each "recipe without X" differs from the recipe in X only
    for name, train in configs.items():
        if name.startswith("recipe without "):
            component = name[len("recipe without ") :]
            differs = [
                s for s in switches + ("configs_per_step",) if getattr(train, s) != getattr(configs["recipe"], s)
            ]
            assert differs == [{"grad_accumulation": "configs_per_step"}.get(component, component)], name


def write(tmp_path, text: str) -> Path:
    path = tmp_path / "space.yaml"
    path.write_text(text)
    return path


@pytest.mark.parametrize(
    "text, message",
    [
        ("params: {train.lr: {loguniform: [1e-4, 1e-2]}}\nsampels: 3\n", "unknown key 'sampels'"),
        ("params: {model.depth: {choice: [20, 32]}}\n", "key 'model.depth' is not allowed"),
        ("params: {train.lrate: {loguniform: [1e-4, 1e-2]}}\n", "unknown key 'train.lrate'"),
        ("params: {train.lr: {loguniform: [0, 1e-2]}}\n", "needs a positive lower bound"),
        ("params: {train.lr: {loguniform: [1e-2, 1e-4]}}\n", "low < high"),
        ("params: {train.lr: {normal: [0, 1]}}\n", "one of loguniform"),
        ("params: {train.configs_per_step: {uniform: [1, 8]}}\n", "train.configs_per_step is an integer setting"),
        ("params: {train.configs_per_step: {randint: [0, 4]}}\n", "train.configs_per_step=0 is not allowed"),
        ("params: {train.lr: {choice: [0.001, -1]}}\n", "params.train.lr=-1: train.lr=-1"),
        ("params: {inr.hidden_width: {choice: []}}\n", "non-empty list"),
        ("search: grid\nparams: {train.lr: {loguniform: [1e-4, 1e-2]}}\n", "every parameter must be grid or value"),
        ("search: optuna\nparams: {train.lr: {grid: [1e-4, 1e-2]}}\n", "Optuna cannot run a grid"),
        ("search: bayes\nparams: {train.lr: {choice: [1e-3]}}\n", "search='bayes' is not allowed"),
        ("num_samples: 0\nparams: {train.lr: {choice: [1e-3]}}\n", "num_samples=0 is not allowed"),
        ("scheduler: {name: pbt}\nparams: {train.lr: {choice: [1e-3]}}\n", "scheduler.name='pbt' is not allowed"),
        ("scheduler: {name: asha, grace: 2}\nparams: {train.lr: {choice: [1e-3]}}\n", "unknown key scheduler.grace"),
        (
            "scheduler: {reduction_factor: 1}\nparams: {train.lr: {choice: [1e-3]}}\n",
            "reduction_factor=1 is not allowed",
        ),
        ("variants: {a: {train.incremental: maybe}}\n", "variants.a: train.incremental='maybe' is not allowed"),
        ("variants: {a: {data.name: digits}}\n", "key 'data.name' is not allowed"),
        ("variants: {a: {train.lr: 1e-3}}\nparams: {train.lr: {choice: [1e-3]}}\n", "which params also varies"),
        ("description: nothing\n", "the space varies nothing"),
        ("params: [train.lr]\n", "params must map config keys"),
        ("params: {train.lr: {loguniform: [1e-4, 1e-2]}\n", "does not parse as YAML"),
    ],
)
def test_a_bad_space_is_one_error_naming_the_key(tmp_path, text, message):
    path = write(tmp_path, text)
    with pytest.raises(SpaceError) as error:
        load_space(path)
    assert message in str(error.value) and str(path) in str(error.value)


def test_a_missing_space_names_the_files_there(tmp_path):
    (tmp_path / "lambdas.yaml").write_text("params: {train.lr: {choice: [0.001]}}\n")
    with pytest.raises(SpaceError, match=r"lamdas.yaml does not exist \(files in .*: lambdas.yaml\)"):
        load_space(tmp_path / "lamdas.yaml")


def test_values_are_checked_against_the_job_config(tmp_path):
    # a width that the job config's INR accepts alone but not with this Fourier setting would be caught the same way
    path = write(tmp_path, "params: {train.gamma_pool: {choice: [[0.0, 0.5], [0.6, 0.2]]}}\n")
    with pytest.raises(SpaceError, match=r"train.gamma_pool=\[0.6, 0.2\]"):
        load_space(path, load_config(ROOT / "jobs/debug.yaml"))


def test_tune_domains_and_trial_overrides(tmp_path):
    path = write(
        tmp_path,
        """
params:
  train.lambda_reg: {loguniform: [1.0e-6, 1.0e-2]}
  train.configs_per_step: {randint: [1, 4]}
  inr.hidden_width: {grid: [16, 32]}
  train.blocks: {choice: [[last], [stage2, stage3]]}
  train.epochs_per_stage: 3
variants:
  plain: {train.incremental: false}
  recipe: {train.incremental: true}
""",
    )
    space = load_space(path)
    domains = space.param_space()
    assert isinstance(domains["train.lambda_reg"], tune.search.sample.Float)
    assert domains["train.configs_per_step"].upper == 5  # inclusive in the file, exclusive in Tune
    assert domains["inr.hidden_width"] == {"grid_search": [16, 32]}
    assert domains["variant"] == {"grid_search": ["plain", "recipe"]}
    assert domains["train.epochs_per_stage"] == 3
    assert space.trial_count() == 4 and space.searched_params[0] == "variant"
    assert "train.epochs_per_stage" not in space.searched_params
    overrides = space.overrides(
        {
            "variant": "plain",
            "train.blocks": ("stage2", "stage3"),
            "train.lambda_reg": 1e-3,
            "train.configs_per_step": 2,
            "inr.hidden_width": 16,
            "train.epochs_per_stage": 3,
        }
    )
    assert overrides["train.incremental"] is False and overrides["train.blocks"] == ["stage2", "stage3"]
    with pytest.raises(SpaceError, match="variant 'other'"):
        space.overrides({"variant": "other"})
    # the longest trial: 3 epochs × the blocks of stage2 + stage3 in a ResNet-20 (stage2.block1-2, stage3.block1)
    assert max_total_epochs(space, Config(), _block_count) == 3 * 3


def test_monitor_gammas_change_no_hash():
    config = Config()
    watched = load_config(None, ["train.monitor_gammas=[0.0,0.25,0.5]"])
    assert watched.hash() == config.hash() and watched.train.monitor_gammas == [0.0, 0.25, 0.5]
    with pytest.raises(ConfigError, match="train.monitor_gammas"):
        load_config(None, ["train.monitor_gammas=[]"])


def test_trials_fit_the_cluster():
    options = SweepConfig(workers=2, cpus_per_worker=1, trial_cpus=1)
    assert _plan_trials(options, {"CPU": 8}, None) == 2
    assert _plan_trials(options, {"CPU": 8}, 1) == 1
    assert _plan_trials(SweepConfig(workers=1, cpus_per_worker=0.5, trial_cpus=0.5), {"CPU": 2}, None) == 2
    assert _plan_trials(SweepConfig(gpus_per_worker=1), {"CPU": 16, "GPU": 3}, None) == 3
    with pytest.raises(ConfigError, match="one trial needs 3 CPUs .* the Ray cluster has 2 CPUs"):
        _plan_trials(options, {"CPU": 2}, None)
    with pytest.raises(ConfigError, match="sweep.workers=0 is not allowed"):
        SweepConfig(workers=0)


def test_command_line_overrides_of_the_space_are_checked():
    space = load_space(ROOT / "tune_spaces/lambdas.yaml")
    assert effective_space(space, SweepConfig(num_samples=2, scheduler="fifo")).trial_count() == 2
    with pytest.raises(SpaceError, match="--search=grid"):
        effective_space(space, SweepConfig(search="grid"))
    with pytest.raises(ConfigError, match="sweep.num_samples=0 is not allowed"):
        SweepConfig(num_samples=0)
    with pytest.raises(SpaceError, match="--search=optuna cannot"):
        effective_space(load_space(ROOT / "tune_spaces/inr.yaml"), SweepConfig(search="optuna"))


def test_the_score_is_over_seen_gammas():
    config = load_config(ROOT / "jobs/quickstart.yaml")
    assert score_gammas(config, SweepConfig()) == [0.0, 0.125, 0.25, 0.375, 0.5]
    with pytest.raises(ConfigError, match="no γ inside the training pool"):
        score_gammas(config, SweepConfig(score_gammas=[0.75, -0.5]))
