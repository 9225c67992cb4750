"""The alignment rule: do the two sides translate each other, word for word?

A bilingual dictionary is learned from the corpus itself, as ParaGen's WMT21 pipeline learned
one with fast_align:
  1. eflomal (a Bayesian IBM-model aligner from PyPI) aligns a sample of the pairs in both
     directions, on lower-cased words;
  2. grow-diag-final-and symmetrises the two alignments (Koehn et al. 2005, as Moses does);
  3. the links give word translation probabilities both ways (`Lexicon`), a probabilistic
     dictionary pruned by `align_min_count` and `align_min_prob`.
A pair's score is, in each direction, the mean over one side's words of the best log
p(word | a word of the other side), the two directions averaged: misaligned pairs find few
translations, and a truncated side leaves the other side's words without one. Pairs whose
shorter side has fewer than `align_min_words` words are not judged.
"""
from __future__ import annotations

import math
import os
import re
import tempfile
from collections import Counter
from typing import Dict, Iterable, Iterator, List, Set, Tuple

from paragen.cleaning.rules import CleanConfig
from paragen.errors import ConfigError

_WORD = re.compile(r"\w+", re.UNICODE)
Links = Set[Tuple[int, int]]
_NEIGHBOURS = ((-1, 0), (0, -1), (1, 0), (0, 1), (-1, -1), (-1, 1), (1, -1), (1, 1))


def words(text: str) -> List[str]:
    """Lower-cased word tokens, punctuation dropped: what the lexicon is made of."""
    return _WORD.findall(text.lower())


def parse_links(line: str) -> Links:
    """Pharaoh format, `0-0 1-2 ...` (source index, target index)."""
    return {(int(i), int(j)) for i, j in (link.split("-") for link in line.split())}


def grow_diag_final_and(forward: Links, backward: Links) -> Links:
    """Koehn's symmetrisation: start from the intersection, grow into neighbouring union links
    that align a still unaligned word, then add union links between two unaligned words."""
    union = forward | backward
    links = forward & backward
    src_done = {i for i, _ in links}
    tgt_done = {j for _, j in links}
    grown = True
    while grown:
        grown = False
        for i, j in sorted(links):
            for di, dj in _NEIGHBOURS:
                link = (i + di, j + dj)
                if link in union and link not in links and (
                        link[0] not in src_done or link[1] not in tgt_done):
                    links.add(link)
                    src_done.add(link[0])
                    tgt_done.add(link[1])
                    grown = True
    for directional in (forward, backward):
        for i, j in sorted(directional):
            if i not in src_done and j not in tgt_done:
                links.add((i, j))
                src_done.add(i)
                tgt_done.add(j)
    return links


def align(src_lines: List[str], tgt_lines: List[str]) -> Iterator[Links]:
    """Symmetrised eflomal links of each pair of tokenized lines (words joined by spaces).
    eflomal samples from /dev/urandom, so links, and the lexicon, vary a little run to run."""
    try:
        import eflomal
    except ImportError:
        raise ConfigError("the alignment rule needs eflomal: pip install 'paragen[clean]' "
                          "(or disable it with --disable alignment)") from None
    with tempfile.TemporaryDirectory(prefix="paragen-align-") as folder:
        fwd, rev = os.path.join(folder, "fwd"), os.path.join(folder, "rev")
        eflomal.Aligner().align(src_lines, tgt_lines, links_filename_fwd=fwd,
                                links_filename_rev=rev, quiet=True)
        with open(fwd, encoding="utf-8") as f, open(rev, encoding="utf-8") as r:
            for forward, backward in zip(f, r):
                yield grow_diag_final_and(parse_links(forward), parse_links(backward))


class Lexicon:
    """Word translation probabilities estimated from symmetrised links: p(t|s) = c(s,t) / c(s)
    and p(s|t) = c(s,t) / c(t), kept where c(s,t) >= `align_min_count` and both reach
    `align_min_prob`; an unknown word pair gets `FLOOR`."""

    FLOOR = math.log(0.0025)  # about -6: a missing word costs, but does not swamp the mean

    def __init__(self, linked: Counter, config: CleanConfig):
        src_total: Counter = Counter()
        tgt_total: Counter = Counter()
        for (s, t), count in linked.items():
            src_total[s] += count
            tgt_total[t] += count
        self.forward: Dict[str, Dict[str, float]] = {}   # s -> {t: log p(t|s)}
        self.backward: Dict[str, Dict[str, float]] = {}  # t -> {s: log p(s|t)}
        for (s, t), count in linked.items():
            p_ts, p_st = count / src_total[s], count / tgt_total[t]
            if count >= config.align_min_count and min(p_ts, p_st) >= config.align_min_prob:
                self.forward.setdefault(s, {})[t] = math.log(p_ts)
                self.backward.setdefault(t, {})[s] = math.log(p_st)

    def __len__(self) -> int:
        return sum(map(len, self.forward.values()))

    @staticmethod
    def _direction(table: Dict[str, Dict[str, float]], given: List[str],
                   scored: List[str]) -> float:
        """Mean over `scored` words of the best log p(word | a word of `given`)."""
        rows = [table.get(word, {}) for word in given]
        return sum(max([row.get(word, Lexicon.FLOOR) for row in rows] + [Lexicon.FLOOR])
                   for word in scored) / len(scored)

    def score(self, src: str, tgt: str) -> float:
        """The pair's score: the two directions' mean best log-probabilities, averaged, so words
        either side does not translate (misaligned, truncated) pull it down."""
        s, t = words(src), words(tgt)
        if not s or not t:
            return self.FLOOR
        return (self._direction(self.forward, s, t) + self._direction(self.backward, t, s)) / 2


def learn_lexicon(pairs: Iterable[Tuple[str, str]], config: CleanConfig) -> Lexicon:
    """The lexicon of the symmetrised alignments of up to `align_sample` pairs."""
    src_lines, tgt_lines = [], []
    for src, tgt in pairs:
        s, t = words(src), words(tgt)
        if s and t:
            src_lines.append(" ".join(s))
            tgt_lines.append(" ".join(t))
        if len(src_lines) >= config.align_sample:
            break
    linked: Counter = Counter()
    if src_lines:
        for src, tgt, links in zip(src_lines, tgt_lines, align(src_lines, tgt_lines)):
            s, t = src.split(), tgt.split()
            linked.update((s[i], t[j]) for i, j in links if i < len(s) and j < len(t))
    return Lexicon(linked, config)


def misaligned(src: str, tgt: str, lexicon: Lexicon, config: CleanConfig) -> bool:
    """True when the pair is long enough to judge and scores below `align_min_score`."""
    if min(len(src.split()), len(tgt.split())) < config.align_min_words:
        return False
    return lexicon.score(src, tgt) < config.align_min_score
