// The real @google/genai SDK through gemini-proxy (Node 20 installs 2.x, whose default
// API version is v1beta; v1 is asked for explicitly).
//
// Run by tests/api/sdk.rs against the service in front of its mock Gemini:
//   PROXY_URL=http://127.0.0.1:PORT PROXY_KEY=<client key> node check_js.mjs
// Prints one line per check and exits 1 if any failed.

import { readFileSync } from 'node:fs';
import { GoogleGenAI, ApiError, Modality } from '@google/genai';

const PROXY_URL = process.env.PROXY_URL;
const PROXY_KEY = process.env.PROXY_KEY;
const MODEL = 'gemini-2.5-flash';

const failures = [];

async function check(name, run) {
  try {
    console.log(`ok   ${name}: ${await run()}`);
  } catch (error) {
    failures.push(name);
    console.log(`FAIL ${name}: ${error?.stack ?? error}`);
  }
}

function expect(condition, message) {
  if (!condition) throw new Error(message);
}

function client(apiVersion) {
  // No apiVersion: the SDK's own default.
  const options = { apiKey: PROXY_KEY, httpOptions: { baseUrl: PROXY_URL } };
  return new GoogleGenAI(apiVersion ? { ...options, apiVersion } : options);
}

async function generate(ai) {
  const reply = await ai.models.generateContent({
    model: MODEL,
    contents: 'Say hi',
    config: { systemInstruction: 'be brief', maxOutputTokens: 64 },
  });
  expect(reply.text === 'echo: Say hi', `text ${JSON.stringify(reply.text)}`);
  expect(reply.usageMetadata?.totalTokenCount > 0, 'no usage');
  return JSON.stringify(reply.text);
}

async function stream(ai) {
  const chunks = [];
  for await (const chunk of await ai.models.generateContentStream({ model: MODEL, contents: 'count to three' })) {
    chunks.push(chunk);
  }
  const text = chunks.map((chunk) => chunk.text ?? '').join('');
  expect(chunks.length === 3, `${chunks.length} chunks`);
  expect(text === 'echo: count to three', `text ${JSON.stringify(text)}`);
  return `${chunks.length} chunks, ${JSON.stringify(text)}`;
}

async function modelNotFound(ai) {
  try {
    await ai.models.generateContent({ model: 'mock-404', contents: 'x' });
  } catch (error) {
    expect(error instanceof ApiError, `not an ApiError: ${error}`);
    expect(error.status === 404, `status ${error.status}`);
    return `ApiError ${error.status}`;
  }
  throw new Error('no ApiError');
}

// The Live API over the service's WebSocket: JS maps the http base URL to
// ws:// and sends the client key as ?key= on the path `//ws/…`.
async function live(ai) {
  const messages = [];
  let turnDone;
  const turn = new Promise((resolve) => { turnDone = resolve; });
  const session = await ai.live.connect({
    model: 'gemini-2.0-flash-live-001',
    config: { responseModalities: [Modality.TEXT] },
    callbacks: {
      onmessage: (message) => {
        messages.push(message);
        if (message.serverContent?.turnComplete) turnDone();
      },
      onerror: (error) => turnDone(error),
      onclose: () => turnDone(),
    },
  });
  session.sendClientContent({ turns: 'Hello live', turnComplete: true });
  const timer = new Promise((_, reject) => setTimeout(() => reject(new Error('no turnComplete within 10 s')), 10000));
  await Promise.race([turn, timer]);
  session.close();
  const text = messages.map((m) => m.text ?? '').join('');
  expect(text === 'echo: Hello live', `text ${JSON.stringify(text)}`);
  const usage = messages.find((m) => m.usageMetadata)?.usageMetadata;
  expect(usage?.totalTokenCount > 0, `usage ${JSON.stringify(usage)}`);
  return `${messages.length} messages, ${JSON.stringify(text)}`;
}

const version = JSON.parse(
  readFileSync(new URL('./node_modules/@google/genai/package.json', import.meta.url)),
).version;
console.log(`@google/genai ${version}, node ${process.version}`);
for (const apiVersion of [undefined, 'v1']) {
  const ai = client(apiVersion);
  const label = apiVersion ?? 'default version';
  for (const run of [generate, stream, modelNotFound]) {
    await check(`@google/genai ${label} ${run.name}`, () => run(ai));
  }
}
await check('@google/genai default version live', () => live(client()));
if (failures.length > 0) {
  console.log(`${failures.length} failed: ${failures.join(', ')}`);
  process.exit(1);
}
console.log('all checks passed');
