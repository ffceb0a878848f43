// The @google/genai SDK's stored resources through gemini-proxy: a file uploaded from
// a Blob of a few MiB (JS sends 8 MiB chunks, re-pointing the upload URL at its
// baseUrl), an interaction and its continuation, and a cached content; each deleted
// at the end. The SDK's default API version (v1beta for 2.x).
//
// Run by tests/api/sdk_resources.rs against the service in front of its mock Gemini:
//   PROXY_URL=http://127.0.0.1:PORT PROXY_KEY=<client key> node check_resources.mjs
// Prints one line per check, a `NAME <kind> <name>` line for each resource created,
// and exits 1 if any check failed.

import { createHash, randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { GoogleGenAI } from '@google/genai';

const PROXY_URL = process.env.PROXY_URL;
const PROXY_KEY = process.env.PROXY_KEY;
const MODEL = 'gemini-2.5-flash';
// Two chunks, the second short.
const UPLOAD_BYTES = 9 * 1024 * 1024 + 4321;
const POLL_LIMIT_MS = 30000;

const failures = [];
const made = {};

async function check(name, run) {
  try {
    const detail = await run();
    console.log(`ok   ${name}: ${detail}`);
    return true;
  } catch (error) {
    failures.push(name);
    console.log(`FAIL ${name}: ${error?.stack ?? error}`);
    return false;
  }
}

function expect(condition, message) {
  if (!condition) throw new Error(message);
}

function named(kind, name) {
  (made[kind] ??= []).push(name);
  console.log(`NAME ${kind} ${name}`);
}

function interactionText(interaction) {
  if (interaction?.output_text) return interaction.output_text;
  return (interaction?.steps ?? [])
    .flatMap((step) => step.content ?? [])
    .map((content) => content.text ?? '')
    .join('');
}

const ai = new GoogleGenAI({ apiKey: PROXY_KEY, httpOptions: { baseUrl: PROXY_URL } });
const bytes = randomBytes(UPLOAD_BYTES);

async function upload() {
  const blob = new Blob([bytes], { type: 'application/pdf' });
  const file = await ai.files.upload({ file: blob, config: { mimeType: 'application/pdf', displayName: 'sdk-check-js' } });
  expect(file.name?.startsWith('files/'), `name ${file.name}`);
  named('file', file.name);
  expect(Number(file.sizeBytes) === UPLOAD_BYTES, `size ${file.sizeBytes}, sent ${UPLOAD_BYTES}`);
  if (file.sha256Hash) {
    const digest = createHash('sha256').update(bytes).digest();
    const forms = [digest.toString('hex'), digest.toString('base64'), Buffer.from(digest.toString('hex')).toString('base64')];
    expect(forms.includes(file.sha256Hash), `sha256Hash ${file.sha256Hash} is not the bytes sent`);
  }
  return `${file.name}, ${file.sizeBytes} bytes, ${file.state}`;
}

async function getFile() {
  const name = made.file[0];
  const started = Date.now();
  let file = await ai.files.get({ name });
  while (file.state === 'PROCESSING' && Date.now() - started < POLL_LIMIT_MS) {
    await new Promise((resolve) => setTimeout(resolve, 300));
    file = await ai.files.get({ name });
  }
  expect(file.name === name, `name ${file.name}`);
  expect(file.state === 'ACTIVE', `state ${file.state}`);
  return `${file.state}, uri ${file.uri}`;
}

async function generateWithFile() {
  const file = await ai.files.get({ name: made.file[0] });
  const reply = await ai.models.generateContent({
    model: MODEL,
    contents: [{ role: 'user', parts: [{ fileData: { fileUri: file.uri, mimeType: file.mimeType } }, { text: 'describe' }] }],
  });
  expect(reply.text?.includes('describe'), `text ${JSON.stringify(reply.text)}`);
  return JSON.stringify(reply.text);
}

async function createInteraction() {
  const first = await ai.interactions.create({ model: MODEL, input: 'Hello from node' });
  expect(first.id, `no id: ${JSON.stringify(first).slice(0, 300)}`);
  named('interaction', first.id);
  expect(first.status === 'completed', `status ${first.status}`);
  // Read back at once: the Rust test ties each resource to the create call just
  // before the first call that names it.
  const got = await ai.interactions.get(first.id);
  expect(got.id === first.id && got.status === 'completed', `get: ${got.id} ${got.status}`);
  const text = interactionText(first);
  expect(text.includes('Hello from node'), `text ${JSON.stringify(text)}`);
  return `${first.id}, ${JSON.stringify(text)}`;
}

async function continueInteraction() {
  const second = await ai.interactions.create({
    model: MODEL,
    input: 'and node again',
    previous_interaction_id: made.interaction[0],
  });
  expect(second.id, `no id: ${JSON.stringify(second).slice(0, 300)}`);
  named('interaction', second.id);
  expect(second.status === 'completed', `status ${second.status}`);
  const text = interactionText(second);
  expect(text.includes('and node again'), `text ${JSON.stringify(text)}`);
  const got = await ai.interactions.get(second.id);
  expect(got.id === second.id && got.status === 'completed', `get: ${got.id} ${got.status}`);
  return `${second.id}, ${JSON.stringify(text)}`;
}

// The pager as users write it; an empty page after a token yields `undefined` in
// @google/genai 2.32.0 (it indexes the new page without checking its length).
async function listed(pager, name) {
  const items = [];
  for await (const item of pager) items.push(item);
  const missing = items.filter((item) => item === undefined).length;
  expect(missing === 0, `${missing} undefined items of ${items.length} (an empty page after a pageToken)`);
  const names = items.map((item) => item.name);
  expect(names.includes(name), `${name} not in ${JSON.stringify(names)}`);
  return `${names.length} listed`;
}

const CACHED_TEXT = Array.from({ length: 600 }, (_, i) => `line ${i}: the proxy keeps each resource on its key.`).join(' ');

async function createCache() {
  const cache = await ai.caches.create({
    model: MODEL,
    config: {
      contents: [{ role: 'user', parts: [{ text: CACHED_TEXT }] }],
      displayName: 'sdk-check-js-cache',
      ttl: '300s',
    },
  });
  expect(cache.name?.startsWith('cachedContents/'), `name ${cache.name}`);
  named('cache', cache.name);
  const reply = await ai.models.generateContent({
    model: MODEL,
    contents: 'what does the document say?',
    config: { cachedContent: cache.name },
  });
  expect(reply.text?.includes('document'), `text ${JSON.stringify(reply.text)}`);
  return `${cache.name}, ${JSON.stringify(reply.text)}`;
}

async function cleanUp() {
  const done = [];
  for (const name of made.file ?? []) {
    await ai.files.delete({ name });
    done.push(name);
  }
  for (const name of made.cache ?? []) {
    await ai.caches.delete({ name });
    done.push(name);
  }
  for (const id of made.interaction ?? []) {
    await ai.interactions.delete(id);
    done.push(id);
  }
  return `deleted ${done.length}`;
}

const version = JSON.parse(
  readFileSync(new URL('./node_modules/@google/genai/package.json', import.meta.url)),
).version;
console.log(`@google/genai ${version}, node ${process.version}`);
if (await check('files.upload', upload)) {
  await check('files.get', getFile);
  await check('generateContent with the file', generateWithFile);
  await check('files.list', async () => listed(await ai.files.list({ config: { pageSize: 10 } }), made.file[0]));
}
if (await check('interactions.create', createInteraction)) {
  await check('interactions.create previous_interaction_id', continueInteraction);
}
if (await check('caches.create', createCache)) {
  await check('caches.list', async () => listed(await ai.caches.list({ config: { pageSize: 10 } }), made.cache[0]));
}
await check('delete files, caches and interactions', cleanUp);
if (failures.length > 0) {
  console.log(`${failures.length} failed: ${failures.join(', ')}`);
  process.exit(1);
}
console.log('all checks passed');
