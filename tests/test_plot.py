"""Training a person can watch: `paragen plot` draws a run's curves (a broken metrics file is
one line naming the line) and a bench result's speed–quality chart; TensorBoard receives the
same records as metrics.jsonl."""
import json

from helpers import error_line, tiny_config, write_config

from paragen.cli import main


def write_metrics(path, records):
    path.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")


def test_plot_writes_a_png_of_the_run(tmp_path, capsys):
    run = tmp_path / "run"
    run.mkdir()
    records = [{"step": s, "lr": 1e-3 * s / 100, "loss": 5.0 - s / 100, "tokens_per_s": 900 + s,
                "train_seconds": 3.0 * s} for s in range(50, 401, 50)]
    records += [{"validation": True, "valid.loss": 4.0 - s / 200, "valid.bleu": s / 20, "step": s}
                for s in (200, 400)]
    write_metrics(run / "metrics.jsonl", records)
    assert main(["plot", str(run)]) == 0
    png = (run / "training.png").read_bytes()
    assert png.startswith(b"\x89PNG") and len(png) > 10_000
    assert f"wrote {run / 'training.png'}" in capsys.readouterr().out


def test_plot_refuses_a_folder_without_usable_metrics(tmp_path, capsys):
    assert main(["plot", str(tmp_path)]) == 2
    assert "no metrics.jsonl" in error_line(capsys)
    (tmp_path / "metrics.jsonl").write_text('{"step": 50, "loss": 3.0}\n{"step": 1\n',
                                            encoding="utf-8")
    assert main(["plot", str(tmp_path)]) == 2
    assert "metrics.jsonl:2: not a JSON record" in error_line(capsys)
    write_metrics(tmp_path / "metrics.jsonl", [{"validation": True, "valid.loss": 1.0,
                                                "step": 10}])
    assert main(["plot", str(tmp_path)]) == 2
    assert "no training records yet" in error_line(capsys)


def bench_row(system, threads, bleu, batch1, batched):
    return {"system": system, "model": "runs/m", "threads": threads, "bleu": bleu,
            "batch1": {"sentences_per_s": batch1}, "batched": {"sentences_per_s": batched}}


def test_pareto_front_keeps_only_points_nobody_beats_on_both():
    from paragen.commands.plot import fastest_per_system, pareto_front

    # (BLEU, sentences/s): beam is best, single pass fastest, NPD dominated by refine
    points = [(39.5, 50.0), (38.3, 120.0), (36.9, 400.0), (37.0, 100.0), (38.3, 90.0)]
    assert pareto_front(points) == [0, 1, 2]
    rows = [bench_row("AR beam4", 1, 39.5, 50, 200), bench_row("AR beam4", 2, 39.5, 70, 180)]
    assert [r["threads"] for r in fastest_per_system(rows, "batch1")] == [2]
    assert [r["threads"] for r in fastest_per_system(rows, "batched")] == [1]


def test_models_are_labelled_by_their_run_folder_when_every_checkpoint_is_best_pt():
    from paragen.commands.plot import model_label

    assert model_label("runs/multi30k-cmlm/best.pt") == "multi30k-cmlm/best.pt"
    assert model_label("runs/multi30k-glat/best.pt") != model_label("runs/vanilla-nat/best.pt")
    assert model_label("runs/exported/transformer-ct2/") == "transformer-ct2"


def test_plot_draws_the_speed_quality_chart_of_a_bench_result(tmp_path, capsys):
    result = tmp_path / "decode_speed.json"
    rows = [bench_row("AR beam4", 1, 39.5, 50, 200), bench_row("CTCNAT single", 1, 36.9, 400, 900),
            bench_row("AR greedy", 1, 38.4, 80, 500)]
    result.write_text(json.dumps({"rows": rows}), encoding="utf-8")
    assert main(["plot", str(result)]) == 0
    png = (tmp_path / "decode_speed.png").read_bytes()
    assert png.startswith(b"\x89PNG") and len(png) > 10_000
    (tmp_path / "other.json").write_text('{"rows": []}', encoding="utf-8")
    assert main(["plot", str(tmp_path / "other.json")]) == 2
    assert "no timed rows" in error_line(capsys)


def test_tensorboard_receives_every_logged_record(small_corpus, tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    run = tmp_path / "run"
    config = tiny_config(small_corpus["train"], small_corpus["valid"], small_corpus["spm"], run,
                         max_steps=6, log_interval=2, validate_interval=3, tensorboard=True)
    assert main(["train", "--config", write_config(config, tmp_path / "c.yaml")]) == 0
    board = EventAccumulator(str(run / "tensorboard"))
    board.Reload()
    records = [json.loads(line) for line in open(run / "metrics.jsonl")]
    windows = [r for r in records if "tokens_per_s" in r]
    loss = board.Scalars("train/loss")
    assert [e.step for e in loss] == [r["step"] for r in windows] == [2, 4, 6]
    assert [round(e.value, 4) for e in loss] == [round(r["loss"], 4) for r in windows]
    assert [e.step for e in board.Scalars("valid/bleu")] == [3, 6]
    assert {"train/lr", "train/tokens_per_s", "valid/loss"} <= set(board.Tags()["scalars"])
