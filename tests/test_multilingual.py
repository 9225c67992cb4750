"""MultilingualTranslationTask: target-language tags, the temperature sampler's realised mix,
per-direction and zero-shot scores through `paragen evaluate`, a multilingual GLAT, bad
input."""
import copy

import numpy as np
import pytest
from helpers import error_line, write_config

from paragen.cli import main
from paragen.samplers import TemperatureSampler
from paragen.tasks.build import build_task, load_trained_task

LANGUAGES = ["en", "de", "fr", "cs"]
LAYER = {"num_layers": 1, "num_heads": 2, "ffn_dim": 64, "dropout": 0.0}


@pytest.fixture(scope="module")
def corpus(data_dir, tmp_path_factory):
    """60 train / 8 valid rows of 4-way Multi30k and a 500-piece joint tokenizer with tags."""
    root = tmp_path_factory.mktemp("multilingual")
    paths = {}
    for split, rows in (("train", 60), ("valid", 8)):
        paths[split] = {}
        for lang in LANGUAGES:
            text = (data_dir / "multi30k" / f"{split}.{lang}").read_text(encoding="utf-8")
            target = root / f"{split}.{lang}"
            target.write_text("\n".join(text.splitlines()[:rows]) + "\n", encoding="utf-8")
            paths[split][lang] = str(target)
    assert main(["build-tokenizer", "--input", *paths["train"].values(), "--output",
                 str(root / "spm"), "--vocab-size", "500", "--tags", *LANGUAGES]) == 0
    return {**paths, "spm": str(root / "spm.model"), "root": root}


def multilingual_config(corpus, save_dir, model=None, generator=None, **task):
    return copy.deepcopy({
        "task": {
            "class": "MultilingualTranslationTask", "languages": LANGUAGES,
            "directions": "all", "zero_shot": ["fr-cs", "cs-fr"], "max_length": 48,
            "tokenizer": {"class": "SentencePieceTokenizer", "model": corpus["spm"]},
            "data": {"train": {"class": "ParallelTextDataset", "path": corpus["train"]},
                     "valid": {"class": "ParallelTextDataset", "path": corpus["valid"]}},
            "dataloader": {"train": {"class": "DataLoader", "sampler": {
                "class": "TemperatureSampler", "temperature": 2.0, "max_tokens": 800}}},
            "model": model or {"class": "Seq2Seq", "d_model": 32, "encoder": {
                "class": "TransformerEncoder", **LAYER}, "decoder": {
                "class": "TransformerDecoder", **LAYER}},
            "trainer": {"class": "Trainer", "optimizer": {"class": "AdamW", "lr": 3e-3},
                        "max_steps": 4, "validate_interval": 4, "save_dir": str(save_dir),
                        "log_interval": 2},
            "generator": generator or {"class": "SequenceGenerator", "search": {
                "class": "GreedySearch", "max_length_a": 0, "max_length_b": 6}},
            "evaluator": {"class": "Evaluator", "metric": {"bleu": {"class": "BLEU"}},
                          "log_examples": 0},
            **task,
        },
        "env": {"device": "cpu", "seed": 1, "threads": 1, "no_progress_bar": True},
    })


@pytest.fixture(scope="module")
def ar_model(corpus):
    save_dir = corpus["root"] / "ar"
    path = write_config(multilingual_config(corpus, save_dir), corpus["root"] / "ar.yaml")
    assert main(["train", "--config", path]) == 0
    return save_dir


def test_sources_start_with_the_target_language_tag(corpus, tmp_path):
    task = build_task(multilingual_config(corpus, tmp_path / "run"))
    assert len(task.directions) == 10 and ("fr", "cs") not in task.directions
    train = task.splits["train"]
    assert len(train["src"]) == 60 * 10
    tags = task.tag_ids
    assert len(set(tags.values())) == 4
    for (source, target), rows in task.split_directions["train"].items():
        first = train["src"][rows.start]
        assert int(first[0]) == tags[target]  # <2tgt> source ids eos
        assert int(first[-1]) == task.src_tokenizer.eos_id
        plain = task.src_tokenizer.encode(task.splits["train"]["sources"][rows.start])
        assert first[1:-1].tolist() == plain
        assert task.decode([train["tgt"][rows.start].tolist()])[0] == \
            open(corpus["train"][target], encoding="utf-8").readline().strip()
    valid = task.split_directions["valid"]
    assert ("fr", "cs") in valid and ("cs", "fr") in valid and len(valid) == 12


@pytest.mark.parametrize("temperature", [1.0, 5.0, 100.0])
def test_temperature_sampler_realises_the_mix(temperature):
    sizes = np.array([4000, 400, 40])
    groups = np.repeat(np.arange(3), sizes)
    lengths = np.random.default_rng(0).integers(3, 30, len(groups))
    sampler = TemperatureSampler(temperature=temperature, max_tokens=500, groups=groups)
    batches = sampler.batches(lengths, epoch=3)
    picked = np.concatenate([np.asarray(b) for b in batches])
    assert len(picked) == len(groups)
    realised = np.bincount(groups[picked], minlength=3) / len(picked)
    expected = sizes ** (1 / temperature) / (sizes ** (1 / temperature)).sum()
    assert np.allclose(realised, expected, atol=0.02), (realised, expected)
    # token budget holds, batches deterministic per epoch and different between epochs
    assert all(len(b) * lengths[b].max() <= 500 or len(b) == 1 for b in batches)
    assert batches == sampler.batches(lengths, epoch=3)
    assert batches != sampler.batches(lengths, epoch=4)
    # the smallest group, upsampled, is drawn in whole passes: counts differ by at most one
    small = np.bincount(picked[groups[picked] == 2] - 4400, minlength=40)
    assert small.max() - small.min() <= 1


def test_per_direction_and_zero_shot_scores_through_evaluate(ar_model, capsys):
    assert (ar_model / "best.pt").is_file() or (ar_model / "last.pt").is_file()
    capsys.readouterr()
    assert main(["evaluate", "--model", str(ar_model)]) == 0
    lines = capsys.readouterr().out.splitlines()
    names = {line.split(" = ")[0] for line in lines}
    assert "valid bleu" in names
    assert "valid de-en.bleu" in names and "valid en-cs.bleu" in names
    assert "valid zero_shot.fr-cs.bleu" in names and "valid fr-cs.bleu" not in names
    assert len([n for n in names if n.endswith(".bleu")]) == 12
    values = {line.split(" = ")[0]: float(line.split(" = ")[1].split()[0]) for line in lines}
    trained = [v for n, v in values.items() if n.endswith(".bleu") and "zero_shot" not in n]
    assert values["valid bleu"] == pytest.approx(np.mean(trained), abs=0.01)


def test_evaluate_one_direction_from_files(ar_model, corpus, capsys):
    capsys.readouterr()
    assert main(["evaluate", "--model", str(ar_model), "--input", corpus["valid"]["de"],
                 "--reference", corpus["valid"]["en"]]) == 0
    names = {line.split(" = ")[0] for line in capsys.readouterr().out.splitlines()}
    # the input's language into the reference's only, not en-de as well
    assert names == {"test bleu", "test de-en.bleu"}
    # a stored split, restricted to the directions into one language
    assert main(["evaluate", "--model", str(ar_model), "--task.target_lang", "cs"]) == 0
    names = {line.split(" = ")[0] for line in capsys.readouterr().out.splitlines()}
    assert names == {"valid bleu", "valid de-cs.bleu", "valid en-cs.bleu",
                     "valid zero_shot.fr-cs.bleu"}


def test_generate_needs_a_target_language(ar_model, corpus, tmp_path, capsys):
    out = tmp_path / "out.en"
    assert main(["generate", "--model", str(ar_model), "--input", corpus["valid"]["de"],
                 "--output", str(out), "--task.target_lang", "en"]) == 0
    assert len(out.read_text(encoding="utf-8").splitlines()) == 8
    assert main(["generate", "--model", str(ar_model), "--input",
                 corpus["valid"]["de"]]) == 2
    assert "task.target_lang" in error_line(capsys)
    assert main(["generate", "--model", str(ar_model), "--input", corpus["valid"]["de"],
                 "--task.target_lang", "xx"]) == 2
    assert "'xx' is not one of the model's languages" in error_line(capsys)


def test_glat_trains_on_the_multilingual_task_and_decodes_with_the_tag(corpus, tmp_path):
    model = {"class": "GLAT", "d_model": 32, "max_length": 64,
             "encoder": {"class": "TransformerEncoder", **LAYER},
             "decoder": {"class": "TransformerDecoder", **LAYER}}
    config = multilingual_config(
        corpus, tmp_path / "glat", model=model, generator={"class": "NATGenerator"},
        criterion={"class": "GlancingCrossEntropy"})
    assert main(["train", "--config", write_config(config, tmp_path / "glat.yaml")]) == 0
    task = load_trained_task(str(tmp_path / "glat"), "infer", ["task.target_lang=de"])
    line = open(corpus["valid"]["en"], encoding="utf-8").readline().strip()
    assert task.source_ids([line])[0][0] == task.tag_ids["de"]
    german = task.translate([line])
    task.target_lang = "fr"
    assert int(task.encode([line])["src"][0][0]) == task.tag_ids["fr"]
    french = task.translate([line])
    assert len(german) == len(french) == 1 and isinstance(french[0], str)


def test_bad_input(corpus, tmp_path, capsys):
    def fails(config, *expected):
        assert main(["train", "--config", write_config(config, tmp_path / "bad.yaml")]) == 2
        line = error_line(capsys)
        for text in expected:
            assert text in line, line

    fails(multilingual_config(corpus, tmp_path / "r", directions=["de-xx"]),
          "task.directions", "'de-xx'", "no language 'xx'")
    fails(multilingual_config(corpus, tmp_path / "r", zero_shot=["de-en"],
                              directions=["de-en"]), "task.zero_shot", "de-en")
    short = tmp_path / "short.fr"
    short.write_text("un chien\n", encoding="utf-8")
    fails(multilingual_config(corpus, tmp_path / "r", data={"train": {
        "class": "ParallelTextDataset", "path": {**corpus["train"], "fr": str(short)}}}),
        "not aligned", "train.", "has 60 lines", str(short), "has 1")
    plain = tmp_path / "plain"
    assert main(["build-tokenizer", "--input", corpus["train"]["en"], "--output", str(plain),
                 "--vocab-size", "200"]) == 0
    fails(multilingual_config(corpus, tmp_path / "r", tokenizer={
        "class": "SentencePieceTokenizer", "model": f"{plain}.model"}),
        "task.languages", "<2en>", "--tags en de fr cs")
