"""The NAT family side by side: GLAT, vanilla NAT, CMLM, CTC, DA-Transformer and NAT-CRF.

Each model memorises a tiny corpus through its own loss and generator; mask-predict with one
iteration is a single pass; the DAG and CRF models decode through their searches. The
dynamic programs themselves are checked against brute force in test_dag.py and test_crf.py.
"""
import pytest
import torch

from paragen.criteria import CRFLoss, DAGLoss, GlancingCTC, GlancingCrossEntropy, NATCrossEntropy
from paragen.errors import ConfigError
from paragen.generators import DAGGenerator, MaskPredictGenerator, NATGenerator
from paragen.models.nat import CMLM, CTCNAT, GLAT, NATCRF, DATransformer
from paragen.models.nat.cmlm import random_shown

PAD, BOS, EOS, VOCAB = 0, 2, 3, 24
LAYER = {"num_layers": 1, "num_heads": 2, "ffn_dim": 64, "dropout": 0.0}


def tiny(model_class, **kwargs):
    torch.manual_seed(0)
    return model_class({"class": "TransformerEncoder", **LAYER},
                       {"class": "TransformerDecoder", **LAYER}, d_model=32,
                       src_vocab_size=VOCAB, tgt_vocab_size=VOCAB, pad_id=PAD, **kwargs)


def corpus():
    """Four pairs of distinct lengths; targets end with eos, as a task's batches do."""
    sources = [[5, 6, 7, 8, 9, EOS], [10, 11, 12, EOS], [13, 14, 15, 16, EOS], [17, 18, EOS]]
    targets = [[19, 20, 21, 5, EOS], [22, 23, EOS], [6, 7, 8, 9, 10, EOS], [11, 12, EOS]]

    def pad(rows):
        width = max(map(len, rows))
        return torch.tensor([row + [PAD] * (width - len(row)) for row in rows])

    src, target = pad(sources), pad(targets)
    return src, target, [row[:-1] for row in targets]


FAMILY = {
    "vanilla": (GLAT, {}, NATCrossEntropy, {"epsilon": 0.0},
                NATGenerator, {"length_beam": 1}),
    "glat": (GLAT, {}, GlancingCrossEntropy, {"epsilon": 0.0},
             NATGenerator, {"length_beam": 1}),
    "ctc": (CTCNAT, {"upsample": 2.0}, GlancingCTC, {}, NATGenerator, {}),
    "cmlm": (CMLM, {}, NATCrossEntropy, {"epsilon": 0.0},
             MaskPredictGenerator, {"iterations": 4, "length_beam": 1}),
    "dat": (DATransformer, {"upsample": 3.0}, DAGLoss, {}, DAGGenerator, {}),
    "crf": (NATCRF, {"crf_rank": 8, "crf_beam": 4}, CRFLoss, {"epsilon": 0.0},
            NATGenerator, {"length_beam": 1}),
}


@pytest.mark.parametrize("name", list(FAMILY))
def test_every_nat_model_memorises_a_tiny_corpus(name):
    model_class, model_args, loss_class, loss_args, generator_class, generator_args = FAMILY[name]
    model = tiny(model_class, **model_args)
    criterion = loss_class(pad_id=PAD, **loss_args)
    src, target, expected = corpus()
    batch = {"src": src, "target": target, "ntokens": int(target.ne(PAD).sum())}
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    model.train()
    for step in range(300):
        criterion.set_progress(step, 300)
        loss, stats = criterion(model, batch)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    assert torch.isfinite(loss)
    # a DA-Transformer's three path searches all find the memorised sentences
    settings = [{"strategy": s} for s in ("lookahead", "greedy", "viterbi")] \
        if generator_class is DAGGenerator else [generator_args]
    for setting in settings:
        generator = generator_class(model=model.eval(), bos_id=BOS, eos_id=EOS, pad_id=PAD,
                                    **setting)
        tokens, _ = generator(src)
        decoded = [[t for t in row if t != PAD] for row in tokens.tolist()]
        assert decoded == expected, setting


def test_mask_predict_with_one_iteration_is_a_single_pass():
    model = tiny(CMLM).eval()
    src = corpus()[0]
    once = MaskPredictGenerator(iterations=1, length_beam=3, model=model, bos_id=BOS,
                                eos_id=EOS, pad_id=PAD)
    single = NATGenerator(length_beam=3, model=model, bos_id=BOS, eos_id=EOS, pad_id=PAD)
    (tokens, scores), (expected, expected_scores) = once(src), single(src)
    assert torch.equal(tokens, expected) and torch.allclose(scores, expected_scores)
    more = MaskPredictGenerator(iterations=3, length_beam=3, model=model, bos_id=BOS,
                                eos_id=EOS, pad_id=PAD)
    assert more.refine_steps == 2


def test_mask_predict_remasks_a_linearly_shrinking_share():
    generator = MaskPredictGenerator(iterations=4, model=tiny(CMLM), bos_id=BOS, eos_id=EOS,
                                     pad_id=PAD)
    lengths = torch.tensor([10, 4])
    # pass t of 4 re-masks floor(L·(4 − t + 1)/4): 7, 5, 2 of 10 and 3, 2, 1 of 4
    kept = [generator.keep_count(step, lengths).tolist() for step in range(3)]
    assert kept == [[3, 1], [5, 2], [8, 3]]
    with pytest.raises(ValueError, match="iterations: must be ≥ 1"):
        MaskPredictGenerator(iterations=0, model=tiny(CMLM), bos_id=BOS, eos_id=EOS, pad_id=PAD)


def test_cmlm_masks_between_one_and_all_real_tokens():
    torch.manual_seed(0)
    lengths = torch.randint(1, 9, (4000,))
    padding = torch.arange(8)[None, :] >= lengths[:, None]
    shown = random_shown(padding)
    masked = (~shown & ~padding).sum(-1)
    assert not (shown & padding).any()
    assert (masked >= 1).all() and (masked <= lengths).all()
    # n ~ Uniform{1..T}: for T = 8 every count appears, about equally often
    counts = torch.bincount(masked[lengths == 8], minlength=9)[1:].float()
    assert (counts > 0).all() and counts.max() / counts.min() < 1.6
    model = tiny(CMLM).train()
    src, target, _ = corpus()
    with pytest.raises(ValueError, match="NATCrossEntropy"):
        model(src, target, glance_ratio=0.3)
    assert not model.eval()(src, target)["glance_mask"].any()  # eval: nothing shown


def test_dat_glances_only_along_the_best_path(monkeypatch):
    model = tiny(DATransformer, upsample=3.0).train()
    src, target, _ = corpus()
    seen = {}
    align = model.align

    def recording_align(hidden, slot_padding, target, token_logp=None):
        seen["tokens"], seen["on_path"] = align(hidden, slot_padding, target, token_logp)
        return seen["tokens"], seen["on_path"]

    monkeypatch.setattr(model, "align", recording_align)
    torch.manual_seed(1)
    out = model(src, target, glance_ratio=1.0)
    on_path = seen["on_path"]
    assert (on_path.sum(-1) == target.ne(PAD).sum(-1)).all()  # one vertex per token
    assert out["glance_mask"].any() and not (out["glance_mask"] & ~on_path).any()
    # the path's vertices carry the reference tokens in order
    assert [row[mask].tolist() for row, mask in zip(seen["tokens"], on_path)] == \
        [[t for t in row if t != PAD] for row in target.tolist()]


def test_dag_loss_zeroes_and_counts_references_longer_than_the_graph():
    model = tiny(DATransformer, upsample=1.0).train()
    src = torch.tensor([[5, 6, EOS], [5, 6, EOS]])
    target = torch.tensor([[7, 8, 9, 10, EOS], [7, EOS, PAD, PAD, PAD]])  # 5 tokens > 3 vertices
    loss, stats = DAGLoss(pad_id=PAD, glance_start=0.0, glance_end=0.0)(
        model, {"src": src, "target": target, "ntokens": 7})
    assert torch.isfinite(loss) and stats["dag_infeasible"] == 1
    loss.backward()
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)


def test_generators_refuse_models_they_cannot_decode():
    with pytest.raises(ConfigError, match="DAGGenerator"):
        NATGenerator(model=tiny(DATransformer), bos_id=BOS, eos_id=EOS, pad_id=PAD)
    with pytest.raises(ConfigError, match="DATransformer"):
        DAGGenerator(model=tiny(GLAT), bos_id=BOS, eos_id=EOS, pad_id=PAD)
    src, target, _ = corpus()
    batch = {"src": src, "target": target, "ntokens": 10}
    with pytest.raises(ConfigError, match="trains a DATransformer"):
        DAGLoss(pad_id=PAD)(tiny(GLAT).train(), batch)
    with pytest.raises(ConfigError, match="trains a NATCRF"):
        CRFLoss(pad_id=PAD)(tiny(GLAT).train(), batch)


def test_nat_crf_decodes_the_viterbi_sentence_of_its_slots():
    from paragen.modules.crf import crf_viterbi
    model = tiny(NATCRF, crf_rank=4, crf_beam=5).eval()
    src = corpus()[0]
    memory, memory_padding, _ = model.encode(src)
    padding = torch.arange(5)[None, :] >= torch.tensor([5, 3, 4, 2])[:, None]
    tokens, scores = model.predict_slots(src, memory, memory_padding, padding)
    hidden = model.predict_hidden(src, memory, memory_padding, padding)
    expected, _ = crf_viterbi(model.output_logits(hidden), ~padding, model.transitions, 5,
                              pad_id=PAD)
    assert torch.equal(tokens, expected)
    assert (scores <= 0).all() and (scores.masked_select(padding) == 0).all()


def test_a_glat_config_with_ctc_upsample_is_read_as_ctcnat(small_corpus, tmp_path, caplog):
    """Configs (and checkpoints' stored configs) from before CTCNAT was its own class."""
    from helpers import tiny_config

    from paragen.tasks.build import build_task
    config = tiny_config(small_corpus["train"], small_corpus["valid"], small_corpus["spm"],
                         tmp_path / "run")
    config["task"]["model"].update({"class": "GLAT", "ctc_upsample": 1.5, "ctc_max_slots": 40,
                                    "max_length_offset": 8})
    config["task"]["criterion"] = {"class": "GlancingCTC"}
    config["task"]["generator"] = {"class": "NATGenerator"}
    with caplog.at_level("WARNING", logger="paragen"):
        task = build_task(config)
    assert isinstance(task.model, CTCNAT)
    assert (task.model.upsample, task.model.max_slots) == (1.5, 40)
    assert "now class CTCNAT" in caplog.text
