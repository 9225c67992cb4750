"""HTTP serving: `POST /v1/generate`, `GET /health`, `GET /v1/models` (FastAPI, JSON only).

    {"inputs": ["Ein Hund läuft.", ...], "options": {}}  →  {"outputs": ["A dog runs.", ...]}

Malformed JSON is a 400, a body of the wrong shape a 422, too many or too long inputs a 413;
a failure inside the model is a 500 for the requests in that batch only. Nothing from the
network is ever unpickled (ParaGen's Thrift server did exactly that).
"""
import json
import time
from contextlib import asynccontextmanager
from typing import Any, Dict

from fastapi import FastAPI, Request  # this module is only imported when serving
from fastapi.responses import JSONResponse

from paragen.serving.batcher import DynamicBatcher


def create_app(task, model_name: str, max_inputs: int = 64, max_input_chars: int = 2000,
               max_batch_tokens: int = 4096, max_wait_ms: float = 5.0):
    tokenizer = task.src_tokenizer
    batcher = DynamicBatcher(task.translate, lambda line: len(tokenizer.encode(line)) + 1,
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
        return JSONResponse(status_code=status, content={"error": message})

    @app.get("/health")
    async def health() -> Dict[str, Any]:
        return {"status": "ok", "uptime_s": round(time.time() - started, 1)}

    @app.get("/v1/models")
    async def models() -> Dict[str, Any]:
        return {"models": [{"name": model_name, "model": type(task.model).__name__,
                            "generator": type(task.generator).__name__,
                            "source": task.src, "target": task.tgt}]}

    @app.post("/v1/generate")
    async def generate(request: Request):
        try:
            body = json.loads(await request.body())
        except (json.JSONDecodeError, UnicodeDecodeError) as err:
            return error(400, f"malformed JSON body: {err}")
        if not isinstance(body, dict) or not isinstance(body.get("inputs"), list) or \
                not all(isinstance(x, str) for x in body["inputs"]):
            return error(422, 'expected {"inputs": ["sentence", ...], "options": {}}')
        unknown = set(body) - {"inputs", "options"}
        options = body.get("options") or {}
        if unknown or not isinstance(options, dict) or options:
            return error(422, f"unsupported keys or options: {sorted(unknown) or options}")
        inputs = body["inputs"]
        if len(inputs) > max_inputs:
            return error(413, f"{len(inputs)} inputs; at most {max_inputs} per request")
        too_long = [i for i, x in enumerate(inputs) if len(x) > max_input_chars]
        if too_long:
            return error(413, f"input {too_long[0]} has {len(inputs[too_long[0]])} characters; "
                              f"at most {max_input_chars}")
        if not inputs:
            return {"outputs": []}
        try:
            outputs = await batcher.submit(inputs)
        except Exception as err:
            return error(500, f"generation failed: {type(err).__name__}: {err}")
        return {"outputs": outputs}

    return app
