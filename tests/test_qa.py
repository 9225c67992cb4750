"""Extractive QA: SQuAD JSON, token offsets, windows, the span search, the official metrics,
and train → evaluate → generate through the same verbs as the other tasks."""
import copy
import json
import os

import pytest
import torch
from conftest import shared_data_dir
from helpers import error_line as _error_line
from helpers import write_config

from paragen.checkpoint import save_checkpoint
from paragen.cli import main
from paragen.criteria import SpanCrossEntropy
from paragen.datasets import SquadDataset
from paragen.errors import DataError
from paragen.interfaces import OffsetTokenizer, Predictor, Tokenizer
from paragen.metrics import ExactMatch, SquadF1
from paragen.metrics.squad import normalize_answer
from paragen.models import SequenceClassifier, SpanExtractor
from paragen.tasks.build import build_task
from paragen.tasks.qa import span_text
from paragen.tasks.spans import best_spans, best_window, plan_windows, window_targets
from paragen.tokenizers import SentencePieceTokenizer

ENCODER = {"class": "TransformerEncoder", "num_layers": 1, "num_heads": 2, "ffn_dim": 64,
           "dropout": 0.0}


def _squad(path, paragraphs, title="T"):
    """Write a SQuAD v1.1 file: `paragraphs` = [(context, [(id, question, answer, start)])]."""
    data = {"version": "1.1", "data": [{"title": title, "paragraphs": [
        {"context": context, "qas": [
            {"id": qid, "question": question,
             "answers": [{"text": answer, "answer_start": start}]}
            for qid, question, answer, start in qas]}
        for context, qas in paragraphs]}]}
    path.write_text(json.dumps(data, indent=1), encoding="utf-8")
    return str(path)


@pytest.fixture(scope="session")
def xquad(tmp_path_factory):
    """XQuAD English and a 1,000-piece tokenizer learnt on its train split."""
    source = shared_data_dir() / "xquad" / "xquad.en.json"
    if not source.is_file():
        message = f"XQuAD not found at {source}: set PARAGEN_DATA (see ../shared/data)"
        if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
            pytest.fail(message, pytrace=False)
        pytest.skip(message)
    root = tmp_path_factory.mktemp("xquad")
    assert main(["build-tokenizer", "--squad", "train", "--input", str(source), "--output",
                 str(root / "spm"), "--vocab-size", "1000"]) == 0
    return {"json": str(source), "spm": str(root / "spm.model"), "root": root}


def qa_config(xquad, save_dir, train=None, valid=None, **task):
    config = {
        "task": {
            "class": "ExtractiveQATask", "max_length": 96, "doc_stride": 32,
            "tokenizer": {"class": "SentencePieceTokenizer", "model": xquad["spm"]},
            "data": {"train": train or {"class": "SquadDataset", "path": xquad["json"],
                                        "split": "train", "max_samples": 40},
                     "valid": valid or {"class": "SquadDataset", "path": xquad["json"],
                                        "split": "test", "max_samples": 20}},
            "dataloader": {"train": {"class": "DataLoader", "sampler": {
                "class": "BucketSampler", "max_tokens": 2048}}},
            "model": {"class": "SpanExtractor", "d_model": 32, "encoder": dict(ENCODER)},
            "trainer": {"class": "Trainer", "optimizer": {"class": "AdamW", "lr": 3e-3},
                        "lr_scheduler": {"class": "InverseSquareRoot", "warmup_steps": 5},
                        "max_steps": 8, "validate_interval": 4, "save_dir": str(save_dir),
                        "log_interval": 4},
            **task,
        },
        "env": {"device": "cpu", "seed": 1, "threads": 1, "no_progress_bar": True},
    }
    return copy.deepcopy(config)


# ---------------------------------------------------------------- SquadDataset
def test_xquad_splits_by_article_in_file_order(xquad):
    whole = SquadDataset(xquad["json"])
    train, test = (SquadDataset(xquad["json"], split=s) for s in ("train", "test"))
    assert (len(whole), len(whole.contexts)) == (1190, 240)
    assert (len(train), len(train.contexts), len(test), len(test.contexts)) == (991, 195, 199, 45)
    assert set(train.lines("id")).isdisjoint(test.lines("id"))
    assert sorted(train.lines("id") + test.lines("id")) == sorted(whole.lines("id"))
    assert set(train.contexts).isdisjoint(test.contexts)
    articles = {int(test.location(i).split("data[")[1].split("]")[0]) for i in range(len(test))}
    assert articles == {4, 9, 14, 19, 24, 29, 34, 39, 44}  # every 5th article
    sample = whole[0]
    assert sample["context"][sample["answers"][0]["answer_start"]:].startswith(
        sample["answers"][0]["text"])
    small = SquadDataset(xquad["json"], max_samples=7)
    assert len(small) == 7 and small.contexts == whole.contexts[:1]
    every_third = SquadDataset(xquad["json"], split="test", test_every=3)
    assert len(every_third.contexts) == 16 * 5  # articles 2, 5, ..., 47
    with pytest.raises(ValueError, match="test_every: must be ≥ 2"):
        SquadDataset(xquad["json"], test_every=1)


@pytest.mark.parametrize("text,expected", [
    ('{"data": [\n  {"paragraphs": [}\n]}', ":2:19: invalid JSON (Expecting value)"),
    ('{"data": [{"paragraphs": [{"context": "abc", "qas": [{"id": "q1", "question": "?",'
     ' "answers": [{"text": "bc", "answer_start": 0}]}]}]}]}',
     ": question q1 (data[0].paragraphs[0].qas[0].answers[0]): answer_start 0 points at 'ab' "
     "in the context, not at the answer text 'bc'"),
    ('{"data": [{"paragraphs": [{"context": "abc", "qas": [{"id": "q1", "question": "?",'
     ' "answers": [{"text": "bc"}]}]}]}]}',
     ": data[0].paragraphs[0].qas[0].answers[0].answer_start: missing key"),
    ('{"data": [{"paragraphs": [{"qas": []}]}]}', ": data[0].paragraphs[0].context: missing key"),
    ('{"version": "1.1"}', ": data: missing key"),
    ('{"data": [{"paragraphs": [{"context": "abc", "qas": [{"id": "q1", "question": "?",'
     ' "answers": [{"text": "bc", "answer_start": "1"}]}]}]}]}',
     ": data[0].paragraphs[0].qas[0].answers[0].answer_start: expected an integer, got str"),
    ('{"data": [{"paragraphs": [{"context": "abc", "qas": [{"id": "q1", "question": "?",'
     ' "answers": []}]}]}]}', ": data[0].paragraphs[0].qas[0].answers: question q1 has no answer"),
])
def test_bad_squad_files_name_file_and_problem(tmp_path, text, expected):
    path = tmp_path / "bad.json"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(DataError) as err:
        SquadDataset(str(path))
    assert str(err.value).startswith(str(path) + expected), str(err.value)


def test_bad_squad_file_is_one_error_line_from_the_cli(xquad, trained, tmp_path, capsys):
    path = _squad(tmp_path / "shifted.json", [("The cat sat.", [("q7", "Who?", "cat", 5)])])
    assert main(["evaluate", "--model", str(trained), "--input", path]) == 2
    assert _error_line(capsys) == (f"error: {path}: question q7 (data[0].paragraphs[0].qas[0]."
                                   f"answers[0]): answer_start 5 points at 'at ' in the context, "
                                   f"not at the answer text 'cat'")


# ---------------------------------------------------------------- token offsets
def test_offsets_give_each_piece_its_own_characters(xquad):
    tokenizer = SentencePieceTokenizer(xquad["spm"])
    assert isinstance(tokenizer, OffsetTokenizer) and isinstance(tokenizer, Tokenizer)
    texts = ["Hello  world, it's 1990s — café!", " leading space", "naïve résumé 東京 ﬁ",
             "tab\tand\nnewline", ""]
    for text, (ids, offsets) in zip(texts, tokenizer.encode_with_offsets(texts)):
        assert ids == tokenizer.encode(text) and len(offsets) == len(ids)
        assert all(a <= b for a, b in offsets)
        assert all(b1 <= a2 for (_, b1), (a2, _) in zip(offsets, offsets[1:]))  # in order
        pieces = [text[a:b] for a, b in offsets]
        assert all(piece == piece.strip() for piece in pieces)  # no whitespace at the edges
        # every visible character belongs to exactly one piece
        assert "".join(pieces) == "".join(text.split())


def test_gold_spans_recover_the_answers_after_tokenization(xquad, capsys):
    """Every XQuAD answer, mapped to tokens and back, is its own text, except answers
    that end inside a piece (counted: 3 of 1190 with this tokenizer, each one character
    of punctuation glued to the answer's last word)."""
    config = qa_config(xquad, xquad["root"] / "unused",
                       valid={"class": "SquadDataset", "path": xquad["json"]})
    task = build_task({**config, "task": {**config["task"], "mode": "evaluate"}})
    split = task.splits["valid"]
    first, last = split["answer_tokens"].unbind(-1)
    texts, _, _ = span_text(split, torch.arange(len(first)), first, last)
    golds = [golds[0] for golds in split["golds"]]
    mismatched = [(gold, text) for gold, text in zip(golds, texts) if gold != text]
    assert len(texts) == 1190 and len(mismatched) <= 5, mismatched
    for gold, text in mismatched:
        assert text.startswith(gold) and len(text) - len(gold) <= 2


# ---------------------------------------------------------------- windows
def test_windows_step_by_doc_stride_and_cover_the_context():
    question, start, length = plan_windows(torch.tensor([3, 5, 2]), torch.tensor([10, 4, 23]),
                                           max_length=12, doc_stride=4)
    # room: 6, 4, 7 context tokens; question 1 fits in one window; question 2 steps 4 at a time
    assert question.tolist() == [0, 0, 1, 2, 2, 2, 2, 2]
    assert start.tolist() == [0, 4, 0, 0, 4, 8, 12, 16]
    assert length.tolist() == [6, 6, 4, 7, 7, 7, 7, 7]
    # a stride longer than the room never leaves a gap: it shrinks to the room
    question, start, length = plan_windows(torch.tensor([2]), torch.tensor([20]), 12, 100)
    assert start.tolist() == [0, 7, 14] and length.tolist() == [7, 7, 6]


def test_an_answer_across_a_window_boundary_is_learnt_in_the_next_window():
    # context tokens 0..19, windows of 7 context tokens 4 apart: [0,7) [4,11) [8,15) [12,19)
    # [16,20)
    question, start, length = plan_windows(torch.tensor([2]), torch.tensor([20]), 12, 4)
    assert start.tolist() == [0, 4, 8, 12, 16] and length.tolist() == [7, 7, 7, 7, 4]
    first, last = torch.tensor([5]), torch.tensor([8])  # tokens 5..8 cross the end of window 0
    begin, end = window_targets(first, last, question, start, length, torch.tensor([2]))
    context_at = 2 + 2  # bos, two question tokens, eos
    assert begin.tolist() == [0, 5 - 4 + context_at, 0, 0, 0]
    assert end.tolist() == [0, 8 - 4 + context_at, 0, 0, 0]


def test_collated_windows_hold_the_answer_tokens_where_the_targets_say(xquad, tmp_path):
    """Short rows (max_length 40, stride 8) over real contexts: each window's target span is
    the answer's tokens, a window without the whole answer points at bos, and every answer
    short enough to fit the windows' overlap is held by one of them."""
    config = qa_config(xquad, tmp_path / "run", max_length=40, doc_stride=8,
                       max_query_length=12)
    config["task"]["data"]["train"]["max_samples"] = 60
    task = build_task(config)
    split = task.splits["train"]
    batch = task.collate(list(range(len(split["lengths"]))), split)
    src, targets = batch["src"], (batch["start"], batch["end"])
    assert src.shape[1] <= 40 and (src[:, 0] == task.tokenizer.bos_id).all()
    assert batch["segments"][batch["context"]].eq(1).all()
    assert not batch["context"][:, 0].any()
    holding = torch.zeros(len(split["paragraph"]), dtype=torch.bool)
    for row, (begin, end) in enumerate(zip(*targets)):
        q = int(split["w_question"][row])
        first, last = split["answer_tokens"][q].tolist()
        base = int(split["c_offsets"][split["paragraph"][q]])
        answer = split["c_flat"][base + first:base + last + 1]
        if begin == 0:
            assert end == 0
            window = range(int(split["w_start"][row]),
                           int(split["w_start"][row] + split["w_length"][row]))
            assert not (first in window and last in window)
        else:
            assert batch["context"][row, begin] and batch["context"][row, end]
            assert torch.equal(src[row, begin:end + 1], answer)
            holding[q] = True
    # an answer of at most (room - stride + 1) tokens always lies wholly inside some window
    room = 40 - split["q_lengths"] - 3
    first, last = split["answer_tokens"].unbind(-1)
    assert holding[last - first + 1 <= room - 8 + 1].all() and holding.float().mean() > 0.9
    assert len(split["lengths"]) > len(split["paragraph"])  # contexts did need several windows


# ---------------------------------------------------------------- span search
def _brute_force(start, end, allowed, max_answer_length):
    best = (-float("inf"), 0, 0)
    for s in range(len(start)):
        for e in range(s, min(s + max_answer_length, len(start))):
            if allowed[s] and allowed[e] and start[s] + end[e] > best[0]:
                best = (float(start[s] + end[e]), s, e)
    return best


@pytest.mark.parametrize("max_answer_length", [1, 3, 30])
def test_span_search_matches_brute_force(max_answer_length):
    generator = torch.Generator().manual_seed(max_answer_length)
    start, end = torch.randn(16, 21, generator=generator), torch.randn(16, 21, generator=generator)
    allowed = torch.rand(16, 21, generator=generator) > 0.4
    allowed[0] = False
    score, first, last = best_spans(start, end, allowed, max_answer_length)
    assert score[0] == -torch.inf
    for row in range(1, 16):
        expected = _brute_force(start[row].tolist(), end[row].tolist(), allowed[row].tolist(),
                                max_answer_length)
        assert (pytest.approx(float(score[row])), int(first[row]), int(last[row])) == expected


def test_best_window_picks_each_questions_top_window():
    scores = torch.tensor([0.1, 0.7, 0.3, -1.0, 0.5, 0.5])
    assert best_window(scores, torch.tensor([0, 0, 0, 1, 2, 2]), 3).tolist() == [1, 3, 4]


# ---------------------------------------------------------------- metrics
def test_squad_metrics_against_hand_worked_examples():
    em, f1 = ExactMatch(), SquadF1()
    assert normalize_answer("The  Denver Broncos!") == "denver broncos"
    assert normalize_answer("an apple, a pear") == "apple pear"
    assert normalize_answer("theory") == "theory"  # articles only as whole words
    # normalisation makes these exact matches
    assert em.compute(["the Broncos."], [["Broncos"]]) == (100.0, "squad-v1.1-em|n:1")
    # best of several golds: 'Denver Broncos' matches the second exactly
    assert em.compute(["Denver Broncos"], [["Broncos", "denver broncos"]])[0] == 100.0
    # F1: prediction 'denver broncos team' vs gold 'broncos': P 1/3, R 1 → 0.5
    assert f1.compute(["Denver Broncos team"], [["Broncos"]])[0] == pytest.approx(50.0)
    # max over golds: vs 'the denver broncos' P 2/3 R 1 → 0.8 beats 0.5
    assert f1.compute(["Denver Broncos team"], [["Broncos", "The Denver Broncos"]])[0] == \
        pytest.approx(80.0)
    # tokens count as a bag: 'x x y' vs 'x y y' share one x and one y → P = R = 2/3
    assert f1.compute(["x x y"], [["x y y"]])[0] == pytest.approx(100 * 2 / 3)
    # zero overlap, and a prediction that normalises to nothing
    assert f1.compute(["Carolina Panthers"], [["Denver"]])[0] == 0.0
    assert f1.compute(["the"], [["the"]])[0] == 0.0 and em.compute(["the"], [["The!"]])[0] == 100
    # a mean over questions
    assert f1.compute(["Broncos", "Panthers"], [["Broncos"], ["Denver"]])[0] == 50.0
    with pytest.raises(ValueError, match="2 predictions but 1 references"):
        em.compute(["a", "b"], [["a"]])
    with pytest.raises(ValueError, match="non-empty list of gold answers"):
        f1.compute(["a"], ["a"])


# ---------------------------------------------------------------- model and loss
def test_span_extractor_starts_from_a_pretrained_encoder(tmp_path):
    torch.manual_seed(0)
    pretrained = SequenceClassifier(dict(ENCODER), d_model=32, vocab_size=60, num_outputs=2,
                                    pad_id=0)
    path = str(tmp_path / "encoder.pt")
    save_checkpoint({"model": pretrained.state_dict()}, path)
    model = SpanExtractor(dict(ENCODER), d_model=32, path=path, vocab_size=60, pad_id=0)
    for name, value in pretrained.encoder.state_dict().items():
        assert torch.equal(model.encoder.state_dict()[name], value), name
    with pytest.raises(DataError, match="does not match the model"):
        SpanExtractor(dict(ENCODER), d_model=32, path=path, vocab_size=61, pad_id=0)
    src = torch.tensor([[2, 5, 3, 7, 8, 3], [2, 5, 3, 7, 3, 0]])
    outputs = model.eval()(src, (torch.arange(6) >= 3).long().expand(2, 6))
    assert not torch.equal(outputs["start_logits"], model(src)["start_logits"])  # segments
    assert outputs["start_logits"].shape == (2, 6)
    assert outputs["end_logits"][1, 5] == torch.finfo(torch.float32).min  # padding
    segments = (torch.arange(6) >= 3).long().expand(2, 6)
    batch = {"src": src, "segments": segments, "start": torch.tensor([3, 0]),
             "end": torch.tensor([4, 0]), "ntokens": 2}
    loss, logs = SpanCrossEntropy()(model, batch)
    start_nll = torch.nn.functional.cross_entropy(outputs["start_logits"], batch["start"])
    end_nll = torch.nn.functional.cross_entropy(outputs["end_logits"], batch["end"])
    assert loss.item() == pytest.approx((start_nll + end_nll).item() / 2)  # mean of the two
    assert logs["ntokens"] == 2 and logs["loss"] == pytest.approx(loss.item() * 2)


# ---------------------------------------------------------------- end to end
@pytest.fixture(scope="module")
def trained(xquad):
    """A tiny span extractor trained for 8 steps through `paragen train`."""
    save_dir = xquad["root"] / "run"
    path = write_config(qa_config(xquad, save_dir), xquad["root"] / "c.yaml")
    assert main(["train", "--config", path]) == 0
    return save_dir


def _metrics(printed: str, split: str):
    return {line.split()[1]: float(line.split()[3]) for line in printed.splitlines()
            if line.startswith(f"{split} ")}


def test_train_evaluate_generate(trained, xquad, tmp_path, capsys):
    records = [json.loads(line) for line in (trained / "metrics.jsonl").read_text().splitlines()]
    validations = [r for r in records if r.get("validation")]
    assert len(validations) == 2 and {"valid.exact_match", "valid.f1"} <= set(validations[-1])
    capsys.readouterr()
    assert main(["evaluate", "--model", str(trained), "--output-dir", str(tmp_path)]) == 0
    scores = _metrics(capsys.readouterr().out, "valid")
    assert set(scores) == {"exact_match", "f1"}
    assert scores["f1"] == pytest.approx(max(r["valid.f1"] for r in validations), abs=0.01)
    answers = (tmp_path / "valid.hyp").read_text().splitlines()
    assert len(answers) == 20

    test = SquadDataset(xquad["json"], split="test", max_samples=20)
    lines = [f"{row['question']}\t{row['context']}" for row in test]
    source = tmp_path / "in.txt"
    source.write_text("\n".join(lines) + "\n", encoding="utf-8")
    assert main(["generate", "--model", str(trained), "--input", str(source),
                 "--output", str(tmp_path / "plain.txt")]) == 0
    assert main(["generate", "--model", str(trained), "--input", str(source),
                 "--output", str(tmp_path / "out.jsonl"), "--format", "jsonl"]) == 0
    plain = (tmp_path / "plain.txt").read_text(encoding="utf-8").splitlines()
    rows = [json.loads(line) for line in (tmp_path / "out.jsonl").read_text().splitlines()]
    assert plain == answers  # generate and evaluate agree, question for question
    for row, sample in zip(rows, test):
        assert set(row) == {"answer", "score", "start", "end"} and 0 <= row["score"] <= 1
        assert sample["context"][row["start"]:row["end"]] == row["answer"]  # exact substring

    capsys.readouterr()
    assert main(["evaluate", "--model", str(trained), "--input", xquad["json"]]) == 0
    assert set(_metrics(capsys.readouterr().out, "test")) == {"exact_match", "f1"}
    source.write_text("a question without its context\n", encoding="utf-8")
    assert main(["generate", "--model", str(trained), "--input", str(source)]) == 2
    assert _error_line(capsys) == ("error: input line 1: expected a question and its context "
                                   "separated by a tab, both non-empty")


def test_predict_keeps_input_order_and_shares_contexts(trained):
    from paragen.tasks.build import load_trained_task

    task = load_trained_task(str(trained), "infer")
    assert isinstance(task, Predictor) and task.output_field == "answer"
    context = "Tesla was born in Smiljan in 1856.\tHe moved to New York in 1884."
    lines = ["Where was Tesla born?\t" + context, "When?\tIn 1999.", "When did he move?\t" +
             context]
    rows = task.predict(lines)
    assert [row["answer"] for row in rows] == [task.predict([line])[0]["answer"]
                                               for line in lines]
    for row, line in zip(rows, lines):
        assert line.split("\t", 1)[1][row["start"]:row["end"]] == row["answer"]


def test_a_handful_of_questions_is_learnt(xquad, tmp_path):
    """No dropout, enough updates: 12 questions on 3 paragraphs (32 windows) are answered
    word for word, so targets, windows, the loss and the span search agree (about 15 s)."""
    whole = SquadDataset(xquad["json"])
    paragraphs = {p: [] for p in range(3)}
    for i, p in enumerate(whole.paragraph_of[:60]):
        if p in paragraphs and len(paragraphs[p]) < 4:
            row = whole[i]
            answer = row["answers"][0]
            paragraphs[p].append((row["id"], row["question"], answer["text"],
                                  answer["answer_start"]))
    path = _squad(tmp_path / "tiny.json", [(whole.contexts[p], qas)
                                           for p, qas in paragraphs.items()])
    data = {"class": "SquadDataset", "path": path}
    config = qa_config(xquad, tmp_path / "run", train=data, valid=data, max_length=192,
                       doc_stride=96)
    config["task"]["model"].update(d_model=64, encoder={**ENCODER, "num_heads": 4,
                                                        "ffn_dim": 128})
    config["task"]["trainer"].update(max_steps=150, validate_interval=150,
                                     optimizer={"class": "AdamW", "lr": 3e-3})
    result = build_task(config).run()
    assert result["valid.f1"] >= 90.0, result


def test_served_answers_are_the_tasks(trained):
    """`paragen serve` answers a QA model like any ServedPredictor: per line the task's own
    dict, a line without its tab refused alone (422)."""
    pytest.importorskip("fastapi")
    from fastapi.testclient import TestClient

    from paragen.interfaces import ServedPredictor
    from paragen.serving.app import create_app
    from paragen.tasks.build import load_trained_task

    task = load_trained_task(str(trained), "infer")
    assert isinstance(task, ServedPredictor) and task.max_input_tokens is None
    lines = ["Where was Tesla born?\tTesla was born in Smiljan in 1856.",
             "When?\tIn 1999 he moved to New York."]
    with TestClient(create_app(task, "qa")) as client:
        assert client.get("/v1/models").json()["models"][0]["input"] == "question<TAB>context"
        reply = client.post("/v1/generate", json={"inputs": lines})
        assert reply.status_code == 200 and reply.json()["outputs"] == task.predict(lines)
        bad = client.post("/v1/generate", json={"inputs": ["no context here"]})
        assert bad.status_code == 422 and "separated by a tab" in bad.json()["error"]


def test_init_from_a_masked_lm_keeps_the_span_head_fresh(tmp_path):
    """`init_from` a masked LM: its encoder is copied, its vocabulary-sized `head` (another
    shape than the span head) stays behind; an encoder of another shape is still an error."""
    from paragen.checkpoint import load_matching_weights
    from paragen.models import MaskedLM

    torch.manual_seed(0)
    mlm = MaskedLM(dict(ENCODER), d_model=32, vocab_size=60, pad_id=0)
    path = str(tmp_path / "mlm.pt")
    save_checkpoint({"model": mlm.state_dict()}, path)
    model = SpanExtractor(dict(ENCODER), d_model=32, vocab_size=60, pad_id=0)
    head = {k: v.clone() for k, v in model.head.state_dict().items()}
    loaded, fresh, _ = load_matching_weights(model, path)
    assert all(name.startswith("encoder.") for name in loaded) and loaded
    assert all(torch.equal(model.encoder.state_dict()[k], v)
               for k, v in mlm.encoder.state_dict().items())
    assert all(torch.equal(model.head.state_dict()[k], v) for k, v in head.items())
    assert any(name.startswith("head.") for name in fresh)
    with pytest.raises(DataError, match="other shapes"):
        load_matching_weights(SpanExtractor(dict(ENCODER), d_model=32, vocab_size=61,
                                            pad_id=0), path)
