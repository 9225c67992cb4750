"""Registry, config loading, overrides and type checks."""
from pathlib import Path
from typing import List, Optional

import pytest
import yaml

import paragen.tasks  # noqa: F401  (imports, and so registers, every built-in class)
from paragen.config import apply_overrides, load_config, parse_overrides
from paragen.errors import ConfigError
from paragen.env import import_libs
from paragen.registry import build, check_config, coerce, register_metric, registered

REPO = Path(__file__).resolve().parent.parent


def test_every_kind_has_builtin_classes():
    for kind in ("task", "model", "encoder", "decoder", "search", "generator", "criterion",
                 "dataset", "sampler", "dataloader", "tokenizer", "trainer", "evaluator",
                 "metric", "optimizer", "lr_scheduler"):
        assert registered(kind), kind


def test_overrides_in_both_spellings_parse_as_yaml():
    parsed = parse_overrides(["--task.trainer.max_steps", "100", "task.model.d_model=64",
                              "--env.precision=bf16", "--task.lr", "5e-4", "--x.neg", "-1",
                              "--x.list", "[0.9, 0.98]"])
    assert parsed == [("task.trainer.max_steps", 100), ("task.model.d_model", 64),
                      ("env.precision", "bf16"), ("task.lr", "5e-4"), ("x.neg", -1),
                      ("x.list", [0.9, 0.98])]
    config = apply_overrides({"task": {"trainer": {"max_steps": 5}}}, parsed[:2])
    assert config["task"] == {"trainer": {"max_steps": 100}, "model": {"d_model": 64}}


def test_override_without_value_is_an_error():
    with pytest.raises(ConfigError, match="needs a value"):
        parse_overrides(["--task.trainer.max_steps"])
    with pytest.raises(ConfigError, match="expected an override"):
        parse_overrides(["stray"])


def test_values_are_never_evaluated():
    assert parse_overrides(["a=__import__('os').getcwd()"])[0][1] == "__import__('os').getcwd()"
    assert parse_overrides(["a=12/3"])[0][1] == "12/3"


def test_define_substitution_keeps_types_and_reaches_lists(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump({
        "define": {"dim": 64, "root": "data"},
        "task": {"class": "X", "d": "${dim}", "files": ["${root}/a", "${root}/b"]}}))
    config = load_config(str(path), ["define.root=other"])
    assert config["task"]["d"] == 64
    assert config["task"]["files"] == ["other/a", "other/b"]


def test_bad_yaml_names_file_and_line(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("task:\n  class: X\n  model: {a: 1\n")
    with pytest.raises(ConfigError, match=r"bad\.yaml:\d+: invalid YAML"):
        load_config(str(path))


def test_unknown_class_suggests_the_closest_name():
    with pytest.raises(ConfigError, match=r"task\.model\.encoder\.class: unknown encoder class "
                                          r"'TransfomerEncoder'; did you mean 'TransformerEncoder'"):
        build("encoder", {"class": "TransfomerEncoder"}, "task.model.encoder", vocab_size=10,
              pad_id=0)


def test_unknown_key_names_its_path_and_suggests():
    with pytest.raises(ConfigError, match=r"task\.model\.encoder\.num_layer: unexpected key for "
                                          r"TransformerEncoder; did you mean 'num_layers'"):
        build("encoder", {"class": "TransformerEncoder", "num_layer": 2}, "task.model.encoder",
              vocab_size=10, pad_id=0)


def test_missing_required_key():
    with pytest.raises(ConfigError, match=r"task\.trainer\.lr_scheduler\.total_steps: missing"):
        build("lr_scheduler", {"class": "Cosine"}, "task.trainer.lr_scheduler")


def test_wrong_value_type_is_reported():
    with pytest.raises(ConfigError, match=r"task\.model\.encoder\.num_layers: expected int, "
                                          r"got 'three'"):
        build("encoder", {"class": "TransformerEncoder", "num_layers": "three"},
              "task.model.encoder", vocab_size=10, pad_id=0)


def test_coerce_accepts_lossless_conversions_only():
    assert coerce("5e-4", float, "x") == 5e-4
    assert coerce(3, float, "x") == 3.0
    assert coerce(None, Optional[int], "x") is None
    assert coerce([1, 2], List[int], "x") == [1, 2]
    with pytest.raises(ConfigError):
        coerce(True, int, "x")
    with pytest.raises(ConfigError):
        coerce(1.5, int, "x")
    with pytest.raises(ConfigError):
        coerce(["a"], List[int], "x")


def test_plugin_registration_and_name_clash():
    @register_metric
    class PluginMetricForTest:
        def __init__(self, scale: float = 1.0):
            self.scale = scale

    assert build("metric", {"class": "pluginmetricfortest", "scale": 2}, "m").scale == 2.0
    with pytest.raises(ValueError, match="already registered"):
        @register_metric(name="PluginMetricForTest")
        class Other:
            pass


def test_union_and_literal_types_read_plainly_in_errors():
    with pytest.raises(ConfigError, match=r"task\.trainer\.lr_scheduler\.total_steps: expected "
                                          r"int or 'auto', got 'budget'"):
        build("lr_scheduler", {"class": "Polynomial", "total_steps": "budget"},
              "task.trainer.lr_scheduler")


@pytest.mark.parametrize("recipe", sorted(str(p.relative_to(REPO))
                                          for p in (REPO / "examples").rglob("*.yaml")))
def test_every_recipe_names_registered_classes_and_keys_they_take(recipe):
    """A recipe whose class was renamed or whose key was dropped fails here, not at a user's
    first `paragen train`."""
    config = load_config(str(REPO / recipe))
    libs = (config.get("env") or {}).get("custom_libs") or []
    import_libs([str(REPO / lib) for lib in ([libs] if isinstance(libs, str) else libs)])
    check_config(config["task"], "task", "task")
