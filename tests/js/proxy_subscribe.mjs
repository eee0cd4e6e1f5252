// The official @fal-ai/client in proxy mode, as a Node backend would configure it: every call
// goes to vidhook's /fal/proxy (`when: "always"`: outside a browser the client proxies only
// then), and requestMiddleware names the tenant with a vidhook key. No FAL_KEY anywhere.
// argv: proxy URL, vidhook API key, endpoint id; stdin: the input JSON. Prints one JSON line.
import { createFalClient } from "@fal-ai/client";

const [proxyUrl, apiKey, endpointId] = process.argv.slice(2);
let raw = "";
for await (const chunk of process.stdin) raw += chunk;
const input = JSON.parse(raw);

const fal = createFalClient({
  proxyUrl: { url: proxyUrl, when: "always" },
  requestMiddleware: async (request) => ({
    ...request,
    headers: { ...(request.headers ?? {}), Authorization: `Bearer ${apiKey}` },
  }),
});

const updates = [];
let requestId = null;
const started = performance.now();
const result = await fal.subscribe(endpointId, {
  input,
  logs: true,
  pollInterval: 100,
  onEnqueue: (id) => { requestId = id; },
  onQueueUpdate: (status) => updates.push(status.status),
});
let invalid = null;
try {
  await fal.queue.submit(endpointId, { input: { prompt: "" } });
} catch (error) {
  invalid = { name: error.name, status: error.status, fieldErrors: error.fieldErrors };
}
console.log(JSON.stringify({
  requestId,
  resultRequestId: result.requestId,
  data: result.data,
  updates,
  invalid,
  elapsedMs: performance.now() - started,
}));
