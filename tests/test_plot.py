"""`paragen plot`: a PNG of a run's curves; a broken metrics file is one line naming the line."""
import json

from helpers import error_line

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
