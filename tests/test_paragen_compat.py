"""ParaGen users' configs and plug-ins: a config written as ParaGen's docs show it loads and
trains, each ParaGen spelling announced with ours; plug-ins import the register functions
from ParaGen's places, override the trainer's `_forward_loss`, and add module kinds."""
import logging
import textwrap

import pytest

from paragen.compat import from_paragen
from paragen.config import load_config
from paragen.errors import ConfigError

# examples/translation/iwslt14.de-en/configs/train.yaml of ParaGen, with a SentencePiece model
# (its FastBPE files are not read here) and a model small enough for a test
PARAGEN_IWSLT = textwrap.dedent("""\
    task:
      class: TranslationTask
      mode: train
      src: de
      tgt: en
      maxlen: 256
      index_only: True
      tokenizer:
        class: SentencePieceTokenizer
        spm_path: {spm}
        add_bos: True
        add_eos: True
      dataloader:
        train:
          class: InMemoryDataLoader
          sampler: {{class: ShuffleSampler, max_tokens: 600}}
        valid:
          class: InMemoryDataLoader
          sampler: {{class: SequentialSampler, max_samples: 128}}
      data:
        train:
          class: ParallelTextDataset
          sort_samples: True
          path: {{de: {train_de}, en: {train_en}}}
        valid:
          class: ParallelTextDataset
          path: {{de: {valid_de}, en: {valid_en}}}
      model:
        class: Seq2Seq
        d_model: 32
        share_embedding: decoder-input-output
        encoder: {{class: TransformerEncoder, num_layers: 1, d_model: 32, n_head: 2,
                  dim_feedforward: 64, dropout: 0.1, activation: relu}}
        decoder: {{class: TransformerDecoder, num_layers: 1, d_model: 32, n_head: 2,
                  dim_feedforward: 64, dropout: 0.1, activation: relu}}
      criterion:
        class: LabelSmoothedCrossEntropy
        epsilon: 0.1
      trainer:
        class: Trainer
        optimizer:
          class: AdamW
          lr:
            class: InverseSquareRootRateScheduler
            warmup_steps: 4000
            rate: 5e-4
          clip_norm: 0.
          weight_decay: 1e-4
          betas: (0.9, 0.98)
        max_steps: 3
        validate_interval_step: 3
        assess_by: valid.bleu
        save_model_dir: {save}
        save_last_k: 2
        early_stopping_tolerance: 4
      generator:
        class: SequenceGenerator
        search:
          class: BeamSearch
          maxlen_coef: (1.2, 10)
          beam: 2
          lenpen: 0.6
      evaluator:
        class: Evaluator
        metric:
          bleu:
            class: BLEU
    env:
      device: cpu
      fp16: False
      no_progress_bar: True
""")


def write_paragen_config(template, small_corpus, tmp_path):
    train, valid = small_corpus["train"], small_corpus["valid"]
    path = tmp_path / "train.yaml"
    path.write_text(template.format(
        spm=small_corpus["spm"], train_de=train["de"], train_en=train["en"],
        valid_de=valid["de"], valid_en=valid["en"], save=tmp_path / "checkpoints"))
    return str(path)


def write_iwslt(small_corpus, tmp_path):
    return write_paragen_config(PARAGEN_IWSLT, small_corpus, tmp_path)


def test_paragen_iwslt_config_reads_as_ours(small_corpus, tmp_path, caplog):
    with caplog.at_level(logging.WARNING, logger="paragen"):
        config = load_config(write_iwslt(small_corpus, tmp_path))
    task = config["task"]
    assert task["tokenizer"] == {"class": "SentencePieceTokenizer", "model": small_corpus["spm"]}
    assert task["dataloader"]["train"]["class"] == "DataLoader"
    assert task["dataloader"]["train"]["sampler"]["class"] == "BucketSampler"
    assert task["dataloader"]["valid"]["sampler"] == {"class": "SequentialSampler",
                                                      "max_sentences": 128}
    assert "sort_samples" not in task["data"]["train"] and "index_only" not in task
    assert task["model"]["share_embedding"] == "decoder"
    assert task["model"]["encoder"]["num_heads"] == 2 and task["model"]["encoder"]["ffn_dim"] == 64
    trainer = task["trainer"]
    assert trainer["optimizer"] == {"class": "AdamW", "lr": "5e-4", "weight_decay": "1e-4",
                                    "betas": [0.9, 0.98]}
    assert trainer["lr_scheduler"] == {"class": "InverseSquareRoot", "warmup_steps": 4000}
    assert trainer["clip_norm"] == 0.0 and trainer["validate_interval"] == 3
    assert trainer["save_dir"] == str(tmp_path / "checkpoints")
    assert trainer["keep_last"] == 2 and trainer["early_stopping_patience"] == 4
    search = task["generator"]["search"]
    assert search == {"class": "BeamSearch", "beam_size": 2, "lenpen": 0.6,
                      "max_length_a": 1.2, "max_length_b": 10}
    assert config["env"] == {"device": "cpu", "no_progress_bar": True, "precision": "fp32"}
    notices = [r.getMessage() for r in caplog.records]
    assert "task.model.encoder.n_head: now 'num_heads' (ParaGen spelling, read as paragen's)" \
        in notices
    assert any(n.startswith("task.trainer.optimizer.lr: a scheduler here is "
                            "task.trainer.lr_scheduler") for n in notices)


def test_paragen_iwslt_config_trains_with_paragen_run(small_corpus, tmp_path, capsys):
    from paragen.cli import run_main

    assert run_main(["--config", write_iwslt(small_corpus, tmp_path),
                     "--task.trainer.max_steps", "2"]) == 0
    assert (tmp_path / "checkpoints" / "last.pt").is_file()
    assert '"step": 2' in capsys.readouterr().out


# examples/glat/configs/train.yaml of ParaGen (its `--lib glat` classes), shrunk, with one
# SentencePiece model per language instead of its FastBPE dictionaries
PARAGEN_GLAT = textwrap.dedent("""\
    task:
      class: GLATTranslationTask
      mode: train
      src: de
      tgt: en
      maxlen: 256
      index_only: True
      share_vocab: False
      post_detok: False
      tokenizer:
        de: {{class: SentencePieceTokenizer, spm_path: {spm}}}
        en: {{class: SentencePieceTokenizer, spm_path: {spm}, add_bos: True, add_eos: True}}
      dataloader:
        train: {{class: InMemoryDataLoader, sampler: {{class: BucketSampler, max_tokens: 600}}}}
        valid: {{class: InMemoryDataLoader, sampler: {{class: SequentialSampler, max_samples: 128}}}}
      data:
        train: {{class: ParallelTextDataset, path: {{de: {train_de}, en: {train_en}}}}}
        valid: {{class: ParallelTextDataset, sort_samples: True,
                path: {{de: {valid_de}, en: {valid_en}}}}}
      model:
        class: GLATModel
        encoder: {{class: TransformerEncoder, num_layers: 1, d_model: 32, n_head: 2,
                  dim_feedforward: 64, dropout: 0.1, attention_dropout: 0.1, activation: 'gelu',
                  return_seed: True, learn_pos: True, embed_scale: False, embed_layer_norm: True}}
        decoder: {{class: NonAutoTransformerDecoder, num_layers: 1, d_model: 32, n_head: 2,
                  dim_feedforward: 64, dropout: 0.1, attention_dropout: 0.1, activation: 'gelu',
                  learn_pos: True, embed_layer_norm: True}}
        d_model: 32
        max_output_length: 256
        share_embedding: decoder-input-output
        decoder_input: unk
      criterion:
        class: MultiTaskCriterion
        criterions:
          token: {{class: LabelSmoothedCrossEntropy, epsilon: 0.1}}
          length: {{class: CrossEntropy, weight: 0.05}}
      trainer:
        class: GLATTrainer
        optimizer:
          class: AdamW
          lr: {{class: InverseSquareRootRateScheduler, rate: 5e-4, warmup_steps: 4000}}
          clip_norm: 0.
          weight_decay: 1e-2
          betas: (0.9, 0.999)
          eps: 1e-6
        max_epochs: 200
        max_steps: 2
        validate_interval_epoch: 1
        assess_by: valid.bleu
        save_model_dir: {save}
      generator:
        class: GLATGenerator
        search: {{class: GLATLengthSearcher, beam: 3}}
      evaluator:
        class: Evaluator
        metric:
          bleu: {{class: BLEU, no_tok: True}}
    env:
      device: cpu
      fp16: False
      no_progress_bar: True
      no_warning: True
""")


def test_paragen_glat_config_trains_as_our_glat(small_corpus, tmp_path):
    from paragen.cli import run_main

    path = write_paragen_config(PARAGEN_GLAT, small_corpus, tmp_path)
    config = load_config(path)
    task = config["task"]
    assert task["model"]["class"] == "GLAT" and task["model"]["length_prediction"] == "absolute"
    assert task["model"]["decoder"]["class"] == "TransformerDecoder"
    assert task["criterion"] == {"class": "GlancingCrossEntropy", "epsilon": 0.1,
                                 "length_loss_weight": 0.05}
    assert task["generator"] == {"class": "NATGenerator", "length_beam": 3}
    assert task["evaluator"]["metric"]["bleu"] == {"class": "BLEU", "tokenize": "none"}
    assert task["trainer"]["class"] == "Trainer"
    assert run_main(["--config", path]) == 0
    assert (tmp_path / "checkpoints" / "best.pt").is_file()


def test_our_own_configs_pass_untouched(caplog):
    ours = {"task": {"class": "TranslationTask",
                     "data": {"train": {"class": "TextDataset", "path": "x", "max_samples": 5}},
                     "dataloader": {"train": {"class": "DataLoader",
                                              "sampler": {"class": "BucketSampler",
                                                          "max_sentences": 8}}},
                     "trainer": {"class": "Trainer", "optimizer": {"class": "AdamW", "lr": 1e-3},
                                 "lr_scheduler": {"class": "InverseSquareRoot"}}},
            "env": {"precision": "bf16"}}
    import copy

    expected = copy.deepcopy(ours)
    with caplog.at_level(logging.WARNING, logger="paragen"):
        assert from_paragen(ours) == expected
    assert not caplog.records


def test_noam_and_polynomial_schedules_and_dlcl_encoder():
    config = from_paragen({"task": {
        "trainer": {"optimizer": {"class": "Adam", "lr": {"class": "NoamScheduler",
                                                           "d_model": 256,
                                                           "warmup_steps": 400}}},
        "model": {"class": "Seq2Seq", "encoder": {"class": "DLCLTransformerEncoder"}}}})
    trainer = config["task"]["trainer"]
    assert trainer["lr_scheduler"] == {"class": "InverseSquareRoot", "warmup_steps": 400}
    assert trainer["optimizer"]["lr"] == pytest.approx(256 ** -0.5 * 400 ** -0.5)
    assert config["task"]["model"]["encoder"] == {"class": "TransformerEncoder", "dlcl": True}
    config = from_paragen({"task": {"trainer": {"optimizer": {
        "class": "AdamW", "update_frequency": 4,
        "lr": {"class": "PolynomialDecayScheduler", "max_rate": 1e-3, "total_steps": 100,
               "end_rate": 1e-5}}}}})
    trainer = config["task"]["trainer"]
    assert trainer["optimizer"] == {"class": "AdamW", "lr": 1e-3}
    assert trainer["lr_scheduler"] == {"class": "Polynomial", "total_steps": 100,
                                       "end_lr": 1e-5}
    assert trainer["update_freq"] == 4


def test_fastbpe_and_bad_maxlen_coef_are_clear_errors():
    with pytest.raises(ConfigError, match="task.tokenizer.class: ParaGen's FastBPE"):
        from_paragen({"task": {"tokenizer": {"class": "FastBPE", "vocab": "v"}}})
    with pytest.raises(ConfigError, match="task.tokenizer.de.class: ParaGen's FastBPE"):
        from_paragen({"task": {"tokenizer": {"de": {"class": "FastBPE", "vocab": "v"}}}})
    with pytest.raises(ConfigError, match=r"task.generator.search.maxlen_coef: expected \(a, b\)"):
        from_paragen({"task": {"generator": {"class": "SequenceGenerator", "search": {
            "class": "BeamSearch", "maxlen_coef": "(1.2)"}}}})


def test_plugin_imports_a_forward_loss_hook_and_a_new_kind(small_corpus, tmp_path, capsys):
    """A ParaGen-style plug-in: register functions imported from the module-kind packages, a
    trainer that overrides `_forward_loss`, and a module kind of its own."""
    plugin = tmp_path / "pg_plugin"
    plugin.mkdir()
    (plugin / "__init__.py").write_text(textwrap.dedent("""\
        from paragen.registry import add_kind, build
        from paragen.trainers import Trainer, register_trainer
        from paragen.criteria import register_criterion
        from paragen.datasets import register_dataset
        from paragen.generators import register_generator
        from paragen.lr_schedulers import register_lr_scheduler
        from paragen.optim import register_optimizer
        from paragen.samplers import register_sampler
        from paragen.tokenizers import register_tokenizer

        register_noise = add_kind("noise")
        SEEN = []

        @register_noise
        class ScaleNoise:
            def __init__(self, scale: float = 1.0):
                self.scale = scale

        @register_trainer
        class NoisyLossTrainer(Trainer):
            def __init__(self, noise=None, **options):
                super().__init__(**options)
                self.noise = build("noise", noise, "task.trainer.noise")

            def _forward_loss(self, task, batch):
                loss, logs = super()._forward_loss(task, batch)
                SEEN.append(float(loss.detach()))
                return loss * self.noise.scale, logs
    """))
    from helpers import tiny_config, write_config

    from paragen.cli import main

    config = tiny_config(small_corpus["train"], small_corpus["valid"], small_corpus["spm"],
                         tmp_path / "run", max_steps=2)
    config["task"]["trainer"].update({"class": "NoisyLossTrainer",
                                      "noise": {"class": "ScaleNoise", "scale": 0.5}})
    path = write_config(config, tmp_path / "c.yaml")
    assert main(["train", "--config", path, "--lib", str(plugin)]) == 0
    import pg_plugin

    assert len(pg_plugin.SEEN) >= 2
    assert main(["list", "noise", "--lib", str(plugin)]) == 0
    assert "ScaleNoise" in capsys.readouterr().out
