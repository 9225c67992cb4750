"""Tab-separated files with a header line, as GLUE ships them (`sentence<TAB>label`).

Columns are named by the header, so a config says `label: label` rather than "column 2", and
a file whose columns were reordered still reads right. Cells are split on tabs only (GLUE
writes no quoting), so a row with a tab inside its text has one column too many: that row is
an error naming file and line, never silently shifted or dropped.
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import Dict, List, Optional

from paragen.datasets.text import read_lines
from paragen.errors import DataError
from paragen.registry import register_dataset


@register_dataset
class TsvDataset(Sequence):
    """Sample i is `{column: cell}` for row i; `lines(column)` gives a whole column at once.

    `location(i)` names the file and line of sample i (`dev.tsv:14`), for errors raised later
    about a cell's content (an unknown label, a label that is not a number).
    """

    def __init__(self, path: str, max_samples: Optional[int] = None) -> None:
        rows = read_lines(path)
        if not rows:
            raise DataError(f"{path}: empty file; a TSV file starts with a header line "
                            f"naming its columns")
        header = rows[0].split("\t")
        duplicated = sorted({name for name in header if header.count(name) > 1})
        if duplicated or "" in header:
            problem = f"column {duplicated[0]!r} twice" if duplicated else "an empty column name"
            raise DataError(f"{path}:1: the header has {problem} ({', '.join(header)})")
        rows = rows[1:max_samples + 1 if max_samples is not None else None]
        cells = [row.split("\t") for row in rows]
        bad = next((i for i, row in enumerate(cells) if len(row) != len(header)), None)
        if bad is not None:
            found = len(cells[bad])
            hint = "a tab inside a text?" if found > len(header) else "a missing column?"
            raise DataError(f"{path}:{bad + 2}: expected {len(header)} tab-separated columns "
                            f"({', '.join(header)}), got {found} ({hint})")
        self.path, self.header = path, header
        # zip(*cells) transposes rows into columns in C; a file of only a header has none.
        columns = list(zip(*cells)) if cells else [()] * len(header)
        self._columns: Dict[str, List[str]] = {name: list(column)
                                               for name, column in zip(header, columns)}

    def __len__(self) -> int:
        return len(self._columns[self.header[0]])

    def __getitem__(self, index: int) -> Dict[str, str]:  # type: ignore[override]
        return {name: column[index] for name, column in self._columns.items()}

    def lines(self, column: str) -> List[str]:
        """The whole column; a name the header lacks is an error listing the header."""
        if column not in self._columns:
            raise DataError(f"{self.path}:1: no column {column!r} in the header (columns: "
                            f"{', '.join(self.header)})")
        return self._columns[column]

    def location(self, index: int) -> str:
        """`file:line` of sample `index` (line 1 is the header)."""
        return f"{self.path}:{index + 2}"
