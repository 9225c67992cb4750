"""Training end to end, in process: learning, resume, accumulation, checkpoints, criterion."""
import copy

import pytest
import torch
from helpers import tiny_config, write_pairs

from paragen.checkpoint import average_states, load_checkpoint, save_checkpoint
from paragen.criteria.cross_entropy import label_smoothed_nll
from paragen.lr_schedulers import Cosine, InverseSquareRoot, Polynomial
from paragen.tasks.build import build_task
from paragen.trainers import Trainer


def _train(config):
    task = build_task(copy.deepcopy(config))
    return task, task.run()


def test_fused_label_smoothing_matches_autograd_reference():
    torch.manual_seed(0)
    logits = torch.randn(20, 11, requires_grad=True)
    target = torch.randint(0, 11, (20,))
    loss, nll = label_smoothed_nll(logits, target, 0.1)
    loss.backward()
    ref_logits = logits.detach().clone().requires_grad_()
    lprobs = torch.log_softmax(ref_logits, -1)
    ref_nll = -lprobs.gather(-1, target[:, None]).squeeze(-1)
    ref = (0.9 * ref_nll - 0.1 * lprobs.mean(-1)).sum()
    ref.backward()
    assert torch.allclose(loss, ref, atol=1e-5) and torch.allclose(nll, ref_nll.sum(), atol=1e-5)
    assert torch.allclose(logits.grad, ref_logits.grad, atol=1e-6)


def test_dropout_from_random_bits_drops_p_and_rescales():
    from paragen.modules.layers import Dropout

    torch.manual_seed(0)
    layer = Dropout(0.3).train()
    x = torch.ones(400, 500, requires_grad=True)
    y = layer(x)
    dropped = y.eq(0).float().mean().item()
    assert abs(dropped - 0.3) < 0.005  # 200k draws: the standard error is 0.001
    assert torch.allclose(y[y.ne(0)], torch.tensor(1 / 0.7))
    y.sum().backward()
    assert torch.equal(x.grad, y.detach())  # gradient flows through the kept elements only
    assert not torch.equal(layer(x), y)  # a new mask each call
    assert layer.eval()(x) is x
    with pytest.raises(ValueError, match="dropout"):
        Dropout(1.0)


def test_schedules_warm_up_then_decay():
    isr = InverseSquareRoot(warmup_steps=10, warmup_init_lr=0.0)
    assert isr.lr(1, 1.0) == pytest.approx(0.1) and isr.lr(10, 1.0) == pytest.approx(1.0)
    assert isr.lr(40, 1.0) == pytest.approx(0.5)
    poly = Polynomial(total_steps=110, warmup_steps=10, end_lr=0.0)
    assert poly.lr(60, 1.0) == pytest.approx(0.5) and poly.lr(200, 1.0) == 0.0
    cos = Cosine(total_steps=110, warmup_steps=10)
    assert cos.lr(60, 1.0) == pytest.approx(0.5) and cos.lr(110, 1.0) == pytest.approx(0.0)


def test_auto_horizon_follows_the_trainers_plan():
    """`total_steps: auto` decays over the trainer's planned updates; under a time budget the
    plan is the updates the time left allows at the pace so far."""
    poly = Polynomial(total_steps="auto", warmup_steps=10)
    assert poly.lr(60, 1.0, planned_steps=110) == pytest.approx(0.5)
    assert poly.lr(60, 1.0, planned_steps=210) == pytest.approx(0.75)
    assert poly.lr(11, 1.0, planned_steps=None) == 1.0  # no pace measured yet: peak
    trainer = Trainer(max_minutes=1.0, env=None)
    assert trainer._planned_steps() is None
    trainer.step, trainer.wall_seconds = 10, 6.0  # 0.6 s per update, 54 s left → 90 more
    assert trainer._planned_steps() == 100
    trainer.total_steps = 50  # a step limit that comes first wins
    assert trainer._planned_steps() == 50


def test_auto_horizon_decays_to_zero_at_max_steps(tmp_path, small_corpus):
    config = tiny_config(small_corpus["train"], small_corpus["valid"], small_corpus["spm"],
                         tmp_path / "run", max_steps=30, validate_interval=0)
    config["task"]["trainer"]["lr_scheduler"] = {"class": "Polynomial", "total_steps": "auto",
                                                 "warmup_steps": 5}
    task, _ = _train(config)
    assert task.trainer.lr == pytest.approx(0.0)


@pytest.mark.slow
def test_overfits_a_small_corpus_and_decodes_it(small_corpus, tmp_path):
    """30 sentence pairs, 400 steps: the model must reproduce most training targets exactly."""
    from paragen.datasets import read_lines

    pairs = {lang: read_lines(path)[:30] for lang, path in small_corpus["train"].items()}
    tiny = write_pairs(tmp_path, pairs)
    config = tiny_config(tiny, tiny, small_corpus["spm"], tmp_path / "run", max_steps=400,
                         assess_by="valid.loss")
    # Pinned: how much a run memorises depends on the thread count (float sums in
    # another order), and the bar below must not move with the machine.
    config["env"]["threads"] = 2
    config["task"]["model"]["d_model"] = 64
    config["task"]["criterion"]["epsilon"] = 0.0
    config["task"]["generator"]["search"]["max_length_b"] = 40
    task, result = _train(config)
    outputs = task.translate(pairs["de"])
    exact = sum(o == t for o, t in zip(outputs, pairs["en"]))
    assert exact >= 24, (exact, outputs[:3])
    assert result["valid.bleu"] > 80


def test_resume_continues_exactly(small_corpus, tmp_path):
    straight = tiny_config(small_corpus["train"], small_corpus["valid"], small_corpus["spm"],
                           tmp_path / "a", max_steps=12)
    task_a, _ = _train(straight)
    first_half = tiny_config(small_corpus["train"], small_corpus["valid"], small_corpus["spm"],
                             tmp_path / "b", max_steps=6)
    _train(first_half)
    second_half = copy.deepcopy(first_half)
    second_half["task"]["trainer"]["max_steps"] = 12
    task_b, _ = _train(second_half)
    assert task_b.trainer.step == 12
    for (name, a), b in zip(task_a.model.state_dict().items(), task_b.model.state_dict().values()):
        assert torch.allclose(a, b, atol=1e-6), name


def test_weight_average_follows_the_warmed_up_decay():
    from paragen.trainers.ema import WeightAverage

    model = torch.nn.Linear(1, 1, bias=False)
    model.weight.data.fill_(0.0)
    average = WeightAverage(model, decay=0.9)
    model.weight.data.fill_(10.0)
    average.update(model, step=1)  # decay min(0.9, 2/11): mostly the new weights
    assert average.state_dict()["weight"].item() == pytest.approx(10 * 9 / 11)
    for step in range(2, 200):
        average.update(model, step)
    model.weight.data.fill_(20.0)
    average.update(model, step=200)  # the full decay by now
    assert average.state_dict()["weight"].item() == pytest.approx(0.9 * 10 + 0.1 * 20, abs=1e-4)
    with average.swapped_in(model):
        assert model.weight.item() == pytest.approx(11.0, abs=1e-4)
    assert model.weight.item() == 20.0


def test_weight_average_is_validated_saved_and_resumed_exactly(small_corpus, tmp_path):
    def config(name, steps):
        return tiny_config(small_corpus["train"], small_corpus["valid"], small_corpus["spm"],
                           tmp_path / name, max_steps=steps, validate_interval=6,
                           ema_decay=0.8)

    task_a, result = _train(config("a", 12))
    last = load_checkpoint(str(tmp_path / "a" / "last.pt"))
    averaged, trained = last["model"], last["trained_model"]
    assert any(not torch.allclose(averaged[k], trained[k]) for k in trained)
    for name, tensor in task_a.model.state_dict().items():  # the model trains on its own weights
        assert torch.equal(tensor, trained[name]), name
    # the final validation scored the average: loading it gives the same loss
    task_a.model.load_state_dict(averaged)
    assert task_a.validate()["valid.loss"] == pytest.approx(result["valid.loss"], abs=1e-5)
    _train(config("b", 6))
    task_b, _ = _train(config("b", 12))
    resumed = load_checkpoint(str(tmp_path / "b" / "last.pt"))
    for key in ("model", "trained_model"):
        for name, tensor in last[key].items():
            assert torch.allclose(tensor, resumed[key][name], atol=1e-6), (key, name)


def test_freeze_keeps_matching_parameters_out_of_training_and_refuses_typos():
    """`task.trainer.freeze` patterns: matching parameters lose their gradient (so the
    optimizer's groups leave them out), tied weights go by their first name, and a pattern
    that matches nothing is one clear error."""
    from paragen.errors import ConfigError
    from paragen.optim import freeze_parameters, parameter_groups

    model = torch.nn.Sequential(torch.nn.Embedding(5, 3), torch.nn.Linear(3, 3),
                                torch.nn.Linear(3, 5, bias=False))
    model[2].weight = model[0].weight  # tied: named "0.weight" only
    frozen = freeze_parameters(model, ["0.*", "1.bias"])
    assert frozen == ["0.weight", "1.bias"]
    assert not model[2].weight.requires_grad and model[1].weight.requires_grad
    trained = [p for group in parameter_groups(model) for p in group["params"]]
    assert len(trained) == 1 and trained[0] is model[1].weight
    with pytest.raises(ConfigError, match=r"task.trainer.freeze: 'encoder\.\*' matches no "):
        freeze_parameters(model, ["encoder.*"])


def test_gradient_accumulation_equals_one_big_batch(small_corpus, tmp_path):
    config = tiny_config(small_corpus["train"], small_corpus["valid"], small_corpus["spm"],
                         tmp_path / "acc", max_steps=1)
    task = build_task(copy.deepcopy(config))
    task.trainer._build_optimization(task.model)
    first, second = list(task.train_loader.epoch_batches(0))[:2]
    merged = task.collate(first["ids"].tolist() + second["ids"].tolist(), task.splits["train"])
    grads = []
    for batches in ([first, second], [merged]):
        task.model.zero_grad()
        total = sum(b["ntokens"] for b in batches)
        for batch in batches:
            loss, _ = task.criterion(task.model, batch)
            (loss * batch["ntokens"] / total).backward()
        grads.append([p.grad.clone() for p in task.model.parameters()])
    for a, b in zip(*grads):
        assert torch.allclose(a, b, atol=1e-6)


def test_checkpoints_are_atomic_and_averaged(tmp_path):
    save_checkpoint({"model": {"w": torch.ones(2)}}, str(tmp_path / "a.pt"))
    save_checkpoint({"model": {"w": torch.full((2,), 3.0)}}, str(tmp_path / "b.pt"))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.pt", "b.pt"]  # no temp files left
    averaged = average_states([str(tmp_path / "a.pt"), str(tmp_path / "b.pt")])
    assert torch.equal(averaged["w"], torch.full((2,), 2.0))

    class Unpicklable:
        def __reduce__(self):
            raise RuntimeError("boom")

    with pytest.raises(RuntimeError):
        save_checkpoint({"x": Unpicklable()}, str(tmp_path / "a.pt"))
    assert torch.equal(load_checkpoint(str(tmp_path / "a.pt"))["model"]["w"], torch.ones(2))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.pt", "b.pt"]


def test_training_writes_a_self_contained_model_folder(small_corpus, tmp_path):
    config = tiny_config(small_corpus["train"], small_corpus["valid"], small_corpus["spm"],
                         tmp_path / "run", max_steps=10, validate_interval=5, keep_last=1)
    _train(config)
    names = {p.name for p in (tmp_path / "run").iterdir()}
    assert {"last.pt", "best.pt", "checkpoint_10.pt", "tokenizer.model", "metrics.jsonl"} <= names
    assert "checkpoint_5.pt" not in names  # keep_last=1
    stored = load_checkpoint(str(tmp_path / "run" / "last.pt"))
    assert stored["config"]["task"]["tokenizer"]["model"] == "tokenizer.model"
    assert stored["trainer"]["step"] == 10


def test_early_stopping_ends_training_after_patience(small_corpus, tmp_path):
    config = tiny_config(small_corpus["train"], small_corpus["valid"], small_corpus["spm"],
                         tmp_path / "run", max_steps=1000, validate_interval=1,
                         early_stopping_patience=2, assess_by="valid.bleu")
    config["task"]["trainer"]["optimizer"]["lr"] = 1e-9  # nothing improves after step 1
    task, _ = _train(config)
    assert task.trainer.step == 3  # best at step 1, then two validations without improvement


def test_bf16_training_attention_runs_in_fp32_on_cpu(monkeypatch):
    """CPU SDPA's bf16 backward is slow, so training attention leaves autocast and runs in
    fp32; the gradients must still be those of the same layer in fp32."""
    from paragen.modules import layers

    seen = []
    sdpa = layers.F.scaled_dot_product_attention

    def spy(q, k, v, **kwargs):
        seen.append((q.dtype, torch.is_autocast_enabled("cpu")))
        return sdpa(q, k, v, **kwargs)

    monkeypatch.setattr(layers.F, "scaled_dot_product_attention", spy)
    torch.manual_seed(0)
    attention = layers.MultiheadAttention(16, 2, dropout=0.0, self_attention=True).train()
    x = torch.randn(3, 5, 16, requires_grad=True)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        attention(x, is_causal=True).float().sum().backward()
    assert seen == [(torch.float32, False)]
    half_grad, x.grad = x.grad.clone(), None
    attention(x, is_causal=True).sum().backward()
    assert torch.allclose(half_grad, x.grad, atol=0.05, rtol=0.05)


def test_bf16_autocast_trains_on_cpu(small_corpus, tmp_path):
    config = tiny_config(small_corpus["train"], small_corpus["valid"], small_corpus["spm"],
                         tmp_path / "run", max_steps=3)
    config["env"]["precision"] = "bf16"
    task, result = _train(config)
    assert task.trainer.step == 3 and result["valid.loss"] == result["valid.loss"]  # not NaN


class _FixedLoader:
    """A `BatchLoader` over given batches: the same ones every epoch."""

    rank_local = False

    def __init__(self, batches):
        self.batches = batches

    def num_batches(self, epoch):
        return len(self.batches)

    def epoch_batches(self, epoch, start=0):
        return iter(self.batches[start:])


def test_trainer_accumulating_two_batches_equals_one_merged_batch(tmp_path, small_corpus):
    """update_freq 2 over batches A and B gives the update of one batch A ∪ B (SGD, lr 1: the
    weights move by exactly the gradient, so any mis-weighted micro-batch shows)."""
    def run(update_freq, batches, name):
        config = tiny_config(small_corpus["train"], small_corpus["valid"], small_corpus["spm"],
                             tmp_path / name, max_steps=1, update_freq=update_freq,
                             validate_interval=0)
        config["task"]["data"].pop("valid")
        config["task"]["trainer"]["optimizer"] = {"class": "SGD", "lr": 1.0}
        config["task"]["trainer"]["lr_scheduler"] = {"class": "Constant"}
        task = build_task(config)
        if batches is None:
            return task
        task.train_loader = _FixedLoader(batches)
        before = {k: v.clone() for k, v in task.model.state_dict().items()}
        task.trainer.train(task)
        return {k: v - before[k] for k, v in task.model.state_dict().items()}

    task = run(1, None, "probe")
    split = task.splits["train"]
    first, second = [0, 5, 9], [17, 3]  # of different lengths, so padding differs too
    batch_a, batch_b = task.collate(first, split), task.collate(second, split)
    merged = task.collate(first + second, split)
    accumulated = run(2, [batch_a, batch_b], "accumulated")
    single = run(1, [merged], "merged")
    moved = [k for k in single if single[k].abs().max() > 0]
    assert len(moved) > 10
    for key in single:
        torch.testing.assert_close(accumulated[key], single[key], atol=2e-6, rtol=1e-4)
    # and the check can fail: one batch alone is a different update
    alone = run(1, [batch_a], "alone")
    assert any(not torch.allclose(alone[k], single[k], atol=1e-4) for k in moved)
