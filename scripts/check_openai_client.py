#!/usr/bin/env python3
"""Checks that the official `openai` Python client works against `zerotrain serve`.

    python3 scripts/check_openai_client.py BASE_URL      (e.g. http://127.0.0.1:8080/v1)

Runs completions and chat completions, each streamed and not, and models.list, and checks that the
streamed text equals the non-streamed one (greedy). Prints one line per call; exit code 0 when all pass.
"""
import sys


def main() -> int:
    from openai import OpenAI

    client = OpenAI(base_url=sys.argv[1], api_key="unused", max_retries=0, timeout=60)
    failures = 0

    def check(name: str, ok: bool, detail: str) -> None:
        nonlocal failures
        failures += 0 if ok else 1
        print(f"check_openai_client: {name}: {'ok' if ok else 'FAIL'}: {detail}")

    models = client.models.list()
    check("models.list", len(models.data) == 1, models.data[0].id if models.data else "no model")

    c = client.completions.create(model="m", prompt="the cat ", max_tokens=12, temperature=0)
    text = c.choices[0].text
    check("completions", c.usage.completion_tokens == 12 and c.choices[0].finish_reason == "length", repr(text))
    streamed = "".join(chunk.choices[0].text for chunk in
                       client.completions.create(model="m", prompt="the cat ", max_tokens=12, temperature=0, stream=True))
    check("completions stream", streamed == text, repr(streamed))

    messages = [{"role": "user", "content": "hello"}]
    chat = client.chat.completions.create(model="m", messages=messages, max_tokens=10, temperature=0)
    reply = chat.choices[0].message.content
    check("chat.completions", chat.choices[0].message.role == "assistant" and chat.usage.completion_tokens <= 10, repr(reply))
    parts = [chunk.choices[0].delta.content or "" for chunk in
             client.chat.completions.create(model="m", messages=messages, max_tokens=10, temperature=0, stream=True)]
    check("chat.completions stream", "".join(parts) == reply, repr("".join(parts)))
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
