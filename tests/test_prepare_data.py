"""`paragen prepare-data`: copy from a local folder, download with hash verification."""
import argparse
import functools
import gzip
import hashlib
import http.server
import threading

import pytest

from paragen.commands import prepare_data
from paragen.errors import DataError

SPLITS = ("train", "valid", "test2016")


def parse(*argv):
    parser = argparse.ArgumentParser()
    prepare_data.add_arguments(parser)
    return parser.parse_args(list(argv))


def test_hash_table_matches_shared_data(data_dir):
    for name, digest in prepare_data.MULTI30K_SHA256.items():
        assert hashlib.sha256((data_dir / "multi30k" / name).read_bytes()).hexdigest() == digest


def test_copy_from_data_dir(data_dir, tmp_path, capsys):
    out = tmp_path / "out"
    assert prepare_data.run(parse("--output", str(out), "--source", str(data_dir / "multi30k"))) == 0
    for split in SPLITS:
        for lang in ("de", "en"):
            name = f"{split}.{lang}"
            assert (out / name).read_bytes() == (data_dir / "multi30k" / name).read_bytes()
    assert len(capsys.readouterr().out.strip().splitlines()) == 6
    assert sorted(p.name for p in out.iterdir()) == sorted(f"{s}.{lang}" for s in SPLITS for lang in "de en".split())


def test_copy_lists_missing_files(tmp_path):
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "train.de").write_text("x\n")
    with pytest.raises(DataError, match="missing train.en, valid.de"):
        prepare_data.run(parse("--output", str(tmp_path / "out"), "--source", str(tmp_path / "src")))
    assert not (tmp_path / "out").exists()


def test_default_source_honours_paragen_data(monkeypatch, tmp_path):
    monkeypatch.setenv("PARAGEN_DATA", str(tmp_path))
    assert prepare_data.default_source() == str(tmp_path / "multi30k")


@pytest.fixture
def server(data_dir, tmp_path):
    """Serve upstream-named gz files (val.*, test_2016_flickr.*) from tmp_path/remote."""
    remote = tmp_path / "remote"
    remote.mkdir()
    for local, name in prepare_data.multi30k_files(["de", "en"]):
        (remote / name).write_bytes(gzip.compress((data_dir / "multi30k" / local).read_bytes()))
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(remote))
    handler.log_message = lambda *args: None
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield remote, f"http://127.0.0.1:{httpd.server_address[1]}/"
    httpd.shutdown()
    httpd.server_close()


def test_download_verifies_and_writes(server, data_dir, tmp_path):
    _, url = server
    out = tmp_path / "out"
    assert prepare_data.run(parse("--output", str(out), "--download", "--base-url", url)) == 0
    for split in SPLITS:
        for lang in ("de", "en"):
            name = f"{split}.{lang}"
            assert (out / name).read_bytes() == (data_dir / "multi30k" / name).read_bytes()
    assert not [p for p in out.iterdir() if p.name.endswith(".tmp")]


def test_download_tampered_file_fails_and_writes_nothing_for_it(server, tmp_path):
    remote, url = server
    original = gzip.decompress((remote / "val.en.gz").read_bytes())
    (remote / "val.en.gz").write_bytes(gzip.compress(original.replace(b"A ", b"The ", 1)))
    out = tmp_path / "out"
    with pytest.raises(DataError) as err:
        prepare_data.run(parse("--output", str(out), "--download", "--base-url", url))
    message = str(err.value)
    assert "valid.en" in message and prepare_data.MULTI30K_SHA256["valid.en"] in message
    assert hashlib.sha256(original.replace(b"A ", b"The ", 1)).hexdigest() in message
    assert not (out / "valid.en").exists()
    assert [p.name for p in out.iterdir() if p.name.startswith("valid.en")] == []


def test_download_missing_remote_file_is_a_data_error(server, tmp_path):
    remote, url = server
    (remote / "test_2016_flickr.de.gz").unlink()
    with pytest.raises(DataError, match="test_2016_flickr.de.gz: download failed"):
        prepare_data.run(parse("--output", str(tmp_path / "out"), "--download", "--base-url", url))
