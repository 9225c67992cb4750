"""Seq2SeqTask: JSON-lines fields, joining, length budgets, several references per row, ROUGE,
GLAT+CTC with capped slots, and train → evaluate → generate → distill on a SciTLDR slice."""
import copy
import json
import logging
import os

import pytest
import torch
from conftest import shared_data_dir
from helpers import error_line, write_config

from paragen.cli import main
from paragen.datasets import JsonlDataset, field_references, field_texts, parse_field_path
from paragen.errors import ConfigError
from paragen.generators.nat import NATGenerator
from paragen.interfaces import PieceJoiner, ServedPredictor
from paragen.metrics import BLEU, Rouge
from paragen.models.nat import CTCNAT
from paragen.tasks.build import build_task, load_trained_task

LAYER = {"num_layers": 1, "num_heads": 2, "ffn_dim": 64, "dropout": 0.0}
ROUGE = {name: {"class": "Rouge", "variant": name} for name in ("rouge1", "rouge2", "rougeL")}


@pytest.fixture(scope="module")
def scitldr(tmp_path_factory):
    """40 train / 8 dev / 8 test papers of SciTLDR-A through `prepare-data` (JSON lines and
    one-line sources) and a 300-piece tokenizer learnt on train sources and TLDRs."""
    source = shared_data_dir() / "scitldr"
    if not (source / "train.jsonl").is_file():
        message = f"SciTLDR not found under {source}: set PARAGEN_DATA (see ../shared/data)"
        if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
            pytest.fail(message, pytrace=False)
        pytest.skip(message)
    root = tmp_path_factory.mktemp("scitldr")
    (root / "slice").mkdir()
    for split, rows in (("train", 40), ("dev", 8), ("test", 8)):
        lines = (source / f"{split}.jsonl").read_text(encoding="utf-8").splitlines()[:rows]
        (root / "slice" / f"{split}.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")
    data = root / "data"
    assert main(["prepare-data", "--dataset", "scitldr", "--source", str(root / "slice"),
                 "--output", str(data)]) == 0
    assert main(["build-tokenizer", "--input", str(data / "train.jsonl"), "--field", "source",
                 "target", "--output", str(data / "spm"), "--vocab-size", "300"]) == 0
    return {"data": data, "spm": str(data / "spm.model"), "root": root}


def seq2seq_config(scitldr, save_dir, model=None, **task):
    data = scitldr["data"]
    return copy.deepcopy({
        "task": {
            "class": "Seq2SeqTask", "source_field": "source", "target_field": "target",
            "max_source_length": 64, "max_target_length": 40,
            "tokenizer": {"class": "SentencePieceTokenizer", "model": scitldr["spm"]},
            "data": {"train": {"class": "JsonlDataset", "path": str(data / "train.jsonl")},
                     "valid": {"class": "JsonlDataset", "path": str(data / "dev.jsonl")}},
            "dataloader": {"train": {"class": "DataLoader", "sampler": {
                "class": "BucketSampler", "max_tokens": 800}}},
            "model": model or {"class": "Seq2Seq", "d_model": 32, "encoder": {
                "class": "TransformerEncoder", **LAYER}, "decoder": {
                "class": "TransformerDecoder", **LAYER}},
            "trainer": {"class": "Trainer", "optimizer": {"class": "AdamW", "lr": 3e-3},
                        "lr_scheduler": {"class": "InverseSquareRoot", "warmup_steps": 5},
                        "max_steps": 12, "validate_interval": 12, "save_dir": str(save_dir),
                        "log_interval": 6},
            "generator": {"class": "SequenceGenerator", "search": {
                "class": "GreedySearch", "max_length_a": 0, "max_length_b": 12}},
            "evaluator": {"class": "Evaluator", "metric": ROUGE, "log_examples": 0},
            **task,
        },
        "env": {"device": "cpu", "seed": 1, "threads": 1, "no_progress_bar": True},
    })


@pytest.fixture(scope="module")
def ar_model(scitldr):
    """A tiny AR summarizer trained for 12 updates through `paragen train`."""
    save_dir = scitldr["root"] / "ar"
    config = seq2seq_config(scitldr, save_dir)
    assert main(["train", "--config", write_config(config, scitldr["root"] / "ar.yaml")]) == 0
    return save_dir


def _jsonl(path, rows):
    path.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
    return str(path)


# ---------------------------------------------------------------- fields
def test_field_paths_parse_and_malformed_ones_name_the_config_key():
    assert parse_field_path("target[0]", "k") == ("target", 0)
    assert parse_field_path("meta.refs[1][0]", "k") == ("meta", "refs", 1, 0)
    for bad in ("", "a..b", "[0]", "a[x]", "a.", "a[0]b"):
        with pytest.raises(ConfigError, match="task.target_field: .* is not a field path"):
            parse_field_path(bad, "task.target_field")


def test_sentences_are_joined_and_references_kept_apart():
    samples = [{"doc": {"sents": [" One.\n", "Two\r\nlines. "]}, "refs": ["a", "b\nc"]},
               {"doc": {"sents": "Plain text."}, "refs": "only"}]
    where = lambda i: f"f.jsonl:{i + 1}"  # noqa: E731
    assert field_texts(samples, "doc.sents", ("doc", "sents"), " || ", where) == \
        ["One. || Two lines.", "Plain text."]
    assert field_references(samples, "refs", ("refs",), where) == [["a", "b c"], ["only"]]
    assert field_references(samples[:1], "refs[1]", ("refs", 1), where) == [["b c"]]


def test_training_pairs_each_reference_or_the_first(scitldr, tmp_path):
    rows = [{"source": ["S one.", "S two."], "target": ["t1", "t2", "t3"]},
            {"source": ["S three."], "target": ["t4"]}]
    path = _jsonl(tmp_path / "multi.jsonl", rows)
    data = {"train": {"class": "JsonlDataset", "path": path},
            "valid": {"class": "JsonlDataset", "path": path}}
    config = seq2seq_config(scitldr, tmp_path / "run", data=data, join=" | ")
    task = build_task(copy.deepcopy(config))  # training rewrites the config it is given
    train, valid = task.splits["train"], task.splits["valid"]
    assert train["sources"] == ["S one. | S two."] * 3 + ["S three."]
    assert train["targets"] == ["t1", "t2", "t3", "t4"] and len(train["tgt"]) == 4
    assert valid["targets"] == [["t1", "t2", "t3"], ["t4"]]  # evaluation: every reference
    decode = task.tgt_tokenizer.decode_batch
    assert decode([valid["tgt"][0][1:-1].tolist()]) == ["t1"]  # the loss: the first reference
    config["task"]["train_references"] = "first"
    assert build_task(config).splits["train"]["targets"] == ["t1", "t4"]
    first = JsonlDataset(path, max_samples=1)
    assert len(first) == 1 and first.location(0) == f"{path}:1"


def test_long_sources_are_cut_to_the_budget_and_counted(scitldr, tmp_path, caplog):
    config = seq2seq_config(scitldr, tmp_path / "run", max_source_length=16,
                            max_target_length=300)
    with caplog.at_level(logging.WARNING, logger="paragen"):
        task = build_task(config)
    lengths = [len(ids) for ids in task.splits["train"]["src"]]
    full = [len(ids) for ids in task.src_tokenizer.encode_batch(task.splits["train"]["sources"])]
    assert max(lengths) == 16 and all(ids[-1] == task.src_tokenizer.eos_id
                                      for ids in task.splits["train"]["src"])
    cut = sum(length > 15 for length in full)
    assert cut > 0 and f"train: {cut} of 40 source(s) longer than max_source_length 16 " \
                       f"tokens were truncated" in caplog.text
    assert "target(s)" not in caplog.text  # 300 tokens hold every TLDR: nothing cut, nothing said


# ---------------------------------------------------------------- bad input
@pytest.mark.parametrize("line,target_field,expected", [
    ('{"source": ["a"], "target": ["t"]', "target", ":2: invalid JSON"),
    ('{"source": ["a"]}', "target", ":2: target: no field 'target' in the line (it has source)"),
    ('{"source": ["a"], "target": []}', "target[0]", ":2: target[0]: target is an empty list; "
                                                     "no element [0]"),
    ('{"source": ["a"], "target": []}', "target", ":2: target: an empty list, no text"),
    ('{"source": 7, "target": ["t"]}', "target", ":2: source: expected a text or a list of "
                                                 "texts, got a number"),
])
def test_bad_json_lines_are_one_error_naming_file_and_line(scitldr, tmp_path, capsys, line,
                                                           target_field, expected):
    path = tmp_path / "bad.jsonl"
    path.write_text('{"source": ["fine"], "target": ["ok"]}\n' + line + "\n", encoding="utf-8")
    config = seq2seq_config(scitldr, tmp_path / "run", target_field=target_field)
    config["task"]["data"]["valid"] = {"class": "JsonlDataset", "path": str(path)}
    assert main(["train", "--config", write_config(config, tmp_path / "c.yaml")]) == 2
    assert error_line(capsys).startswith(f"error: {path}{expected}")


def test_scitldr_is_copied_not_downloaded(tmp_path, capsys):
    assert main(["prepare-data", "--dataset", "scitldr", "--download", "--output",
                 str(tmp_path)]) == 2
    assert "SciTLDR is copied from a local folder" in error_line(capsys)


def test_field_paths_need_json_lines(scitldr, tmp_path, capsys):
    data = scitldr["data"]
    config = seq2seq_config(scitldr, tmp_path / "run", target_field="target[0]")
    config["task"]["data"]["train"] = {"class": "ParallelTextDataset", "path": {
        "source": str(data / "train.source"), "target[0]": str(data / "train.source")}}
    assert main(["train", "--config", write_config(config, tmp_path / "c.yaml")]) == 2
    assert "task.data.train.class: ParallelTextDataset has named sides, not JSON; the field " \
           "paths 'source' and 'target[0]' need JsonlDataset" in error_line(capsys)


# ---------------------------------------------------------------- metrics
def test_rouge_matches_hand_worked_scores():
    # "the cats sat" vs "the cat sat on the mat": stemmed, 3 of 3 hypothesis unigrams and 3 of
    # 6 reference unigrams match: P 1, R 1/2, F 2/3; bigrams "the cat", "cat sat": P 1, R 2/5.
    hypotheses, references = ["the cats sat"], ["the cat sat on the mat"]
    assert Rouge("rouge1").compute(hypotheses, references)[0] == pytest.approx(200 / 3)
    assert Rouge("rouge2").compute(hypotheses, references)[0] == pytest.approx(100 * 4 / 7)
    assert Rouge("rougeL").compute(hypotheses, references)[0] == pytest.approx(200 / 3)
    assert Rouge("rouge1", stemming=False).compute(hypotheses, references)[0] == \
        pytest.approx(100 * 2 * (2 / 3 * 2 / 6) / (2 / 3 + 2 / 6))


def test_rouge_takes_the_best_reference_per_document_then_the_mean():
    # document 1: best of F 2/3 ("the cat sat on the mat") and 0 ("dogs"); document 2: "a dog"
    # vs "a dog runs": P 1, R 2/3, F 4/5. Mean: (2/3 + 4/5) / 2.
    score, signature = Rouge("rouge1").compute(
        ["the cats sat", "a dog"], [["dogs", "the cat sat on the mat"], "a dog runs"])
    assert score == pytest.approx(100 * (2 / 3 + 4 / 5) / 2)
    assert signature == "rouge-score|rouge1|F|stem:yes|refs:best of 2|n:2"
    # rouge-L: "b a" against "a b c" shares one token in order, against "b a x" two
    assert Rouge("rougeL").compute(["b a"], [["a b c", "b a x"]])[0] == pytest.approx(80.0)


def test_bleu_counts_every_reference_of_a_row():
    hypotheses = ["the cat sat on the mat today", "a dog runs in the park"]
    single = BLEU().compute(hypotheses, ["a cat sat on a mat today", "a dog runs in the park"])
    multi = BLEU().compute(hypotheses, [["a cat sat on a mat today",
                                         "the cat sat on the mat today"], "a dog runs in the park"])
    assert multi[0] == pytest.approx(100.0) and single[0] < 90 and "nrefs:var" in multi[1]


# ---------------------------------------------------------------- GLAT slots
def test_max_slots_caps_training_and_decoding_slots_alike():
    model = CTCNAT({"class": "TransformerEncoder", **LAYER},
                   {"class": "TransformerDecoder", **LAYER}, d_model=16, src_vocab_size=20,
                   tgt_vocab_size=20, pad_id=0, upsample=1.0, max_slots=4).eval()
    src = torch.tensor([[5, 6, 7, 8, 9, 10, 3], [5, 6, 3, 0, 0, 0, 0]])  # 7 and 3 tokens
    decoding = NATGenerator(model=model, bos_id=2, eos_id=3, pad_id=0)
    assert decoding.candidate_lengths(None, src.ne(0).sum(-1)).tolist() == [[4], [3]]
    npd = NATGenerator(length_beam=3, ctc_slot_step=0.25, model=model, bos_id=2, eos_id=3, pad_id=0)
    assert npd.candidate_lengths(None, src.ne(0).sum(-1)).tolist() == [[3, 4, 4], [2, 3, 4]]
    out = model.train()(src, torch.tensor([[11, 12, 3], [11, 3, 0]]), glance_ratio=0.5)
    assert (~out["slot_padding"]).sum(-1).tolist() == [4, 3]
    with pytest.raises(ValueError, match="max_slots: a cap"):
        CTCNAT({"class": "TransformerEncoder", **LAYER}, {"class": "TransformerDecoder", **LAYER},
               d_model=16, src_vocab_size=20, tgt_vocab_size=20, pad_id=0, max_slots=-1)


# ---------------------------------------------------------------- end to end
def test_ar_train_evaluate_generate_with_every_reference(ar_model, scitldr, tmp_path, capsys):
    data = scitldr["data"]
    assert main(["evaluate", "--model", str(ar_model), "--input", str(data / "test.jsonl"),
                 "--output-dir", str(tmp_path / "hyp"), "--env.threads", "1"]) == 0
    printed = capsys.readouterr().out
    for variant in ("rouge1", "rouge2", "rougeL"):
        assert f"test {variant} = " in printed and f"|{variant}|F|stem:yes|refs:best of 4|n:8" \
            in printed
    hypotheses = (tmp_path / "hyp" / "test.hyp").read_text(encoding="utf-8").splitlines()
    assert len(hypotheses) == 8 and all(hypotheses)
    # The score is the best reference's: add each document's own output as one more reference
    # (among its real ones, neither first nor last) and every variant reaches 100.
    rows = [json.loads(line) for line in (data / "test.jsonl").read_text().splitlines()]
    for row, hypothesis in zip(rows, hypotheses):
        row["target"] = row["target"][:1] + [hypothesis] + row["target"][1:]
    path = _jsonl(tmp_path / "with_own.jsonl", rows)
    assert main(["evaluate", "--model", str(ar_model), "--input", path, "--env.threads", "1"]) == 0
    printed = capsys.readouterr().out
    assert printed.count("= 100.00") == 3, printed
    output = tmp_path / "out.txt"
    assert main(["generate", "--model", str(ar_model), "--input", str(data / "test.source"),
                 "--output", str(output), "--env.threads", "1"]) == 0
    assert output.read_text(encoding="utf-8").splitlines() == hypotheses
    # served like translation, but a summary of an input's pieces is no summary of the input
    task = load_trained_task(str(ar_model), "infer")
    assert isinstance(task, ServedPredictor) and not isinstance(task, PieceJoiner)
    assert task.predict(["An abstract."]) == [{"output": task.translate(["An abstract."])[0]}]


def test_distill_then_glat_ctc_on_a_seq2seq_task(ar_model, scitldr, tmp_path, capsys):
    data = scitldr["data"]
    distilled = tmp_path / "train.distill"
    assert main(["distill", "--model", str(ar_model), "--input", str(data / "train.source"),
                 "--output", str(distilled), "--beam", "2"]) == 0
    assert len(distilled.read_text(encoding="utf-8").splitlines()) == 40
    glat = {"class": "CTCNAT", "d_model": 32, "upsample": 1.0, "max_slots": 48,
            "encoder": {"class": "TransformerEncoder", **LAYER},
            "decoder": {"class": "TransformerDecoder", "causal": False, **LAYER}}
    config = seq2seq_config(scitldr, tmp_path / "glat", model=glat,
                            criterion={"class": "GlancingCTC"},
                            generator={"class": "NATGenerator"})
    config["task"]["data"]["train"] = {"class": "ParallelTextDataset", "path": {
        "source": str(data / "train.source"), "target": str(distilled)}}
    config["task"]["trainer"].update(max_steps=6, validate_interval=6)
    assert main(["train", "--config", write_config(config, tmp_path / "glat.yaml")]) == 0
    capsys.readouterr()
    assert main(["evaluate", "--model", str(tmp_path / "glat"), "--env.threads", "1"]) == 0
    assert "valid rougeL = " in capsys.readouterr().out
    outputs = {}
    assert main(["export", "--model", str(tmp_path / "glat"), "--format", "torchscript",
                 "--output", str(tmp_path / "exported")]) == 0
    for name in ("glat", "exported"):  # the graphs decode with the same capped slots
        output = tmp_path / f"{name}.txt"
        assert main(["generate", "--model", str(tmp_path / name), "--input",
                     str(data / "test.source"), "--output", str(output)]) == 0
        outputs[name] = output.read_text(encoding="utf-8").splitlines()
    assert len(outputs["glat"]) == 8 and outputs["exported"] == outputs["glat"]


def test_evaluate_input_needs_json_lines_or_a_reference(ar_model, scitldr, capsys):
    assert main(["evaluate", "--model", str(ar_model), "--input",
                 str(scitldr["data"] / "test.source")]) == 2
    assert "--input alone names a JSON-lines file (.jsonl) with the 'source' and 'target' " \
           "fields" in error_line(capsys)


def test_output_projection_for_a_few_rows_matches_the_linear_layer():
    """`TransformerDecoder.project` serves 4-128 rows of a CPU inference pass from an
    input-major copy of the weight: the same logits, and a new copy once the weight changes
    (a checkpoint loaded into the same module)."""
    from paragen.decoders import TransformerDecoder

    torch.manual_seed(0)
    decoder = TransformerDecoder(num_layers=1, d_model=16, num_heads=2, ffn_dim=32,
                                 vocab_size=50, pad_id=0).eval()
    hidden = torch.randn(1, 8, 16)
    with torch.inference_mode():
        expected = decoder.output_projection(hidden)
        assert torch.allclose(decoder.project(hidden), expected, atol=1e-6)
        assert hasattr(decoder, "_input_major")  # 8 rows: the copy served them
    other = {key: torch.randn_like(value) for key, value in decoder.state_dict().items()}
    decoder.load_state_dict(other)
    with torch.inference_mode():
        assert torch.allclose(decoder.project(hidden), decoder.output_projection(hidden),
                              atol=1e-6)
    # with gradients (training), the layer itself
    assert decoder.project(hidden).requires_grad
