// The real Yjs clients against the `yjs` party: `yjs` documents synced by
// `y-partykit/provider` (YPartyKitProvider over the `ws` polyfill), raw y-protocols messages
// where a test needs to see the wire. Run by tests/yjs/run.sh (which builds nothing: it needs
// target/release/partyring), or against real `partykit dev` with YJS_TARGET=partykit.
//
// Every wait is bounded (WAIT_MS); a test asserts what the documents contain, never how long
// something took. A "nothing arrived" check always waits on a later message from the same
// socket instead of a timer.

import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { randomBytes } from "node:crypto";
import * as decoding from "lib0/decoding";
import * as encoding from "lib0/encoding";
import YPartyKitProvider from "y-partykit/provider";
import * as awarenessProtocol from "y-protocols/awareness";
import * as syncProtocol from "y-protocols/sync";
import WS from "ws";
import * as Y from "yjs";
import { dataDir, start, TARGET } from "./server.mjs";

const IS_PARTYKIT = TARGET === "partykit";
const WAIT_MS = 15000;
const RUN = `${Date.now().toString(36)}-${randomBytes(3).toString("hex")}`;
const room = (name) => `y-${RUN}-${name}`;
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

async function waitUntil(cond, what, ms = WAIT_MS) {
  const deadline = Date.now() + ms;
  for (;;) {
    const v = cond();
    if (v) return v;
    if (Date.now() >= deadline) throw new Error(`timed out after ${ms} ms waiting for ${what}`);
    await sleep(10);
  }
}

const clients = new Set();

/** A Y.Doc synced through YPartyKitProvider, with its text `t` and map `m`. */
function client(host, name, options = {}) {
  const doc = new Y.Doc();
  const provider = new YPartyKitProvider(host, name, doc, {
    party: "yjs",
    WebSocketPolyfill: WS,
    ...options,
  });
  const c = { doc, provider, text: doc.getText("t"), map: doc.getMap("m") };
  clients.add(c);
  return c;
}

function destroy(...cs) {
  for (const c of cs) {
    c.provider.destroy();
    clients.delete(c);
  }
}

const sockets = new Set();

after(() => {
  destroy(...clients);
  for (const ws of sockets) ws.terminate();
});

const synced = (...cs) =>
  Promise.all(cs.map((c) => waitUntil(() => c.provider.synced, "provider synced")));

/** A plain WebSocket on the party, collecting binary messages. */
async function rawSocket(host, name) {
  const ws = new WS(`ws://${host}/parties/yjs/${name}`);
  ws.binaryType = "arraybuffer";
  sockets.add(ws);
  const s = { ws, messages: [], closed: null };
  ws.on("message", (data, isBinary) => {
    if (isBinary) s.messages.push(new Uint8Array(data));
  });
  ws.on("close", (code, reason) => {
    s.closed = { code, reason: reason.toString() };
    sockets.delete(ws);
  });
  await new Promise((resolve, reject) => {
    ws.once("open", resolve);
    ws.once("error", reject);
  });
  return s;
}

/** Awareness states in a raw awareness message (type 1), or null for another type. */
function awarenessOf(bytes) {
  const dec = decoding.createDecoder(bytes);
  if (decoding.readVarUint(dec) !== 1) return null;
  const aw = new awarenessProtocol.Awareness(new Y.Doc());
  awarenessProtocol.applyAwarenessUpdate(aw, decoding.readVarUint8Array(dec), "server");
  const states = aw.getStates();
  aw.destroy();
  return states;
}

/** JSON with every object's keys sorted: equal values, whatever order keys were set in (a
 *  late joiner's copy of an embedded object may list its keys in another order: README.md). */
const canonical = (v) =>
  Array.isArray(v)
    ? v.map(canonical)
    : v && typeof v === "object"
      ? Object.fromEntries(Object.keys(v).sort().map((k) => [k, canonical(v[k])]))
      : v;
const mapJson = (map) => JSON.stringify(canonical(map.toJSON()));

function converged(cs, textLength, mapSize) {
  const t = cs[0].text.toString();
  const m = mapJson(cs[0].map);
  return (
    t.length === textLength &&
    cs[0].map.size === mapSize &&
    cs.every((c) => c.text.toString() === t && mapJson(c.map) === m)
  );
}

/** Every client edits the text and the map `rounds` times without waiting for the others. */
async function editConcurrently(cs, rounds) {
  await Promise.all(
    cs.map(async (c, k) => {
      for (let i = 0; i < rounds; i++) {
        const pos = Math.floor(Math.random() * (c.text.length + 1));
        c.text.insert(pos, `<${k}.${i}>`);
        c.map.set(`c${k}`, i);
        c.map.set(`c${k}-${i}`, { k, i });
        await new Promise((r) => setImmediate(r));
      }
    }),
  );
  let length = 0;
  cs.forEach((_, k) => {
    for (let i = 0; i < rounds; i++) length += `<${k}.${i}>`.length;
  });
  return { length, mapSize: cs.length * (rounds + 1) };
}

describe("one server (snapshot persistence)", () => {
  let srv;
  before(async () => {
    srv = await start("snapshot", dataDir());
  });
  after(async () => {
    destroy(...clients);
    await srv?.stop();
  });

  test("two clients edit one Y.Text and one Y.Map concurrently and converge", async () => {
    const name = room("two");
    const cs = [client(srv.host, name), client(srv.host, name)];
    await synced(...cs);
    const { length, mapSize } = await editConcurrently(cs, 20);
    await waitUntil(() => converged(cs, length, mapSize), "two clients converge");
    destroy(...cs);
  });

  test("twenty clients edit concurrently and converge", async () => {
    const name = room("twenty");
    const cs = Array.from({ length: 20 }, () => client(srv.host, name));
    await synced(...cs);
    const { length, mapSize } = await editConcurrently(cs, 5);
    await waitUntil(() => converged(cs, length, mapSize), "twenty clients converge");
    // A late joiner gets the same state through sync step 1/2 alone.
    const late = client(srv.host, name);
    await synced(late);
    await waitUntil(() => converged([...cs, late], length, mapSize), "the late joiner matches");
    destroy(...cs, late);
  });

  test("awareness reaches the others, answers a query, and is removed when a client leaves", async () => {
    const name = room("awareness");
    const a = client(srv.host, name);
    const b = client(srv.host, name);
    await synced(a, b);
    a.provider.awareness.setLocalStateField("user", { name: "ada" });
    const aId = a.doc.clientID;
    await waitUntil(
      () => b.provider.awareness.getStates().get(aId)?.user?.name === "ada",
      "b sees a's awareness",
    );
    // Query awareness (message type 3) on a raw socket: answered with every state. (A
    // y-partykit server ignores the query: README.md in this directory.)
    if (!IS_PARTYKIT) {
      const raw = await rawSocket(srv.host, name);
      await waitUntil(() => raw.messages.length >= 1, "the server's first message");
      const before = raw.messages.length;
      raw.ws.send(new Uint8Array([3]));
      const answer = await waitUntil(
        () => raw.messages.slice(before).map(awarenessOf).find((s) => s?.get(aId)),
        "the answer to query-awareness",
      );
      assert.equal(answer.get(aId).user.name, "ada");
      raw.ws.close();
    }
    // a's socket dies without a goodbye (no awareness "null" from the client itself): the
    // server removes a's state and tells b.
    a.provider.shouldConnect = false;
    a.provider.ws.terminate();
    await waitUntil(() => !b.provider.awareness.getStates().has(aId), "a's state removed at b");
    destroy(a, b);
  });

  test("a read-only client's edit is refused", async () => {
    const name = room("readonly");
    const writer = client(srv.host, name);
    const ro = client(srv.host, name, { params: { readOnly: "true" } });
    const observer = client(srv.host, name);
    await synced(writer, ro, observer);
    writer.text.insert(0, "w");
    await waitUntil(() => ro.text.toString() === "w", "the read-only client receives edits");
    ro.text.insert(0, "RO");
    ro.map.set("ro", true);
    // Sent after the edit on the same socket: once the observer sees it, the server has
    // handled the edit too.
    ro.provider.awareness.setLocalStateField("user", { name: "viewer" });
    await waitUntil(
      () => observer.provider.awareness.getStates().get(ro.doc.clientID)?.user?.name === "viewer",
      "the read-only client's awareness (still relayed)",
    );
    assert.equal(observer.text.toString(), "w");
    assert.equal(observer.map.has("ro"), false);
    const fresh = client(srv.host, name);
    await synced(fresh);
    await waitUntil(() => fresh.text.toString() === "w", "a fresh client has the document");
    assert.equal(fresh.map.has("ro"), false, "the server's document never had the edit");
    destroy(writer, ro, observer, fresh);
  });

  test("a client that reconnects after missing edits catches up", async () => {
    const name = room("reconnect");
    const a = client(srv.host, name);
    const b = client(srv.host, name);
    await synced(a, b);
    a.text.insert(0, "one");
    await waitUntil(() => b.text.toString() === "one", "b has the first edit");
    b.provider.disconnect();
    await waitUntil(() => !b.provider.wsconnected && b.provider.ws === null, "b offline");
    a.text.insert(3, " two");
    a.map.set("missed", 2);
    b.text.insert(0, "offline ");
    b.provider.connect();
    await waitUntil(
      () =>
        b.text.toString() === a.text.toString() &&
        a.text.toString() === "offline one two" &&
        b.map.get("missed") === 2,
      "both sides caught up",
    );
    destroy(a, b);
  });

  test("an update over 1 MB, chunked by the provider, reaches the others", async () => {
    const name = room("big");
    const a = client(srv.host, name);
    const b = client(srv.host, name);
    await synced(a, b);
    const big = "x".repeat(1_500_000);
    a.text.insert(0, big);
    await waitUntil(() => b.text.length === big.length, "b has the big text");
    destroy(a, b);
  });

  test("a malformed update closes its sender with 1007; the document and the others are unaffected", async () => {
    const name = room("malformed");
    const a = client(srv.host, name);
    const b = client(srv.host, name);
    await synced(a, b);
    a.text.insert(0, "safe");
    await waitUntil(() => b.text.toString() === "safe", "b synced");
    const raw = await rawSocket(srv.host, name);
    const enc = encoding.createEncoder();
    encoding.writeVarUint(enc, 0); // sync
    encoding.writeVarUint(enc, 2); // update
    encoding.writeVarUint8Array(enc, new Uint8Array([0xff, 0xff, 0xff, 0xff]));
    raw.ws.send(encoding.toUint8Array(enc));
    if (IS_PARTYKIT) {
      // y-partykit logs the error and keeps the connection (README.md in this directory): a
      // sync step 1 sent after it is still answered.
      const step1 = encoding.createEncoder();
      encoding.writeVarUint(step1, 0);
      syncProtocol.writeSyncStep1(step1, new Y.Doc());
      const before = raw.messages.length;
      raw.ws.send(encoding.toUint8Array(step1));
      await waitUntil(
        () => raw.messages.slice(before).some((m) => m[0] === 0 && m[1] === 1),
        "sync step 2 after the malformed update",
      );
      assert.equal(raw.closed, null);
      raw.ws.close();
    } else {
      await waitUntil(() => raw.closed, "the server closes the raw socket");
      assert.equal(raw.closed.code, 1007);
      assert.match(raw.closed.reason, /malformed update/);
    }
    a.text.insert(4, "!");
    await waitUntil(() => b.text.toString() === "safe!", "the others still sync");
    destroy(a, b);
  });
});

/** Writes, restarts the server (SIGTERM, or SIGKILL after a durability barrier), reads back. */
async function survivesRestart(mode, signal) {
  const dir = dataDir();
  const opts = { threads: signal === "SIGKILL" ? 1 : 2 };
  let srv = await start(mode, dir, opts);
  const name = room(`restart-${mode}`);
  try {
    const a = client(srv.host, name);
    const b = client(srv.host, name);
    await synced(a, b);
    a.text.insert(0, "durable");
    a.map.set("mode", mode);
    await waitUntil(() => b.text.toString() === "durable" && b.map.get("mode") === mode, "b has it");
    destroy(b);
    if (signal === "SIGKILL") {
      // One core: a POST to the `main` party is answered after its fsync, and the log is
      // written in order, so every earlier write (the yjs updates) is durable too.
      const res = await fetch(`http://${srv.host}/parties/main/barrier-${RUN}`, {
        method: "POST",
        body: JSON.stringify({ message: "barrier" }),
      });
      assert.equal(res.status, 200);
    }
    // `a` is still connected: a graceful stop closes it (the last member leaving writes the
    // snapshot); SIGKILL relies on what was already stored.
    await srv.stop(signal);
    destroy(a);
    srv = await start(mode, dir, opts);
    const c = client(srv.host, name);
    await synced(c);
    await waitUntil(
      () => c.text.toString() === "durable" && c.map.get("mode") === mode,
      `the document after a restart (${mode})`,
    );
    destroy(c);
  } finally {
    await srv.stop();
  }
}

describe("persistence across a restart", () => {
  test("snapshot: the document survives a graceful restart", async () => {
    await survivesRestart("snapshot", "SIGTERM");
  });

  test("history: the document survives a restart, even a SIGKILL", async () => {
    await survivesRestart("history", IS_PARTYKIT ? "SIGTERM" : "SIGKILL");
  });
});
