"""The zoo's recipes ship as TOML (gatelens/zoo/recipes/) and `gatelens train --config` reads them as the scripts do."""

from __future__ import annotations

import dataclasses
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from gatelens.cli import app
from gatelens.train import RECIPES, TrainConfig, read_recipe

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "scripts"))

import train_text_pair  # noqa: E402
import train_zoo  # noqa: E402

runner = CliRunner()


@pytest.fixture
def built(monkeypatch):
    """Run `gatelens train ARGS` without training: the TrainConfig the command built, or None."""
    from gatelens.train import trainer

    seen = []

    def fake_train(cfg, on_step=None):
        seen.append(cfg)
        return {"tokens": 0, "final_val_loss": 0.0, "final_f_attn": 0.0}

    monkeypatch.setattr(trainer, "train", fake_train)

    def run(*args):
        r = runner.invoke(app, ["train", *map(str, args)])
        return r, (seen.pop() if seen else None)

    return run


@pytest.fixture
def corpus(tmp_path, monkeypatch):
    """A working directory holding corpus/train.txt and corpus/val.txt, where text.toml looks for them."""
    (tmp_path / "corpus").mkdir()
    for name in ("train", "val"):
        (tmp_path / "corpus" / f"{name}.txt").write_text("Some prose, long enough for one sequence. " * 200)
    monkeypatch.chdir(tmp_path)
    return tmp_path


def as_compared(cfg: TrainConfig) -> dict:
    return {k: v for k, v in dataclasses.asdict(cfg).items() if k != "out"}


def test_the_zoo_script_and_the_cli_build_the_same_mech_config(built, tmp_path):
    script = train_zoo.recipe_config(tmp_path / "a", "elementwise", seed=1)
    r, cli = built("--config", RECIPES / "mech.toml", "--out", tmp_path / "b", "--gate", "elementwise", "--seed", 1)
    assert r.exit_code == 0, r.output
    assert as_compared(cli) == as_compared(script)
    assert cli.task_params["n_triggers"] == 16 and cli.pre_norm is False  # the file's, not the defaults


def test_the_text_script_and_the_cli_build_the_same_text_config(built, corpus):
    script = train_text_pair.recipe_config(corpus / "a", "elementwise")
    r, cli = built("--config", RECIPES / "text.toml", "--out", corpus / "b", "--gate", "elementwise")
    assert r.exit_code == 0, r.output
    assert as_compared(cli) == as_compared(script)
    assert cli.data == "corpus/train.txt" and cli.n_layers == 4  # no machine-specific path in the recipe


def test_given_options_override_the_file_and_the_rest_keep_it(built, tmp_path):
    r, cfg = built("--config", RECIPES / "mech.toml", "--out", tmp_path / "o", "--steps", 7, "--qk-norm",
                   "--task-params", '{"vocab": 16}')
    assert r.exit_code == 0, r.output
    recipe = read_recipe(RECIPES / "mech.toml")
    assert (cfg.steps, cfg.qk_norm, cfg.task_params) == (7, True, {"vocab": 16})
    assert (cfg.lr, cfg.pre_norm, cfg.batch_size) == (recipe["lr"], False, recipe["batch_size"])
    r, cfg = built("--out", tmp_path / "o")  # no file: TrainConfig's defaults
    assert as_compared(cfg) == as_compared(TrainConfig(out="x"))


def test_every_train_config_field_is_an_option():
    r = runner.invoke(app, ["train", "--help"], env={"COLUMNS": "200"})
    for f in dataclasses.fields(TrainConfig):
        assert f"--{f.name.replace('_', '-')}" in r.output, f.name
    assert "<bool>" not in r.output.split("--help")[0]
    for gate in ("head-shared", "input-independent", "value"):
        assert gate in r.output


def _one_line_error(r, *phrases):
    assert r.exit_code == 2, r.output
    text = r.stderr.strip()
    assert text.startswith("error:") and len(text.splitlines()) == 1, text
    for p in phrases:
        assert p in text, text


def test_an_unknown_key_names_it_and_the_valid_ones(built, tmp_path):
    recipe = tmp_path / "r.toml"
    recipe.write_text('gate = "elementwise"\nlearning_rate = 0.1\n')
    r, cfg = built("--config", recipe, "--out", tmp_path / "o")
    _one_line_error(r, "'learning_rate'", "valid settings", "lr", "warmup_steps")
    assert cfg is None


@pytest.mark.parametrize("text,phrase", [("steps = = 3\n", "not valid TOML"),
                                         ('steps = "many"\n', "should be int"),
                                         ("qk_norm = 1\n", "should be bool")])
def test_a_bad_file_is_one_line(built, tmp_path, text, phrase):
    recipe = tmp_path / "r.toml"
    recipe.write_text(text)
    r, cfg = built("--config", recipe, "--out", tmp_path / "o")
    _one_line_error(r, phrase)
    assert cfg is None


def test_a_missing_out_or_file_is_one_line(built, tmp_path):
    _one_line_error(built("--steps", 3)[0], "--out")
    _one_line_error(built("--config", tmp_path / "nope.toml", "--out", tmp_path / "o")[0], "not found")
