"""The trainer and the Bigram-Backcopy task: toy-size runs, twin initialisation, resume, bad inputs."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
import torch

import gatelens
from gatelens import GatelensError, tasks
from gatelens.models.gated import split_grouped
from gatelens.report import describe_runtime
from gatelens.train.trainer import TrainConfig, initial_state, train

pytestmark = pytest.mark.slow  # trains, runs notebooks or analyses, or starts processes: not in the quick tier

TOY = {"d_model": 32, "ffn": 64, "n_layers": 1, "n_heads": 2, "n_kv_heads": 1, "head_dim": 16, "seq_len": 32, "batch_size": 4,
           "steps": 6, "warmup_steps": 2, "eval_every": 3, "eval_seqs": 4, "ckpt_every": 3, "task_params": {"vocab": 16}}


def toy(tmp_path: Path, name: str, **kw) -> TrainConfig:
    return TrainConfig(out=str(tmp_path / name), **{**TOY, **kw})


# --- the task ---------------------------------------------------------------------------------------

def test_copy_rule_holds_and_every_sequence_starts_with_bos():
    p = tasks.BigramBackcopy(vocab=16, n_triggers=2)
    x = tasks.generate(p, 64, 100, seed=0)
    assert (x[:, 0] == p.bos_id).all()
    assert tasks.check_copy_rule(x, p)
    _, triggers = tasks.world(p)
    after = torch.isin(x[:, 1:-1], triggers)
    assert after.sum() > 50  # triggers actually occur
    assert torch.equal(x[:, 2:][after], x[:, :-2][after])  # the rule, spelled out
    assert not (torch.isin(x[:, 1:-1], triggers) & torch.isin(x[:, 2:], triggers)).any()  # no trigger pairs


def test_frequent_triggers_are_the_most_visited_symbols():
    p = tasks.BigramBackcopy(vocab=16, n_triggers=3, trigger_choice="frequent")
    cdf, triggers = tasks.world(p)
    g = torch.Generator().manual_seed(0)
    state, counts = torch.randint(0, 16, (4096,), generator=g), torch.zeros(16)
    for _ in range(200):  # 4096 walkers on the plain bigram chain
        state = torch.searchsorted(cdf[state], torch.rand(4096, 1, generator=g)).squeeze(1)
        counts += torch.bincount(state, minlength=16)
    assert set(triggers.tolist()) == set(counts.topk(3).indices.tolist())
    assert tasks.check_copy_rule(tasks.generate(p, 16, 100, seed=0), p)
    with pytest.raises(GatelensError, match="trigger_choice"):
        tasks.BigramBackcopy(trigger_choice="rare")


def test_copy_rule_checker_catches_a_broken_copy():
    p = tasks.BigramBackcopy(vocab=16, n_triggers=2)
    x = tasks.generate(p, 8, 100, seed=1)
    _, triggers = tasks.world(p)
    b, t = (torch.isin(x[:, 1:-1], triggers)).nonzero()[0].tolist()
    x[b, t + 2] = (x[b, t] + 1) % p.vocab
    assert not tasks.check_copy_rule(x, p)


def test_active_queries_are_the_trigger_positions():
    p = tasks.BigramBackcopy(vocab=16, n_triggers=2)
    seq = tasks.generate(p, 1, 50, seed=3)[0]
    active = tasks.active_queries(seq, p.to_dict())
    _, triggers = tasks.world(p)
    assert not active[0]
    assert torch.equal(active[1:], torch.isin(seq[1:], triggers))


def test_eval_sequences_are_held_out_and_reproducible():
    p = tasks.BigramBackcopy(vocab=16)
    ev = {"kind": "task", "task": "bigram-backcopy", "seed": 0, "params": p.to_dict()}
    a = tasks.eval_sequences(ev, seq_len=40, n_seqs=3)
    assert all(torch.equal(x, y) for x, y in zip(a, tasks.eval_sequences(ev, seq_len=40, n_seqs=3)))
    train0 = tasks.train_batch(p, 3, 40, seed=0, step=0)
    assert not any(torch.equal(x, y) for x, y in zip(a, train0))  # same number, different namespace
    with pytest.raises(GatelensError, match="context window"):
        tasks.eval_sequences(ev, seq_len=41, n_seqs=1, max_context=40)
    with pytest.raises(GatelensError, match="too short"):
        tasks.eval_sequences(ev, seq_len=1, n_seqs=1)


# --- twins share their initial values -------------------------------------------------------------

def test_twins_share_every_baseline_parameter_at_step_0(tmp_path):
    kw = {"n_heads": 4, "n_kv_heads": 2, "head_dim": 8}
    base = initial_state(toy(tmp_path, "b", gate="none", **kw))
    for gate, g in (("elementwise", 8), ("headwise", 1)):
        twin = initial_state(toy(tmp_path, gate, gate=gate, **kw))
        assert set(twin) == set(base)
        for name, w in base.items():
            if name.endswith("q_proj.weight"):
                # the paper's grouped layout: per KV group [queries of G heads | gates of G heads]
                q, gates = split_grouped(twin[name].T, 2, 2, 8, g)
                assert torch.equal(q.T, w), name
                assert gates.abs().sum() > 0  # gate rows get their own (non-zero) init
            else:
                assert torch.equal(twin[name], w), name
    # and the shared values do not depend on the gate's generator
    other = initial_state(toy(tmp_path, "e2", gate="elementwise", gate_init_std=0.5, **kw))
    q, _ = split_grouped(other["model.layers.0.self_attn.q_proj.weight"].T, 2, 2, 8, 8)
    assert torch.equal(q.T, base["model.layers.0.self_attn.q_proj.weight"])


# --- training end to end ----------------------------------------------------------------------------

@pytest.mark.parametrize("gate,model_type", [("none", "qwen3"), ("elementwise", "qwen3")])
def test_toy_training_loads_and_measures(tmp_path, gate, model_type):
    steps = []
    summary = train(toy(tmp_path, gate, gate=gate), on_step=lambda s, n, loss, tps: steps.append((s, n)))
    out = tmp_path / gate
    assert steps[-1] == (6, 6) and summary["steps"] == 6
    assert sorted(p.name for p in out.iterdir()) == ["config.json", "model.safetensors", "tokenizer.json",
                                                    "tokenizer_config.json", "train_log.csv", "training.json"]
    assert not (tmp_path / f".{gate}.partial").exists()
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["model_type"] == model_type and cfg["gatelens_eval"]["task"] == "bigram-backcopy"
    assert cfg.get("elementwise_attn_output_gate", False) == (gate == "elementwise")
    rows = list(csv.DictReader((out / "train_log.csv").open()))
    assert [int(r["step"]) for r in rows] == [3, 6]
    assert (rows[-1]["mean_gate"] != "") == (gate != "none")
    training = json.loads((out / "training.json").read_text())
    assert training["summary"]["tokens"] == 6 * 4 * 32 and "cpu_count" in training["hardware"]
    assert training["runtime"]["cpu_capability"] == torch.backends.cpu.get_cpu_capability()
    assert training["runtime"]["deterministic_algorithms"] and training["runtime"]["deterministic_warn_only"]
    assert describe_runtime(training["runtime"]).endswith("deterministic algorithms on (warn only)")

    loaded = gatelens.load(str(out))
    assert loaded.info.gate == gate
    result = gatelens.sink(loaded, seq_len=32, n_seqs=4)
    assert 0.0 <= result.f_attn <= 1.0
    assert result.f_attn == pytest.approx(float(rows[-1]["f_attn"]), abs=1e-5)  # same held-out sequences


@pytest.mark.parametrize("gate,kw", [("none", {}), ("headwise", {}), ("value", {"pre_norm": False})])
def test_the_model_in_training_is_described_as_load_describes_it(tmp_path, monkeypatch, gate, kw):
    from gatelens.train import trainer

    seen = []
    evaluate = trainer.evaluate
    monkeypatch.setattr(trainer, "evaluate", lambda loaded, val: seen.append(loaded) or evaluate(loaded, val))
    train(toy(tmp_path, gate, gate=gate, steps=3, **kw))
    loaded = gatelens.load(str(tmp_path / gate))
    where = ("spec", "path", "fingerprint")
    assert {k: v for k, v in seen[0].info.to_dict().items() if k not in where} == \
        {k: v for k, v in loaded.info.to_dict().items() if k not in where}
    assert seen[0].family == loaded.family


def test_plain_baseline_loads_with_transformers_alone(tmp_path):
    from transformers import AutoModelForCausalLM

    train(toy(tmp_path, "plain", steps=3))
    model = AutoModelForCausalLM.from_pretrained(str(tmp_path / "plain"))
    x = torch.tensor([[16, 1, 2, 3]])
    ours = gatelens.load(str(tmp_path / "plain")).model(input_ids=x).logits
    assert torch.allclose(model(input_ids=x).logits, ours, atol=1e-5)


def test_interrupted_then_resumed_run_ends_like_an_uninterrupted_one(tmp_path):
    whole = train(toy(tmp_path, "whole"))

    def interrupt(step, total, loss, tps):
        if step == 3:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train(toy(tmp_path, "cut"), on_step=interrupt)
    assert (tmp_path / ".cut.partial" / "checkpoint.pt").exists() and not (tmp_path / "cut").exists()
    resumed = train(toy(tmp_path, "cut", resume=True))
    assert resumed["final_train_loss"] == pytest.approx(whole["final_train_loss"], abs=1e-6)
    assert resumed["final_val_loss"] == pytest.approx(whole["final_val_loss"], abs=1e-6)
    assert resumed["tokens"] == whole["tokens"]
    a = (tmp_path / "whole" / "train_log.csv").read_text().splitlines()
    b = (tmp_path / "cut" / "train_log.csv").read_text().splitlines()
    assert [r.split(",")[:6] for r in a] == [r.split(",")[:6] for r in b]  # all but wall time


def test_corpus_training_with_bpe(tmp_path):
    text = "\n<|doc|>\n".join(f"Document {i}: the quick brown fox jumps over the lazy dog {i} times. " * 8
                                for i in range(12))
    corpus = tmp_path / "corpus.txt"
    corpus.write_text(text)
    summary = train(toy(tmp_path, "text", data=str(corpus), bpe_vocab=300, steps=3))
    loaded = gatelens.load(summary["out"])
    assert 256 < len(loaded.tokenizer) <= 300
    assert loaded.tokenizer.decode(loaded.tokenizer("the lazy dog")["input_ids"]) == "the lazy dog"


def test_grad_clip_zero_means_no_clipping(tmp_path, monkeypatch):
    """nanoGPT's and PyTorch users' convention: grad_clip = 0 turns clipping off (max_norm 0 would zero every
    gradient); a positive value clips at that norm every step."""
    norms = []
    monkeypatch.setattr(torch.nn.utils, "clip_grad_norm_", lambda params, max_norm, *a, **k: norms.append(max_norm))
    train(toy(tmp_path, "no-clip", grad_clip=0.0, steps=2, eval_every=2, ckpt_every=2))
    assert norms == []
    train(toy(tmp_path, "clip", grad_clip=0.5, steps=2, eval_every=2, ckpt_every=2))
    assert norms == [0.5, 0.5]


# --- hostile inputs ---------------------------------------------------------------------------------

def test_bad_inputs_raise_one_line_errors(tmp_path):
    with pytest.raises(GatelensError, match="unknown gate 'sigmoid'"):
        toy(tmp_path, "x", gate="sigmoid")
    with pytest.raises(GatelensError, match="unknown task 'copy-task'"):
        toy(tmp_path, "x", data="copy-task")
    empty = tmp_path / "empty.txt"
    empty.write_text("\n<|doc|>\n\n")
    with pytest.raises(GatelensError, match="is empty"):
        toy(tmp_path, "x", data=str(empty))
    short = tmp_path / "short.txt"
    short.write_text("tiny")
    with pytest.raises(GatelensError, match="fewer than one sequence"):
        toy(tmp_path, "x", data=str(short))
    with pytest.raises(GatelensError, match="not found"):
        toy(tmp_path, "x", data=str(tmp_path / "missing.txt"))
    with pytest.raises(GatelensError, match="n_triggers"):
        toy(tmp_path, "x", task_params={"vocab": 16, "n_triggers": 0})
    (tmp_path / "exists").mkdir()
    with pytest.raises(GatelensError, match="--overwrite"):
        train(toy(tmp_path, "exists"))
    with pytest.raises(GatelensError, match="no checkpoint"):
        train(toy(tmp_path, "fresh", resume=True))


@pytest.mark.parametrize("error", [torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB"),
                                   RuntimeError("[enforce fail at alloc_cpu.cpp:118] DefaultCPUAllocator: "
                                                "can't allocate memory: you tried to allocate 68719476736 bytes")])
def test_out_of_memory_is_one_line_naming_the_fix(tmp_path, monkeypatch, error):
    from gatelens.train import trainer

    def boom(logits, x):
        raise error

    monkeypatch.setattr(trainer, "lm_loss", boom)
    with pytest.raises(GatelensError, match="ran out of memory at --batch-size .*smaller --batch-size"):
        train(toy(tmp_path, "oom"))
    assert not (tmp_path / "oom").exists()   # nothing half-written where the model would go


def test_other_runtime_errors_are_not_disguised_as_memory(tmp_path, monkeypatch):
    from gatelens.train import trainer

    def boom(logits, x):
        raise RuntimeError("shape mismatch")

    monkeypatch.setattr(trainer, "lm_loss", boom)
    with pytest.raises(RuntimeError, match="shape mismatch"):
        train(toy(tmp_path, "bug"))


# --- a run that stops early (issue 24, part 2: helper `edges`) -----------------------------------------------

def _failing_loss(monkeypatch, at_call: int, error: BaseException):
    """lm_loss that raises `error` on its `at_call`-th call (0-based), i.e. in step at_call."""
    from gatelens.train import trainer

    real, calls = trainer.lm_loss, []

    def loss(logits, x):
        calls.append(1)
        if len(calls) - 1 == at_call:
            raise error
        return real(logits, x)

    monkeypatch.setattr(trainer, "lm_loss", loss)


@pytest.mark.parametrize("error", [GatelensError("the loss is NaN at step 2; lower --lr"), KeyboardInterrupt()])
def test_a_run_stopped_before_its_first_checkpoint_leaves_nothing(tmp_path, monkeypatch, error):
    _failing_loss(monkeypatch, 1, error)   # ckpt_every 3: no checkpoint yet
    with pytest.raises(type(error)) as e:
        train(toy(tmp_path, "runs/new/early"))
    assert list(tmp_path.iterdir()) == []   # nor the folders made for --out
    assert "--resume" not in str(e.value)


def test_a_run_stopped_after_a_checkpoint_keeps_it_and_resumes(tmp_path, monkeypatch):
    whole = train(toy(tmp_path, "whole"))
    _failing_loss(monkeypatch, 4, GatelensError("the loss is NaN at step 5; lower --lr"))
    with pytest.raises(GatelensError, match=r"NaN at step 5; lower --lr; the checkpoint in .*\.late\.partial is "
                                            r"kept: --resume continues it"):
        train(toy(tmp_path, "late"))
    assert (tmp_path / ".late.partial" / "checkpoint.pt").exists() and not (tmp_path / "late").exists()
    monkeypatch.undo()
    with pytest.raises(GatelensError, match="holds the checkpoint of an interrupted run .*--resume.*--overwrite"):
        train(toy(tmp_path, "late"))       # a fresh start never wipes a checkpoint it was not told to
    assert (tmp_path / ".late.partial" / "checkpoint.pt").exists()
    resumed = train(toy(tmp_path, "late", resume=True))
    assert resumed["final_train_loss"] == pytest.approx(whole["final_train_loss"], abs=1e-6)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["late", "whole"]


def test_a_resumed_run_that_fails_keeps_its_checkpoint(tmp_path, monkeypatch):
    def interrupt(step, total, loss, tps):
        if step == 3:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt, match="kept"):
        train(toy(tmp_path, "cut"), on_step=interrupt)
    _failing_loss(monkeypatch, 0, GatelensError("the loss is NaN"))
    with pytest.raises(GatelensError, match="NaN"):
        train(toy(tmp_path, "cut", resume=True))
    assert (tmp_path / ".cut.partial" / "checkpoint.pt").exists() and not (tmp_path / "cut").exists()
