#!/usr/bin/env python3
"""Stream a chat completion from ``kaip up examples/llm`` with the official OpenAI SDK.

    python examples/llm/chat.py [--url http://127.0.0.1:8080] [PROMPT]

The tiny model's words are random (its weights are), but they are llama.cpp's: tokenized,
generated and counted by the engine, streamed through kaip's gateway as they come.
"""

from __future__ import annotations

import argparse

import openai


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("prompt", nargs="?", default="tell me about the sea")
    parser.add_argument("--url", default="http://127.0.0.1:8080")
    parser.add_argument("--model", default="tiny-llama")
    args = parser.parse_args()
    client = openai.OpenAI(base_url=f"{args.url}/v1", api_key="unused")
    stream = client.chat.completions.create(
        model=args.model,
        messages=[{"role": "user", "content": args.prompt}],
        max_tokens=32,
        temperature=0,
        stream=True,
        stream_options={"include_usage": True},
    )
    for chunk in stream:
        if chunk.choices and chunk.choices[0].delta.content:
            print(chunk.choices[0].delta.content, end="", flush=True)
        if chunk.usage is not None:
            print(
                f"\n[{chunk.usage.prompt_tokens} prompt + {chunk.usage.completion_tokens} "
                "completion tokens, counted by llama.cpp]"
            )


if __name__ == "__main__":
    main()
