// WebSocket over TLS through nginx (run by tests/deploy/tls.sh):
//
//   node tls-client.mjs https://127.0.0.1:PORT CA_FILE ROOM
//
// Two `ws` clients join wss://127.0.0.1:PORT/parties/main/ROOM, verifying nginx's certificate
// against CA_FILE (the throwaway self-signed one). Then: an HTTPS POST is broadcast to both;
// a WebSocket text message from A reaches B and not A; GET returns the history with both.
// Exits 0 when every check held, 1 otherwise. Every wait is bounded; the whole run is cut
// off after 20 s.
import { readFileSync } from "node:fs";
import https from "node:https";
import WebSocket from "ws";

const [base, caFile, room] = process.argv.slice(2);
if (!base || !caFile || !room || !/^https:\/\/127\.0\.0\.1:\d+$/.test(base)) {
  console.error("usage: node tls-client.mjs https://127.0.0.1:PORT CA_FILE ROOM");
  process.exit(2);
}
const ca = readFileSync(caFile);
const path = `/parties/main/${room}`;
const WAIT_MS = 5000;
const QUIET_MS = 300;
setTimeout(() => {
  console.error("tls-client: FAIL: timed out after 20 s");
  process.exit(1);
}, 20000).unref();

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
async function waitUntil(cond, what) {
  const deadline = Date.now() + WAIT_MS;
  while (!cond()) {
    if (Date.now() >= deadline) throw new Error(`timed out after ${WAIT_MS} ms waiting for ${what}`);
    await sleep(10);
  }
}

// One HTTPS request with the CA (no global fetch: it cannot take a per-request CA).
function request(method, body) {
  return new Promise((resolve, reject) => {
    const req = https.request(
      `${base}${path}`,
      { method, ca, headers: body ? { "content-type": "application/json" } : {}, timeout: WAIT_MS },
      (res) => {
        let data = "";
        res.setEncoding("utf8");
        res.on("data", (c) => (data += c));
        res.on("end", () => resolve({ status: res.statusCode, body: data }));
      },
    );
    req.on("timeout", () => req.destroy(new Error(`${method} timed out`)));
    req.on("error", reject);
    req.end(body);
  });
}

function connect(name) {
  const ws = new WebSocket(`${base.replace("https:", "wss:")}${path}?_pk=${name}`, { ca });
  const client = { name, ws, got: [], open: false, closed: null, tls: null };
  ws.on("open", () => {
    client.open = true;
    client.tls = ws._socket.getProtocol?.() ?? "?";
  });
  ws.on("message", (data, isBinary) => client.got.push(isBinary ? data : data.toString()));
  ws.on("close", (code) => (client.closed = code));
  ws.on("error", (e) => (client.error = e));
  return client;
}

let passed = 0;
function check(cond, what) {
  if (!cond) throw new Error(what);
  passed++;
  console.log(`tls-client: ok - ${what}`);
}

try {
  const a = connect("a");
  const b = connect("b");
  await waitUntil(() => (a.open && b.open) || a.error || b.error, "both wss:// clients to open");
  if (a.error || b.error) throw a.error || b.error;
  check(a.tls.startsWith("TLS") && a.ws._socket.authorized, `wss:// handshake verified against the CA (${a.tls})`);

  const post = await request("POST", JSON.stringify({ message: "over-https" }));
  check(post.status === 200 && post.body === "OK", `HTTPS POST answered ${post.status} ${JSON.stringify(post.body)}`);
  await waitUntil(() => a.got.length >= 1 && b.got.length >= 1, "the POST's broadcast on both sockets");
  check(a.got[0] === "over-https" && b.got[0] === "over-https", "both wss:// clients received the HTTPS POST's broadcast");

  a.ws.send("over-wss");
  await waitUntil(() => b.got.length >= 2, "A's message at B");
  await sleep(QUIET_MS);
  check(b.got[1] === "over-wss" && a.got.length === 1, "A's wss:// text reached B, and not A");

  const get = await request("GET");
  const history = JSON.parse(get.body);
  check(
    get.status === 200 && JSON.stringify(history.slice(-2)) === JSON.stringify(["over-https", "over-wss"]),
    `HTTPS GET returns the history ${get.body}`,
  );

  a.ws.close(1000);
  b.ws.close(1000);
  await waitUntil(() => a.closed !== null && b.closed !== null, "both closes");
  check(a.closed === 1000 && b.closed === 1000, "clean close (1000) through nginx");
  console.log(`tls-client: ${passed} passed, 0 failed`);
  process.exit(0);
} catch (e) {
  console.error(`tls-client: FAIL: ${e.message}`);
  console.log(`tls-client: ${passed} passed, 1 failed`);
  process.exit(1);
}
