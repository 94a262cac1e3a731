// The WebSocket half of tests/examples/run.sh (which does the HTTP half with curl).
//
//   node smoke.mjs <step> <host:port> [args]
//
// Steps: chat-send, chat-history, auth, presence (see each below). Prints what it checked;
// exits 0 on success, 1 with a reason on the first failure or after TIMEOUT_MS. Loopback only.
import WebSocket from "ws";

const TIMEOUT_MS = 15000;
const [step, host, ...args] = process.argv.slice(2);
const base = `ws://${host}`;
const http = `http://${host}`;

setTimeout(() => fail(`step ${step} timed out after ${TIMEOUT_MS} ms`), TIMEOUT_MS).unref();

function fail(why) {
  console.error(`FAIL ${step}: ${why}`);
  process.exit(1);
}

function check(ok, what) {
  if (!ok) fail(what);
  console.log(`  ok ${what}`);
}

/** Opens a WebSocket; resolves once open, with a message queue attached. */
function connect(path, opts = {}) {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(base + path, opts);
    ws.queue = [];
    ws.waiters = [];
    ws.on("message", (data, isBinary) => {
      const msg = isBinary ? data : data.toString();
      ws.queue.push(msg);
      for (const w of ws.waiters.splice(0)) w();
    });
    ws.on("open", () => resolve(ws));
    ws.on("unexpected-response", (_req, res) =>
      reject(new Error(`HTTP ${res.statusCode}`)),
    );
    ws.on("error", reject);
  });
}

/** The HTTP status an upgrade to `path` is refused with (fails if it is accepted). */
async function refusedWith(path, opts) {
  try {
    const ws = await connect(path, opts);
    ws.terminate();
    return 101;
  } catch (e) {
    const m = /^HTTP (\d+)$/.exec(e.message);
    if (!m) throw e;
    return Number(m[1]);
  }
}

/** The next message on `ws` for which `pred` holds (earlier ones are dropped). */
async function next(ws, pred = () => true, what = "a message") {
  const deadline = Date.now() + 5000;
  for (;;) {
    while (ws.queue.length) {
      const msg = ws.queue.shift();
      if (pred(msg)) return msg;
    }
    const left = deadline - Date.now();
    if (left <= 0) fail(`no ${what} within 5 s`);
    await new Promise((r) => {
      ws.waiters.push(r);
      setTimeout(r, left).unref();
    });
  }
}

const json = (pred) => (m) => {
  try {
    return pred(JSON.parse(m));
  } catch {
    return false;
  }
};

function closed(ws) {
  return new Promise((r) => {
    if (ws.readyState === WebSocket.CLOSED) return r();
    ws.once("close", r);
    ws.close();
  });
}

const steps = {
  // chat-send <room> <text> <expected seq>: connect, get the history, send <text>, see it
  // broadcast with that seq and acknowledged as saved (durable).
  async "chat-send"([room, text, seq]) {
    const ws = await connect(`/parties/chat/${room}?_pk=smoke`);
    const hello = JSON.parse(await next(ws, () => true, "history"));
    check(hello.type === "history" && Array.isArray(hello.messages), "history sent on connect");
    ws.send(text);
    const msg = JSON.parse(await next(ws, json((m) => m.type === "message"), "broadcast"));
    check(
      msg.text === text && msg.from === "smoke" && msg.seq === Number(seq),
      `message broadcast as JSON with seq ${seq}: ${JSON.stringify(msg)}`,
    );
    await next(ws, json((m) => m.type === "saved" && m.seq === Number(seq)), "saved ack");
    check(true, "saved (durable) ack");
    await closed(ws);
  },

  // chat-history <room> <text...>: connect; the history sent on connect has exactly these
  // texts, in order.
  async "chat-history"([room, ...texts]) {
    const ws = await connect(`/parties/chat/${room}?_pk=later`);
    const hello = JSON.parse(await next(ws, () => true, "history"));
    const got = hello.messages.map((m) => m.text);
    check(
      hello.type === "history" && JSON.stringify(got) === JSON.stringify(texts),
      `history on connect is ${JSON.stringify(got)}`,
    );
    await closed(ws);
  },

  // auth: TOKENS="secret,alice:hunter2". Refusals, welcome by name, spoofing, broadcasts.
  async auth() {
    const path = "/parties/auth/lobby";
    check((await refusedWith(path)) === 401, "upgrade without token: 401");
    check((await refusedWith(`${path}?token=nope`)) === 401, "upgrade with a bad token: 401");
    const a = await connect(`${path}?token=secret`, { headers: { "X-User": "mallory" } });
    check(true, "upgrade with a good token: 101");
    check((await next(a)) === "welcome, user1", "greeted by the token's user (X-User not spoofable)");
    const b = await connect(`${path}?token=hunter2`);
    check((await next(b)) === "welcome, alice", "second user greeted");
    check((await next(a)) === "alice joined", "others told of the join");
    a.send("hi");
    check((await next(a)) === "user1: hi", "message broadcast with the sender's name (to itself)");
    check((await next(b)) === "user1: hi", "message broadcast with the sender's name (to others)");
    const r = await fetch(`${http}${path}`, {
      method: "POST",
      headers: { Authorization: "Bearer hunter2" },
      body: "over http",
    });
    check(r.status === 200, "POST with a bearer token: 200");
    check((await next(a)) === "alice: over http", "POST broadcast under the bearer's name");
    const online = await (
      await fetch(`${http}${path}`, { headers: { Authorization: "Bearer secret" } })
    ).json();
    check(
      online.you === "user1" && JSON.stringify(online.online.sort()) === '["alice","user1"]',
      `GET sees who is online: ${JSON.stringify(online)}`,
    );
    await closed(b);
    check((await next(a)) === "alice left", "others told of the leave");
    await closed(a);
  },

  // presence <roomA> <roomB>: a subscriber sees the counts change as sockets come and go.
  async presence([roomA, roomB]) {
    const sub = await connect("/parties/presence/global");
    check((await next(sub)) === "{}", "subscriber gets the empty map on connect");
    const a = await connect(`/parties/room/${roomA}`);
    const b = await connect(`/parties/room/${roomB}`);
    const b2 = await connect(`/parties/room/${roomB}`);
    for (const [ws, room] of [[a, roomA], [b, roomB], [b2, roomB]]) {
      const hi = await next(ws);
      check(hi.startsWith(`welcome to room ${room} (served by core-`), `welcome: ${hi}`);
    }
    const want = JSON.stringify({ [roomA]: 1, [roomB]: 2 });
    await next(sub, (m) => m === want, `presence map ${want}`);
    check(true, `subscriber saw ${want}`);
    const got = await (await fetch(`${http}/parties/presence/global`)).text();
    check(got === want, `GET presence shows the counts: ${got}`);
    b2.send("hello b");
    await next(b, (m) => m === "hello b", "the broadcast from b2");
    check(true, "room broadcast to the others");
    await closed(a);
    const afterA = JSON.stringify({ [roomB]: 2 });
    await next(sub, (m) => m === afterA, `presence map ${afterA}`);
    check(true, `closing ${roomA}'s socket drops it: ${afterA}`);
    await closed(b2);
    const afterB2 = JSON.stringify({ [roomB]: 1 });
    await next(sub, (m) => m === afterB2, `presence map ${afterB2}`);
    check(true, `closing one of ${roomB}'s sockets: ${afterB2}`);
    await closed(b);
    await next(sub, (m) => m === "{}", "presence map {}");
    check(true, "all closed: {}");
    await closed(sub);
  },
};

if (!steps[step]) fail(`unknown step; one of ${Object.keys(steps).join(", ")}`);
try {
  await steps[step](args);
  process.exit(0);
} catch (e) {
  fail(e.stack || String(e));
}
