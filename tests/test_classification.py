"""Sentence classification (and regression): TSV input, metrics, the stored label map, and
train → evaluate → generate through the same verbs as translation."""
import copy
import json
import random

import pytest
import torch
from helpers import classifier_config, write_config
from helpers import error_line as _error_line

from paragen.checkpoint import load_checkpoint
from paragen.cli import main
from paragen.datasets import TsvDataset
from paragen.errors import DataError
from paragen.metrics import Accuracy, MacroF1, MatthewsCorrelation, Pearson, Spearman
from paragen.tasks.build import build_task
from paragen.tasks.sentence import _cut_pair


def _write(path, text):
    path.write_text(text, encoding="utf-8")
    return str(path)


# ---------------------------------------------------------------- TsvDataset
def test_tsv_reads_columns_by_header_name(tmp_path):
    path = _write(tmp_path / "d.tsv", "label\tsentence\n1\ta fine film \n0\tdull\n")
    data = TsvDataset(path)
    assert len(data) == 2 and data.header == ["label", "sentence"]
    assert data.lines("sentence") == ["a fine film ", "dull"]  # cells kept as they are
    assert data[1] == {"label": "0", "sentence": "dull"}
    assert data.location(1) == f"{path}:3"
    assert len(TsvDataset(_write(tmp_path / "h.tsv", "sentence\tlabel\n"))) == 0


@pytest.mark.parametrize("body,expected", [
    ("sentence\tlabel\nok\t1\nextra\ttab\t0\n", ":3: expected 2 tab-separated columns "
                                                 "(sentence, label), got 3 (a tab inside a text?)"),
    ("sentence\tlabel\nok\t1\nno label\n", ":3: expected 2 tab-separated columns (sentence, "
                                            "label), got 1 (a missing column?)"),
    ("sentence\tlabel\nok\t1\n\nafter\t0\n", ":3: expected 2 tab-separated columns"),
    ("", ": empty file; a TSV file starts with a header line"),
    ("sentence\tsentence\nx\ty\n", ":1: the header has column 'sentence' twice"),
])
def test_tsv_bad_rows_name_file_and_line(tmp_path, body, expected):
    path = _write(tmp_path / "bad.tsv", body)
    with pytest.raises(DataError) as err:
        TsvDataset(path)
    assert str(err.value).startswith(path) and expected in str(err.value)


def test_tsv_missing_column_names_the_header(tmp_path):
    data = TsvDataset(_write(tmp_path / "d.tsv", "sentence\tscore\nok\t1\n"))
    with pytest.raises(DataError, match=r"d.tsv:1: no column 'label' in the header "
                                        r"\(columns: sentence, score\)"):
        data.lines("label")


def test_pairs_are_cut_longest_side_first():
    assert _cut_pair([1] * 3, [2] * 4, 10) == ([1] * 3, [2] * 4)
    assert _cut_pair([1] * 2, [2] * 20, 10) == ([1] * 2, [2] * 8)
    assert _cut_pair([1] * 20, [2] * 3, 10) == ([1] * 7, [2] * 3)
    assert _cut_pair([1] * 20, [2] * 20, 10) == ([1] * 5, [2] * 5)


def test_classifier_pools_real_tokens_and_drops_words_only_in_training():
    from paragen.models import SequenceClassifier

    torch.manual_seed(0)
    encoder = {"class": "TransformerEncoder", "num_layers": 1, "num_heads": 2, "ffn_dim": 32,
               "dropout": 0.0}
    model = SequenceClassifier(encoder, d_model=16, pooling="mean", pooler_dropout=0.0,
                               token_dropout=0.5, vocab_size=50, num_outputs=3, pad_id=0,
                               unk_id=1)
    src = torch.tensor([[2, 7, 8, 9, 3], [2, 7, 3, 0, 0]])
    seen = []
    model.encoder.forward = lambda ids, added=None: (seen.append(ids) or torch.zeros(
        *ids.shape, 16), ids.eq(0))
    model.train()(src)
    dropped = seen[-1].ne(src)
    assert dropped.any() and seen[-1][dropped].eq(1).all()  # dropped words become unk
    assert not dropped[:, 0].any() and seen[-1][src.eq(0)].eq(0).all()  # bos and pads stay
    model.eval()(src)
    assert torch.equal(seen[-1], src)
    with pytest.raises(ValueError, match="token_dropout"):
        SequenceClassifier(encoder, d_model=16, token_dropout=0.1, vocab_size=50,
                           num_outputs=2, pad_id=0)
    # mean pooling ignores padding: a padded row pools like the same row unpadded
    model = SequenceClassifier(encoder, d_model=16, pooling="mean", vocab_size=50,
                               num_outputs=3, pad_id=0).eval()
    assert torch.allclose(model(src[1:, :3])["logits"], model(src[1:])["logits"], atol=1e-5)


# ---------------------------------------------------------------- metrics
def test_label_metrics_against_hand_worked_examples():
    hyp, ref = [1, 1, 0, 0, 1, 0], [1, 0, 0, 0, 1, 1]
    # TP=2 FP=1 FN=1 TN=2: accuracy 4/6; F1(1) = 4/6, F1(0) = 4/6; MCC = (4-1)/sqrt(3·3·3·3)
    assert Accuracy().compute(hyp, ref)[0] == pytest.approx(100 * 4 / 6)
    assert MacroF1().compute(hyp, ref)[0] == pytest.approx(100 * 4 / 6)
    assert MatthewsCorrelation().compute(hyp, ref)[0] == pytest.approx(100 / 3)
    # three classes: class 2 is predicted once and never right, class 1 is never predicted
    hyp, ref = [0, 0, 2, 0], [0, 1, 0, 0]
    # F1(0) = 2·2/(3+3) = 2/3, F1(1) = 0, F1(2) = 0 → macro 2/9
    assert MacroF1().compute(hyp, ref) == (pytest.approx(100 * 2 / 9),
                                           "macro_f1|classes:3|n:4")
    # Gorodkin: cov = 2·4 - (3·3 + 1·0 + 0·1) = -1; MCC = -1 / sqrt((16-10)(16-10)) = -1/6
    assert MatthewsCorrelation().compute(hyp, ref)[0] == pytest.approx(-100 / 6)
    assert MatthewsCorrelation().compute([1, 0, 1, 0], [0, 1, 0, 1])[0] == pytest.approx(-100)


def test_label_metrics_edge_cases():
    one_class = ([3, 3, 3], [3, 3, 3])
    assert Accuracy().compute(*one_class)[0] == 100.0
    assert MacroF1().compute(*one_class)[0] == 100.0  # the only class seen, always right
    assert MatthewsCorrelation().compute(*one_class)[0] == 0.0  # undefined: scored 0
    assert MatthewsCorrelation().compute([1, 1, 1], [0, 1, 1])[0] == 0.0  # constant predictor
    assert MacroF1().compute([0, 0], [1, 1])[0] == 0.0
    assert Accuracy().compute(torch.tensor([2]), torch.tensor([2])) == (100.0, "accuracy|n:1")
    for metric in (Accuracy(), MacroF1(), MatthewsCorrelation(), Pearson(), Spearman()):
        with pytest.raises(ValueError, match="2 predictions but 3 references"):
            metric.compute([1, 0], [1, 0, 1])
        with pytest.raises(ValueError, match="no examples"):
            metric.compute([], [])


def test_correlations_against_hand_worked_examples():
    assert Pearson().compute([1, 2, 3], [2, 4, 6])[0] == pytest.approx(100)
    assert Pearson().compute([1, 2, 3], [3, 2, 1])[0] == pytest.approx(-100)
    # x - mean = (-1, 0, 1), y - mean = (-1, -1, 2): r = 3 / (sqrt 2 · sqrt 6) = sqrt(3)/2
    assert Pearson().compute([1, 2, 3], [1, 1, 4])[0] == pytest.approx(100 * 3 ** 0.5 / 2)
    # Spearman is Pearson of ranks, ties averaged: x ranks (1, 2.5, 2.5, 4), y ranks 1..4
    expected = 4.5 / (4.5 ** 0.5 * 5 ** 0.5)
    assert Spearman().compute([10, 20, 20, 90], [1, 3, 2, 4])[0] == pytest.approx(100 * expected)
    assert Spearman().compute([1, 2, 3, 4], [1, 4, 9, 100])[0] == pytest.approx(100)  # monotone
    assert Pearson().compute([5, 5, 5], [1, 2, 3])[0] == 0.0  # constant: undefined, scored 0
    assert Spearman().compute([1, 2, 3], [7, 7, 7])[0] == 0.0


# ---------------------------------------------------------------- end to end on SST-2 rows
@pytest.fixture(scope="module")
def trained(tiny_classifier):
    return tiny_classifier


def _metrics(printed: str, split: str):
    return {line.split()[1]: float(line.split()[3]) for line in printed.splitlines()
            if line.startswith(f"{split} ")}


def test_train_evaluate_generate(trained, sst2, tmp_path, capsys):
    stored = load_checkpoint(str(trained / "best.pt"))
    assert stored["config"]["task"]["labels"] == ["0", "1"]
    assert stored["config"]["task"]["tokenizer"]["model"] == "tokenizer.model"
    assessed = [json.loads(line) for line in (trained / "metrics.jsonl").read_text().splitlines()]
    validations = [r for r in assessed if r.get("validation")]
    assert len(validations) == 2 and "valid.accuracy" in validations[0]
    best = max(r["valid.accuracy"] for r in validations)
    assert stored["trainer"]["best"] == best  # best.pt chosen by valid.accuracy by default

    capsys.readouterr()
    assert main(["evaluate", "--model", str(trained), "--output-dir", str(tmp_path)]) == 0
    scores = _metrics(capsys.readouterr().out, "valid")
    assert set(scores) == {"accuracy", "macro_f1", "mcc"}
    assert scores["accuracy"] == pytest.approx(best, abs=0.01)
    labels = (tmp_path / "valid.hyp").read_text().splitlines()
    assert len(labels) == 80 and set(labels) <= {"0", "1"}

    sentences = [line.split("\t")[0] for line in open(sst2["dev"]).read().splitlines()[1:]]
    source = _write(tmp_path / "in.txt", "\n".join(sentences) + "\n")
    assert main(["generate", "--model", str(trained), "--input", source,
                 "--output", str(tmp_path / "plain.txt")]) == 0
    assert main(["generate", "--model", str(trained), "--input", source,
                 "--output", str(tmp_path / "out.jsonl"), "--format", "jsonl"]) == 0
    plain = (tmp_path / "plain.txt").read_text().splitlines()
    rows = [json.loads(line) for line in (tmp_path / "out.jsonl").read_text().splitlines()]
    assert plain == labels  # generate and evaluate agree, row for row, in input order
    assert [row["label"] for row in rows] == plain
    for row in rows:
        probabilities = row["probabilities"]
        assert list(probabilities) == ["0", "1"]
        assert sum(probabilities.values()) == pytest.approx(1, abs=1e-5)
        assert row["label"] == max(probabilities, key=probabilities.get)


def test_labels_survive_shuffled_and_reordered_data(trained, sst2, tmp_path, capsys):
    """The label map comes from the model folder, not from the order of the data: the same
    rows shuffled score the same (ParaGen rebuilt the map and permuted the labels)."""
    header, *rows = open(sst2["dev"]).read().splitlines()
    random.Random(0).shuffle(rows)
    rows.sort(key=lambda row: row.endswith("\t0"))  # label 1 comes first now
    shuffled = _write(tmp_path / "shuffled.tsv", "\n".join([header] + rows) + "\n")
    capsys.readouterr()
    assert main(["evaluate", "--model", str(trained), "--input", sst2["dev"],
                 "--output-dir", str(tmp_path / "original")]) == 0
    original = _metrics(capsys.readouterr().out, "test")
    assert main(["evaluate", "--model", str(trained), "--input", shuffled,
                 "--output-dir", str(tmp_path / "shuffled")]) == 0
    assert _metrics(capsys.readouterr().out, "test") == pytest.approx(original)
    # every row gets the same label string wherever it stands (a permuted map flips them)
    predicted = {}
    for name, data in (("original", sst2["dev"]), ("shuffled", shuffled)):
        texts = [row.split("\t")[0] for row in open(data).read().splitlines()[1:]]
        labels = (tmp_path / name / "test.hyp").read_text().splitlines()
        predicted[name] = sorted(zip(texts, labels))
    assert predicted["original"] == predicted["shuffled"]

    unknown = _write(tmp_path / "unknown.tsv", f"{header}\n{rows[0]}\ngreat\tpositive\n")
    assert main(["evaluate", "--model", str(trained), "--input", unknown]) == 2
    assert _error_line(capsys) == (f"error: {unknown}:3: label 'positive' is not one of the "
                                   f"model's labels (0, 1); 1 such row(s)")
    assert main(["evaluate", "--model", str(trained), "--input", unknown,
                 "--reference", unknown]) == 2
    assert "--reference is for translation" in _error_line(capsys)


def test_explicit_label_order_is_kept(sst2, tmp_path):
    config = classifier_config(sst2, tmp_path / "run", labels=[1, 0], label_name="label")
    del config["task"]["label"]  # ParaGen's spelling of the key still loads
    config["task"]["trainer"]["max_steps"] = 1
    task = build_task(config)
    assert task.labels == ["1", "0"] and task.config["task"]["labels"] == ["1", "0"]
    first = open(sst2["train"]).read().splitlines()[1].split("\t")[1]
    assert int(task.splits["train"]["targets"][0]) == ["1", "0"].index(first)


def test_bad_classification_inputs_are_one_error_line(sst2, trained, tmp_path, capsys):
    config = classifier_config(sst2, tmp_path / "run", label="sentiment")
    assert main(["train", "--config", write_config(config, tmp_path / "c.yaml")]) == 2
    assert _error_line(capsys) == (f"error: {sst2['train']}:1: no column 'sentiment' in the "
                                   f"header (columns: sentence, label)")
    one_label = _write(tmp_path / "one.tsv", "sentence\tlabel\ngood\t1\nfine\t1\n")
    config = classifier_config(sst2, tmp_path / "run")
    config["task"]["data"]["train"]["path"] = one_label
    assert main(["train", "--config", write_config(config, tmp_path / "c.yaml")]) == 2
    assert "only one label (1); a classifier needs two or more" in _error_line(capsys)
    config["task"]["data"]["train"]["path"] = _write(tmp_path / "empty.tsv", "sentence\tlabel\n")
    assert main(["train", "--config", write_config(config, tmp_path / "c.yaml")]) == 2
    assert _error_line(capsys) == "error: task.data.train: the split has no samples (empty " \
                                  "files, or every line skipped as empty)"
    config["task"]["data"]["train"] = {"class": "TextDataset", "path": sst2["train"]}
    assert main(["train", "--config", write_config(config, tmp_path / "c.yaml")]) == 2
    assert "task.data.train.class: TextDataset gives plain lines" in _error_line(capsys)
    # verbs that only make sense for translation say so before loading the weights
    assert main(["generate", "--model", str(trained), "--beam", "2"]) == 2
    assert "--beam applies to translation models" in _error_line(capsys)
    assert main(["distill", "--model", str(trained), "--input", sst2["dev"],
                 "--output", str(tmp_path / "d.txt")]) == 2
    assert "holds a SequenceClassificationTask" in _error_line(capsys)


def test_sentence_pairs_with_segments_train_and_predict(sst2, tmp_path, capsys):
    """Two text columns: eos-separated, with segment ids; generate reads tab-separated pairs."""
    header, *rows = open(sst2["train"]).read().splitlines()
    pairs = [f"{row.split(chr(9))[0]}\t{rows[i - 1].split(chr(9))[0]}\t{row.split(chr(9))[1]}"
             for i, row in enumerate(rows[:120])]
    path = _write(tmp_path / "pairs.tsv", "first\tsecond\tlabel\n" + "\n".join(pairs) + "\n")
    config = classifier_config(sst2, tmp_path / "run", text=["first", "second"],
                               pair_encoding="segments", max_length=24)
    config["task"]["data"] = {"train": {"class": "TsvDataset", "path": path},
                              "valid": {"class": "TsvDataset", "path": path}}
    config["task"]["trainer"]["max_steps"] = 4
    task = build_task(copy.deepcopy(config))
    batch = task.collate([0, 1], task.splits["train"])
    first_len = task.splits["train"]["first"][:2]
    for row in range(2):
        src, seg = batch["src"][row], batch["segments"][row]
        real = int(src.ne(task.tokenizer.pad_id).sum())
        assert src[0] == task.tokenizer.bos_id and src[real - 1] == task.tokenizer.eos_id
        assert src[int(first_len[row]) - 1] == task.tokenizer.eos_id  # the separator
        assert seg[:first_len[row]].eq(0).all() and seg[first_len[row]:real].eq(1).all()
        assert seg[real:].eq(0).all() and real <= 24
    assert main(["train", "--config", write_config(config, tmp_path / "c.yaml")]) == 0
    inputs = _write(tmp_path / "in.txt", "a good film\tdull\nterrible\tgreat fun\n")
    capsys.readouterr()
    assert main(["generate", "--model", str(tmp_path / "run"), "--input", inputs]) == 0
    assert len(capsys.readouterr().out.splitlines()) == 2
    bad = _write(tmp_path / "bad.txt", "a good film\tdull\nno second text\n")
    assert main(["generate", "--model", str(tmp_path / "run"), "--input", bad]) == 2
    assert "input line 2: expected two texts separated by a tab" in _error_line(capsys)


def test_regression_task_trains_and_scores_correlations(sst2, tmp_path, capsys):
    """SST-2's 0/1 labels as values: the regression task shares everything but the targets."""
    config = classifier_config(sst2, tmp_path / "run")
    config["task"]["class"] = "SequenceRegressionTask"
    config["task"]["trainer"]["max_steps"] = 10
    assert main(["train", "--config", write_config(config, tmp_path / "c.yaml")]) == 0
    stored = load_checkpoint(str(tmp_path / "run" / "best.pt"))
    assert stored["config"]["task"]["trainer"]["assess_by"] == "valid.pearson"
    capsys.readouterr()
    assert main(["evaluate", "--model", str(tmp_path / "run")]) == 0
    assert set(_metrics(capsys.readouterr().out, "valid")) == {"pearson", "spearman"}
    inputs = _write(tmp_path / "in.txt", "a good film\nterrible\n")
    assert main(["generate", "--model", str(tmp_path / "run"), "--input", inputs,
                 "--format", "jsonl"]) == 0
    values = [json.loads(line)["value"] for line in capsys.readouterr().out.splitlines()]
    assert len(values) == 2 and all(isinstance(v, float) for v in values)
    bad = _write(tmp_path / "bad.tsv", "sentence\tlabel\ngood\t0.5\nbad\tlow\n")
    config["task"]["data"]["valid"]["path"] = bad
    config["task"]["trainer"]["overwrite"] = True
    assert main(["train", "--config", write_config(config, tmp_path / "c.yaml")]) == 2
    assert _error_line(capsys) == f"error: {bad}:3: target 'low' is not a finite number"


@pytest.mark.slow
def test_classifier_memorises_64_rows(sst2, tmp_path):
    """With no dropout and enough updates, the model fits 64 training rows: the loss, the
    head and the gradients reach every label."""
    header, *rows = open(sst2["train"]).read().splitlines()
    path = _write(tmp_path / "64.tsv", "\n".join([header] + rows[:64]) + "\n")
    config = classifier_config(sst2, tmp_path / "run")
    config["task"]["data"] = {"train": {"class": "TsvDataset", "path": path},
                              "valid": {"class": "TsvDataset", "path": path}}
    config["task"]["model"]["d_model"] = 64
    config["task"]["model"]["encoder"].update(num_heads=4, ffn_dim=128, num_layers=2)
    config["task"]["trainer"].update(max_steps=150, validate_interval=50)
    task = build_task(config)
    result = task.run()
    assert result["valid.accuracy"] == 100.0, result
    assert result["valid.loss"] < 0.05
