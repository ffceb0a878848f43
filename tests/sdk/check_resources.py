"""The python google-genai SDK's stored resources through gemini-proxy: files (a
resumable upload of several 8 MiB chunks), cached contents, batches and interactions,
each created, used, listed and deleted by one client; and, with a second client key,
that the second client cannot see, use or delete any of them.

Run by tests/api/sdk_resources.rs against the service in front of its mock Gemini:
    PROXY_URL=http://127.0.0.1:PORT PROXY_KEY=<client key> \\
        [PROXY_KEY_B=<another client key>] [API_VERSION=v1beta] \\
        .venv/bin/python check_resources.py
API_VERSION unset keeps the SDK's default (v1 for python 3.x). Prints one line per
check, a `NAME <kind> <name>` line for each resource created, and exits 1 if any
check failed.

Against a bare mock (no service), set B_EXPECT=upstream: Gemini answers another
project's resource with 403 or 404, where the service answers 404 for another
client's resource.
"""

import base64
import hashlib
import json
import os
import sys
import tempfile
import time
import traceback

from google import genai
from google.genai import errors, types
from google.genai import _interactions_errors as interaction_errors

PROXY_URL = os.environ["PROXY_URL"]
PROXY_KEY = os.environ["PROXY_KEY"]
PROXY_KEY_B = os.environ.get("PROXY_KEY_B") or None
API_VERSION = os.environ.get("API_VERSION") or None
B_EXPECT = os.environ.get("B_EXPECT", "404")
MODEL = "gemini-2.5-flash"
# Several of python's 8 MiB chunks, the last one short.
UPLOAD_BYTES = int(os.environ.get("UPLOAD_MIB", "20")) * 1024 * 1024 + 12345
# Polls of files, batches and background interactions give up after this.
POLL_LIMIT_S = 30

failures = []


class Skipped(Exception):
    """A check that cannot run here, with the reason."""
# What client A made, by kind, for the isolation checks and the clean-up.
made = {}


def check(name, run):
    """Runs one check; a check returns a short detail or raises. Returns the detail,
    or None when the check failed."""
    try:
        detail = run()
    except Skipped as reason:
        print(f"skip {name}: {reason}", flush=True)
        return None
    except Exception as error:  # noqa: BLE001 - every failure is reported the same way
        failures.append(name)
        print(f"FAIL {name}: {type(error).__name__}: {error}", flush=True)
        traceback.print_exc(limit=4, file=sys.stdout)
        return None
    print(f"ok   {name}: {detail}", flush=True)
    return detail


def expect(condition, message):
    if not condition:
        raise AssertionError(message)


def named(kind, name):
    """Records a resource client A made, and prints it for the Rust test."""
    made.setdefault(kind, []).append(name)
    print(f"NAME {kind} {name}", flush=True)


def client(key):
    options = {
        "base_url": PROXY_URL,
        "timeout": 60_000,
        # No retries: a failure shows as it happened, not after backoffs.
        "retry_options": types.HttpRetryOptions(attempts=1),
    }
    if API_VERSION:
        options["api_version"] = API_VERSION
    return genai.Client(api_key=key, http_options=types.HttpOptions(**options))


def status_of(error):
    """The HTTP status of an SDK error: google-genai's APIError has `code`, the
    interactions client's errors (`google.genai._interactions_errors`) `status_code`."""
    if isinstance(error, errors.APIError):
        return error.code
    if isinstance(error, interaction_errors.APIError):
        return error.status_code
    return None


def expect_refused(run, codes):
    """`run` must fail with an SDK API error whose status is in `codes`."""
    try:
        result = run()
    except (errors.APIError, interaction_errors.APIError) as error:
        code = status_of(error)
        message = str(error).splitlines()[0][:120] if str(error) else ""
        expect(code in codes, f"status {code}, expected {codes}: {message}")
        return f"{type(error).__name__} {code}"
    raise AssertionError(f"no API error (expected {codes}): got {result!r:.200}")


def poll(what, fetch, done):
    """Fetches until `done(value)`, at most POLL_LIMIT_S; returns the last value."""
    started = time.monotonic()
    delay = 0.2
    while True:
        value = fetch()
        if done(value):
            return value
        if time.monotonic() - started > POLL_LIMIT_S:
            raise AssertionError(f"{what} not done after {POLL_LIMIT_S} s: {value!r:.300}")
        time.sleep(delay)
        delay = min(delay * 2, 2.0)


# Files ---------------------------------------------------------------------------


class Upload:
    """A temporary file of UPLOAD_BYTES known bytes."""

    def __init__(self):
        block = os.urandom(64 * 1024)
        digest = hashlib.sha256()
        handle = tempfile.NamedTemporaryFile(prefix="sdk-upload-", suffix=".bin", delete=False)
        with handle:
            left = UPLOAD_BYTES
            while left:
                piece = block[: min(left, len(block))]
                handle.write(piece)
                digest.update(piece)
                left -= len(piece)
        self.path = handle.name
        self.digest = digest.digest()

    def sha256_forms(self):
        """The encodings Gemini's `sha256Hash` has been seen in."""
        hexed = self.digest.hex()
        return {
            hexed,
            base64.b64encode(self.digest).decode(),
            base64.b64encode(hexed.encode()).decode(),
        }

    def remove(self):
        try:
            os.unlink(self.path)
        except OSError:
            pass


def file_upload(a, upload):
    file = a.files.upload(
        file=upload.path,
        config={"mime_type": "application/pdf", "display_name": "sdk-check-upload"},
    )
    expect(file.name and file.name.startswith("files/"), f"name {file.name!r}")
    named("file", file.name)
    expect(file.size_bytes == UPLOAD_BYTES, f"size {file.size_bytes}, sent {UPLOAD_BYTES}")
    if file.sha256_hash is not None:
        expect(
            file.sha256_hash in upload.sha256_forms(),
            f"sha256Hash {file.sha256_hash!r} is not the bytes sent",
        )
    chunks = -(-UPLOAD_BYTES // (8 * 1024 * 1024))
    return f"{file.name}, {file.size_bytes} bytes in {chunks} chunks, {file.state}"


def file_active(a):
    name = made["file"][0]
    file = poll(
        f"{name} ACTIVE",
        lambda: a.files.get(name=name),
        lambda f: f.state in (types.FileState.ACTIVE, types.FileState.FAILED),
    )
    expect(file.state == types.FileState.ACTIVE, f"state {file.state}")
    expect(file.uri and file.uri.endswith(name), f"uri {file.uri!r}")
    expect(file.size_bytes == UPLOAD_BYTES, f"size {file.size_bytes}")
    return f"{file.state}, uri {file.uri}"


def file_in_generate(a):
    file = a.files.get(name=made["file"][0])
    reply = a.models.generate_content(model=MODEL, contents=[file, "describe"])
    expect(reply.text and "describe" in reply.text, f"text {reply.text!r}")
    return repr(reply.text)


def file_listed(a):
    name = made["file"][0]
    names = [f.name for f in a.files.list(config={"page_size": 10})]
    expect(name in names, f"{name} not in {names}")
    return f"{len(names)} files"


def file_download(a, upload):
    file = a.files.get(name=made["file"][0])
    # The SDK refuses a File without download_uri (an uploaded one) before any call;
    # by name it asks anyway, and Gemini decides.
    target = file if file.download_uri else file.name
    try:
        data = a.files.download(file=target)
    except errors.APIError as error:
        raise Skipped(f"Gemini refuses to download it: {error.code} {error.status}") from error
    expect(len(data) == UPLOAD_BYTES, f"{len(data)} bytes, uploaded {UPLOAD_BYTES}")
    expect(hashlib.sha256(data).digest() == upload.digest, "not the bytes uploaded")
    return f"{len(data)} bytes, the same as uploaded"


# Cached contents -------------------------------------------------------------------

# Caches have a minimum size on Gemini: a long, repetitive document.
CACHED_TEXT = " ".join(f"line {i}: the proxy keeps each resource on its key." for i in range(600))


def cache_create(a):
    cache = a.caches.create(
        model=MODEL,
        config={
            "contents": [
                types.Content(role="user", parts=[types.Part(text=CACHED_TEXT)])
            ],
            "system_instruction": "answer from the document",
            "display_name": "sdk-check-cache",
            "ttl": "300s",
        },
    )
    expect(cache.name and cache.name.startswith("cachedContents/"), f"name {cache.name!r}")
    named("cache", cache.name)
    return f"{cache.name}, expires {cache.expire_time}"


def cache_in_generate(a):
    reply = a.models.generate_content(
        model=MODEL,
        contents="what does the document say?",
        config={"cached_content": made["cache"][0]},
    )
    expect(reply.text and "document" in reply.text, f"text {reply.text!r}")
    return repr(reply.text)


def cache_get(a):
    name = made["cache"][0]
    cache = a.caches.get(name=name)
    expect(cache.name == name, f"name {cache.name!r}")
    expect(cache.model and cache.model.endswith(MODEL), f"model {cache.model!r}")
    return f"{cache.name}, {cache.model}"


def cache_listed(a):
    name = made["cache"][0]
    names = [c.name for c in a.caches.list(config={"page_size": 10})]
    expect(name in names, f"{name} not in {names}")
    return f"{len(names)} cached contents"


def cache_update(a):
    name = made["cache"][0]
    before = a.caches.get(name=name).expire_time
    cache = a.caches.update(name=name, config={"ttl": "600s"})
    expect(cache.name == name, f"name {cache.name!r}")
    expect(
        before is None or cache.expire_time is None or cache.expire_time > before,
        f"expire_time {cache.expire_time} not after {before}",
    )
    return f"expires {before} -> {cache.expire_time}"


def cache_from_file(a):
    """A cached content built on the uploaded file: its create call names the file."""
    file = a.files.get(name=made["file"][0])
    cache = a.caches.create(
        model=MODEL,
        config={
            "contents": [
                types.Content(
                    role="user",
                    parts=[
                        types.Part.from_uri(file_uri=file.uri, mime_type=file.mime_type),
                        types.Part(text=CACHED_TEXT),
                    ],
                )
            ],
            "ttl": "300s",
        },
    )
    expect(cache.name and cache.name.startswith("cachedContents/"), f"name {cache.name!r}")
    named("cache", cache.name)
    reply = a.models.generate_content(
        model=MODEL, contents="and the file?", config={"cached_content": cache.name}
    )
    expect(reply.text and "and the file?" in reply.text, f"text {reply.text!r}")
    return f"{cache.name} on {file.name}, {reply.text!r}"


# Batches --------------------------------------------------------------------------

BATCH_PROMPTS = ["first batched prompt", "second batched prompt"]
TERMINAL = {
    types.JobState.JOB_STATE_SUCCEEDED,
    types.JobState.JOB_STATE_FAILED,
    types.JobState.JOB_STATE_CANCELLED,
    types.JobState.JOB_STATE_EXPIRED,
    types.JobState.JOB_STATE_PARTIALLY_SUCCEEDED,
}


def batch_create(a):
    job = a.batches.create(
        model=MODEL,
        src=[
            {"contents": [{"role": "user", "parts": [{"text": prompt}]}]}
            for prompt in BATCH_PROMPTS
        ],
        config={"display_name": "sdk-check-batch"},
    )
    expect(job.name and job.name.startswith("batches/"), f"name {job.name!r}")
    named("batch", job.name)
    return f"{job.name}, {job.state}"


def batch_done(a):
    name = made["batch"][0]
    job = poll(f"{name}", lambda: a.batches.get(name=name), lambda j: j.state in TERMINAL)
    expect(job.state == types.JobState.JOB_STATE_SUCCEEDED, f"state {job.state}")
    responses = job.dest.inlined_responses if job.dest else None
    expect(responses and len(responses) == len(BATCH_PROMPTS), f"dest {job.dest!r:.300}")
    texts = [r.response.text if r.response else None for r in responses]
    for prompt, text in zip(BATCH_PROMPTS, texts):
        expect(text and prompt in text, f"texts {texts}")
    return f"{job.state}, {texts}"


BATCH_JSONL = "".join(
    json.dumps({"key": f"r{i}", "request": {"contents": [{"role": "user", "parts": [{"text": p}]}]}})
    + "\n"
    for i, p in enumerate(BATCH_PROMPTS)
)


def batch_from_file(a):
    """A batch whose input is an uploaded JSONL file: its create call names the file."""
    handle = tempfile.NamedTemporaryFile("w", prefix="sdk-batch-", suffix=".jsonl", delete=False)
    with handle:
        handle.write(BATCH_JSONL)
    try:
        source = a.files.upload(
            file=handle.name,
            config={"mime_type": "application/jsonl", "display_name": "sdk-check-batch-input"},
        )
    finally:
        os.unlink(handle.name)
    named("file", source.name)
    made["input"] = [source.name]
    poll(
        f"{source.name} ACTIVE",
        lambda: a.files.get(name=source.name),
        lambda f: f.state != types.FileState.PROCESSING,
    )
    job = a.batches.create(model=MODEL, src=source.name, config={"display_name": "sdk-check-file-batch"})
    expect(job.name and job.name.startswith("batches/"), f"name {job.name!r}")
    named("batch", job.name)
    job = poll(job.name, lambda: a.batches.get(name=job.name), lambda j: j.state in TERMINAL)
    expect(job.state == types.JobState.JOB_STATE_SUCCEEDED, f"state {job.state}")
    expect(job.dest and job.dest.file_name, f"dest {job.dest!r:.300}")
    # The answers are a file Gemini made in the batch's project: readable and, being
    # generated, downloadable, on the batch's key.
    answers = job.dest.file_name
    named("answers", answers)
    data = a.files.download(file=answers)
    expect(data, f"{answers} is empty")
    return f"{job.name} from {source.name}: {job.state}, {len(data)} bytes of answers in {answers}"


def small_file_download(a):
    """The batch's input file back, by name: Gemini refuses to download an uploaded
    file (400), a mock may serve the bytes it kept."""
    name = made["input"][0]
    try:
        data = a.files.download(file=name)
    except errors.APIError as error:
        raise Skipped(f"Gemini refuses to download it: {error.code} {error.status}") from error
    expect(data == BATCH_JSONL.encode(), f"{len(data)} bytes, not the {len(BATCH_JSONL)} uploaded")
    return f"{len(data)} bytes, the same as uploaded"


def batch_listed(a):
    name = made["batch"][0]
    names = [j.name for j in a.batches.list(config={"page_size": 10})]
    expect(name in names, f"{name} not in {names}")
    return f"{len(names)} batches"


# Interactions -----------------------------------------------------------------------


def fetched(a, interaction_id):
    """The stored interaction, read back at once: the Rust test ties each resource to
    the create call just before the first call that names it."""
    got = a.interactions.get(interaction_id)
    expect(got.id == interaction_id, f"get answered {got.id!r}")
    expect(got.status == "completed", f"get: status {got.status}")
    return got


def interaction_text(interaction):
    """The text of an interaction's model output."""
    text = getattr(interaction, "output_text", None)
    if text:
        return text
    pieces = []
    for step in getattr(interaction, "steps", None) or []:
        for content in getattr(step, "content", None) or []:
            piece = getattr(content, "text", None)
            if piece:
                pieces.append(piece)
    return "".join(pieces)


def interaction_create(a):
    first = a.interactions.create(model=MODEL, input="Hello interactions")
    expect(first.id, f"no id: {first!r:.300}")
    named("interaction", first.id)
    expect(first.status == "completed", f"status {first.status}")
    fetched(a, first.id)
    text = interaction_text(first)
    expect("Hello interactions" in text, f"text {text!r}")
    return f"{first.id}, {text!r}"


def interaction_continue(a):
    second = a.interactions.create(
        model=MODEL,
        input="and once more",
        previous_interaction_id=made["interaction"][0],
    )
    expect(second.id, f"no id: {second!r:.300}")
    named("interaction", second.id)
    expect(second.status == "completed", f"status {second.status}")
    fetched(a, second.id)
    text = interaction_text(second)
    expect("and once more" in text, f"text {text!r}")
    return f"{second.id}, {text!r}"


def interaction_stream(a):
    events = list(a.interactions.create(model=MODEL, input="stream this", stream=True))
    types_seen = [getattr(e, "event_type", None) for e in events]
    expect(events, "no events")
    last = events[-1]
    expect(last.event_type == "interaction.completed", f"events {types_seen}")
    interaction = last.interaction
    expect(interaction.status == "completed", f"status {interaction.status}")
    expect(interaction.id, "no id on interaction.completed")
    named("interaction", interaction.id)
    fetched(a, interaction.id)
    deltas = "".join(
        getattr(getattr(e, "delta", None), "text", None) or ""
        for e in events
        if e.event_type == "step.delta"
    )
    expect("stream this" in deltas, f"deltas {deltas!r}, events {types_seen}")
    return f"{len(events)} events ({types_seen[0]} .. {types_seen[-1]}), {deltas!r}"


def interaction_background(a):
    started = a.interactions.create(model=MODEL, input="take your time", background=True)
    expect(started.id, f"no id: {started!r:.300}")
    named("interaction", started.id)
    done = poll(
        started.id,
        lambda: a.interactions.get(started.id),
        lambda i: i.status not in ("in_progress", "queued"),
    )
    expect(done.status == "completed", f"status {done.status}")
    text = interaction_text(done)
    expect("take your time" in text, f"text {text!r}")
    return f"{started.status} -> {done.status}, {text!r}"


# Client B -------------------------------------------------------------------------


def refused_codes():
    # Through the service, 404 whatever the kind; from Gemini itself, another
    # project's resource is a 403 or 404 (400 for an unknown previous interaction).
    return {404} if B_EXPECT == "404" else {400, 403, 404}


def b_checks(a, b):
    codes = refused_codes()
    file_name = made.get("file", [None])[0]
    cache_name = made.get("cache", [None])[0]
    batch_name = made.get("batch", [None])[0]
    interaction_id = made.get("interaction", [None])[0]
    if file_name:
        file = a.files.get(name=file_name)
        check("B files.get A's file", lambda: expect_refused(lambda: b.files.get(name=file_name), codes))
        check(
            "B generate_content with A's file uri",
            lambda: expect_refused(
                lambda: b.models.generate_content(
                    model=MODEL,
                    contents=[
                        types.Part.from_uri(file_uri=file.uri, mime_type=file.mime_type),
                        "describe",
                    ],
                ),
                codes,
            ),
        )
        check("B files.list has none of A's", lambda: none_listed(b.files.list(), made.get("file", [])))
        check("B files.delete A's file", lambda: expect_refused(lambda: b.files.delete(name=file_name), codes))
    if cache_name:
        check("B caches.get A's cache", lambda: expect_refused(lambda: b.caches.get(name=cache_name), codes))
        check(
            "B generate_content with A's cache",
            lambda: expect_refused(
                lambda: b.models.generate_content(
                    model=MODEL, contents="x", config={"cached_content": cache_name}
                ),
                codes,
            ),
        )
        check("B caches.list has none of A's", lambda: none_listed(b.caches.list(), made.get("cache", [])))
        check("B caches.delete A's cache", lambda: expect_refused(lambda: b.caches.delete(name=cache_name), codes))
    for answers in made.get("answers", []):
        check("B files.get A's batch answers", lambda: expect_refused(lambda: b.files.get(name=answers), codes))
        check(
            "B files.download A's batch answers",
            lambda: expect_refused(lambda: b.files.download(file=answers), codes),
        )
    if batch_name:
        check("B batches.get A's batch", lambda: expect_refused(lambda: b.batches.get(name=batch_name), codes))
        check("B batches.list has none of A's", lambda: none_listed(b.batches.list(), made.get("batch", [])))
        check("B batches.delete A's batch", lambda: expect_refused(lambda: b.batches.delete(name=batch_name), codes))
    if interaction_id:
        check(
            "B interactions.get A's interaction",
            lambda: expect_refused(lambda: b.interactions.get(interaction_id), codes),
        )
        check(
            "B continues A's interaction",
            lambda: expect_refused(
                lambda: b.interactions.create(
                    model=MODEL, input="hijack", previous_interaction_id=interaction_id
                ),
                codes,
            ),
        )
        check(
            "B interactions.delete A's interaction",
            lambda: expect_refused(lambda: b.interactions.delete(interaction_id), codes),
        )
    check("A's resources survived B", lambda: still_there(a))


def none_listed(pager, names):
    seen = [item.name for item in pager]
    leaked = [n for n in names if n in seen]
    expect(not leaked, f"B sees {leaked}")
    return f"B lists {len(seen)}, none of A's"


def still_there(a):
    for name in made.get("file", []) + made.get("answers", []):
        a.files.get(name=name)
    for name in made.get("cache", []):
        a.caches.get(name=name)
    for name in made.get("batch", []):
        a.batches.get(name=name)
    for id_ in made.get("interaction", []):
        a.interactions.get(id_)
    return f"{sum(len(v) for v in made.values())} resources"


# Clean-up -------------------------------------------------------------------------


def deletes(a):
    """Each kind's delete, then a get that must fail: Gemini answers 403 or 404 for
    a file or cache that is gone, 404 for the rest."""
    gone = {403, 404}
    for name in made.get("file", []) + made.get("answers", []):
        check(f"files.delete {name}", lambda: deleted(lambda: a.files.delete(name=name), lambda: a.files.get(name=name), gone))
    for name in made.get("cache", []):
        check("caches.delete", lambda: deleted(lambda: a.caches.delete(name=name), lambda: a.caches.get(name=name), gone))
    for name in made.get("batch", []):
        check("batches.delete", lambda: deleted(lambda: a.batches.delete(name=name), lambda: a.batches.get(name=name), gone))
    for id_ in made.get("interaction", []):
        check(
            f"interactions.delete {id_}",
            lambda: deleted(lambda: a.interactions.delete(id_), lambda: a.interactions.get(id_), gone),
        )


def deleted(delete, get, codes):
    delete()
    return "deleted, then " + expect_refused(get, codes)


def main():
    print(f"google-genai {genai.__version__}, API version {API_VERSION or 'default'}", flush=True)
    a = client(PROXY_KEY)
    upload = Upload()
    try:
        if check("files.upload", lambda: file_upload(a, upload)):
            check("files.get until ACTIVE", lambda: file_active(a))
            check("generate_content with the file", lambda: file_in_generate(a))
            check("files.list", lambda: file_listed(a))
            check("files.download", lambda: file_download(a, upload))
    finally:
        upload.remove()
    if check("caches.create", lambda: cache_create(a)):
        check("generate_content with the cache", lambda: cache_in_generate(a))
        check("caches.get", lambda: cache_get(a))
        check("caches.list", lambda: cache_listed(a))
        check("caches.update ttl", lambda: cache_update(a))
    if made.get("file"):
        check("caches.create from the uploaded file", lambda: cache_from_file(a))
    if check("batches.create inline", lambda: batch_create(a)):
        check("batches.get until done", lambda: batch_done(a))
        check("batches.list", lambda: batch_listed(a))
    if check("batches.create from an uploaded JSONL file", lambda: batch_from_file(a)):
        check("files.download the JSONL file", lambda: small_file_download(a))
    if check("interactions.create", lambda: interaction_create(a)):
        check("interactions.create previous_interaction_id", lambda: interaction_continue(a))
    check("interactions.create stream", lambda: interaction_stream(a))
    check("interactions.create background", lambda: interaction_background(a))
    if PROXY_KEY_B:
        b_checks(a, client(PROXY_KEY_B))
    deletes(a)
    if failures:
        print(f"{len(failures)} failed: {', '.join(failures)}")
        return 1
    print("all checks passed")
    return 0


if __name__ == "__main__":
    sys.exit(main())
