"""Reading and checking a `/v1/generate` body: every malformed request is a 4xx with one line.

These checks run before anything reaches the batcher, because one batch mixes clients: an
input the tokenizer cannot take (a lone surrogate from a `"\\ud800"` escape) would otherwise
fail the whole batch, and a 500 would tell the client the server is broken when the request
is. So: a wrong content type is a 415; an empty, non-UTF-8, unparseable or too deeply nested
body a 400; a body over the byte limit a 413, refused from its Content-Length before it is
read, or as soon as a chunked body passes the limit; a parseable body of the wrong shape a
422. Error messages never echo the client's text raw (a surrogate in them would make the
error response itself fail to encode), only `ascii()` of a short prefix.
"""
from __future__ import annotations

import json
from typing import Any, List

from starlette.requests import ClientDisconnect, Request

from paragen.errors import InputError

SHAPE = 'expected {"inputs": ["sentence", ...], "options": {}}'  # a pair: "first\\tsecond"


class RequestError(Exception):
    """A problem with the request: answered with `status` and `message`, logged as nothing."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status, self.message = status, message


class ClientGone(Exception):
    """The client disconnected before its request was complete: nobody to answer."""


def shown(value: Any, width: int = 40) -> str:
    """A short, ASCII-only rendering of client data for an error message."""
    text = ascii(value)
    return text if len(text) <= width else text[:width - 3] + "..."


def check_content_type(request: Request) -> None:
    header = request.headers.get("content-type", "")
    media, _, params = header.partition(";")
    media = media.strip().lower()
    if media != "application/json" and not (media.startswith("application/")
                                            and media.endswith("+json")):
        raise RequestError(415, f"Content-Type must be application/json, got "
                                f"{shown(media) if media else 'none'}")
    for param in params.split(";"):
        key, _, value = param.partition("=")
        if key.strip().lower() == "charset" and \
                value.strip().strip('"').lower() not in ("utf-8", "utf8"):
            raise RequestError(415, f"the body must be UTF-8, got charset "
                                    f"{shown(value.strip())}")


async def read_body(request: Request, max_bytes: int) -> bytes:
    """The whole body, refusing (413) one longer than `max_bytes` without buffering it."""
    declared = request.headers.get("content-length")
    if declared is not None:
        if not declared.strip().isdigit():
            raise RequestError(400, f"invalid Content-Length {shown(declared)}")
        if int(declared) > max_bytes:
            raise RequestError(413, f"the body is {int(declared)} bytes; this server takes at "
                                    f"most {max_bytes}")
    chunks, size = [], 0
    try:
        async for chunk in request.stream():
            size += len(chunk)
            if size > max_bytes:
                raise RequestError(413, f"the body is over {max_bytes} bytes, the most this "
                                        f"server takes")
            chunks.append(chunk)
    except ClientDisconnect:
        raise ClientGone() from None
    return b"".join(chunks)


def parse_json(raw: bytes) -> Any:
    if not raw.strip():
        raise RequestError(400, f"empty body; {SHAPE}")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as err:
        raise RequestError(400, f"the body is not UTF-8 (byte {err.start}: {err.reason})") \
            from None
    try:
        return json.loads(text)
    except RecursionError:
        raise RequestError(400, "malformed JSON body: nested too deeply") from None
    except ValueError as err:  # JSONDecodeError; also an integer literal of 5,000 digits
        message = " ".join(str(err).split())[:200]
        raise RequestError(400, f"malformed JSON body: {message}") from None


def check_payload(body: Any, max_inputs: int, max_input_chars: int) -> List[str]:
    """The list of input sentences, if `body` is a well-formed request within the limits."""
    if not isinstance(body, dict):
        raise RequestError(422, f"the body is a JSON {type(body).__name__}; {SHAPE}")
    unknown = sorted(set(body) - {"inputs", "options"})
    if unknown:
        raise RequestError(422, f"unknown key(s) {', '.join(shown(k) for k in unknown[:5])}; "
                                f"{SHAPE}")
    options = body.get("options", {})
    if not isinstance(options, dict):
        raise RequestError(422, f'"options" must be a JSON object, got a '
                                f"{type(options).__name__}")
    if options:
        raise RequestError(422, f"unsupported option(s) "
                                f"{', '.join(shown(k) for k in sorted(options)[:5])}; "
                                f"this server takes none")
    inputs = body.get("inputs")
    if not isinstance(inputs, list):
        raise RequestError(422, f'"inputs" must be a list of strings, got '
                                f"{'nothing' if inputs is None else type(inputs).__name__}")
    if len(inputs) > max_inputs:
        raise RequestError(413, f"{len(inputs)} inputs; at most {max_inputs} per request")
    for i, item in enumerate(inputs):
        if not isinstance(item, str):
            raise RequestError(422, f"inputs[{i}] is a {type(item).__name__}, not a string")
    for i, item in enumerate(inputs):
        if len(item) > max_input_chars:
            raise RequestError(413, f"inputs[{i}] has {len(item)} characters; at most "
                                    f"{max_input_chars}")
        try:
            item.encode("utf-8")
        except UnicodeEncodeError as err:
            raise RequestError(422, f"inputs[{i}] is not valid Unicode text: a lone surrogate "
                                    f"{shown(err.object[err.start])} at character "
                                    f"{err.start}") from None
    return inputs


def input_lengths(inputs: List[str], task) -> List[int]:
    """Each input's length as the task counts it (`ServedPredictor.input_tokens`), in one call.
    An input the task cannot read is this request's mistake, refused (422) before it can share
    a batch with other clients' inputs."""
    try:
        return task.input_tokens(inputs)
    except InputError as err:
        raise RequestError(422, f"inputs[{err.index}]: {err.reason}") from None
    except Exception as err:  # input-specific: this request alone is refused
        raise RequestError(422, f"the inputs could not be tokenized: {type(err).__name__}: "
                                f"{' '.join(str(err).split())[:200]}") from None
