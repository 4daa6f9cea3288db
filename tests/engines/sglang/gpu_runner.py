"""Run one ``sglang.Engine`` in a fresh process (plug-ins load once per process) and dump its outputs as JSON.

    python gpu_runner.py IN.json OUT.json

``IN``: ``{"env": {...}, "model": PATH, "engine": {...}, "requests": [{"input_ids", "sampling_params",
"delay_s"}], "stream": bool}``. ``OUT``: one ``{"output_ids", "finish", "softgrpo": [hex rows] | null,
"logprobs", "num_retractions"}`` per request. Requests with ``delay_s`` arrive that much later
(asyncio), so a batch sees requests joining mid-way.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys


def main(inp: str, outp: str) -> None:
    spec = json.load(open(inp))
    os.environ.update(spec.get("env", {}))
    import sglang

    engine = sglang.Engine(model_path=spec["model"], **spec.get("engine", {}))

    async def one(req: dict) -> dict:
        await asyncio.sleep(req.get("delay_s", 0.0))
        kw = dict(input_ids=req["input_ids"], sampling_params=req["sampling_params"], return_logprob=True)
        if spec.get("stream"):
            chunks, last = [], None
            async for chunk in await engine.async_generate(stream=True, **kw):
                chunks.extend(chunk["meta_info"].get("softgrpo") or [])
                last = chunk
            out = last
            out["meta_info"]["softgrpo"] = chunks
        else:
            out = await engine.async_generate(**kw)
        rows = out["meta_info"].get("softgrpo")
        return {"output_ids": out["output_ids"], "finish": out["meta_info"].get("finish_reason"),
                "softgrpo": None if rows is None else [bytes(r).hex() for r in rows],
                "logprobs": [x[0] for x in out["meta_info"].get("output_token_logprobs", [])],
                "num_retractions": out["meta_info"].get("num_retractions", 0)}

    async def run_all() -> list:
        return await asyncio.gather(*(one(r) for r in spec["requests"]))

    results = engine.loop.run_until_complete(run_all())  # the loop the TokenizerManager runs on
    engine.shutdown()
    json.dump(results, open(outp, "w"))


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
