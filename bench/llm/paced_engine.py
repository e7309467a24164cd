"""A stand-in for llama-server that streams completions at a set pace, for measuring kaip's hops.

Usage: python bench/llm/paced_engine.py --port P [--interval-ms 30] [--slots N]
                                        [anything llama-server takes, ignored]

Answers ``/health``, ``/v1/models``, ``/metrics`` (one ``llamacpp:`` series) and
``/v1/completions``: ``max_tokens`` events of llama-server's completion stream (the same JSON
keys, one HTTP chunk per event, one write each), ``interval-ms`` apart, then the finish event,
the usage chunk when ``stream_options.include_usage`` asks for it and ``[DONE]``; the answer's
head goes with the first event, as llama-server's does; kept-alive connections stay open.
``--slots N``: at most N generations at a time, the others waiting in the engine (as
``llama-server -np N``). Its own CPU per token (one timer, one write) is that of a small
asyncio server, so on a shared two-core machine kaip's processes are measured beside an engine
that takes far less than llama.cpp would (``relay_insitu.py``, ``gaps.py --paced-ms``); the
paced events wake kaip from idle per token as a real model's ~30 ms tokens do (``--interval-ms
0`` sends them back to back, as the tiny GGUF nearly does). Not an engine: the text is one word
repeated. Loopback only.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time

WORD = " sea"


def _event(doc: dict[str, object]) -> bytes:
    data = b"data: " + json.dumps(doc, separators=(",", ":")).encode() + b"\n\n"
    return b"%x\r\n%b\r\n" % (len(data), data)


async def _serve(
    reader: asyncio.StreamReader,
    writer: asyncio.StreamWriter,
    pace: float,
    slots: asyncio.Semaphore | None,
) -> None:
    try:
        while True:
            head = await reader.readuntil(b"\r\n\r\n")
            lines = head.decode("latin-1").split("\r\n")
            method, target, _ = lines[0].split(" ", 2)
            length = 0
            for line in lines[1:]:
                name, _, value = line.partition(":")
                if name.strip().lower() == "content-length":
                    length = int(value)
            body = await reader.readexactly(length) if length else b""
            if target.startswith("/v1/completions") and method == "POST":
                if slots is None:
                    await _complete(writer, json.loads(body), pace)
                else:
                    async with slots:  # one generation per slot; the rest wait their turn
                        await _complete(writer, json.loads(body), pace)
                        await writer.drain()
            else:
                text = b'{"status":"ok","data":[{"id":"tiny-llama"}]}'
                if target.startswith("/metrics"):
                    text = b"llamacpp:requests_processing 0\n"
                writer.write(
                    b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n"
                    b"content-length: %d\r\n\r\n%b" % (len(text), text)
                )
            await writer.drain()
    except (asyncio.IncompleteReadError, ConnectionError):
        pass
    finally:
        writer.close()


async def _complete(writer: asyncio.StreamWriter, request: dict[str, object], pace: float) -> None:
    tokens = int(request.get("max_tokens") or 16)  # type: ignore[call-overload]
    base = {"created": int(time.time()), "id": "chatcmpl-paced", "model": request.get("model"),
            "system_fingerprint": "b0-paced", "object": "text_completion"}  # fmt: skip
    if not request.get("stream"):
        doc = {**base, "choices": [{"text": WORD * tokens, "index": 0, "logprobs": None,
               "finish_reason": "length"}], "usage": {"completion_tokens": tokens,
               "prompt_tokens": 6, "total_tokens": tokens + 6}}  # fmt: skip
        text = json.dumps(doc).encode()
        writer.write(
            b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n"
            b"content-length: %d\r\n\r\n%b" % (len(text), text)
        )
        return
    head = (
        b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\n"
        b"transfer-encoding: chunked\r\nkeep-alive: timeout=5, max=100\r\n\r\n"
    )
    event = _event({"choices": [{"text": WORD, "index": 0, "logprobs": None,
                                 "finish_reason": None}], **base})  # fmt: skip
    for _ in range(tokens):
        if pace:
            await asyncio.sleep(pace)
        writer.write(head + event if head else event)  # the head with the first token, as
        head = b""  # llama-server sends it
        if pace:
            await writer.drain()
    writer.write(_event({"choices": [{"text": "", "index": 0, "logprobs": None,
                                      "finish_reason": "length"}], **base}))  # fmt: skip
    options = request.get("stream_options")
    if isinstance(options, dict) and options.get("include_usage"):
        usage = {"completion_tokens": tokens, "prompt_tokens": 6, "total_tokens": tokens + 6}
        writer.write(_event({"choices": [], **base, "usage": usage}))
    done = b"data: [DONE]\n\n"
    writer.write(b"%x\r\n%b\r\n0\r\n\r\n" % (len(done), done))


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--interval-ms", type=float, default=30.0)
    parser.add_argument("--slots", type=int, default=0, help="generations at a time (0: any)")
    args, _ = parser.parse_known_args()  # llama-server's own flags: taken and ignored
    pace = args.interval_ms / 1000
    slots = asyncio.Semaphore(args.slots) if args.slots else None

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await _serve(reader, writer, pace, slots)

    server = await asyncio.start_server(serve, args.host, args.port)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    try:
        import uvloop
    except ImportError:
        asyncio.run(main())
    else:
        uvloop.run(main())
