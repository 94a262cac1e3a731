// The client side of tests/deploy/scaleout-fetch.sh. Every request goes to 127.0.0.1.
//
//   node scaleout-fetch-client.mjs ENTRY ACCESS_LOG NAME=URL=STDERR...
//
// ENTRY is nginx (http://127.0.0.1:PORT) in front of the nodes; each node runs the `presence`
// example with PARTYRING_FETCH_ENTRY = ENTRY. NAME=URL=STDERR names a node, its address
// (reached directly) and its log file. ACCESS_LOG is nginx's access log (the format of
// tests/deploy/lib.sh, with upstream=ADDR). nginx adds X-Test-Upstream: ADDR to every proxied
// response, the node its consistent hash chose: that is how owners are found.
//
// 1. GET /parties/presence/global through nginx: {} and the presence owner P. Candidate rooms
//    of party `room` are routed (a GET each through nginx) until 4 rooms on each node are
//    found: 12 rooms, 8 of them on a node other than P. An outside POST to presence/global,
//    through nginx or to a node directly, gets 403 (its on_before_request hook).
// 2. A subscriber WebSocket on presence/global through nginx. Room k gets 1 + k % 3 WebSocket
//    clients through nginx, one round at a time (round j: the j-th client of every room that
//    has one, all rooms at once), so no two updates of one room are in flight together (fetches
//    through the entry are separate connections, not ordered). Each client's upgrade went to
//    the room's owner; after every round GET presence/global through nginx shows every room's
//    count, and so do the subscriber's last message and a direct GET on P, while the other
//    nodes' presence/global stay {} (no fetch was answered in-node). Each room's updates
//    ("presence update ... room=R count=N status=200") are in its owner node's log only, and
//    nginx's access log holds one POST /parties/presence/global per update, all answered 200
//    by P: the fetches left every node through nginx and reached P, 8 of 12 rooms across nodes.
// 3. The clients close one round at a time; after each round the counts are one lower (rooms
//    at 0 are dropped) through nginx, on P and on the subscriber; at the end presence/global
//    is {} and the access log holds one more POST per close.
// Prints a summary; exits 0 when every check held, 1 otherwise (each wait bounded; the whole
// run is cut off after 40 s).
import { readFileSync } from "node:fs";
import WebSocket from "ws";

const [entry, accessLog, ...nodeArgs] = process.argv.slice(2);
const loopback = (u) => /^http:\/\/127\.\d+\.\d+\.\d+:\d+$/.test(u);
const nodes = {}; // name -> {url, addr, log}
for (const a of nodeArgs) {
  const m = /^([^=]+)=([^=]+)=(.+)$/.exec(a);
  if (!m || !loopback(m[2])) {
    console.error(`bad node argument ${a}`);
    process.exit(2);
  }
  nodes[m[1]] = { url: m[2], addr: m[2].slice("http://".length), log: m[3] };
}
if (!loopback(entry) || !accessLog || Object.keys(nodes).length < 2) {
  console.error("usage: node scaleout-fetch-client.mjs http://127.0.0.1:PORT ACCESS_LOG NAME=http://127.0.0.1:PORT=STDERR...");
  process.exit(2);
}
const names = Object.keys(nodes);
const byAddr = Object.fromEntries(names.map((n) => [nodes[n].addr, n]));
const WAIT_MS = 5000;
const PER_NODE = 4;
const CANDIDATES = 200;
setTimeout(() => {
  console.error("scaleout-fetch-client: FAIL: timed out after 40 s");
  process.exit(1);
}, 40000).unref();

const T0 = Date.now();
const ms = () => `${Date.now() - T0} ms`;
const sleep = (t) => new Promise((r) => setTimeout(r, t));
let failures = 0;
function expect(cond, what) {
  if (!cond) {
    failures++;
    console.error(`scaleout-fetch-client: FAIL: ${what}`);
  }
  return cond;
}
async function waitUntil(cond, what) {
  const deadline = Date.now() + WAIT_MS;
  for (;;) {
    if (await cond()) return true;
    if (Date.now() >= deadline) return expect(false, `timed out after ${WAIT_MS} ms waiting for ${what}`);
    await sleep(20);
  }
}
const same = (a, b) => JSON.stringify(a) === JSON.stringify(b);
const sorted = (o) => Object.fromEntries(Object.entries(o).sort(([a], [b]) => (a < b ? -1 : 1)));
const show = (o) => JSON.stringify(o);

async function http(method, url, body) {
  const res = await fetch(url, { method, body, signal: AbortSignal.timeout(WAIT_MS) });
  return { status: res.status, text: await res.text(), upstream: res.headers.get("x-test-upstream") };
}
const nodeOf = (upstream) => byAddr[upstream] ?? `unknown upstream ${JSON.stringify(upstream)}`;
const presenceVia = async (base) => {
  const r = await http("GET", `${base}/parties/presence/global`);
  expect(r.status === 200, `GET presence/global on ${base}: ${r.status} ${r.text}`);
  return r.status === 200 ? sorted(JSON.parse(r.text)) : null;
};

function connect(path) {
  const ws = new WebSocket(`${entry.replace("http:", "ws:")}${path}`);
  const c = { path, ws, got: [], open: false, error: null, closed: false, upstream: null };
  ws.on("upgrade", (res) => (c.upstream = res.headers["x-test-upstream"] ?? null));
  ws.on("unexpected-response", (_, res) => (c.error = new Error(`HTTP ${res.statusCode}`)));
  ws.on("open", () => (c.open = true));
  ws.on("message", (d) => c.got.push(d.toString()));
  ws.on("error", (e) => (c.error ??= e));
  ws.on("close", () => (c.closed = true));
  return c;
}
async function opened(cs, what) {
  await waitUntil(() => cs.every((c) => c.open || c.error || c.closed), what);
  const bad = cs.filter((c) => !c.open);
  if (bad.length) throw new Error(`${bad.length} WebSockets failed (${what}): ${bad[0].path}: ${bad[0].error?.message ?? "closed"}`);
}

// Log lines of the presence example, colour codes removed.
const logOf = (n) => readFileSync(nodes[n].log, "utf8").replace(/\x1b\[[0-9;]*m/g, "");
const accessPosts = () =>
  readFileSync(accessLog, "utf8").split("\n").filter((l) => l.includes('"POST /parties/presence/global HTTP/'));

try {
  // ---- 1. where things live -------------------------------------------------------------
  const p0 = await http("GET", `${entry}/parties/presence/global`);
  expect(p0.status === 200 && p0.text === "{}", `GET presence/global through nginx at start: ${p0.status} ${p0.text}`);
  const P = nodeOf(p0.upstream);
  if (!names.includes(P)) throw new Error(`no presence owner: ${P}`);

  const owner = {}; // room -> node
  const perNode = Object.fromEntries(names.map((n) => [n, []]));
  for (let i = 0; i < CANDIDATES && names.some((n) => perNode[n].length < PER_NODE); i += 20) {
    const batch = Array.from({ length: 20 }, (_, k) => `r${String(i + k).padStart(3, "0")}`);
    const rs = await Promise.all(batch.map((r) => http("GET", `${entry}/parties/room/${r}`)));
    batch.forEach((r, k) => {
      const n = nodeOf(rs[k].upstream);
      expect(names.includes(n), `GET room/${r} through nginx: ${rs[k].status}, ${n}`);
      if (perNode[n] && perNode[n].length < PER_NODE) perNode[n].push(r);
    });
  }
  for (const n of names) {
    if (!expect(perNode[n].length === PER_NODE, `only ${perNode[n].length} of ${CANDIDATES} candidate rooms hash to ${n}`)) {
      throw new Error("cannot place rooms on every node");
    }
    for (const r of perNode[n]) owner[r] = n;
  }
  const ROOMS = Object.keys(owner).sort();
  const want = Object.fromEntries(ROOMS.map((r, k) => [r, 1 + (k % 3)]));
  const crossing = ROOMS.filter((r) => owner[r] !== P);
  console.log(
    `routing (${ms()}): presence/global on ${P}; ${ROOMS.length} rooms, ${PER_NODE} per node: ` +
      names.map((n) => `${n}=[${perNode[n].join(",")}]`).join(" "),
  );

  for (const [where, base] of [["through nginx", entry], [`on ${P} directly`, nodes[P].url]]) {
    // ?from=outside keeps it apart from the nodes' POSTs in the access log.
    const r = await http("POST", `${base}/parties/presence/global?from=outside`, JSON.stringify({ room: "forged", count: 99 }));
    expect(r.status === 403, `outside POST to presence/global ${where}: ${r.status} ${r.text}, not 403 from on_before_request`);
  }

  // ---- 2. connect, one round at a time ---------------------------------------------------
  const sub = connect("/parties/presence/global?_pk=subscriber");
  await opened([sub], "the presence subscriber to open");
  expect(nodeOf(sub.upstream) === P, `presence subscriber routed to ${nodeOf(sub.upstream)}, not ${P}`);
  await waitUntil(() => sub.got.length >= 1, "the subscriber's first map");
  expect(same(sub.got, ["{}"]), `subscriber's first messages: ${show(sub.got)}`);

  // Checks one state of the counts: through nginx, on P directly, on the other nodes, and the
  // subscriber's latest message; then that the access log shows `posts` updates, all from
  // nginx to P with status 200.
  let posts = 0;
  async function checkCounts(expected, label) {
    expected = sorted(expected);
    let last = null;
    const okNginx = await waitUntil(async () => same((last = await presenceVia(entry)), expected), `${label}: presence/global through nginx to be ${show(expected)}`);
    if (!okNginx) {
      console.error(`  last seen through nginx: ${show(last)}`);
      const refused = names.filter((n) => /presence update:.*status=403/.test(logOf(n)));
      if (refused.length) {
        console.error(`  the presence updates got 403 on ${refused.join(", ")}: through the entry the presence party's ` +
          "on_before_request hook runs for party fetches too, and refuses their POST");
      }
      throw new Error(`${label}: the counts did not arrive; stopping here`);
    }
    expect(same(await presenceVia(nodes[P].url), expected), `${label}: presence/global on ${P} directly is not ${show(expected)}`);
    for (const n of names.filter((x) => x !== P)) {
      const got = await presenceVia(nodes[n].url);
      expect(same(got, {}), `${label}: presence/global on ${n} (not its owner) directly: ${show(got)}, not {} (a fetch stayed in-node?)`);
    }
    await waitUntil(() => same(sorted(JSON.parse(sub.got.at(-1))), expected), `${label}: the subscriber's latest map to be ${show(expected)}`);
    await waitUntil(() => accessPosts().length >= posts, `${label}: ${posts} POST /parties/presence/global in nginx's access log`);
    const lines = accessPosts();
    expect(lines.length === posts, `${label}: ${lines.length} POSTs to presence/global in nginx's access log, not ${posts}`);
    const bad = lines.filter((l) => !/" 200 /.test(l) || !l.endsWith(`upstream=${nodes[P].addr}`));
    expect(bad.length === 0, `${label}: POSTs to presence/global not answered 200 by ${P}: ${bad.slice(0, 3).join(" | ")}`);
  }

  const clients = Object.fromEntries(ROOMS.map((r) => [r, []]));
  const now = Object.fromEntries(ROOMS.map((r) => [r, 0]));
  for (let round = 1; round <= 3; round++) {
    const rooms = ROOMS.filter((r) => want[r] >= round);
    const cs = rooms.map((r) => {
      const c = connect(`/parties/room/${r}?_pk=${r}-${round}`);
      c.room = r;
      clients[r].push(c);
      return c;
    });
    await opened(cs, `round ${round} of room clients to open`);
    for (const c of cs) {
      expect(nodeOf(c.upstream) === owner[c.room], `${c.path} routed to ${nodeOf(c.upstream)}, not ${owner[c.room]}`);
      now[c.room]++;
    }
    posts += cs.length;
    await checkCounts(now, `connect round ${round}`);
    for (const c of cs) {
      expect(c.got[0]?.startsWith(`welcome to room ${c.room} `), `${c.path} got ${show(c.got[0])} first, not its welcome`);
    }
  }
  const full = sorted(now);
  expect(same(full, sorted(want)), `counts after connecting: ${show(full)}`);

  // Each room's updates came from its owner node: its log has them (a node logs an update when
  // the response is back, maybe just after presence/global showed it), the others do not.
  const updates = (n, r) => logOf(n).split("\n").filter((l) => l.includes("presence update:") && l.includes(` room=${r} `));
  await waitUntil(() => ROOMS.every((r) => updates(owner[r], r).length >= want[r]), "every room's owner to log its updates");
  for (const r of ROOMS) {
    for (const n of names) {
      const lines = updates(n, r);
      if (n === owner[r]) {
        const counts = lines.map((l) => /count=(\d+) status=(\d+)/.exec(l)).map((m) => (m ? `${m[1]}:${m[2]}` : "?")).sort();
        const ok = Array.from({ length: want[r] }, (_, k) => `${k + 1}:200`);
        expect(same(counts, ok), `${r}: its owner ${n} logged updates ${show(counts)}, not ${show(ok)} (count:status)`);
      } else {
        expect(lines.length === 0, `${r}: ${n}, not its owner, logged updates for it: ${lines[0]}`);
      }
    }
  }
  console.log(
    `connect (${ms()}): ${posts} WebSockets in ${ROOMS.length} rooms through nginx; presence/global through nginx = ` +
      `${show(full)}, from fetches of all ${names.length} nodes; ${crossing.length} rooms fetched across nodes ` +
      `(${names.filter((n) => n !== P).map((n) => `${n}->${P}`).join(", ")}), ${ROOMS.length - crossing.length} from ${P} to itself through nginx`,
  );

  // ---- 3. close, one round at a time -----------------------------------------------------
  for (let round = 3; round >= 1; round--) {
    const cs = ROOMS.filter((r) => clients[r].length >= 1).map((r) => clients[r].pop());
    for (const c of cs) c.ws.close(1000);
    await waitUntil(() => cs.every((c) => c.closed), `close round ${4 - round}: sockets to close`);
    for (const c of cs) if (--now[c.room] === 0) delete now[c.room];
    posts += cs.length;
    await checkCounts(now, `close round ${4 - round}`);
    console.log(`close round ${4 - round} (${ms()}): closed ${cs.length}; presence/global through nginx = ${show(sorted(now))}`);
  }
  sub.ws.close(1000);
  expect(Object.keys(now).length === 0, `counts left after closing everything: ${show(now)}`);
  console.log(`access log: ${posts} POST /parties/presence/global from the nodes through nginx, all 200 from ${P}`);
} catch (e) {
  expect(false, e.message);
}
if (failures) {
  console.error(`scaleout-fetch-client: ${failures} check(s) failed (${ms()})`);
  process.exit(1);
}
process.exit(0);
