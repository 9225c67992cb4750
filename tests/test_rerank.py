"""`paragen rerank`: candidates from systems and n-best lists merge, features are computed,
tuned weights beat every single system on the dev set, and apply to new data."""
import json

import pytest

from paragen.cli import main
from paragen.commands.rerank import Candidates, add_model_scores

REFS = ["a man rides a red bike down the street", "two dogs play in the deep snow",
        "a woman reads a long book at home", "children run across the green field",
        "an old man sells fresh fruit at the market", "a girl jumps into the cold lake"]
WRONG = [" ".join(reversed(r.split())) for r in REFS]  # same words and length, wrong order


def write(path, lines):
    path.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    return str(path)


def test_tuning_combines_systems_and_beats_each(tmp_path, capsys):
    # system A is right on even lines, system B on odd ones; the n-best file's `quality`
    # feature says which candidate is right, and tuning must learn to trust it
    src = write(tmp_path / "src", [f"satz {i}" for i in range(len(REFS))])
    sys_a = write(tmp_path / "a", [r if i % 2 == 0 else w for i, (r, w) in
                                   enumerate(zip(REFS, WRONG))])
    sys_b = write(tmp_path / "b", [w if i % 2 == 0 else r for i, (r, w) in
                                   enumerate(zip(REFS, WRONG))])
    nbest = write(tmp_path / "nbest", [f"{i} ||| {r} ||| quality= 1 ||| 0" for i, r in
                                       enumerate(REFS)] +
                  [f"{i} ||| {w} ||| quality= 0 ||| 0" for i, w in enumerate(WRONG)])
    ref = write(tmp_path / "ref", REFS)
    weights = tmp_path / "w.json"
    assert main(["rerank", "--source", src, "--candidates", sys_a, sys_b, "--nbest", nbest,
                 "--reference", ref, "--save-weights", str(weights)]) == 0
    out = capsys.readouterr()
    assert out.out.splitlines() == REFS
    report = json.loads(weights.read_text())
    assert report["dev_bleu"] == pytest.approx(100.0)
    assert max(report["dev_bleu_by_single_feature"].values()) < 70
    assert report["weights"]["nbest:quality"] > 0
    # the weights apply to other data with the same features: here, the systems swapped
    assert main(["rerank", "--source", src, "--candidates", sys_b, sys_a, "--nbest", nbest,
                 "--weights", str(weights)]) == 0
    assert capsys.readouterr().out.splitlines() == REFS


def test_features_option_keeps_only_the_named_features(tmp_path, capsys):
    from helpers import error_line

    src = write(tmp_path / "src", [f"satz {i}" for i in range(len(REFS))])
    sys_a = write(tmp_path / "a", WRONG)
    nbest = write(tmp_path / "nbest", [f"{i} ||| {r} ||| quality= 1 ||| 0" for i, r in
                                       enumerate(REFS)])
    ref, weights = write(tmp_path / "ref", REFS), tmp_path / "w.json"
    # the length ratio alone cannot tell the two candidates apart: the first (A's) stays
    assert main(["rerank", "--source", src, "--candidates", sys_a, "--nbest", nbest,
                 "--reference", ref, "--features", "length", "--save-weights",
                 str(weights)]) == 0
    assert capsys.readouterr().out.splitlines() == WRONG
    assert list(json.loads(weights.read_text())["weights"]) == ["length_ratio"]
    assert main(["rerank", "--source", src, "--candidates", sys_a, "--nbest", nbest,
                 "--reference", ref, "--features", "nbest:", "length"]) == 0
    assert capsys.readouterr().out.splitlines() == REFS
    assert main(["rerank", "--source", src, "--candidates", sys_a, "--reference", ref,
                 "--features", "model:"]) == 2
    assert "--features model:: no feature starts with these" in error_line(capsys)


def test_candidates_merge_and_count_votes(tmp_path):
    from argparse import Namespace

    from paragen.commands.rerank import read_candidates

    src = write(tmp_path / "src", ["ein hund", "zwei katzen schlafen"])
    one = write(tmp_path / "one", ["a dog", "two cats sleep"])
    two = write(tmp_path / "two", ["a  dog", "two cats are sleeping"])
    nbest = write(tmp_path / "nb", ["1 ||| two cats sleep ||| lm= -2.5 tm= -1 -3 ||| -4"])
    found = read_candidates(Namespace(source=src, candidates=[one, two], nbest=[nbest]))
    assert found.hypotheses == [["a dog"], ["two cats sleep", "two cats are sleeping"]]
    assert found.features[0][0]["votes"] == 1.0
    assert found.features[1][0] == {"system:0": 1.0, "nbest:lm": -2.5, "nbest:tm": -1.0,
                                    "nbest:tm1": -3.0, "votes": 0.5, "length_ratio": 1.0}
    assert found.features[1][1]["votes"] == 0.5


def test_model_scores_do_not_depend_on_the_batch(tiny_model, tmp_path):
    found = Candidates(["ein Mann läuft .", "zwei Hunde"])
    for hyp in ("a man runs .", "a man is running .", "man"):
        found.add(0, hyp, {})
    found.add(1, "two dogs", {})
    add_model_scores(found, "ar", str(tiny_model), batch_size=2)
    alone = Candidates(["zwei Hunde"])
    alone.add(0, "two dogs", {})
    add_model_scores(alone, "ar", str(tiny_model), batch_size=1)
    assert found.features[1][0]["model:ar"] == pytest.approx(alone.features[0][0]["model:ar"],
                                                             abs=1e-5)
    assert all(f["model:ar"] < 0 for f in found.features[0])


def test_bad_input_is_named(tmp_path, capsys):
    src = write(tmp_path / "src", ["a", "b"])
    short = write(tmp_path / "short", ["x"])
    assert main(["rerank", "--source", src, "--candidates", short, "--reference", src]) == 2
    assert "short: 1 lines, but --source has 2" in capsys.readouterr().err
    assert main(["rerank", "--source", src, "--candidates", src]) == 2
    assert "give --reference (tune) or --weights (apply)" in capsys.readouterr().err
    bad = write(tmp_path / "bad", ["zero ||| x"])
    assert main(["rerank", "--source", src, "--nbest", bad, "--reference", src]) == 2
    assert "bad:1: expected 'i ||| hypothesis ||| features'" in capsys.readouterr().err
    weights = write(tmp_path / "w.json", [json.dumps({"weights": {"model:ar": 1.0}})])
    assert main(["rerank", "--source", src, "--candidates", src, "--weights", weights]) == 2
    assert "features ['model:ar'] were tuned but are not given now" in capsys.readouterr().err


def right_to_left_copy(model_folder, tmp_path):
    """The tiny model's folder with its config saying `reverse_target: true`: the same weights
    read as a right-to-left model."""
    import shutil

    from paragen.checkpoint import load_checkpoint, save_checkpoint

    folder = tmp_path / "r2l"
    shutil.copytree(model_folder, folder)
    state = load_checkpoint(str(folder / "best.pt"))
    state["config"]["task"]["reverse_target"] = True
    save_checkpoint(state, str(folder / "best.pt"))
    return folder


def test_right_to_left_teacher_reads_candidates_reversed(tiny_model, tmp_path):
    import torch

    from paragen.generators.nat import load_reranker

    r2l = right_to_left_copy(tiny_model, tmp_path)
    pad, bos, eos = 0, 2, 3
    forward = load_reranker(str(tiny_model / "best.pt"), pad)
    backward = load_reranker(str(r2l / "best.pt"), pad)
    src = torch.tensor([[10, 11, 12, eos], [13, 14, eos, pad]])
    tokens = torch.tensor([[20, 21, 22, eos], [23, 24, eos, pad]])
    reversed_tokens = torch.tensor([[22, 21, 20, eos], [24, 23, eos, pad]])
    assert torch.allclose(backward(src, tokens, bos, eos), forward(src, reversed_tokens, bos, eos))
    assert not torch.allclose(backward(src, tokens, bos, eos), forward(src, tokens, bos, eos))


def test_right_to_left_task_reverses_targets_and_turns_them_back(tiny_model, tmp_path):
    from paragen.tasks.build import load_trained_task

    task = load_trained_task(str(right_to_left_copy(tiny_model, tmp_path) / "best.pt"), "infer")
    texts = ["A man rides a bike.", "Two dogs"]
    ids = task.target_ids(texts)
    assert ids == [row[::-1] for row in task.tgt_tokenizer.encode_batch(texts)]
    assert task.decode(ids) == task.tgt_tokenizer.decode_batch(task.tgt_tokenizer.encode_batch(
        texts))
