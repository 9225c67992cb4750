"""Checks of `paragen serve`'s options, and the listening socket, before the model loads.

Why: uvicorn takes `--port 99999` and listens on 99999 mod 65536 (34463) without a word, and a
taken port or an unresolvable host only showed up after the model had loaded, as a uvicorn
log line. Every bad value here is one `error: ...` line (a `ConfigError`, exit 2), and the
socket is bound first so that a busy port is reported in a second, not after a minute.
Standard library only: the checks run even where the `serve` extra is not installed.
"""
from __future__ import annotations

import math
import socket
from typing import Any

from paragen.errors import ConfigError

MAX_BEAM = 64
MAX_WAIT_MS = 60_000.0  # a minute of waiting for company is surely a typo


def _positive(name: str, value: Any) -> None:
    if value is not None and value < 1:
        raise ConfigError(f"{name} {value}: must be at least 1")


def check_args(args) -> None:
    """Raise `ConfigError` naming the first option that is out of range."""
    if not 1 <= args.port <= 65535:
        raise ConfigError(f"--port {args.port}: must be between 1 and 65535")
    if not args.host or args.host != args.host.strip() or any(c in args.host for c in "/ \t"):
        raise ConfigError(f"--host {args.host!r}: expected an IP address or a host name")
    for option in ("max_inputs", "max_tokens", "max_input_chars", "max_body_bytes"):
        _positive("--" + option.replace("_", "-"), getattr(args, option, None))
    wait = args.max_wait_ms
    if not (math.isfinite(wait) and 0 <= wait <= MAX_WAIT_MS):
        raise ConfigError(f"--max-wait-ms {wait}: must be between 0 and {MAX_WAIT_MS:g}")
    if args.beam is not None and not 1 <= args.beam <= MAX_BEAM:
        raise ConfigError(f"--beam {args.beam}: must be between 1 and {MAX_BEAM}")


def bind(host: str, port: int) -> socket.socket:
    """A listening TCP socket on host:port (IPv4 or IPv6), or a `ConfigError` saying why not."""
    try:
        family, kind, proto, _, address = socket.getaddrinfo(
            host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)[0]
    except (socket.gaierror, UnicodeError) as err:
        reason = getattr(err, "strerror", None) or err
        raise ConfigError(f"--host {host!r}: cannot resolve it ({reason})") from None
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
        sock.listen(2048)
    except OSError as err:
        sock.close()
        raise ConfigError(f"cannot listen on {host}:{port}: {err.strerror or err}") from None
    return sock
