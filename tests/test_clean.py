"""`paragen clean`: each rule removes what it should, nothing is lost, alignment is kept."""
from paragen.cli import main


def test_clean_rules_counts_and_side_file(tmp_path, capsys):
    pairs = [
        ("Ein Mann fährt mit dem Fahrrad durch die Stadt.", "A man rides a bike through town."),
        ("", "An empty source."),                                             # empty
        ("Hallo", "one two three four five six seven eight nine ten"),        # ratio
        ("Ein Mann fährt mit dem Fahrrad durch die Stadt.", "A man rides a bike through town."),
        ("ein mann fährt mit dem fahrrad durch die stadt", "a man rides a bike through town"),
        ("Zwei Hunde spielen im Schnee vor einem großen Haus.",
         "Deux chiens jouent dans la neige devant une grande maison."),        # language
        ("Eine Frau liest ein Buch.", "A woman reads a book."),
    ]
    src, tgt = tmp_path / "x.de", tmp_path / "x.en"
    src.write_text("\n".join(p[0] for p in pairs) + "\n", encoding="utf-8")
    tgt.write_text("\n".join(p[1] for p in pairs) + "\n", encoding="utf-8")
    prefix = tmp_path / "out" / "clean"
    assert main(["clean", "--src", str(src), "--tgt", str(tgt), "--output-prefix", str(prefix),
                 "--langid-min-chars", "20"]) == 0
    kept_de = (tmp_path / "out" / "clean.de").read_text(encoding="utf-8").splitlines()
    kept_en = (tmp_path / "out" / "clean.en").read_text(encoding="utf-8").splitlines()
    assert kept_en == ["A man rides a bike through town.", "A woman reads a book."]
    assert len(kept_de) == len(kept_en)
    removed = (tmp_path / "out" / "clean.removed.tsv").read_text(encoding="utf-8").splitlines()
    rules = {line.split("\t")[1]: line.split("\t")[0] for line in removed}
    assert rules == {"2": "empty", "3": "ratio", "4": "duplicate", "5": "near_duplicate",
                     "6": "language"}
    assert len(kept_en) + len(removed) == len(pairs)  # nothing lost
    assert "kept 2, removed 5" in capsys.readouterr().out


def test_clean_rejects_misaligned_files(tmp_path, capsys):
    (tmp_path / "a.de").write_text("a\nb\nc\n")
    (tmp_path / "a.en").write_text("a\nb\n")
    assert main(["clean", "--src", str(tmp_path / "a.de"), "--tgt", str(tmp_path / "a.en"),
                 "--output-prefix", str(tmp_path / "o")]) == 2
    assert "not aligned" in capsys.readouterr().err
    assert not list(tmp_path.glob("o.*"))
