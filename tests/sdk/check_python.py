"""The real Python SDKs through gemini-proxy: google-genai on both API versions and the
openai SDK on the OpenAI-compatible surface.

Run by tests/api/sdk.rs against the service in front of its mock Gemini:
    PROXY_URL=http://127.0.0.1:PORT PROXY_KEY=<client key> .venv/bin/python check_python.py
Prints one line per check and exits 1 if any failed.
"""

import os
import sys
import traceback

from google import genai
from google.genai import errors, types
import openai

PROXY_URL = os.environ["PROXY_URL"]
PROXY_KEY = os.environ["PROXY_KEY"]
MODEL = "gemini-2.5-flash"

# The mock's catalogue, as listed on each version (the -latest aliases only on v1beta).
LISTED = {"v1": 5, "v1beta": 7}

failures = []


def check(name, run):
    """Runs one check; a check returns a short detail or raises."""
    try:
        detail = run()
    except Exception as error:  # noqa: BLE001 - every failure is reported the same way
        failures.append(name)
        print(f"FAIL {name}: {type(error).__name__}: {error}")
        traceback.print_exc(limit=3, file=sys.stdout)
    else:
        print(f"ok   {name}: {detail}")


def expect(condition, message):
    if not condition:
        raise AssertionError(message)


def gemini_client(version, key=PROXY_KEY):
    return genai.Client(
        api_key=key,
        http_options=types.HttpOptions(
            base_url=PROXY_URL, api_version=version, timeout=30_000
        ),
    )


def expect_api_error(run, code, status):
    try:
        run()
    except errors.APIError as error:
        expect(error.code == code, f"code {error.code}, expected {code}: {error}")
        expect(error.status == status, f"status {error.status}, expected {status}")
        return f"{type(error).__name__} {error.code} {error.status}"
    raise AssertionError(f"no APIError (expected {code})")


def generate(client, version):
    reply = client.models.generate_content(
        model=MODEL,
        contents="Say hi",
        config=types.GenerateContentConfig(
            system_instruction="be brief", max_output_tokens=64
        ),
    )
    expect(reply.text == "echo: Say hi", f"text {reply.text!r}")
    expect(reply.usage_metadata.total_token_count > 0, "no usage")
    expect(reply.model_version == MODEL, f"model {reply.model_version!r}")
    return f"{reply.text!r}, {reply.usage_metadata.total_token_count} tokens"


def stream(client, version):
    chunks = list(
        client.models.generate_content_stream(model=MODEL, contents="count to three")
    )
    text = "".join(chunk.text or "" for chunk in chunks)
    expect(len(chunks) == 3, f"{len(chunks)} chunks")
    expect(text == "echo: count to three", f"text {text!r}")
    expect(chunks[-1].candidates[0].finish_reason == types.FinishReason.STOP, "no STOP")
    return f"{len(chunks)} chunks, {text!r}"


def count_tokens(client, version):
    total = client.models.count_tokens(model=MODEL, contents="hi there").total_tokens
    expect(total and total > 0, f"total {total}")
    return f"{total} tokens"


def embed(client, version):
    result = client.models.embed_content(
        model="gemini-embedding-001", contents=["a", "b"]
    )
    sizes = [len(e.values) for e in result.embeddings]
    expect(sizes == [8, 8], f"sizes {sizes}")
    expect(result.embeddings[0].values != result.embeddings[1].values, "same vectors")
    return f"{len(sizes)} vectors"


def list_models(client, version):
    # Two per page, so the pager follows nextPageToken through the service.
    names = [model.name for model in client.models.list(config={"page_size": 2})]
    expect(len(names) == LISTED[version], f"{len(names)} models: {names}")
    expect(f"models/{MODEL}" in names, f"{names}")
    return f"{len(names)} models"


def unknown_client_key(client, version):
    other = gemini_client(version, key="not-a-client-key")
    return expect_api_error(
        lambda: other.models.generate_content(model=MODEL, contents="x"),
        401,
        "UNAUTHENTICATED",
    )


def quota_exhausted(client, version):
    return expect_api_error(
        lambda: client.models.generate_content(model="mock-429", contents="x"),
        429,
        "RESOURCE_EXHAUSTED",
    )


def model_not_found(client, version):
    return expect_api_error(
        lambda: client.models.generate_content(model="mock-404", contents="x"),
        404,
        "NOT_FOUND",
    )


GEMINI_CHECKS = [
    generate,
    stream,
    count_tokens,
    embed,
    list_models,
    unknown_client_key,
    quota_exhausted,
    model_not_found,
]


def openai_client():
    return openai.OpenAI(
        api_key=PROXY_KEY, base_url=f"{PROXY_URL}/v1beta/openai/", max_retries=0
    )


def openai_chat():
    reply = openai_client().chat.completions.create(
        model=MODEL,
        messages=[
            {"role": "system", "content": "be brief"},
            {"role": "user", "content": "hi"},
        ],
    )
    content = reply.choices[0].message.content
    expect(content == "echo: hi", f"content {content!r}")
    expect(reply.usage.total_tokens > 0, "no usage")
    return repr(content)


def openai_chat_stream():
    chunks = list(
        openai_client().chat.completions.create(
            model=MODEL,
            messages=[{"role": "user", "content": "count to three"}],
            stream=True,
            stream_options={"include_usage": True},
        )
    )
    text = "".join(
        chunk.choices[0].delta.content or "" for chunk in chunks if chunk.choices
    )
    expect(text == "echo: count to three", f"text {text!r}")
    return f"{len(chunks)} chunks, {text!r}"


def main():
    print(f"google-genai {genai.__version__}, openai {openai.__version__}")
    for version in ("v1", "v1beta"):
        client = gemini_client(version)
        for run in GEMINI_CHECKS:
            check(f"google-genai {version} {run.__name__}", lambda: run(client, version))
    check("openai chat completion", openai_chat)
    check("openai streamed chat completion", openai_chat_stream)
    if failures:
        print(f"{len(failures)} failed: {', '.join(failures)}")
        return 1
    print("all checks passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
