// The demo page (`GET /`) in a real browser: Debian's Chromium, headless, driven by
// playwright-core. Run by run.sh, which starts the server and sets:
//   PARTY_ADDR   host:port of a running partyring (loopback)
//   CHROMIUM     the Chromium executable
//   SCREENSHOT   where to save the screenshot
// Two pages (two browser contexts, like two people) join one room; a message sent over the
// WebSocket in A appears in B, one posted with PartySocket.fetch in B appears in both, a reload
// of A shows both from the history, and A's new socket gets live messages again. Every request
// the pages make must go to the server under test (the page needs no CDN).
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { launchChromium, watchPage } from "./lib.mjs";

const ADDR = process.env.PARTY_ADDR;
const CHROMIUM = process.env.CHROMIUM || "/usr/bin/chromium";
const SCREENSHOT = process.env.SCREENSHOT;
assert.ok(ADDR, "PARTY_ADDR must be set (run.sh sets it)");
const BASE = `http://${ADDR}`;
const WAIT = { timeout: 5000 };

let browser;

before(async () => {
  browser = await launchChromium(CHROMIUM);
});

after(async () => {
  await browser?.close();
});

test("the page and the bundle are served (HTTP)", async () => {
  let res = await fetch(`${BASE}/?room=x`);
  assert.equal(res.status, 200);
  assert.equal(res.headers.get("content-type"), "text/html; charset=utf-8");
  assert.equal(res.headers.get("cache-control"), "no-cache");
  const html = await res.text();
  assert.match(html, /import PartySocket from "\/_demo\/partysocket\.js\?v=1\.3\.0"/);

  res = await fetch(`${BASE}/_demo/partysocket.js?v=1.3.0`);
  assert.equal(res.status, 200);
  assert.equal(res.headers.get("content-type"), "text/javascript; charset=utf-8");
  assert.match(await res.text(), /partysocket@1\.3\.0[\s\S]*MIT License[\s\S]*export \{/);

  res = await fetch(`${BASE}/`, { method: "HEAD" });
  assert.equal(res.status, 200);
  assert.equal(Number(res.headers.get("content-length")), Buffer.byteLength(html));

  res = await fetch(`${BASE}/`, { method: "POST", body: "x" });
  assert.equal(res.status, 405);
  assert.equal(res.headers.get("allow"), "GET, HEAD");
  await res.text();

  res = await fetch(`${BASE}/_demo/nope.js`);
  assert.equal(res.status, 404);
  await res.text();
});

// Opens the demo page for `room` in a fresh context; records anything that goes wrong.
async function openPage(name, room, problems) {
  const context = await browser.newContext({ viewport: { width: 820, height: 700 } });
  const page = await context.newPage();
  watchPage(page, name, ADDR, problems);
  await page.goto(`${BASE}/?room=${encodeURIComponent(room)}`);
  await ready(page);
  return page;
}

// Waits until the page's socket is open and its history is loaded.
async function ready(page) {
  await page.waitForSelector('#status[data-state="open"]', WAIT);
}

// The message list as [via, text] pairs.
function messages(page) {
  return page.$$eval("#messages li", (lis) =>
    lis.map((li) => [li.dataset.via, li.querySelector(".text").textContent]),
  );
}

async function waitForMessage(page, text) {
  await page.waitForFunction(
    (t) => [...document.querySelectorAll("#messages .text")].some((e) => e.textContent === t),
    text,
    WAIT,
  );
}

test("two pages chat through the WebSocket and PartySocket.fetch", { timeout: 30000 }, async () => {
  const id = `${Date.now().toString(36)}-${Math.random().toString(36).slice(2, 8)}`;
  // A space and a non-ASCII letter: the page must encode the room the same way for both paths.
  const room = `browser test ü ${id}`;
  const problems = [];
  const a = await openPage("A", room, problems);
  const b = await openPage("B", room, problems);
  assert.equal(await a.textContent("#room-name"), room);
  assert.equal(await a.title(), `${room} · partyring demo`);
  assert.deepEqual(await messages(a), [], "a new room has no history");

  // A sends over the WebSocket: B gets it live; A shows its own copy (no echo from the server).
  const m1 = `hello over the socket ${id}`;
  await a.fill("#message", m1);
  await a.click("#send-ws");
  await waitForMessage(b, m1);
  assert.equal(await a.inputValue("#message"), "", "the input is cleared after sending");

  // B posts with PartySocket.fetch: the server broadcasts it to both sockets.
  const m2 = `hello over fetch ${id}`;
  await b.fill("#message", m2);
  await b.click("#send-post");
  await waitForMessage(a, m2);
  await waitForMessage(b, m2);
  assert.deepEqual(await messages(a), [["you", m1], ["live", m2]]);
  assert.deepEqual(await messages(b), [["live", m1], ["live", m2]]);

  // The server kept both: a reloaded A shows them from the history, in order.
  await a.reload();
  await ready(a);
  assert.deepEqual(await messages(a), [["history", m1], ["history", m2]]);

  // A's new socket is in the room: B sends with Enter (the form's default, the WebSocket).
  const m3 = `after the reload ${id}`;
  await b.fill("#message", m3);
  await b.press("#message", "Enter");
  await waitForMessage(a, m3);
  assert.deepEqual(await messages(a), [["history", m1], ["history", m2], ["live", m3]]);
  assert.deepEqual(await messages(b), [["live", m1], ["live", m2], ["you", m3]]);

  // The same history over plain HTTP, for the record.
  const res = await fetch(`${BASE}/parties/main/${encodeURIComponent(room)}`);
  assert.deepEqual(await res.json(), [m1, m2, m3]);

  if (SCREENSHOT) {
    await b.screenshot({ path: SCREENSHOT });
  }
  assert.deepEqual(problems, []);
});

// A member that does not compress: a raw TCP WebSocket client that offers no extension.
async function rawMember(path) {
  const { connect } = await import("node:net");
  const sock = connect(Number(ADDR.split(":")[1]), ADDR.split(":")[0]);
  let buf = Buffer.alloc(0);
  let wake = () => {};
  sock.on("data", (d) => {
    buf = Buffer.concat([buf, d]);
    wake();
  });
  const more = () => new Promise((r, j) => {
    const t = setTimeout(() => j(new Error("raw member: read timeout")), WAIT.timeout);
    wake = () => (clearTimeout(t), r());
  });
  sock.write(
    `GET ${path} HTTP/1.1\r\nHost: ${ADDR}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n` +
      "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
  );
  while (!buf.includes("\r\n\r\n")) await more();
  const end = buf.indexOf("\r\n\r\n") + 4;
  const head = buf.subarray(0, end).toString();
  buf = buf.subarray(end);
  return {
    head,
    // The next frame: [first byte, payload].
    async frame() {
      for (;;) {
        if (buf.length >= 2) {
          const len7 = buf[1] & 0x7f;
          const hdr = len7 === 126 ? 4 : len7 === 127 ? 10 : 2;
          const len = len7 === 126 ? buf.readUInt16BE(2) : len7 === 127 ? Number(buf.readBigUInt64BE(2)) : len7;
          if (buf.length >= hdr + len) {
            const out = [buf[0], buf.subarray(hdr, hdr + len)];
            buf = buf.subarray(hdr + len);
            return out;
          }
        }
        await more();
      }
    },
    sendText(text) {
      const payload = Buffer.from(text);
      const mask = Buffer.from([1, 2, 3, 4]);
      const len = payload.length;
      const hdr = len < 126 ? Buffer.from([0x81, 0x80 | len]) : Buffer.from([0x81, 0x80 | 126, len >> 8, len & 0xff]);
      sock.write(Buffer.concat([hdr, mask, payload.map((b, i) => b ^ mask[i % 4])]));
    },
    close: () => sock.destroy(),
  };
}

test("Chromium negotiates permessage-deflate; a member that does not compress reads plain frames", { timeout: 30000 }, async () => {
  const room = `deflate-${Date.now().toString(36)}`;
  const path = `/parties/main/${room}`;
  const raw = await rawMember(`${path}?_pk=raw`);
  assert.match(raw.head, /^HTTP\/1\.1 101 /);
  assert.doesNotMatch(raw.head.toLowerCase(), /sec-websocket-extensions/, "no offer, no extension");
  const context = await browser.newContext();
  const page = await context.newPage();
  try {
    await page.goto(`${BASE}/?room=${room}-page`);
    const chat = JSON.stringify(
      Array.from({ length: 60 }, (_, i) => ({ id: `msg-${i}`, user: `user${i % 4}`, text: "see you at the usual place" })),
    ).slice(0, 4000);
    // Chromium's own WebSocket: it offers permessage-deflate and compresses what it sends.
    const extensions = await page.evaluate(
      async ({ url, chat }) => {
        const ws = new WebSocket(url);
        await new Promise((res, rej) => ((ws.onopen = res), (ws.onerror = () => rej(new Error("ws error")))));
        window.got = [];
        ws.onmessage = (e) => window.got.push(e.data);
        ws.send(chat);
        return ws.extensions;
      },
      { url: `ws://${ADDR}${path}?_pk=browser`, chat },
    );
    assert.match(extensions, /^permessage-deflate; server_no_context_takeover; client_no_context_takeover/);
    // The browser's (compressed) message reaches the raw member as one plain text frame.
    const [b0, payload] = await raw.frame();
    assert.equal(b0, 0x81, "FIN + text, RSV1 clear");
    assert.equal(payload.toString(), chat);
    // The raw member's plain message reaches the browser (compressed for it) intact.
    raw.sendText(chat);
    await page.waitForFunction((c) => window.got.includes(c), chat, WAIT);
  } finally {
    raw.close();
    await context.close();
  }
});
