"""`paragen prepare-data --dataset multi30k|scitldr --output DIR [--download|--source DIR]`.

Puts a dataset's files, under the names configs expect, into one folder: either copied from a
local folder (the default: `$PARAGEN_DATA/<dataset>`, else `../shared/data/<dataset>`) or
downloaded (Multi30k only). SciTLDR's JSON lines are copied, and beside each split
`<split>.source` is written: each paper's source sentences joined by a space, one paper per
line, exactly as `Seq2SeqTask` (`join: " "`) reads them, for the verbs that read one source
text per line (`generate`, `distill`, `bench`). Downloads are checked against sha256 hashes of
the decompressed files, so a changed or corrupted upstream file is an error instead of a
silently different benchmark. Every file is written to a temporary name and renamed, so an
interrupted run never leaves a partial file.
"""
from __future__ import annotations

import argparse
import gzip
import hashlib
import io
import os
import shutil
import tempfile
import urllib.error
import urllib.request
import zlib
from typing import Callable, Dict, List, Tuple

from paragen.datasets import JsonlDataset, field_texts, parse_field_path
from paragen.errors import ConfigError, DataError

MULTI30K_URL = "https://raw.githubusercontent.com/multi30k/dataset/master/data/task1/raw"
# local split name -> remote file stem
MULTI30K_SPLITS = {"train": "train", "valid": "val", "test2016": "test_2016_flickr"}
MULTI30K_LANGS = ("de", "en", "fr", "cs")
# sha256 of each decompressed file in data/task1/raw of the upstream repository.
MULTI30K_SHA256: Dict[str, str] = {
    "train.de": "2c2b73fd2b548fbcde3a875e0a78d6ee94d498bfdee6bd3eae3945779e9ddf72",
    "train.en": "460a15fbd157e34a7a9957ee388c1ca247fe47af3ef25fb50442af6c274e0fc6",
    "train.fr": "5925a3c18f1587b6b54b87743106e6e8ab93618edb6f65d19eac0621f853a10d",
    "train.cs": "2be68b38c8d586ff4f54eb13cc6e1baaaa053695b3f070d3038303a47f2268da",
    "valid.de": "660e09eb7e1da2f856ea13ee5ad3cf6d36b3d5b0b733c857e94c5747a3dfc660",
    "valid.en": "1f2a23d992769b5b3d209b0a10dd0b77c08cceb1f20dfb97ed0aafa49d107227",
    "valid.fr": "5304e444d842e962b2dda4d816b70b22a1765b15401642b7ca37a67477e708dc",
    "valid.cs": "d53827e469b0a1ca8d57e9e26b2b64c4bc4b33f5479c7b03ae87ae5c882c3e33",
    "test2016.de": "4be6b5b3236b79c25475c6bb829800a7ce559e9ba7a1f6c2394fe4d40be46d16",
    "test2016.en": "399a4382932c1aadd3ceb9bef1008d388a64c76d4ae4e9d4728c6f4301cac182",
    "test2016.fr": "cb3160d69b002bb638e66cc7612fcd56cb0af82eadc9c142dedc438afb885ef6",
    "test2016.cs": "45adb85f688de8407fddcbe1b36dca15d12aab868149b337e2576f2d6d2ff8d8",
}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--dataset", choices=["multi30k", "scitldr"], default="multi30k",
                        help="which corpus to prepare")
    parser.add_argument("--output", required=True, help="folder to write the files into")
    parser.add_argument("--source", default=None,
                        help="local folder to copy from (default: $PARAGEN_DATA/<dataset>, "
                             "else ../shared/data/<dataset>)")
    parser.add_argument("--download", action="store_true",
                        help="download from --base-url instead of copying from --source")
    parser.add_argument("--base-url", default=MULTI30K_URL,
                        help="folder URL holding train.L.gz, val.L.gz, test_2016_flickr.L.gz")
    parser.add_argument("--langs", nargs="+", choices=MULTI30K_LANGS, default=["de", "en"],
                        help="Multi30k languages to copy")


SCITLDR_SPLITS = ("train", "dev", "test")


def run(args: argparse.Namespace) -> int:
    if args.dataset == "scitldr":
        if args.download:
            raise ConfigError("--download: SciTLDR is copied from a local folder (get "
                              "SciTLDR-A's train/dev/test.jsonl from github.com/allenai/scitldr)")
        prepare_scitldr(args.source or default_source("scitldr"), args.output)
        return 0
    files = multi30k_files(args.langs)
    if args.download:
        download(files, args.base_url, args.output)
    else:
        copy([local for local, _ in files], args.source or default_source("multi30k"),
             args.output)
    return 0


def default_source(dataset: str = "multi30k") -> str:
    """Resolved at run time so that $PARAGEN_DATA set after import is honoured."""
    root = os.environ.get("PARAGEN_DATA", os.path.join("..", "shared", "data"))
    return os.path.join(root, dataset)


def prepare_scitldr(source: str, output: str) -> None:
    """Copy `<split>.jsonl` and write `<split>.source` beside it (line i: paper i's source)."""
    names = [f"{split}.jsonl" for split in SCITLDR_SPLITS]
    copy(names, source, output)
    steps = parse_field_path("source", "source")
    for name in names:
        data = JsonlDataset(os.path.join(output, name))
        texts = field_texts(data, "source", steps, " ", data.location)
        target = os.path.join(output, name.replace(".jsonl", ".source"))
        _write_atomically(target, lambda handle, texts=texts: handle.write(
            "".join(text + "\n" for text in texts).encode("utf-8")))
        print(f"{os.path.basename(target)}: {len(texts)} sources, sentences joined by a space")


def multi30k_files(langs: List[str]) -> List[Tuple[str, str]]:
    """(local name, remote name) pairs, e.g. ('valid.de', 'val.de.gz')."""
    return [(f"{split}.{lang}", f"{remote}.{lang}.gz")
            for split, remote in MULTI30K_SPLITS.items() for lang in langs]


def copy(names: List[str], source: str, output: str) -> None:
    missing = [name for name in names if not os.path.isfile(os.path.join(source, name))]
    if missing:
        raise DataError(f"{source}: missing {', '.join(missing)} (use --source DIR to point at "
                        "the folder holding them, or --download)")
    os.makedirs(output, exist_ok=True)
    for name in names:
        origin = os.path.join(source, name)
        _write_atomically(os.path.join(output, name),
                          lambda handle, origin=origin: _copy_into(origin, handle))
        print(f"{name}: copied from {origin}")


def download(files: List[Tuple[str, str]], base_url: str, output: str) -> None:
    os.makedirs(output, exist_ok=True)
    for local, remote in files:
        url = f"{base_url.rstrip('/')}/{remote}"
        content = _verified(local, url, _fetch(url))
        _write_atomically(os.path.join(output, local), lambda handle: handle.write(content))
        lines = content.count(b"\n")
        print(f"{local}: downloaded from {url} ({lines} lines, sha256 ok)")


# The largest Multi30k file is about 4 MB decompressed; these bounds leave ample room and stop
# a hostile or broken server from filling memory (a gzip bomb expands 1,000-fold).
MAX_DOWNLOAD_BYTES = 64 << 20
MAX_DECOMPRESSED_BYTES = 256 << 20


def _fetch(url: str) -> bytes:
    try:
        with urllib.request.urlopen(url, timeout=60) as response:
            data = response.read(MAX_DOWNLOAD_BYTES + 1)
    except (urllib.error.URLError, OSError) as err:
        raise DataError(f"{url}: download failed ({err})") from None
    if len(data) > MAX_DOWNLOAD_BYTES:
        raise DataError(f"{url}: larger than {MAX_DOWNLOAD_BYTES >> 20} MiB; refusing it")
    return data


def _verified(name: str, url: str, compressed: bytes) -> bytes:
    """Decompress and check the hash; raise before anything is written for this file."""
    try:
        with gzip.GzipFile(fileobj=io.BytesIO(compressed)) as stream:
            content = stream.read(MAX_DECOMPRESSED_BYTES + 1)
    except (OSError, EOFError, zlib.error) as err:
        raise DataError(f"{url}: not a valid gzip file ({err})") from None
    if len(content) > MAX_DECOMPRESSED_BYTES:
        raise DataError(f"{url}: decompresses to more than {MAX_DECOMPRESSED_BYTES >> 20} MiB; "
                        f"refusing it")
    actual = hashlib.sha256(content).hexdigest()
    expected = MULTI30K_SHA256[name]
    if actual != expected:
        raise DataError(f"{name}: sha256 mismatch for {url}: expected {expected}, got {actual}")
    return content


def _copy_into(origin: str, handle) -> None:
    with open(origin, "rb") as source:
        shutil.copyfileobj(source, handle)


def _write_atomically(path: str, write: Callable) -> None:
    """Write through `write(handle)` to a temporary file beside `path`, then rename it."""
    fd, scratch = tempfile.mkstemp(prefix=os.path.basename(path) + ".", suffix=".tmp",
                                   dir=os.path.dirname(os.path.abspath(path)))
    try:
        with os.fdopen(fd, "wb") as handle:
            write(handle)
        os.chmod(scratch, 0o644)  # mkstemp's 0600 is meant for secrets, not data sets
        os.replace(scratch, path)
    except BaseException:
        os.unlink(scratch)
        raise
