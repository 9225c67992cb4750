"""Hugging Face encoder-decoders (the `hf` extra): a tiny BART and a tiny T5 with a word-level
tokenizer learnt from Multi30k are saved as downloaded models are, trained by `paragen
train`, decoded by paragen's greedy and beam searches token for token as `model.generate`
decodes them, and reloaded from the model folder alone."""
import json
import shutil

import pytest
import torch
from conftest import REPO
from helpers import write_config, write_slice

from paragen.cli import main
from paragen.config import load_config
from paragen.errors import ConfigError
from paragen.registry import build
from paragen.tasks.build import build_task, load_trained_task

# decoder start token, and the special tokens in id order (T5 and BART number them so)
KINDS = {"bart": ("</s>", ["<s>", "<pad>", "</s>", "<unk>"]),
         "t5": ("<pad>", ["<pad>", "</s>", "<unk>"])}
MAX_TOKENS = 30  # the searches' output limit (eos excluded)


@pytest.fixture(scope="module")
def multi30k(data_dir, tmp_path_factory):
    root = tmp_path_factory.mktemp("multi30k-hf")
    return {"train": write_slice(data_dir, root, 32, "train"),
            "valid": write_slice(data_dir, root, 16, "valid"), "root": root}


def save_tiny_model(kind, lines, folder):
    """A randomly initialised 2+2-layer model (width 32) and a word-level tokenizer learnt
    from `lines`, written by save_pretrained into `folder`."""
    transformers = pytest.importorskip("transformers")
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    specials = KINDS[kind][1]
    words = Tokenizer(models.WordLevel(unk_token="<unk>"))
    words.pre_tokenizer, words.decoder = pre_tokenizers.Whitespace(), decoders.WordPiece()
    words.train_from_iterator(lines, trainers.WordLevelTrainer(
        vocab_size=1000, special_tokens=specials, show_progress=False))
    tokenizer = transformers.PreTrainedTokenizerFast(
        tokenizer_object=words, eos_token="</s>", pad_token="<pad>", unk_token="<unk>",
        **({"bos_token": "<s>"} if "<s>" in specials else {}))
    tokenizer.save_pretrained(str(folder))
    ids = {name: tokenizer.convert_tokens_to_ids(name) for name in specials}
    torch.manual_seed(0)
    if kind == "bart":
        config = transformers.BartConfig(
            vocab_size=len(tokenizer), d_model=32, encoder_layers=2, decoder_layers=2,
            encoder_attention_heads=2, decoder_attention_heads=2, encoder_ffn_dim=64,
            decoder_ffn_dim=64, max_position_embeddings=64, pad_token_id=ids["<pad>"],
            bos_token_id=ids["<s>"], eos_token_id=ids["</s>"], decoder_start_token_id=ids["</s>"])
        network = transformers.BartForConditionalGeneration(config)
    else:
        config = transformers.T5Config(
            vocab_size=len(tokenizer), d_model=32, d_kv=16, d_ff=64, num_layers=2,
            num_decoder_layers=2, num_heads=2, pad_token_id=ids["<pad>"],
            eos_token_id=ids["</s>"], decoder_start_token_id=ids["<pad>"])
        network = transformers.T5ForConditionalGeneration(config)
    network.save_pretrained(str(folder))
    return folder


def translation_config(multi30k, kind, hf_folder, save_dir, **task):
    bos = KINDS[kind][0]
    return {
        "task": {
            "class": "TranslationTask", "src": "de", "tgt": "en", "max_length": 60,
            "tokenizer": {"class": "HuggingFaceTokenizer", "model": str(hf_folder), "bos": bos},
            "data": {"train": {"class": "ParallelTextDataset", "path": multi30k["train"]},
                     "valid": {"class": "ParallelTextDataset", "path": multi30k["valid"]}},
            "dataloader": {"train": {"class": "DataLoader", "sampler": {
                "class": "BucketSampler", "max_tokens": 4000}}},  # one batch
            "model": {"class": "HuggingFaceSeq2Seq", "pretrained": str(hf_folder),
                      "hf_config": {"dropout": 0.0} if kind == "bart" else {"dropout_rate": 0.0}},
            "criterion": {"class": "LabelSmoothedCrossEntropy", "epsilon": 0.0},
            "trainer": {"class": "Trainer", "optimizer": {"class": "AdamW", "lr": 1e-2},
                        "lr_scheduler": {"class": "Constant"}, "max_steps": 40,
                        "validate_interval": 0, "save_dir": str(save_dir), "log_interval": 10},
            "generator": {"class": "SequenceGenerator", "search": {
                "class": "GreedySearch", "max_length_a": 0, "max_length_b": MAX_TOKENS}},
            **task,
        },
        "env": {"device": "cpu", "seed": 1, "threads": 1, "no_progress_bar": True},
    }


@pytest.fixture(scope="module")
def runs(multi30k, tmp_path_factory):
    """Per kind: the pretrained folder it started from and the model folder `paragen train`
    wrote after 40 updates on 32 pairs: it has learnt those, so their translations end with
    eos at varied lengths, before the length limit."""
    root = tmp_path_factory.mktemp("hf-runs")
    lines = [line for side in multi30k["train"].values() for line in open(side)]
    trained = {}
    for kind in KINDS:
        folder = save_tiny_model(kind, lines, root / f"{kind}-tiny")
        config = translation_config(multi30k, kind, folder, root / f"{kind}-run")
        assert main(["train", "--config", write_config(config, root / f"{kind}.yaml")]) == 0
        trained[kind] = {"pretrained": folder, "run": root / f"{kind}-run"}
    return trained


def _batch(task, lines):
    return task.collate(list(range(len(lines))), task.encode(lines))["src"]


def _strip(rows, *special):
    return [[token for token in row if token not in special] for row in rows.tolist()]


@pytest.mark.parametrize("kind", KINDS)
def test_greedy_search_equals_generate(runs, multi30k, kind):
    """Our greedy search over the model's cache gives `generate`'s tokens, also where the
    length limit (12 here) forces eos: HF forces it at max_new_tokens (`forced_eos_token_id`)."""
    torch.set_num_threads(1)
    task = load_trained_task(str(runs[kind]["run"]), "infer")
    lines = (open(multi30k["valid"]["de"]).read().splitlines()[:8]
             + open(multi30k["train"]["de"]).read().splitlines()[:8])
    src = _batch(task, lines)
    special = task.generator.special
    assert special["bos_id"] == task.model.model.config.decoder_start_token_id
    search = build("search", {"class": "GreedySearch", "max_length_a": 0, "max_length_b": 12},
                   "search")
    with torch.no_grad():
        memory, padding = task.model.encoder(src)
        ours, _ = search(task.model.decoder, memory, padding, **special)
        theirs = task.model.model.generate(
            input_ids=src, attention_mask=src.ne(special["pad_id"]).long(), num_beams=1,
            do_sample=False, max_new_tokens=13, forced_eos_token_id=special["eos_id"],
            suppress_tokens=[special["pad_id"]])
    assert theirs[:, 0].eq(special["bos_id"]).all()
    expected = _strip(theirs[:, 1:], special["eos_id"], special["pad_id"])
    assert _strip(ours, special["pad_id"]) == expected
    lengths = {len(row) for row in expected}
    assert 12 in lengths and len(lengths) > 3, lengths  # eos forced, and predicted


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("lenpen", [1.0, 0.5])
def test_beam_search_equals_generate(runs, multi30k, kind, lenpen):
    """Beam 4: the same hypotheses and scores as `generate(num_beams=4)` with the same length
    penalty and `early_stopping=True`, our (fairseq's) rule: a sentence is done once it
    holds 4 finished hypotheses. Every hypothesis here ends before the length limit, where
    the two differ: HF scores a forced eos 0, we score it with the model's log-prob."""
    torch.set_num_threads(1)
    task = load_trained_task(str(runs[kind]["run"]), "infer")
    lines = open(multi30k["train"]["de"]).read().splitlines()[:12]
    src = _batch(task, lines)
    special = task.generator.special
    search = build("search", {"class": "BeamSearch", "beam_size": 4, "lenpen": lenpen,
                              "max_length_a": 0, "max_length_b": MAX_TOKENS}, "search")
    with torch.no_grad():
        memory, padding = task.model.encoder(src)
        ours, scores = search(task.model.decoder, memory, padding, **special)
        theirs = task.model.model.generate(
            input_ids=src, attention_mask=src.ne(special["pad_id"]).long(), num_beams=4,
            do_sample=False, max_new_tokens=MAX_TOKENS + 1, length_penalty=lenpen,
            early_stopping=True, suppress_tokens=[special["pad_id"]],
            output_scores=True, return_dict_in_generate=True)
    expected = _strip(theirs.sequences[:, 1:], special["eos_id"], special["pad_id"])
    assert _strip(ours, special["pad_id"]) == expected
    assert max(len(row) for row in expected) < MAX_TOKENS
    assert torch.allclose(scores, theirs.sequences_scores, atol=1e-5)


def test_trained_folder_needs_no_pretrained_folder(runs, multi30k, tmp_path, capsys):
    """`generate` from the model folder gives the same translations once the pretrained
    folder is gone: the tokenizer (with its `bos`) and the architecture are stored there."""
    run = runs["bart"]["run"]
    stored = load_trained_task(str(run), "infer").config["task"]
    assert "pretrained" not in stored["model"]
    assert stored["model"]["hf_config"]["model_type"] == "bart"
    assert stored["tokenizer"] == {"class": "HuggingFaceTokenizer", "model": "tokenizer",
                                   "bos": "</s>"}
    inputs = tmp_path / "in.de"
    inputs.write_text("".join(open(multi30k["valid"]["de"]).readlines()[:6]), encoding="utf-8")

    def translations():
        capsys.readouterr()
        assert main(["generate", "--model", str(run), "--input", str(inputs),
                     "--format", "jsonl"]) == 0
        return [json.loads(line)["translation"] for line in capsys.readouterr().out.splitlines()]

    before = translations()
    assert len(before) == 6 and any(before)
    shutil.rmtree(runs["bart"]["pretrained"])  # no test reads it after training
    assert translations() == before
    assert main(["evaluate", "--model", str(run)]) == 0
    assert "valid bleu = " in capsys.readouterr().out


def test_mismatched_settings_are_one_config_error(runs, multi30k, tmp_path):
    """A target bos other than the decoder start token, a `bos` the vocabulary lacks and an
    encoder-only architecture are refused at build time, naming what to change."""
    config = translation_config(multi30k, "t5", runs["t5"]["pretrained"], tmp_path / "run",
                                mode="infer")
    config["task"]["tokenizer"]["bos"] = "</s>"
    with pytest.raises(ConfigError, match=r"^task.tokenizer: the target side's bos is id 1, "
                                          r"but HuggingFaceSeq2Seq was trained with id 0; set "):
        build_task(config)
    config["task"]["tokenizer"]["bos"] = "<s>"
    with pytest.raises(ConfigError, match=r"^task.tokenizer \(HuggingFaceTokenizer\): bos: "
                                          r"'<s>' is not a token of the tokenizer in "):
        build_task(config)
    config["task"]["tokenizer"]["bos"] = "<pad>"
    config["task"]["model"] = {"class": "HuggingFaceSeq2Seq", "hf_config": {
        "model_type": "bert", "vocab_size": 1000, "hidden_size": 32, "num_hidden_layers": 1,
        "num_attention_heads": 2, "intermediate_size": 64}}
    with pytest.raises(ConfigError, match=r"a bert model is not an encoder-decoder"):
        build_task(config)


def test_rows_of_a_tuple_cache_are_selected():
    """transformers versions before the Cache classes return one tuple per layer: dropping
    finished sentences selects every tensor's rows, beam reordering the self-attention's."""
    from paragen.models.huggingface import HuggingFaceStepDecoder, PastKeyValues

    layer = tuple(torch.arange(3.0).view(3, 1) + 10 * i for i in range(4))
    cache = [{"past": PastKeyValues((layer,))}]
    HuggingFaceStepDecoder.reorder_cache(cache, torch.tensor([2, 2, 0]))
    reordered = cache[0]["past"].past[0]
    assert [t.view(-1).tolist() for t in reordered] == [[2, 2, 0], [12, 12, 10],
                                                       [20, 21, 22], [30, 31, 32]]
    kept = cache[0]["past"].index_select(0, torch.tensor([1])).past[0]
    assert [t.view(-1).tolist() for t in kept] == [[2], [12], [21], [31]]


def test_recipe_needs_only_the_local_folder(multi30k, tmp_path):
    """examples/multi30k/bart_hf.yaml builds around `define.hf_model`; the folder it will
    train into already holds the tokenizer files and the architecture."""
    lines = open(multi30k["train"]["en"]).readlines()
    folder = save_tiny_model("bart", lines, tmp_path / "bart")
    config = load_config(str(REPO / "examples" / "multi30k" / "bart_hf.yaml"), [
        f"define.hf_model={folder}", f"define.data={multi30k['root']}", "env.device=cpu",
        "env.threads=1", f"task.trainer.save_dir={tmp_path / 'run'}"])
    task = build_task(config)
    assert task.generator.special["bos_id"] == task.tgt_tokenizer.bos_id == 2  # </s>
    model = task.config["task"]["model"]
    assert "pretrained" not in model and model["hf_config"]["model_type"] == "bart"
    assert model["hf_config"]["dropout"] == 0.1
    assert (tmp_path / "run" / "tokenizer" / "tokenizer_config.json").is_file()
