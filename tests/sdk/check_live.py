"""The real google-genai Live API through gemini-proxy's TLS listener.

python google-genai always dials wss:// (even for an http:// base URL), so
tests/api/sdk.rs starts the service with a certificate of a test CA and
points SSL_CERT_FILE at that CA:

  PROXY_URL=https://127.0.0.1:PORT PROXY_KEY=<client key> SSL_CERT_FILE=ca.pem python check_live.py

Prints one line per check and exits 1 if any failed.
"""

import asyncio
import os
import sys

from google import genai
from google.genai import errors, types

PROXY_URL = os.environ["PROXY_URL"]
PROXY_KEY = os.environ["PROXY_KEY"]
MODEL = "gemini-2.0-flash-live-001"
failures = []


async def check(name, run):
    try:
        print(f"ok   {name}: {await run()}", flush=True)
    except Exception as error:  # noqa: BLE001 - every failure is reported
        failures.append(name)
        print(f"FAIL {name}: {error!r}", flush=True)


def client(api_version=None):
    options = {"base_url": PROXY_URL}
    if api_version:
        options["api_version"] = api_version
    return genai.Client(api_key=PROXY_KEY, http_options=options)


async def text_turn(api_version):
    config = types.LiveConnectConfig(response_modalities=["TEXT"])
    async with client(api_version).aio.live.connect(model=MODEL, config=config) as session:
        await session.send_client_content(
            turns=types.Content(role="user", parts=[types.Part(text="Hello live")]),
            turn_complete=True,
        )
        text, usage = "", None
        async for message in session.receive():
            if message.text:
                text += message.text
            if message.usage_metadata:
                usage = message.usage_metadata
        assert text == "echo: Hello live", text
        assert usage and usage.total_token_count > 0, usage
        return f"{text!r}, {usage.total_token_count} tokens"


async def refused_model():
    config = types.LiveConnectConfig(response_modalities=["TEXT"])
    try:
        async with client().aio.live.connect(model="gemini-2.5-pro-live-not-allowed", config=config) as session:
            await session.send_client_content(
                turns=types.Content(role="user", parts=[types.Part(text="x")]), turn_complete=True
            )
            async for _ in session.receive():
                pass
    except errors.APIError as error:
        assert error.code == 1008, error
        assert "MODEL_NOT_ALLOWED" in str(error), error
        return f"APIError {error.code}"
    raise AssertionError("no APIError")


async def main():
    print(f"google-genai {genai.__version__}, python {sys.version.split()[0]}")
    for version in (None, "v1beta"):
        label = version or "default version"
        await check(f"google-genai {label} live text turn", lambda: text_turn(version))
    await check("google-genai live model outside the allow-list", refused_model)
    if failures:
        print(f"{len(failures)} failed: {', '.join(failures)}")
        sys.exit(1)
    print("all checks passed")


asyncio.run(main())
