"""Progress: the epoch line's throughput and time left; bars that draw only on a terminal (a job's log gets a plain
line every so often instead), for evaluation over γ × K and the training loop the baselines share."""

import io
import re

import pytest
import torch

from raymeta.io import progress as progress_module
from raymeta.io.progress import BARS_ENV, Bar, Progress, format_duration


class Terminal(io.StringIO):
    """What a terminal looks like to the code that asks."""

    def isatty(self) -> bool:
        return True


@pytest.fixture(autouse=True)
def _no_bar_setting(monkeypatch):
    monkeypatch.delenv(BARS_ENV, raising=False)


def test_durations_read_as_people_read_them():
    assert [format_duration(s) for s in (0.4, 42, 185, 7620, float("nan"))] == ["0s", "42s", "3m05s", "2h07m", "?"]


def test_the_epoch_line_gives_throughput_and_time_left(prepared_run):
    from raymeta.stages.train import train

    config = prepared_run()  # two stages of one epoch, 3 steps of M=2 micro-batches of 32 images each
    out = io.StringIO()
    train(config, progress=Progress(stream=out))
    epochs = re.findall(
        r"train: stage (\d)/2 epoch 1/1 .*\[([\d.]+)s, ([\d.e+]+) steps/s (\d+) img/s, ETA (\S+)\]", out.getvalue()
    )
    assert [stage for stage, *_ in epochs] == ["1", "2"], out.getvalue()
    for _, seconds, steps_per_s, images_per_s, _ in epochs:
        assert float(images_per_s) == pytest.approx(float(steps_per_s) * 2 * 32, rel=0.01, abs=1)
        # the line's seconds are rounded to 0.1 s: the rate lies within what the unrounded time allows
        assert 3 / (float(seconds) + 0.05) * 0.95 <= float(steps_per_s) <= 3 / max(float(seconds) - 0.05, 1e-3) * 1.05
    first_seconds, first_eta, last_eta = float(epochs[0][1]), epochs[0][-1], epochs[-1][-1]
    assert re.fullmatch(r"\d+s", first_eta) and abs(int(first_eta[:-1]) - first_seconds) <= 1  # one epoch left
    assert last_eta == "0s"  # none left


def test_a_bar_draws_on_a_terminal_and_a_log_gets_plain_lines(monkeypatch):
    terminal = Terminal()
    with Bar(3, "evaluate test: 5 γ × K=2", unit="batch", progress=Progress(stream=terminal)) as bar:
        assert bar.bar is not None
        for _ in bar.iterate(range(3)):
            pass
    assert re.search(r"\revaluate test: 5 γ × K=2: +0%\|.*\| 0/3 ", terminal.getvalue())  # drawn, then redrawn in place

    log = io.StringIO()
    with Bar(3, "deploy: uniform γ", unit="candidate", progress=Progress(stream=log)) as bar:
        assert bar.bar is None
        bar.update(3)
    assert log.getvalue() == "", "a short loop says nothing in a log"

    monkeypatch.setattr(progress_module, "PLAIN_SECONDS", 0.0)
    with Bar(3, "baseline prune", unit="network", progress=Progress(stream=log)) as bar:
        bar.update()
        bar.update()
        bar.update()
    lines = log.getvalue().splitlines()
    assert len(lines) == 3 and "\r" not in log.getvalue()
    assert re.search(r"baseline prune: 1/3 network \([\d.e+]+ network/s, ETA \S+\)$", lines[0])
    assert re.search(r"baseline prune: 3/3 network \([\d.e+]+ network/s, in \S+\)$", lines[-1])


def test_the_setting_overrides_what_the_stream_is(monkeypatch):
    monkeypatch.setenv(BARS_ENV, "0")
    assert Bar(2, "x", progress=Progress(stream=Terminal())).bar is None
    monkeypatch.setenv(BARS_ENV, "1")
    bar = Bar(2, "x", progress=Progress(stream=io.StringIO()))
    assert bar.bar is not None
    bar.close()


def test_a_progress_line_under_an_open_bar_stays_a_line_of_its_own():
    terminal = Terminal()
    progress = Progress(stream=terminal)
    with Bar(2, "baseline skip", unit="step", progress=progress) as bar:
        bar.update()
        progress("baseline skip: epoch 1/2  validation acc 0.5000")
        bar.update()
    assert re.search(r"(^|[\r\n])\[\s*[\d.]+s\] baseline skip: epoch 1/2  validation acc 0.5000\n", terminal.getvalue())
    assert progress_module._open_bars == 0


@pytest.mark.parametrize("stream, drawn", [(Terminal, True), (io.StringIO, False)])
def test_the_baselines_training_loop_draws_its_bar_only_on_a_terminal(stream, drawn):
    from raymeta.io.data import TensorImageDataset
    from raymeta.stages.fitting import Optimisation, fit

    dataset = TensorImageDataset(torch.randn(40, 1, 8, 8), torch.randint(0, 3, (40,)))
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, 3))
    out = stream()
    fit(
        model,
        dataset,
        Optimisation(torch.optim.SGD(model.parameters(), lr=0.1)),
        batch_size=16,
        seed=0,
        epochs=range(2),
        device=torch.device("cpu"),
        label="baseline individual γ=0.25",
        progress=Progress(stream=out),
    )
    assert bool(re.search(r"baseline individual γ=0.25: .*\| 0/6 ", out.getvalue())) == drawn  # 2 epochs of 3 steps
    assert (out.getvalue() == "") != drawn


@pytest.mark.parametrize("stream, drawn", [(Terminal, True), (io.StringIO, False)])
def test_evaluation_over_gammas_and_samples_draws_its_bar_only_on_a_terminal(per_block_run, stream, drawn):
    from raymeta.io.files import RunPaths
    from raymeta.stages.evaluate import evaluate_trained
    from raymeta.stages.networks import load_trained

    out = stream()
    trained = load_trained(RunPaths(per_block_run.run_dir).train_checkpoint)
    frame = evaluate_trained(per_block_run, trained, Progress(stream=out))
    assert len(frame) == 5
    assert bool(re.search(r"\revaluate test: 5 γ × K=2: .*\| 0/\d+ ", out.getvalue())) == drawn
    assert ("\r" in out.getvalue()) == drawn, "a log gets lines only"
