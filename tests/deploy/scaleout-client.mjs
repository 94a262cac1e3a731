// The client side of tests/deploy/scaleout.sh. Every request goes to 127.0.0.1.
//
//   node scaleout-client.mjs before  ENTRY STATE NAME=URL...   # all nodes
//   node scaleout-client.mjs after   ENTRY STATE NAME=URL...   # all nodes, removed one included
//   node scaleout-client.mjs stopped ENTRY STATE NAME=URL...   # after one node was stopped
//
// ENTRY is nginx (http://127.0.0.1:PORT); NAME=URL are the nodes, reached directly. STATE is a
// JSON file: `before` writes {rooms: {room: owner}}, the later phases read it and add to it.
//
// before:  30 rooms; per room 3 WebSocket clients through nginx (2 on /parties/main/ROOM, 1 on
//          the legacy /party/ROOM, each with its own ?_pk=), a POST "b:ROOM" through nginx;
//          every client gets exactly its room's message; a GET on every node directly finds
//          the history ["b:ROOM"] on exactly one node (the owner) and [] on the others; every
//          node owns some rooms.
// after:   (STATE.removed names the node taken out of nginx) per room 2 clients through nginx
//          and a POST "a:ROOM": the clients get it; a room whose owner remained is still there
//          (history ["b:ROOM","a:ROOM"]); a room of the removed node is now on a remaining node
//          (history ["a:ROOM"]) and the removed node still has only ["b:ROOM"].
// stopped: (STATE.stopped names a remaining node that was killed, nginx unchanged) a POST
//          "s:ROOM" per room through nginx: the stopped node's rooms answer 502, the others 200,
//          and no running node received a stopped node's room's message.
// Prints a summary; exits 0 when every check held, 1 otherwise (each wait bounded; the
// whole phase is cut off after 30 s).
import { readFileSync, writeFileSync } from "node:fs";
import WebSocket from "ws";

const [phase, entry, stateFile, ...nodeArgs] = process.argv.slice(2);
const nodes = Object.fromEntries(nodeArgs.map((a) => a.split(/=(.*)/s).slice(0, 2)));
const loopback = (u) => /^http:\/\/127\.\d+\.\d+\.\d+:\d+$/.test(u);
if (!["before", "after", "stopped"].includes(phase) || !loopback(entry) || !stateFile ||
    Object.keys(nodes).length < 2 || !Object.values(nodes).every(loopback)) {
  console.error("usage: node scaleout-client.mjs before|after|stopped http://127.0.0.1:PORT STATE NAME=http://127.0.0.1:PORT...");
  process.exit(2);
}
const WAIT_MS = 5000;
const QUIET_MS = 300;
setTimeout(() => {
  console.error(`scaleout-client ${phase}: FAIL: timed out after 30 s`);
  process.exit(1);
}, 30000).unref();

// 30 room ids, raw path segments as clients send them: a few need the raw (not decoded)
// segment to be the hash key.
const ROOMS = [
  ...Array.from({ length: 26 }, (_, i) => `room-${String(i).padStart(2, "0")}`),
  "caf%C3%A9", "with%20space", "Mixed.Case_~-", "x%2Fy",
];

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
async function waitUntil(cond, what) {
  const deadline = Date.now() + WAIT_MS;
  while (!cond()) {
    if (Date.now() >= deadline) throw new Error(`timed out after ${WAIT_MS} ms waiting for ${what}`);
    await sleep(10);
  }
}
let failures = 0;
function expect(cond, what) {
  if (!cond) {
    failures++;
    console.error(`scaleout-client ${phase}: FAIL: ${what}`);
  }
}

async function http(method, url, body) {
  const res = await fetch(url, {
    method,
    body,
    headers: body ? { "content-type": "application/json" } : {},
    signal: AbortSignal.timeout(WAIT_MS),
  });
  return { status: res.status, text: await res.text() };
}

function connect(path) {
  const ws = new WebSocket(`${entry.replace("http:", "ws:")}${path}`);
  const c = { path, ws, got: [], open: false, error: null, closed: false };
  ws.on("open", () => (c.open = true));
  ws.on("message", (d, bin) => c.got.push(bin ? `<binary ${d.length}>` : d.toString()));
  ws.on("error", (e) => (c.error = e));
  ws.on("close", () => (c.closed = true));
  return c;
}

// The history of `room` on every node, read directly: {name: [...messages]}.
async function histories(room) {
  const out = {};
  for (const [name, url] of Object.entries(nodes)) {
    if (name === state.stopped) continue;
    const r = await http("GET", `${url}/parties/main/${room}`);
    expect(r.status === 200, `GET ${room} on ${name}: ${r.status}`);
    out[name] = r.status === 200 ? JSON.parse(r.text) : null;
  }
  return out;
}
const holders = (h, msg) => Object.keys(h).filter((n) => h[n]?.includes(msg));
const same = (a, b) => JSON.stringify(a) === JSON.stringify(b);

// Clients per room through nginx, one POST per room through nginx, every client gets it.
async function roomRound(prefix, paths) {
  const clients = Object.fromEntries(ROOMS.map((room) => [room, paths(room).map(connect)]));
  const all = Object.values(clients).flat();
  await waitUntil(() => all.every((c) => c.open || c.error), "every WebSocket to open");
  if (process.env.SCALEOUT_DEBUG) console.error(`open ${ms()}`);
  const bad = all.filter((c) => c.error);
  if (bad.length) throw new Error(`${bad.length} WebSockets failed: ${bad[0].path}: ${bad[0].error.message}`);
  const posts = await Promise.all(
    ROOMS.map((room) => http("POST", `${entry}/parties/main/${room}`, JSON.stringify({ message: `${prefix}:${room}` }))),
  );
  posts.forEach((r, i) => expect(r.status === 200 && r.text === "OK", `POST to ${ROOMS[i]} through nginx: ${r.status} ${r.text}`));
  await waitUntil(() => all.every((c) => c.got.length >= 1), "every client to get its room's message")
    .catch((e) => expect(false, e.message));
  if (process.env.SCALEOUT_DEBUG) console.error(`received ${ms()}`);
  await sleep(QUIET_MS);
  for (const room of ROOMS) {
    for (const c of clients[room]) {
      expect(same(c.got, [`${prefix}:${room}`]), `client ${c.path} got ${JSON.stringify(c.got)}, not only "${prefix}:${room}"`);
    }
  }
  for (const c of all) c.ws.close(1000);
  await waitUntil(() => all.every((c) => c.closed), "every WebSocket to close").catch((e) => expect(false, e.message));
  if (process.env.SCALEOUT_DEBUG) console.error(`closed ${ms()}`);
  return all.length;
}

const count = (owners) => {
  const n = Object.fromEntries(Object.keys(nodes).map((k) => [k, 0]));
  for (const o of Object.values(owners)) if (o in n) n[o]++;
  return Object.entries(n).map(([k, v]) => `${k}=${v}`).join(" ");
};

const T0 = Date.now();
const ms = () => `${Date.now() - T0} ms`;
const state = phase === "before" ? { rooms: {} } : JSON.parse(readFileSync(stateFile, "utf8"));
try {
  if (phase === "before") {
    const n = await roomRound("b", (room) => [
      `/parties/main/${room}?_pk=a-${room}`,
      `/parties/main/${room}?_pk=b-${room}`,
      `/party/${room}?_pk=c-${room}`,
    ]);
    for (const room of ROOMS) {
      const h = await histories(room);
      const owners = holders(h, `b:${room}`);
      expect(owners.length === 1, `${room}: history found on ${owners.length} nodes (${owners}), not exactly one`);
      for (const [name, msgs] of Object.entries(h)) {
        expect(owners.includes(name) ? same(msgs, [`b:${room}`]) : same(msgs, []), `${room} on ${name}: ${JSON.stringify(msgs)}`);
      }
      state.rooms[room] = owners[0];
    }
    for (const name of Object.keys(nodes)) {
      expect(Object.values(state.rooms).includes(name), `node ${name} owns no room: nginx is not spreading rooms`);
    }
    console.log(`before (${ms()}): ${ROOMS.length} rooms, ${n} WebSockets through nginx; each room's clients met and got its POST; owners: ${count(state.rooms)}`);
  } else if (phase === "after") {
    const removed = state.removed;
    const n = await roomRound("a", (room) => [`/parties/main/${room}?_pk=d-${room}`, `/party/${room}?_pk=e-${room}`]);
    const after = {};
    let stayed = 0, moved = 0;
    for (const room of ROOMS) {
      const before = state.rooms[room];
      const h = await histories(room);
      const owners = holders(h, `a:${room}`);
      expect(owners.length === 1, `${room}: second message found on ${owners.length} nodes (${owners})`);
      const now = owners[0];
      after[room] = now;
      if (before !== removed) {
        expect(now === before, `${room} moved from ${before} to ${now}, though ${before} was not removed`);
        expect(same(h[before], [`b:${room}`, `a:${room}`]), `${room} on ${before}: ${JSON.stringify(h[before])}`);
        stayed++;
      } else {
        expect(now !== removed, `${room} still reached the removed node ${removed}`);
        expect(same(h[now], [`a:${room}`]), `${room} on its new node ${now}: ${JSON.stringify(h[now])}`);
        expect(same(h[removed], [`b:${room}`]), `${room} on the removed node: ${JSON.stringify(h[removed])}`);
        moved++;
      }
    }
    state.after = after;
    const movedTo = count(Object.fromEntries(ROOMS.filter((r) => state.rooms[r] === removed).map((r) => [r, after[r]])));
    console.log(`after removing ${removed} (${ms()}): ${n} WebSockets; ${stayed} rooms stayed on their node, ${moved} moved (all ${removed}'s rooms; to: ${movedTo}); owners: ${count(after)}`);
  } else {
    const stopped = state.stopped;
    const owner = state.after;
    const posts = await Promise.all(
      ROOMS.map((room) => http("POST", `${entry}/parties/main/${room}`, JSON.stringify({ message: `s:${room}` }))),
    );
    let refused = 0, served = 0;
    for (const [i, room] of ROOMS.entries()) {
      const r = posts[i];
      if (owner[room] === stopped) {
        expect(r.status === 502, `${room} (on stopped ${stopped}): ${r.status}, not 502`);
        refused++;
      } else {
        expect(r.status === 200, `${room} (on ${owner[room]}): ${r.status}, not 200`);
        served++;
      }
      const h = await histories(room);
      const got = holders(h, `s:${room}`);
      expect(same(got, owner[room] === stopped ? [] : [owner[room]]), `${room}: "s:${room}" landed on [${got}]`);
    }
    console.log(`after stopping ${stopped}, nginx unchanged (${ms()}): its ${refused} rooms answer 502 and went nowhere else; the other ${served} rooms answer 200 on their node`);
  }
} catch (e) {
  expect(false, e.message);
}
writeFileSync(stateFile, JSON.stringify(state, null, 1));
if (failures) {
  console.error(`scaleout-client ${phase}: ${failures} checks failed`);
  process.exit(1);
}
process.exit(0);
