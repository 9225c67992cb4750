"""Hugging Face encoders and tokenizers (the `hf` extra): a tiny BERT and a tiny RoBERTa are
built here from SST-2 rows, fine-tuned through the classification task, and reloaded from the
model folder alone, with their original folders deleted."""
import json
import shutil
import sys
from pathlib import Path

import pytest
import torch
from conftest import REPO
from helpers import error_line, write_config

from paragen.checkpoint import load_checkpoint
from paragen.cli import main
from paragen.config import load_config
from paragen.errors import ConfigError, DataError
from paragen.registry import build
from paragen.tasks.build import build_task, load_trained_task

TINY = {"hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 2,
        "intermediate_size": 64, "max_position_embeddings": 64}


@pytest.fixture(scope="module")
def sst2_rows(data_dir, tmp_path_factory):
    """160 train / 40 dev rows of SST-2 (TSV with header) and their sentences."""
    root = tmp_path_factory.mktemp("sst2-hf")
    paths = {}
    for split, rows in (("train", 160), ("dev", 40)):
        lines = (data_dir / "sst2" / f"{split}.tsv").read_text(encoding="utf-8").splitlines()
        paths[split] = root / f"{split}.tsv"
        paths[split].write_text("\n".join(lines[:rows + 1]) + "\n", encoding="utf-8")
    sentences = [line.split("\t")[0] for line in paths["train"].read_text().splitlines()[1:]]
    return {"train": str(paths["train"]), "dev": str(paths["dev"]), "sentences": sentences}


@pytest.fixture(scope="module")
def bert_dir(sst2_rows, tmp_path_factory):
    """A randomly initialised 2-layer BERT (hidden 32) and a WordPiece tokenizer learnt from
    the train rows, saved with save_pretrained as a downloaded model would be."""
    transformers = pytest.importorskip("transformers")
    from tokenizers import BertWordPieceTokenizer

    root = tmp_path_factory.mktemp("bert")
    wordpiece = BertWordPieceTokenizer(lowercase=True)
    wordpiece.train_from_iterator(sst2_rows["sentences"], vocab_size=400, show_progress=False,
                                  special_tokens=["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"])
    vocab = wordpiece.save_model(str(root))[0]
    folder = root / "bert-tiny"
    tokenizer = transformers.BertTokenizer(vocab)
    tokenizer.save_pretrained(str(folder))
    torch.manual_seed(0)
    config = transformers.BertConfig(vocab_size=len(tokenizer), pad_token_id=0, **TINY)
    transformers.BertModel(config).save_pretrained(str(folder))
    return folder


@pytest.fixture(scope="module")
def roberta_dir(sst2_rows, tmp_path_factory):
    """A RoBERTa-style model (one token type, positions after pad_id) with a byte-level BPE
    tokenizer learnt from the train rows."""
    transformers = pytest.importorskip("transformers")
    from tokenizers import ByteLevelBPETokenizer

    root = tmp_path_factory.mktemp("roberta")
    bpe = ByteLevelBPETokenizer()
    bpe.train_from_iterator(sst2_rows["sentences"], vocab_size=400, show_progress=False,
                            special_tokens=["<s>", "<pad>", "</s>", "<unk>", "<mask>"])
    vocab, merges = bpe.save_model(str(root))
    folder = root / "roberta-tiny"
    tokenizer = transformers.RobertaTokenizer(vocab, merges)
    tokenizer.save_pretrained(str(folder))
    torch.manual_seed(0)
    config = transformers.RobertaConfig(vocab_size=len(tokenizer), pad_token_id=1,
                                        type_vocab_size=1, **{**TINY, "max_position_embeddings": 66})
    transformers.RobertaModel(config).save_pretrained(str(folder))
    return folder


def hf_config(sst2_rows, hf_folder, save_dir, **task):
    return {
        "task": {
            "class": "SequenceClassificationTask", "text": "sentence", "label": "label",
            "labels": [0, 1], "max_length": 48,
            "tokenizer": {"class": "HuggingFaceTokenizer", "model": str(hf_folder)},
            "data": {"train": {"class": "TsvDataset", "path": sst2_rows["train"]},
                     "valid": {"class": "TsvDataset", "path": sst2_rows["dev"]}},
            "dataloader": {"train": {"class": "DataLoader", "sampler": {
                "class": "BucketSampler", "max_tokens": 512, "max_sentences": 16}}},
            "model": {"class": "SequenceClassifier", "pooling": "cls", "pooler_dropout": 0.0,
                      "encoder": {"class": "HuggingFaceEncoder", "pretrained": str(hf_folder),
                                  "hf_config": {"hidden_dropout_prob": 0.0}}},
            "trainer": {"class": "Trainer", "optimizer": {"class": "AdamW", "lr": 1e-3},
                        "lr_scheduler": {"class": "Constant"}, "max_steps": 6,
                        "validate_interval": 0, "save_dir": str(save_dir), "log_interval": 3},
            **task,
        },
        "env": {"device": "cpu", "seed": 3, "threads": 1, "no_progress_bar": True},
    }


def _jsonl_predictions(capsys, model, inputs):
    capsys.readouterr()
    assert main(["generate", "--model", str(model), "--input", str(inputs),
                 "--format", "jsonl"]) == 0
    return [json.loads(line) for line in capsys.readouterr().out.splitlines()]


def test_encoder_runs_the_pretrained_network(bert_dir):
    """Same hidden states as the saved BertModel, padding masked out, segment ids reaching the
    model's own token-type embeddings; mismatches are one clear error each."""
    import transformers

    from paragen.encoders import HuggingFaceEncoder

    torch.set_num_threads(1)  # tiny matrices: more threads only wait on each other
    encoder = HuggingFaceEncoder(pretrained=str(bert_dir), vocab_size=100, pad_id=0).eval()
    reference = transformers.AutoModel.from_pretrained(str(bert_dir)).eval()
    assert (encoder.d_model, encoder.num_token_types, encoder.max_positions) == (32, 2, 64)
    assert not any(name.startswith("model.pooler") for name in encoder.state_dict())
    src = torch.tensor([[2, 10, 11, 12, 3], [2, 13, 3, 0, 0]])
    with torch.no_grad():
        hidden, padding = encoder(src)
        expected = reference(input_ids=src, attention_mask=src.ne(0).long()).last_hidden_state
        assert torch.equal(padding, src.eq(0))
        assert torch.allclose(hidden, expected, atol=1e-5)
        assert torch.allclose(encoder(src[1:, :3])[0], hidden[1:, :3], atol=1e-5)
        zeros = torch.zeros(*src.shape, 32)
        assert torch.allclose(encoder(src, added=zeros)[0], hidden, atol=1e-5)
        second = encoder(src, token_types=torch.tensor([[0, 0, 1, 1, 1], [0, 0, 0, 0, 0]]))[0]
        assert not torch.allclose(second[0], hidden[0]) and torch.allclose(second[1], hidden[1])
        with pytest.raises(DataError, match="an input of 65 tokens is longer than the 64 "):
            encoder(torch.full((1, 65), 5))

    def build_encoder(**keys):
        return build("encoder", {"class": "HuggingFaceEncoder", "pretrained": str(bert_dir),
                                 **keys}, "task.model.encoder", vocab_size=100, pad_id=0)

    with pytest.raises(ConfigError, match=r"^task.model.encoder \(HuggingFaceEncoder\): d_model "
                                          r"512 differs from the hidden size 32"):
        build_encoder(d_model=512)
    with pytest.raises(ConfigError, match="hf_config.hiden_dropout_prob: not a setting of "
                                          "BertConfig"):
        build_encoder(hf_config={"hiden_dropout_prob": 0.2})
    with pytest.raises(ConfigError, match="the tokenizer pads with id 1, the model with 0"):
        build("encoder", {"class": "HuggingFaceEncoder", "pretrained": str(bert_dir)},
              "task.model.encoder", vocab_size=100, pad_id=1)
    with pytest.raises(ConfigError, match="the tokenizer has 9999 ids but the model embeds"):
        build("encoder", {"class": "HuggingFaceEncoder", "pretrained": str(bert_dir)},
              "task.model.encoder", vocab_size=9999, pad_id=0)
    with pytest.raises(DataError, match="no such folder; HuggingFaceEncoder needs a local"):
        build_encoder(pretrained=str(bert_dir / "missing"))
    with pytest.raises(ConfigError, match="give `pretrained`"):
        build("encoder", {"class": "HuggingFaceEncoder"}, "task.model.encoder", vocab_size=100,
              pad_id=0)
    scratch = build("encoder", {"class": "HuggingFaceEncoder", "hf_config": {
        "model_type": "bert", "vocab_size": 100, **TINY}}, "e", vocab_size=100, pad_id=0)
    assert scratch.d_model == 32 and scratch.state_dict().keys() == encoder.state_dict().keys()


def test_pairs_get_the_models_native_input(bert_dir, sst2_rows):
    """`[bos] a [eos] b [eos]` with segment ids is exactly what the BERT tokenizer gives for
    a pair (ids and token types), and the segments go to BERT's token-type embeddings."""
    import transformers

    config = hf_config(sst2_rows, bert_dir, "unused", mode="infer",
                       text=["first", "second"], pair_encoding="segments")
    task = build_task(config)
    tokenizer = task.tokenizer
    native = transformers.AutoTokenizer.from_pretrained(str(bert_dir))
    assert (tokenizer.bos_id, tokenizer.eos_id) == (native.cls_token_id, native.sep_token_id)
    assert (tokenizer.pad_id, tokenizer.unk_id, tokenizer.vocab_size) == (0, 1, len(native))
    short = [text for text in sst2_rows["sentences"] if len(text.split()) <= 8]  # no cutting
    first, second = short[:4], short[4:8]
    batch = task.collate(list(range(4)), task.encode([first, second]))
    expected = native(first, second, padding=True, return_tensors="pt")
    assert torch.equal(batch["src"], expected["input_ids"])
    assert torch.equal(batch["segments"], expected["token_type_ids"])
    assert tokenizer.decode_batch(tokenizer.encode_batch(["a good film"])) == ["a good film"]
    assert task.model.segments_as_token_types and task.model.segments is None
    assert task.model.head[1].in_features == 32  # d_model: auto took BERT's width


def test_bert_fine_tunes_and_reloads_without_its_folder(bert_dir, sst2_rows, tmp_path, capsys):
    """The model folder alone reproduces the trained model's predictions: tokenizer files are
    copied, the architecture is stored in the config, the weights come from the checkpoint."""
    folder = tmp_path / "bert"
    shutil.copytree(bert_dir, folder)
    save_dir = tmp_path / "run"
    task = build_task(hf_config(sst2_rows, folder, save_dir))
    before = task.model.encoder.model.embeddings.word_embeddings.weight.detach().clone()
    saved = transformers_weights(folder)["embeddings.word_embeddings.weight"]
    assert torch.equal(before, saved)  # training starts from the pretrained weights
    task.run()
    lines = sst2_rows["sentences"][:12]
    expected = task.predict(lines)

    stored = load_checkpoint(str(save_dir / "last.pt"))["config"]["task"]
    encoder = stored["model"]["encoder"]
    assert "pretrained" not in encoder and "_name_or_path" not in encoder["hf_config"]
    assert encoder["hf_config"]["hidden_size"] == 32
    assert encoder["hf_config"]["hidden_dropout_prob"] == 0.0  # the change is kept
    assert stored["tokenizer"]["model"] == "tokenizer"
    copied = {path.name for path in (save_dir / "tokenizer").iterdir()}
    assert "tokenizer_config.json" in copied and not any(
        name.endswith((".safetensors", ".bin")) for name in copied)

    shutil.rmtree(folder)
    inputs = tmp_path / "in.txt"
    inputs.write_text("\n".join(lines) + "\n", encoding="utf-8")
    rows = _jsonl_predictions(capsys, save_dir / "last.pt", inputs)
    assert [row["label"] for row in rows] == [row["label"] for row in expected]
    for row, reference in zip(rows, expected):
        assert row["probabilities"] == pytest.approx(reference["probabilities"], abs=1e-5)
    capsys.readouterr()
    assert main(["evaluate", "--model", str(save_dir)]) == 0
    assert "valid accuracy = " in capsys.readouterr().out


def transformers_weights(folder):
    import transformers

    return transformers.AutoModel.from_pretrained(str(folder)).state_dict()


def test_roberta_pairs_train_through_the_cli(roberta_dir, sst2_rows, tmp_path, capsys):
    """One token type only: pair segments fall back to the classifier's own segment vectors.
    Trained by `paragen train`, then decoded twice from the folder alone, identically."""
    folder = tmp_path / "roberta"
    shutil.copytree(roberta_dir, folder)
    header, *rows = open(sst2_rows["train"]).read().splitlines()
    pairs = [f"{row.split(chr(9))[0]}\t{rows[i - 1].split(chr(9))[0]}\t{row.split(chr(9))[1]}"
             for i, row in enumerate(rows)]
    path, valid = tmp_path / "pairs.tsv", tmp_path / "valid.tsv"
    path.write_text("first\tsecond\tlabel\n" + "\n".join(pairs) + "\n", encoding="utf-8")
    valid.write_text("first\tsecond\tlabel\n" + "\n".join(pairs[:20]) + "\n", encoding="utf-8")
    config = hf_config(sst2_rows, folder, tmp_path / "run", text=["first", "second"],
                       pair_encoding="segments")
    config["task"]["data"] = {"train": {"class": "TsvDataset", "path": str(path)},
                              "valid": {"class": "TsvDataset", "path": str(valid)}}
    assert main(["train", "--config", write_config(config, tmp_path / "c.yaml")]) == 0
    weights = load_checkpoint(str(tmp_path / "run" / "last.pt"))["model"]
    assert "segments.weight" in weights
    assert not any(".token_type_embeddings." in name and weights[name].size(0) > 1
                   for name in weights)

    shutil.rmtree(folder)
    inputs = tmp_path / "in.txt"
    inputs.write_text("a good film\tdull\nterrible\tgreat fun\nfine\tfine\n", encoding="utf-8")
    first = _jsonl_predictions(capsys, tmp_path / "run", inputs)
    assert len(first) == 3 and first == _jsonl_predictions(capsys, tmp_path / "run", inputs)
    task = load_trained_task(str(tmp_path / "run"), "infer")
    native = task.tokenizer._tokenizer("a good film")["input_ids"]
    assert [task.tokenizer.bos_id, *task.tokenizer.encode("a good film"),
            task.tokenizer.eos_id] == native  # <s> a good film </s>, RoBERTa's own format


def test_recipe_needs_only_the_local_folder(bert_dir, sst2_rows, tmp_path):
    """examples/sst2/classifier_hf.yaml builds around `define.hf_model`; the folder it will
    train into already holds the tokenizer files and the encoder's architecture."""
    data = str(Path(sst2_rows["train"]).parent)
    config = load_config(str(REPO / "examples" / "sst2" / "classifier_hf.yaml"), [
        f"define.hf_model={bert_dir}", f"define.data={data}", "env.device=cpu",
        f"task.trainer.save_dir={tmp_path / 'run'}"])
    task = build_task(config)
    assert task.model.head[1].in_features == 32 and task.tokenizer.bos_id == 2
    encoder = task.config["task"]["model"]["encoder"]
    assert "pretrained" not in encoder and encoder["hf_config"]["model_type"] == "bert"
    assert encoder["hf_config"]["attention_probs_dropout_prob"] == 0.1
    assert (tmp_path / "run" / "tokenizer" / "tokenizer_config.json").is_file()


def test_missing_transformers_is_one_config_error(sst2_rows, tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "transformers", None)  # as if not installed
    config = hf_config(sst2_rows, tmp_path / "bert", tmp_path / "run")
    assert main(["train", "--config", write_config(config, tmp_path / "c.yaml")]) == 2
    line = error_line(capsys)
    assert line.startswith("error: HuggingFaceTokenizer needs the hf extra (")
    assert line.endswith("): pip install 'paragen[hf]'")
    with pytest.raises(ConfigError, match=r"^HuggingFaceEncoder needs the hf extra .*"
                                          r"pip install 'paragen\[hf\]'$"):
        build("encoder", {"class": "HuggingFaceEncoder", "pretrained": "x"},
              "task.model.encoder", vocab_size=10, pad_id=0)
