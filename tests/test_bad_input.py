"""Bad input, as classes of failure: one `error:` line naming the file or config key, exit 2,
no traceback, nothing half-written, nothing run that the user did not name."""
import json
import shutil

import pytest
import torch
from helpers import error_line as _error_line
from helpers import tiny_config, write_config

from paragen.checkpoint import load_checkpoint, save_checkpoint
from paragen.cli import main


@pytest.fixture(scope="module")
def trained(tiny_model):
    return tiny_model


# ---------------------------------------------------------------- a model folder runs no code
def test_a_model_folder_never_imports_its_stored_plugins(trained, tmp_path, capsys):
    plugin = tmp_path / "evil_plugin.py"
    marker = tmp_path / "ran"
    plugin.write_text(f"open({str(marker)!r}, 'w').write('x')\n")
    folder = tmp_path / "model"
    shutil.copytree(trained, folder)
    state = load_checkpoint(str(folder / "last.pt"))
    state["config"]["env"]["custom_libs"] = [str(plugin)]
    for name in ("best.pt", "last.pt"):
        save_checkpoint(state, str(folder / name))
    source = tmp_path / "in.de"
    source.write_text("Ein Hund.\n", encoding="utf-8")
    assert main(["generate", "--model", str(folder), "--input", str(source), "--output",
                 str(tmp_path / "out.en")]) == 0
    assert not marker.exists()
    # a model whose classes come from a plug-in says which --lib it needs
    state["config"]["task"]["model"]["class"] = "PluginModel"
    save_checkpoint(state, str(folder / "best.pt"))
    assert main(["generate", "--model", str(folder), "--input", str(source)]) == 2
    line = _error_line(capsys)
    assert f"pass --lib {plugin}" in line and not marker.exists()


def test_paths_in_a_model_folder_stay_inside_it(trained, tmp_path, capsys):
    folder = tmp_path / "model"
    shutil.copytree(trained, folder)
    state = load_checkpoint(str(folder / "best.pt"))
    state["config"]["task"]["tokenizer"]["model"] = "../../etc/passwd"
    save_checkpoint(state, str(folder / "best.pt"))
    assert main(["generate", "--model", str(folder)]) == 2
    assert "points outside the model folder" in _error_line(capsys)


@pytest.mark.parametrize("graphs", [["../../escape"], ["/abs/path"], "encoder", [3]])
def test_export_manifests_name_graphs_inside_the_folder(tmp_path, capsys, graphs):
    folder = tmp_path / "exported"
    folder.mkdir()
    (folder / "export.json").write_text(json.dumps(
        {"format": "onnx", "family": "ar", "graphs": graphs, "config": {"task": {}}}))
    assert main(["generate", "--model", str(folder)]) == 2
    assert "graphs must be a list of plain names" in _error_line(capsys)


# ---------------------------------------------------------------- outputs
def _output_verbs(trained, source, output):
    return {
        "generate": ["generate", "--model", str(trained), "--input", str(source),
                     "--output", str(output)],
        "distill": ["distill", "--model", str(trained), "--input", str(source),
                    "--output", str(output)],
        "average-checkpoints": ["average-checkpoints", "--inputs", str(trained / "last.pt"),
                                "--output", str(output)],
    }


@pytest.mark.parametrize("verb", ["generate", "distill", "average-checkpoints"])
@pytest.mark.parametrize("where", ["a folder", "under a file", "the input"])
def test_every_output_is_checked_before_anything_is_written(trained, tmp_path, capsys, verb,
                                                            where):
    source = tmp_path / "in.de"
    source.write_text("Ein Hund läuft.\nZwei Katzen.\n", encoding="utf-8")
    output = {"a folder": tmp_path, "under a file": source / "out", "the input": source}[where]
    if verb == "average-checkpoints" and where == "the input":
        output = trained / "last.pt"  # its input is a checkpoint
    before = source.read_bytes()
    assert main(_output_verbs(trained, source, output)[verb]) == 2
    line = _error_line(capsys)
    assert str(output) in line
    assert source.read_bytes() == before
    assert load_checkpoint(str(trained / "last.pt"))["trainer"]["step"] == 5


def test_missing_output_folders_are_created(trained, tmp_path):
    source = tmp_path / "in.de"
    source.write_text("Ein Hund.\n", encoding="utf-8")
    output = tmp_path / "new" / "folder" / "out.en"
    assert main(["generate", "--model", str(trained), "--input", str(source), "--output",
                 str(output)]) == 0
    assert len(output.read_text(encoding="utf-8").splitlines()) == 1


def test_a_failed_generate_leaves_the_old_output_as_it_was(trained, tmp_path, capsys):
    source = tmp_path / "in.de"
    source.write_bytes(b"Ein Hund.\n\xff kaputt\n")
    output = tmp_path / "out.en"
    output.write_text("previous output\n", encoding="utf-8")
    assert main(["generate", "--model", str(trained), "--input", str(source), "--output",
                 str(output)]) == 2
    assert "in.de:2: not valid UTF-8" in _error_line(capsys)
    assert output.read_text(encoding="utf-8") == "previous output\n"
    assert not list(tmp_path.glob(".tmp-*"))


# ---------------------------------------------------------------- flags and values
@pytest.mark.parametrize("argv,expected", [
    (["generate", "--model", "M", "--outptu", "x"], "--outptu; did you mean --output?"),
    (["evaluate", "--model", "M", "--beams", "3"], "--beams; did you mean --beam?"),
    (["serve", "--model", "M", "--prot", "80"], "--prot; did you mean --port?"),
    (["average-checkpoints", "--dir", "D", "--output", "o", "--lats", "2"], "--lats"),
])
def test_mistyped_flags_are_errors(argv, expected, capsys):
    with pytest.raises(SystemExit) as exit_:
        main(argv)
    assert exit_.value.code == 2
    assert expected in capsys.readouterr().err


def test_average_checkpoints_refuses_nothing_and_mixed_models(trained, tmp_path, capsys):
    assert main(["average-checkpoints", "--dir", str(trained), "--last", "0", "--output",
                 str(tmp_path / "a.pt")]) == 2
    assert "--last 0: must be at least 1" in _error_line(capsys)
    other = load_checkpoint(str(trained / "last.pt"))
    other["config"]["task"]["model"]["class"] = "GLAT"
    save_checkpoint(other, str(tmp_path / "glat.pt"))
    assert main(["average-checkpoints", "--inputs", str(trained / "last.pt"),
                 str(tmp_path / "glat.pt"), "--output", str(tmp_path / "a.pt")]) == 2
    assert "only checkpoints of one model can be averaged" in _error_line(capsys)
    assert not (tmp_path / "a.pt").exists()


CONFIG_MISTAKES = [
    ("task.model.class", "Transformr", "unknown model class 'Transformr'"),
    ("task.trainer.optimizer.lr", -1.0, "task.trainer.optimizer"),
    ("task.model.encoder.num_heads", 3, "task.model"),
    ("task.generator.search", {"class": "BeamSearch", "beam_size": 0},
     "beam_size must be between 1 and 256"),
    ("task.generator.search", {"class": "BeamSearch", "beam_size": 100000},
     "beam_size must be between 1 and 256"),
    ("task.dataloader.train.sampler.max_tokens", 0, "task.dataloader.train.sampler"),
    ("task.criterion.class", "GlancingCrossEntropy", "trains a GLAT"),
    ("task.generator", {"class": "NATGenerator"}, "NATGenerator needs a NAT model"),
    ("env.device", "tpu:7", "env.device"),
    ("env.device", "cuda", "no CUDA device"),
]


@pytest.mark.parametrize("key,value,expected", CONFIG_MISTAKES,
                         ids=[f"{k}={json.dumps(v)}" for k, v, _ in CONFIG_MISTAKES])
def test_components_that_do_not_fit_are_one_line(small_corpus, tmp_path, capsys, key, value,
                                                 expected):
    config = tiny_config(small_corpus["train"], small_corpus["valid"], small_corpus["spm"],
                         tmp_path / "run", max_steps=2)
    path = write_config(config, tmp_path / "c.yaml")
    override = f"{key}={json.dumps(value)}"
    assert main(["train", "--config", path, override]) == 2
    assert expected in _error_line(capsys)


def test_a_causal_glat_decoder_is_one_line(small_corpus, tmp_path, capsys):
    config = tiny_config(small_corpus["train"], small_corpus["valid"], small_corpus["spm"],
                         tmp_path / "run", max_steps=2)
    config["task"]["model"]["class"] = "GLAT"
    config["task"]["model"]["decoder"]["causal"] = True
    config["task"]["criterion"] = {"class": "GlancingCrossEntropy"}
    assert main(["train", "--config", write_config(config, tmp_path / "c.yaml")]) == 2
    assert "a NAT decoder must be non-causal" in _error_line(capsys)


def test_config_errors_come_before_missing_data(small_corpus, tmp_path, capsys):
    config = tiny_config({"de": "/no/such.de", "en": "/no/such.en"}, small_corpus["valid"],
                         small_corpus["spm"], tmp_path / "run")
    config["task"]["model"]["class"] = "Transformr"
    assert main(["train", "--config", write_config(config, tmp_path / "c.yaml")]) == 2
    assert "task.model.class: unknown model class 'Transformr'" in _error_line(capsys)


def test_a_plugin_class_that_refuses_runtime_arguments_is_explained(small_corpus, tmp_path,
                                                                   capsys):
    plugin = tmp_path / "narrow_loss.py"
    plugin.write_text(
        "from paragen.registry import register_criterion\n"
        "@register_criterion\n"
        "class NarrowLoss:\n"
        "    def __init__(self, weight: float = 1.0):\n"
        "        self.weight = weight\n")
    config = tiny_config(small_corpus["train"], small_corpus["valid"], small_corpus["spm"],
                         tmp_path / "run", max_steps=2)
    config["task"]["criterion"] = {"class": "NarrowLoss"}
    assert main(["train", "--config", write_config(config, tmp_path / "c.yaml"), "--lib",
                 str(plugin)]) == 2
    line = _error_line(capsys)
    assert "task.criterion: NarrowLoss cannot be built with the arguments paragen passes" in line
    assert "pad_id" in line


def test_a_plugin_that_exits_is_an_error_not_a_success(small_corpus, tmp_path, capsys):
    plugin = tmp_path / "quitter.py"
    plugin.write_text("import sys\nsys.exit(0)\n")
    config = tiny_config(small_corpus["train"], small_corpus["valid"], small_corpus["spm"],
                         tmp_path / "run", max_steps=2)
    assert main(["train", "--config", write_config(config, tmp_path / "c.yaml"), "--lib",
                 str(plugin)]) == 2
    assert "importing 'quitter' failed: SystemExit" in _error_line(capsys)


def test_a_yaml_alias_bomb_is_refused_at_once(tmp_path, capsys):
    levels = ['  l0: &l0 ["x","x","x","x","x","x","x","x","x","x"]']
    levels += [f"  l{i}: &l{i} [{','.join([f'*l{i - 1}'] * 10)}]" for i in range(1, 9)]
    path = tmp_path / "bomb.yaml"
    path.write_text("define:\n" + "\n".join(levels) + "\ntask: {class: TranslationTask, "
                    "src: de, tgt: en, x: '${l8}'}\n")
    assert main(["train", "--config", str(path)]) == 2
    assert "expands to more than 100,000 values" in _error_line(capsys)


# ---------------------------------------------------------------- binarized data
def test_binarized_data_must_match_the_tokenizer(small_corpus, tmp_path, capsys):
    from paragen.tokenizers import SentencePieceTokenizer

    other = SentencePieceTokenizer.learn([small_corpus["train"]["de"]], str(tmp_path / "other"),
                                         vocab_size=300)
    assert main(["binarize", "--tokenizer", other, "--input", small_corpus["train"]["de"],
                 small_corpus["train"]["en"], "--output-dir", str(tmp_path / "bin")]) == 0
    config = tiny_config(small_corpus["train"], small_corpus["valid"], small_corpus["spm"],
                         tmp_path / "run", max_steps=2)
    config["task"]["data"]["train"] = {"class": "BinarizedParallelDataset", "path": {
        lang: str(tmp_path / "bin" / f"train.{lang}") for lang in ("de", "en")}}
    assert main(["train", "--config", write_config(config, tmp_path / "c.yaml")]) == 2
    assert "binarized with tokenizer" in _error_line(capsys)


def test_binarize_refuses_inputs_that_would_overwrite_each_other(small_corpus, tmp_path, capsys):
    a, b = tmp_path / "a", tmp_path / "b"
    a.mkdir(), b.mkdir()
    shutil.copy(small_corpus["train"]["de"], a / "train.txt")
    shutil.copy(small_corpus["train"]["en"], b / "train.txt")
    assert main(["binarize", "--tokenizer", small_corpus["spm"], "--input", str(a / "train.txt"),
                 str(b / "train.txt"), "--output-dir", str(tmp_path / "bin")]) == 2
    assert "both would be written to" in _error_line(capsys)
    assert not (tmp_path / "bin").exists()


def test_a_corrupt_tokenizer_is_one_line(small_corpus, tmp_path, capsys):
    bad = tmp_path / "bad.model"
    bad.write_bytes(b"this is not a sentencepiece model")
    config = tiny_config(small_corpus["train"], small_corpus["valid"], str(bad), tmp_path / "run")
    assert main(["train", "--config", write_config(config, tmp_path / "c.yaml")]) == 2
    assert "not a SentencePiece model" in _error_line(capsys)


def test_a_vocabulary_that_does_not_match_the_checkpoint(trained, small_corpus, tmp_path,
                                                          capsys):
    from paragen.tokenizers import SentencePieceTokenizer

    folder = tmp_path / "model"
    shutil.copytree(trained, folder)
    SentencePieceTokenizer.learn([small_corpus["train"]["de"]], str(tmp_path / "small"),
                                 vocab_size=300)
    shutil.copy(tmp_path / "small.model", folder / "tokenizer.model")
    assert main(["generate", "--model", str(folder)]) == 2
    assert "checkpoint does not match the model" in _error_line(capsys)


def test_debug_shows_the_traceback(capsys):
    assert main(["generate", "--model", "/no/such/model", "--debug"]) == 2
    err = capsys.readouterr().err
    assert "Traceback" in err and err.strip().splitlines()[-1].startswith("error: ")


def test_torch_state_files_are_not_models(tmp_path, capsys):
    torch.save({"weights": torch.zeros(2)}, tmp_path / "state.pt")
    assert main(["generate", "--model", str(tmp_path / "state.pt")]) == 2
    assert "not a paragen checkpoint" in _error_line(capsys)


def _input_verbs(trained, bad, text, out):
    """Every verb with every file argument it reads pointed at `bad`, the rest valid."""
    return [
        ["train", "--config", bad],
        ["generate", "--model", bad],
        ["generate", "--model", str(trained), "--input", bad],
        ["evaluate", "--model", bad],
        ["evaluate", "--model", str(trained), "--input", bad, "--reference", text],
        ["evaluate", "--model", str(trained), "--input", text, "--reference", bad],
        ["distill", "--model", bad, "--input", text, "--output", out],
        ["distill", "--model", str(trained), "--input", bad, "--output", out],
        ["bench", "--model", bad, "--input", text, "--output", out],
        ["bench", "--model", str(trained), "--input", bad, "--output", out],
        ["export", "--model", bad, "--format", "onnx", "--output", out],
        ["average-checkpoints", "--inputs", bad, "--output", out],
        ["average-checkpoints", "--dir", bad, "--output", out],
        ["build-tokenizer", "--input", bad, "--output", out],
        ["binarize", "--tokenizer", bad, "--input", text, "--output-dir", out],
        ["binarize", "--tokenizer", str(trained / "tokenizer.model"), "--input", bad,
         "--output-dir", out],
        ["clean", "--src", bad, "--tgt", text, "--output-prefix", out],
        ["clean", "--src", text, "--tgt", bad, "--output-prefix", out],
    ]


@pytest.mark.parametrize("kind", ["missing", "a folder", "empty"])
def test_every_file_argument_that_is_not_a_readable_file_is_one_line(trained, tmp_path, capsys,
                                                                     kind):
    text = tmp_path / "text.de"
    text.write_text("Ein Hund läuft.\n", encoding="utf-8")
    bad = {"missing": tmp_path / "no-such-file", "a folder": tmp_path / "folder",
           "empty": tmp_path / "empty"}[kind]
    if kind == "a folder":
        bad.mkdir()
    elif kind == "empty":
        bad.write_bytes(b"")
    failures = []
    for argv in _input_verbs(trained, str(bad), str(text), str(tmp_path / "out" / "o")):
        code = main(argv)
        err = capsys.readouterr().err
        last = err.strip().splitlines()[-1] if err.strip() else ""
        if kind == "empty" and code == 0:
            continue  # an empty text file is valid input for some verbs (nothing to do)
        if code != 2 or "Traceback" in err or not last.startswith("error: "):
            failures.append((argv[0], argv[1:3], code, last[:160]))
    assert not failures, failures
