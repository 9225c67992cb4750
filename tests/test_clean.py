"""`paragen clean`: each rule removes what it should, nothing is lost, alignment is kept."""
import random

import pytest

from paragen.cleaning import CleanConfig, Deduplicator, SurfaceRules
from paragen.cleaning.alignment import Lexicon, grow_diag_final_and, learn_lexicon, misaligned
from paragen.cleaning.language import LanguageRule, script_share
from paragen.cli import main
from paragen.errors import ConfigError


def write_pairs(tmp_path, pairs, name="x"):
    src, tgt = tmp_path / f"{name}.de", tmp_path / f"{name}.en"
    src.write_text("\n".join(p[0] for p in pairs) + "\n", encoding="utf-8")
    tgt.write_text("\n".join(p[1] for p in pairs) + "\n", encoding="utf-8")
    return str(src), str(tgt)


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
    src, tgt = write_pairs(tmp_path, pairs)
    prefix = tmp_path / "out" / "clean"
    assert main(["clean", "--src", src, "--tgt", tgt, "--output-prefix", str(prefix),
                 "--disable", "alignment"]) == 0
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


GOOD = ("Ein Hund läuft über die grüne Wiese.", "A dog runs across the green meadow.")


@pytest.mark.parametrize("src, tgt, rule", [
    (GOOD[0], GOOD[1], None),
    ("Ein Hund\x07 läuft.", "A dog runs.", "unprintable"),
    ("Ein Hund läuft.", "A dog\ufffd runs.", "unprintable"),
    ("Ein Hund\tläuft.", "A dog runs.", "unprintable"),
    ("Ein <b>Hund</b> läuft.", "A dog runs.", "html_url"),
    ("Ein Hund läuft.", "A dog runs &amp; jumps.", "html_url"),
    ("Siehe http://example.com/x jetzt", "See the page now", "html_url"),
    ("Mehr auf www.example.org heute", "More on the site today", "html_url"),
    ("Schreib an jemand@example.com bitte", "Write to someone please", "html_url"),
    ("Berlin Marathon 2019", "berlin marathon 2019!", "copy"),
    ("Ein Hund hund hund hund hund hund hund läuft.", "A dog runs.", "repeated"),
    ("Ein Hund läuft schnell.", "A dog dog dog dog dog dog runs fast now.", "repeated"),
    ("Ein Hund läuft!!!!!!", "A dog runs!", "repeated"),
    ("Hund rennt Hund rennt Hund rennt Hund rennt", "dog runs dog runs dog runs dog runs",
     None),  # repeats, not in a row
    ("Ein Hundeschlittenrennenweltmeisterschaftsfinalteilnehmer läuft.",
     "A dog sled race world championship finalist runs along the trail.", "word_length"),
    (" ".join(f"Wort{i}" for i in range(251)), " ".join(f"word{i}" for i in range(251)),
     "length"),
    ("Ein Hund läuft über die grüne Wiese im Park", "A dog", "ratio"),
    ("Ein Hund läuft über die Wiese im Park.", "A dog runs.", "ratio"),  # 37 vs 11 characters
    ("Ja.", "Yes, sir.", None),  # short sides skip the character ratio
    ("... !!! ??? ;;; Hund", "... !!! ??? ;;; dog", "punctuation"),
    ("Zimmer 1234 5678 90", "Room 1234 5678 90", "numbers"),
])
def test_surface_rules(src, tgt, rule):
    assert SurfaceRules(CleanConfig())(src, tgt) == rule


def test_rules_switch_off_and_thresholds_move():
    pair = ("Ein <b>Hund</b> läuft.", "A dog runs.")
    assert SurfaceRules(CleanConfig(disable=["html_url"]))(*pair) is None
    repeated = ("Ein Hund läuft.", "A dog dog dog runs.")
    assert SurfaceRules(CleanConfig())(*repeated) is None
    assert SurfaceRules(CleanConfig(max_repeats=2))(*repeated) == "repeated"
    with pytest.raises(ConfigError, match="unknown rule"):
        CleanConfig(disable=["html"]).validate()
    with pytest.raises(ConfigError, match="max_digits must lie in"):
        CleanConfig(max_digits=2.0).validate()


def test_duplicates_exact_then_near():
    seen = Deduplicator(CleanConfig())
    assert seen(*GOOD) is None
    assert seen(*GOOD) == "duplicate"
    assert seen(GOOD[0].upper(), GOOD[1].replace(".", "")) == "near_duplicate"


def test_language_rule_probability_and_script():
    rule = LanguageRule(CleanConfig())
    assert not rule(*GOOD)
    assert rule(GOOD[0], "Un chien court à travers la prairie verte.")        # probability
    assert rule(GOOD[0], "A dog runs across the зелёный луг meadow today.")  # script share
    assert script_share("Hund", ("LATIN",)) == 1.0
    assert script_share("Hund луг", ("LATIN",)) == pytest.approx(4 / 7)
    assert script_share("123 !", ("LATIN",)) == 1.0
    assert not rule("Hund.", "Chien.")  # too short to judge by probability
    restricted = LanguageRule(CleanConfig(langid_languages=["de", "en"]))
    assert restricted.probability("Un chien court.", "fr") == 0.0


def test_grow_diag_final_and_by_hand():
    # forward: 0-0 1-1 2-1; backward: 0-0 1-1 2-2. The intersection {0-0, 1-1} grows into the
    # diagonal neighbour 2-2 (target 2 unaligned) and 2-1 (source 2 was unaligned until 2-2 -
    # after it, 2-1 links two aligned words, so it stays out); nothing is left for final-and.
    forward = {(0, 0), (1, 1), (2, 1)}
    backward = {(0, 0), (1, 1), (2, 2)}
    links = grow_diag_final_and(forward, backward)
    assert {(0, 0), (1, 1)} <= links <= forward | backward
    assert any(i == 2 for i, _ in links) and any(j == 2 for _, j in links)
    # final-and adds a union link only between two words no other link reaches
    assert grow_diag_final_and({(0, 0), (3, 3)}, {(0, 0)}) == {(0, 0), (3, 3)}
    assert grow_diag_final_and({(0, 0), (0, 3)}, {(0, 0)}) == {(0, 0)}


def test_lexicon_scores_translations_above_unrelated_words():
    from collections import Counter

    links = Counter({("hund", "dog"): 9, ("hund", "the"): 1, ("läuft", "runs"): 10,
                     ("der", "the"): 10, ("katze", "cat"): 10, ("schläft", "sleeps"): 10})
    lexicon = Lexicon(links, CleanConfig())
    good = lexicon.score("Der Hund läuft", "The dog runs")
    bad = lexicon.score("Der Hund läuft", "The cat sleeps")
    assert good > -0.2 > -3 > bad
    assert lexicon.score("", "x") == Lexicon.FLOOR
    config = CleanConfig(align_min_words=4)
    assert not misaligned("Der Hund läuft", "The cat sleeps", lexicon, config)  # too short
    pruned = Lexicon(links, CleanConfig(align_min_count=2))
    assert len(pruned) == len(lexicon) - 1


def toy_corpus(n, seed):
    """German-like / English-like pairs over a 60-word vocabulary: word-for-word translations
    in a shuffled order, so only an aligner can learn which word translates which."""
    rng = random.Random(seed)
    vocab = [(f"w{i}x", f"v{i}y") for i in range(60)]
    pairs = []
    for _ in range(n):
        chosen = rng.sample(vocab, rng.randint(6, 10))
        tgt = [t for _, t in chosen]
        rng.shuffle(tgt)
        pairs.append((" ".join(s for s, _ in chosen), " ".join(tgt)))
    return pairs


def test_alignment_rule_finds_misaligned_pairs(tmp_path):
    pairs = toy_corpus(400, seed=1)
    bad = toy_corpus(20, seed=2)
    noisy = pairs + [(s, bad[(i + 1) % 20][1]) for i, (s, _) in enumerate(bad)]
    lexicon = learn_lexicon(noisy, CleanConfig())
    # eflomal samples, so scores move a little from run to run; the two groups stay far apart
    assert min(lexicon.score(s, t) for s, t in pairs) > -1.0
    assert max(lexicon.score(s, t) for s, t in noisy[400:]) < -2.0
    config = CleanConfig(align_min_score=-1.5)
    assert all(misaligned(s, t, lexicon, config) for s, t in noisy[400:])
    assert not any(misaligned(s, t, lexicon, config) for s, t in pairs)


def test_config_file_flags_and_workers_agree(tmp_path, capsys):
    pairs = [(f"Ein Hund Nummer {w} läuft über die Wiese.", f"A dog number {w} runs across "
              f"the meadow.") for w in "eins zwei drei vier fünf sechs".split()]
    pairs += [("Ein <i>Hund</i> läuft.", "A dog runs."), ("Der Hund", "Le chien court dehors "
                                                           "dans le jardin vert.")]
    src, tgt = write_pairs(tmp_path, pairs)
    config = tmp_path / "clean.yaml"
    config.write_text("disable: [alignment]\nmax_ratio: 2.5\n")
    outputs = []
    for workers in ("1", "2"):
        prefix = tmp_path / f"w{workers}"
        assert main(["clean", "--src", src, "--tgt", tgt, "--output-prefix", str(prefix),
                     "--config", str(config), "--workers", workers, "--max-ratio", "5"]) == 0
        outputs.append([(tmp_path / f"w{workers}.{ext}").read_text(encoding="utf-8")
                        for ext in ("de", "en", "removed.tsv")])
    assert outputs[0] == outputs[1]
    assert [line.split("\t")[:2] for line in outputs[0][2].splitlines()] == [
        ["html_url", "7"], ["ratio", "8"]]
    config.write_text("max_ratios: 2\n")
    assert main(["clean", "--src", src, "--tgt", tgt, "--output-prefix", str(tmp_path / "e"),
                 "--config", str(config)]) == 2
    assert "clean.yaml: unknown key 'max_ratios'" in capsys.readouterr().err
    config.write_text("max_ratio: many\n")
    assert main(["clean", "--src", src, "--tgt", tgt, "--output-prefix", str(tmp_path / "e"),
                 "--config", str(config)]) == 2
    assert "max_ratio must be float" in capsys.readouterr().err
    assert not list(tmp_path.glob("e.*"))
