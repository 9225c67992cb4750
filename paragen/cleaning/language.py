"""The language rule: is each side written in the language it should be?

Two thresholds, as in WMT cleaning pipelines:
  * probability: py3langid's normalised probability of the expected language must reach
    `langid_min_prob` (lines shorter than `langid_min_chars` are not judged: on a few words
    language identifiers guess). `langid_languages` restricts the candidates, as
    `langid.set_languages` does, when the corpus can only hold a few languages;
  * proportion: at least `min_script` of a side's letters must be in the expected language's
    script (Latin for German, Cyrillic for Russian, ...), which catches mixed-script lines that
    a bag-of-n-grams identifier still labels right. Languages not in `SCRIPTS` skip it.
"""
from __future__ import annotations

import functools
import unicodedata
from typing import Optional, Tuple

from paragen.cleaning.rules import CleanConfig

SCRIPTS = {
    **{lang: ("LATIN",) for lang in (
        "af cs da de en es et fi fr ga hr hu id is it lt lv ms mt nl no pl pt ro sk sl sq sv "
        "sw tr vi").split()},
    **{lang: ("CYRILLIC",) for lang in "be bg kk mk mn ru sr uk".split()},
    "el": ("GREEK",), "ar": ("ARABIC",), "fa": ("ARABIC",), "he": ("HEBREW",),
    "hi": ("DEVANAGARI",), "th": ("THAI",), "ko": ("HANGUL",), "zh": ("CJK",),
    "ja": ("CJK", "HIRAGANA", "KATAKANA"),
}


@functools.lru_cache(maxsize=1 << 16)
def _script(ch: str) -> str:
    """The first word of a character's Unicode name: LATIN, CYRILLIC, CJK, HIRAGANA, ..."""
    return unicodedata.name(ch, "").split(" ", 1)[0]


def script_share(text: str, scripts: Tuple[str, ...]) -> float:
    """The share of `text`'s letters in one of `scripts`; 1.0 for a line without letters
    (nothing speaks against it). Each distinct letter is looked up once."""
    total = inside = 0
    for ch in set(text):
        if ch.isalpha():
            count = text.count(ch)
            total += count
            inside += count if _script(ch) in scripts else 0
    return inside / total if total else 1.0


class LanguageRule:
    """`__call__(src, tgt)` is True when a side is not in its expected language."""

    def __init__(self, config: CleanConfig):
        from py3langid.langid import MODEL_DIR, MODEL_FILE, LanguageIdentifier

        self.config = config
        self.identifier = LanguageIdentifier.from_modelpath(MODEL_DIR / MODEL_FILE,
                                                            norm_probs=True)
        if config.langid_languages:
            self.identifier.set_languages(list(config.langid_languages))

    def probability(self, text: str, lang: str) -> float:
        """The normalised probability the identifier gives `lang` for `text` (the full ranking
        only when `lang` is not the most likely language)."""
        top, probability = self.identifier.classify(text)
        return probability if top == lang else dict(self.identifier.rank(text)).get(lang, 0.0)

    def wrong(self, text: str, lang: str) -> bool:
        c = self.config
        scripts: Optional[Tuple[str, ...]] = SCRIPTS.get(lang)
        if scripts is not None and script_share(text, scripts) < c.min_script:
            return True
        return len(text) >= c.langid_min_chars and self.probability(text, lang) < c.langid_min_prob

    def __call__(self, src: str, tgt: str) -> bool:
        return self.wrong(src, self.config.src_lang) or self.wrong(tgt, self.config.tgt_lang)
