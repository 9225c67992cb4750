"""`paragen distill`: line-aligned output that resumes after an interruption."""
from helpers import tiny_config, write_config
from paragen.cli import main


def test_distill_is_line_aligned_and_resumes(small_corpus, tmp_path):
    config = tiny_config(small_corpus["train"], small_corpus["valid"], small_corpus["spm"],
                         tmp_path / "teacher", max_steps=5)
    assert main(["train", "--config", write_config(config, tmp_path / "c.yaml")]) == 0
    source = small_corpus["valid"]["de"]  # 40 lines
    full = tmp_path / "full.en"
    args = ["distill", "--model", str(tmp_path / "teacher"), "--input", source, "--beam", "2",
            "--chunk-lines", "7"]
    assert main([*args, "--output", str(full)]) == 0
    expected = full.read_text(encoding="utf-8").splitlines()
    assert len(expected) == 40

    # What a kill mid-write leaves: two complete chunks plus half a line.
    resumed = tmp_path / "resumed.en"
    resumed.write_text("\n".join(expected[:14]) + "\nhalf a li", encoding="utf-8")
    assert main([*args, "--output", str(resumed)]) == 0
    assert resumed.read_text(encoding="utf-8").splitlines() == expected

    # Already complete: nothing is appended.
    assert main([*args, "--output", str(resumed)]) == 0
    assert len(resumed.read_text(encoding="utf-8").splitlines()) == 40
