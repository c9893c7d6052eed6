// Drives the server with the official openai SDK and prints what the SDK
// saw as one JSON object; interop_test.go asserts on it.
// Environment: OPENAI_BASE_URL (…/v1), METRICS_URL, MODEL.
import OpenAI from "openai";

const client = new OpenAI({ apiKey: "unused", baseURL: process.env.OPENAI_BASE_URL, maxRetries: 0 });
const model = process.env.MODEL;
const messages = [{ role: "user", content: "Say hello." }];
const out = {};

async function collectChat(stream) {
  const r = { contents: {}, finish: {}, firstRoles: {}, chunks: 0, usage: null };
  for await (const chunk of stream) {
    r.chunks++;
    if (chunk.usage) r.usage = chunk.usage;
    for (const c of chunk.choices) {
      if (!(c.index in r.firstRoles)) r.firstRoles[c.index] = c.delta.role ?? null;
      r.contents[c.index] = (r.contents[c.index] ?? "") + (c.delta.content ?? "");
      if (c.finish_reason) r.finish[c.index] = c.finish_reason;
    }
  }
  return r;
}

async function runningSequences() {
  const text = await (await fetch(process.env.METRICS_URL)).text();
  const line = text.split("\n").find((l) => l.startsWith("modelserver_llm_num_requests_running "));
  return Number(line.split(" ")[1]);
}

const models = await client.models.list();
out.models = models.data.map((m) => m.id);

const chat = await client.chat.completions.create({ model, messages, max_tokens: 8, temperature: 0 });
out.chat = { content: chat.choices[0].message.content, finish: chat.choices[0].finish_reason, usage: chat.usage, object: chat.object };

out.chatStream = await collectChat(
  await client.chat.completions.create({ model, messages, max_tokens: 8, temperature: 0, stream: true, stream_options: { include_usage: true } }),
);

const chatN = await client.chat.completions.create({ model, messages, max_tokens: 6, n: 3, seed: 1 });
out.chatN = { contents: chatN.choices.map((c) => c.message.content), indexes: chatN.choices.map((c) => c.index), usage: chatN.usage };

out.chatStreamN = await collectChat(
  await client.chat.completions.create({ model, messages, max_tokens: 6, n: 2, seed: 1, stream: true }),
);

const completion = await client.completions.create({ model, prompt: "Once upon a time", max_tokens: 8, temperature: 0, logprobs: 2 });
out.completion = {
  text: completion.choices[0].text,
  finish: completion.choices[0].finish_reason,
  usage: completion.usage,
  logprobTokens: completion.choices[0].logprobs.tokens.length,
};

const completionStream = await client.completions.create({ model, prompt: "Once upon a time", max_tokens: 8, temperature: 0, stream: true, stream_options: { include_usage: true } });
out.completionStream = { text: "", usage: null };
for await (const chunk of completionStream) {
  if (chunk.usage) out.completionStream.usage = chunk.usage;
  for (const c of chunk.choices) out.completionStream.text += c.text;
}

try {
  await client.chat.completions.create({ model, messages, temperature: 7 });
  out.invalid = { status: 200 };
} catch (err) {
  out.invalid = { status: err.status, type: err.type, param: err.param, code: err.code, isBadRequest: err instanceof OpenAI.BadRequestError };
}

// Abort mid-stream, then poll the running gauge until the slot is free. The
// SDK ends the iteration quietly on an abort (or throws APIUserAbortError,
// depending on timing); either way no finish_reason may arrive.
const controller = new AbortController();
const abortStream = await client.chat.completions.create(
  { model, messages, max_tokens: 200, temperature: 0, stream: true },
  { signal: controller.signal },
);
out.abort = { chunks: 0, finished: false, runningBefore: await runningSequences() };
try {
  for await (const chunk of abortStream) {
    if (++out.abort.chunks === 3) controller.abort();
    if (chunk.choices.some((c) => c.finish_reason)) out.abort.finished = true;
  }
  out.abort.error = "none";
} catch (err) {
  out.abort.error = err.constructor.name;
}
const abortedAt = performance.now();
let running = await runningSequences();
while (running !== 0 && performance.now() - abortedAt < 10000) {
  await new Promise((r) => setTimeout(r, 1));
  running = await runningSequences();
}
out.abort.runningAfter = running;
out.abort.msUntilFree = performance.now() - abortedAt;

console.log(JSON.stringify(out));
