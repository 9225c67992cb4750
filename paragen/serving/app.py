"""HTTP serving: `POST /v1/generate`, `GET /health`, `GET /v1/models` (FastAPI, JSON only).

Any task that is a `ServedPredictor` (paragen/interfaces.py) can be served; each input gets
the task's answer, in input order:

    translation     {"inputs": ["Ein Hund läuft."]}  →  {"outputs": ["A dog runs."]}
    classification  {"inputs": ["a fine film"]}      →  {"outputs": [{"label": "1",
                                                           "probabilities": {"0": 0.1, "1": 0.9}}]}
    regression      {"inputs": ["a fine film"]}      →  {"outputs": [{"value": 0.87}]}

A translation is answered with its string alone (`plain_answers`), any other task with its
whole dict, as `generate --format jsonl` prints it. A sentence-pair task (and extractive QA:
question, context) takes each input as one string with the two texts separated by a tab,
exactly as `generate` reads its lines, so the body keeps one shape for every task.

A client's mistake is always a 4xx with a one-line `{"error": ...}` (see `payload.py`): a
wrong content type 415, a malformed body 400, a body of the wrong shape or an input the task
cannot read (a pair without its tab) 422, too many, too long or too large inputs 413. An
input longer than the model reads (`max_input_tokens`) is refused with a 413 that names the
limit, for every task, because the task would otherwise cut it silently and answer for its
first part only (`generate` cuts, with a warning the HTTP client would never see); the client
can shorten it knowing the limit, which `/v1/models` states. For translation only (a
`PieceJoiner`), `long_inputs="split"` translates such inputs in pieces instead and lists them
under `"split"` in the answer. A failure inside the model is a 500 for the request that
caused it only; a server that is shutting down answers 503. A client that disconnects while
waiting has its inputs dropped before they reach the model. Nothing from the network is ever
unpickled (ParaGen's Thrift server did exactly that).
"""
import asyncio
import logging
import time
from contextlib import asynccontextmanager
from typing import Any, Dict, List

from fastapi import FastAPI, Request  # this module is only imported when serving
from fastapi.responses import JSONResponse

from paragen.errors import ConfigError
from paragen.interfaces import PieceJoiner, ServedPredictor
from paragen.serving.batcher import DynamicBatcher, Unavailable
from paragen.serving.payload import (ClientGone, RequestError, check_content_type,
                                     check_payload, input_lengths, parse_json, read_body)
from paragen.serving.pieces import split_to_fit

logger = logging.getLogger("paragen")
LONG_INPUTS = ("reject", "split")


class ModelFailed(RuntimeError):
    """The model raised on this request's inputs (a 500 for this request only)."""


def create_app(task, model_name: str, max_inputs: int = 64, max_input_chars: int = 2000,
               max_batch_tokens: int = 4096, max_wait_ms: float = 5.0,
               long_inputs: str = "reject", max_body_bytes: int = 1 << 20):
    """The app serving `task` (a `ServedPredictor`). An input costs its tokens plus one in
    the batcher's `max_batch_tokens` budget, so a budget of 1 serves one input at a time."""
    if long_inputs not in LONG_INPUTS:
        raise ValueError(f"long_inputs must be one of {LONG_INPUTS}, not {long_inputs!r}")
    if not isinstance(task, ServedPredictor):
        raise ConfigError(f"a {type(task).__name__} cannot be served: it is no "
                          f"paragen.interfaces.ServedPredictor")
    if long_inputs == "split" and not isinstance(task, PieceJoiner):
        raise ConfigError(f"--long-inputs split: a {type(task).__name__} cannot join the "
                          f"answers to an input's pieces; use --long-inputs reject")
    split_long = long_inputs == "split"
    batcher = DynamicBatcher(task.predict, lambda line: task.input_tokens([line])[0] + 1,
                             max_batch_tokens, max_wait_ms)
    started = time.time()

    @asynccontextmanager
    async def lifespan(app):
        batcher.start()
        yield
        await batcher.stop()

    app = FastAPI(title="paragen", lifespan=lifespan)
    app.state.batcher = batcher

    def error(status: int, message: str) -> JSONResponse:
        """One line; a lone surrogate from an exception text is escaped, not a crash."""
        line = " ".join(message.split()).encode("utf-8", "backslashreplace").decode("utf-8")
        return JSONResponse(status_code=status, content={"error": line})

    @app.get("/health")
    async def health():
        """Green only while the batcher's worker runs: without it every request would hang."""
        alive = batcher.alive
        return JSONResponse(status_code=200 if alive else 503, content={
            "status": "ok" if alive else "down", "uptime_s": round(time.time() - started, 1),
            "queued": batcher.queue.qsize()})

    @app.get("/v1/models")
    async def models() -> Dict[str, Any]:
        return {"models": [{"name": model_name, "task": type(task).__name__,
                            "model": type(task.model).__name__, **task.describe(),
                            "max_input_tokens": task.max_input_tokens,
                            "long_inputs": long_inputs}]}

    def plan(inputs: List[str]):
        """Model inputs with their token counts, and which request input each one answers."""
        lengths = input_lengths(inputs, task)
        max_tokens = task.max_input_tokens
        too_long = [i for i, n in enumerate(lengths) if max_tokens is not None and n > max_tokens]
        if too_long and not split_long:
            i = too_long[0]
            advice = ("send it in sentences, or start the server with --long-inputs split"
                      if isinstance(task, PieceJoiner) else "shorten it")
            raise RequestError(413, f"inputs[{i}] is {lengths[i]} tokens long; this model reads "
                                    f"at most {max_tokens} tokens per input ({advice})")
        if not too_long:
            return inputs, [n + 1 for n in lengths], list(range(len(inputs))), []
        lines, tokens, owners = [], [], []
        count = lambda text: task.input_tokens([text])[0]  # noqa: E731
        for i, (line, n) in enumerate(zip(inputs, lengths)):
            pieces = split_to_fit(line, count, max_tokens) if n > max_tokens else [line]
            lines += pieces
            tokens += [count(piece) + 1 for piece in pieces] if n > max_tokens else [n + 1]
            owners += [i] * len(pieces)
        return lines, tokens, owners, too_long

    def shape(answers: List[Dict[str, Any]], owners: List[int], count: int,
              split: List[int]) -> List[Any]:
        """One answer per request input (a split input's pieces joined), as the task serves
        it: the bare `output_field` (a translation string) or the whole dict."""
        if split:
            pieces: List[List[Dict[str, Any]]] = [[] for _ in range(count)]
            for owner, answer in zip(owners, answers):
                pieces[owner].append(answer)
            answers = [task.join_pieces(parts) for parts in pieces]
        if task.plain_answers:
            return [answer[task.output_field] for answer in answers]
        return answers

    async def until_disconnected(request: Request) -> None:
        while (await request.receive())["type"] != "http.disconnect":
            pass

    async def predict(request: Request, lines: List[str], tokens: List[int]
                      ) -> List[Dict[str, Any]]:
        """The batcher's answer, unless the client leaves first: then its request is
        cancelled, and the batcher skips it if the model has not started on it yet."""
        job = asyncio.ensure_future(batcher.submit(lines, tokens))
        watch = asyncio.ensure_future(until_disconnected(request))
        try:
            await asyncio.wait({job, watch}, return_when=asyncio.FIRST_COMPLETED)
        except asyncio.CancelledError:  # the server gave up on this request: so does the model
            job.cancel()
            raise
        finally:
            watch.cancel()
        if not job.done():
            job.cancel()
            raise ClientGone()
        try:
            return job.result()
        except Unavailable:
            raise
        except Exception as err:  # already logged by the batcher, with its traceback
            raise ModelFailed(f"generation failed: {type(err).__name__}: {err}") from err

    @app.post("/v1/generate")
    async def generate(request: Request):
        try:
            check_content_type(request)
            body = parse_json(await read_body(request, max_body_bytes))
            inputs = check_payload(body, max_inputs, max_input_chars)
            if not inputs:
                return {"outputs": []}
            lines, tokens, owners, split = plan(inputs)
            outputs = shape(await predict(request, lines, tokens), owners, len(inputs), split)
        except RequestError as err:
            return error(err.status, err.message)
        except ClientGone:  # nobody reads this answer
            return error(400, "the client disconnected")
        except Unavailable as err:
            return error(503, str(err))
        except ModelFailed as err:
            return error(500, str(err))
        except Exception as err:  # a bug in this module: still a JSON answer, and logged
            logger.exception("generate: internal error")
            return error(500, f"internal error: {type(err).__name__}: {err}")
        return {"outputs": outputs, "split": split} if split else {"outputs": outputs}

    return app
