"""Parallel-corpus cleaning, the rules `paragen clean` applies (paragen/commands/clean.py):
`rules` (surface and duplicate filters, and every threshold in `CleanConfig`), `language`
(language identification) and `alignment` (a dictionary learned by word alignment)."""
from paragen.cleaning.rules import (ALIGNMENT_RULE, DUPLICATE_RULES, LANGUAGE_RULE, RULES,
                                    SURFACE_RULES, CleanConfig, Deduplicator, SurfaceRules)

__all__ = ["ALIGNMENT_RULE", "DUPLICATE_RULES", "LANGUAGE_RULE", "RULES", "SURFACE_RULES",
           "CleanConfig", "Deduplicator", "SurfaceRules"]
