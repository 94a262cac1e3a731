// The collaborative editor example (examples/editor) in a real browser: Debian's Chromium,
// headless, driven by playwright-core. Run by run.sh, which starts a partyring with
// `--serve examples/editor` and sets:
//   EDITOR_ADDR        host:port of that server (loopback)
//   CHROMIUM           the Chromium executable
//   EDITOR_SCREENSHOT  where to save a screenshot (optional)
// Two pages (two browser contexts, like two people; the page turns off the provider's
// BroadcastChannel, so everything goes through the server) open one room of the yjs party and
// type with the keyboard: each page's text reaches the other, edits made at the same time
// converge, awareness lists both people, a reloaded page gets the document back, and a page
// opened after both left still finds it. Every request the pages make must go to the server
// under test (the page needs no CDN). Waits are polls with bounded timeouts, never sleeps.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { launchChromium, watchPage } from "./lib.mjs";
import { diff, applyDelta } from "../../examples/editor/binding.js";

const ADDR = process.env.EDITOR_ADDR;
const CHROMIUM = process.env.CHROMIUM || "/usr/bin/chromium";
const SCREENSHOT = process.env.EDITOR_SCREENSHOT;
const WAIT = { timeout: 10000 };

// The textarea binding's two pure helpers, without a browser.
test("diff finds the one changed span; applyDelta moves the caret with the text", () => {
  assert.deepEqual(diff("hello", "hello world"), { index: 5, remove: 0, insert: " world" });
  assert.deepEqual(diff("hello world", "hello"), { index: 5, remove: 6, insert: "" });
  assert.deepEqual(diff("abcabc", "abc"), { index: 3, remove: 3, insert: "" });
  assert.deepEqual(diff("a big cat", "a small cat"), { index: 2, remove: 3, insert: "small" });
  assert.deepEqual(diff("same", "same"), { index: 4, remove: 0, insert: "" });
  // Two emoji sharing their high surrogate: the span covers the whole pair, not half of it.
  assert.deepEqual(diff("x😀y", "x😃y"), { index: 1, remove: 2, insert: "😃" });
  // Two sharing the low surrogate.
  assert.deepEqual(diff("x\u{1F600}y", "x\u{1F400}y"), { index: 1, remove: 2, insert: "\u{1F400}" });

  // Remote insert before the caret (at 5) shifts it; one after it does not.
  assert.deepEqual(applyDelta("hello world", [{ insert: ">> " }], 5, 5), {
    value: ">> hello world", start: 8, end: 8,
  });
  assert.deepEqual(applyDelta("hello world", [{ retain: 11 }, { insert: "!" }], 5, 5), {
    value: "hello world!", start: 5, end: 5,
  });
  // At the caret: the caret stays before the other person's text.
  assert.deepEqual(applyDelta("ab", [{ retain: 1 }, { insert: "X" }], 1, 1), {
    value: "aXb", start: 1, end: 1,
  });
  // A delete around the selection [2, 6) cuts it to what is left.
  assert.deepEqual(applyDelta("0123456789", [{ retain: 4 }, { delete: 4 }], 2, 6), {
    value: "012389", start: 2, end: 4,
  });
  assert.deepEqual(applyDelta("0123456789", [{ delete: 3 }, { retain: 2 }, { insert: "ab" }], 7, 7), {
    value: "34ab56789", start: 6, end: 6,
  });

  // Random edits: the span diff finds, applied to the old text, gives the new one.
  let seed = 17;
  const rand = (n) => ((seed = (seed * 1103515245 + 12345) % 2147483648) % n);
  const alphabet = ["a", "b", "c", " ", "é", "😀", "😃", "\n"];
  const word = (n) => Array.from({ length: n }, () => alphabet[rand(alphabet.length)]).join("");
  for (let i = 0; i < 2000; i++) {
    const before = word(rand(12));
    const cut = [...before];
    const at = rand(cut.length + 1);
    cut.splice(at, rand(cut.length - at + 1), word(rand(4)));
    const after = cut.join("");
    const d = diff(before, after);
    const rebuilt = before.slice(0, d.index) + d.insert + before.slice(d.index + d.remove);
    assert.equal(rebuilt, after, `diff(${JSON.stringify(before)}, ${JSON.stringify(after)})`);
    assert.doesNotMatch(d.insert, /^[\udc00-\udfff]|[\ud800-\udbff]$/u, "a half surrogate pair");
  }
});

let browser;

before(async () => {
  assert.ok(ADDR, "EDITOR_ADDR must be set (run.sh sets it)");
  browser = await launchChromium(CHROMIUM);
});

after(async () => {
  await browser?.close();
});

test("the example's files are served by --serve (HTTP)", async () => {
  const base = `http://${ADDR}`;
  let res = await fetch(`${base}/?room=x`);
  assert.equal(res.status, 200);
  assert.equal(res.headers.get("content-type"), "text/html; charset=utf-8");
  const html = await res.text();
  assert.match(html, /<textarea id="editor"/, "examples/editor/index.html, not the demo page");
  assert.match(html, /<script type="module" src="editor.js">/);

  res = await fetch(`${base}/editor.js`);
  assert.equal(res.status, 200);
  assert.equal(res.headers.get("content-type"), "text/javascript; charset=utf-8");
  const js = await res.text();
  const bundle = js.match(/from "\.\/(vendor\/yjs-partykit\.js\?v=[^"]+)"/);
  assert.ok(bundle, "editor.js imports the vendored bundle");

  res = await fetch(`${base}/${bundle[1]}`);
  assert.equal(res.status, 200);
  assert.equal(res.headers.get("content-type"), "text/javascript; charset=utf-8");
  const body = await res.text();
  assert.match(body, /^\/\*!\n \* yjs and y-partykit\/provider/);
  assert.match(body, /export\{\w+ as Y,\w+ as YPartyKitProvider\};\s*$/);
});

// Opens the editor for `room` as `name` in a fresh context (its own storage, like another
// person); records anything that goes wrong in `problems`.
async function openEditor(name, room, problems) {
  const context = await browser.newContext({ viewport: { width: 900, height: 700 } });
  const page = await context.newPage();
  watchPage(page, name, ADDR, problems, {
    isProblem: (m) => m.type() === "error" || m.text().startsWith("editor:"),
    checkSocket: (url) =>
      url.startsWith(`ws://${ADDR}/parties/yjs/`) ? undefined : `websocket not to the yjs party: ${url}`,
  });
  await page.goto(`http://${ADDR}/?room=${encodeURIComponent(room)}&name=${encodeURIComponent(name)}`);
  await synced(page);
  return page;
}

// Waits until the page's socket is open and the server's copy of the document has arrived.
async function synced(page) {
  await page.waitForSelector('#status[data-state="connected"][data-synced="true"]', WAIT);
}

const text = (page) => page.inputValue("#editor");

// Waits until the page's editor shows `want` (a string, or an array of acceptable strings).
async function waitForText(page, want, what) {
  try {
    await page.waitForFunction(
      (want) => want.includes(document.getElementById("editor").value),
      Array.isArray(want) ? want : [want],
      WAIT,
    );
  } catch (e) {
    throw new Error(`${what}: the editor shows ${JSON.stringify(await text(page))} (${e.message})`);
  }
}

// Puts the caret at `at` (a number, or "end") and types `s` with the keyboard.
async function typeAt(page, at, s, options) {
  await page.$eval(
    "#editor",
    (e, at) => {
      const pos = at === "end" ? e.value.length : at;
      e.focus();
      e.setSelectionRange(pos, pos);
    },
    at,
  );
  if (options?.whole) {
    // One input event carrying all of `s` (as a paste does): one insert.
    await page.keyboard.insertText(s);
  } else {
    await page.keyboard.type(s, options);
  }
}

// The names in the page's "here" list, sorted.
async function users(page) {
  return (await page.$$eval("#users li", (lis) => lis.map((li) => li.textContent))).sort();
}

const clientId = (page) => page.evaluate(() => window.editor.doc.clientID);

// Waits until the page's awareness holds exactly the Yjs clients `ids` and its list shows that
// many people.
async function waitForPeers(page, ids, what) {
  const want = [...ids].sort((x, y) => x - y);
  try {
    await page.waitForFunction(
      (want) => {
        const have = [...window.editor.provider.awareness.getStates().keys()].sort((x, y) => x - y);
        return JSON.stringify(have) === JSON.stringify(want);
      },
      want,
      WAIT,
    );
    await page.waitForSelector(`#user-count[data-count="${want.length}"]`, WAIT);
  } catch (e) {
    throw new Error(`${what}: the page lists ${JSON.stringify(await users(page))} (${e.message})`);
  }
}

test("two pages edit one Y.Text through the yjs party", { timeout: 90000 }, async () => {
  const id = `${Date.now().toString(36)}-${Math.random().toString(36).slice(2, 8)}`;
  // A space and a non-ASCII letter: the page must put the room into the socket URL encoded.
  const room = `editor test ü ${id}`;
  const problems = [];
  const a = await openEditor("Alice", room, problems);
  const b = await openEditor("Bob", room, problems);
  assert.equal(await a.title(), `${room} · partyring editor`);
  assert.equal(await text(a), "", "a new room has an empty document");

  // Awareness: each page lists both people, itself marked.
  const [idA, idB] = [await clientId(a), await clientId(b)];
  await waitForPeers(a, [idA, idB], "A sees two people");
  await waitForPeers(b, [idA, idB], "B sees two people");
  assert.deepEqual(await users(a), ["Alice (you)", "Bob"]);
  assert.deepEqual(await users(b), ["Alice", "Bob (you)"]);

  // A types; B's editor shows it. B types at the end; A's shows it.
  await typeAt(a, 0, "hello from A");
  await waitForText(b, "hello from A", "B after A typed");
  await typeAt(b, "end", ", and B ü😀");
  await waitForText(a, "hello from A, and B ü😀", "A after B typed");

  // A remote edit before the caret moves it along: A's caret is after "hello" when B inserts
  // at the start, and what A types next still lands after "hello".
  await a.$eval("#editor", (e) => {
    e.focus();
    e.setSelectionRange(5, 5);
  });
  await typeAt(b, 0, "[B] ");
  await waitForText(a, "[B] hello from A, and B ü😀", "A after B inserted at the start");
  await a.keyboard.type(" there");
  const settled = "[B] hello there from A, and B ü😀";
  await waitForText(b, settled, "B after A typed at its (moved) caret");
  assert.equal(await text(a), settled);

  // Both type at once, keys interleaved in time, so updates cross on the way: A at the end, B
  // at the start. Both converge on the same text, each insert whole and where it was typed.
  const fromA = ` +A${id.slice(-4)}+`;
  const fromB = `<B${id.slice(-4)}> `;
  await Promise.all([typeAt(a, "end", fromA, { delay: 15 }), typeAt(b, 0, fromB, { delay: 15 })]);
  const both = `${fromB}${settled}${fromA}`;
  await waitForText(a, both, "A after both typed at once");
  await waitForText(b, both, "B after both typed at once");

  // Again at the same place (both at the end), each page inserting its text as one edit: the
  // result is one of the two orders of the two inserts, each whole, and the same on both pages.
  // (Typed key by key instead, two concurrent runs of keystrokes at one position may
  // interleave, which a CRDT allows: 1 run in 3 here did.)
  const moreA = " [a1a2a3a4]";
  const moreB = " [b1b2b3b4]";
  await Promise.all([typeAt(a, "end", moreA, { whole: true }), typeAt(b, "end", moreB, { whole: true })]);
  const orders = [both + moreA + moreB, both + moreB + moreA];
  await waitForText(a, orders, "A after both typed at the end");
  await waitForText(b, orders, "B after both typed at the end");
  const merged = await text(a);
  await waitForText(b, merged, "B equals A");
  // The documents agree too, not only the textareas.
  const docText = (p) => p.evaluate(() => window.editor.text.toString());
  assert.equal(await docText(a), merged);
  assert.equal(await docText(b), merged);

  // B reloads: the new page gets the whole document from the server, and both see two people
  // again (B's old awareness entry left with its socket).
  await b.reload();
  await synced(b);
  await waitForText(b, merged, "B after the reload");
  const idB2 = await clientId(b);
  assert.notEqual(idB2, idB, "the reloaded page is a new Yjs client");
  await waitForPeers(a, [idA, idB2], "A after B reloaded");
  await waitForPeers(b, [idA, idB2], "B after the reload");
  assert.deepEqual(await users(a), ["Alice (you)", "Bob"]);
  assert.deepEqual(await users(b), ["Alice", "Bob (you)"]);

  // The reloaded page's socket is live both ways.
  await typeAt(b, "end", " (after reload)");
  const last = `${merged} (after reload)`;
  await waitForText(a, last, "A after the reloaded B typed");
  await typeAt(a, 0, "# ");
  await waitForText(b, `# ${last}`, "the reloaded B after A typed");

  if (SCREENSHOT) await a.screenshot({ path: SCREENSHOT });

  // Both leave; a page opened afterwards still finds the document (and nobody else there: the
  // server dropped each leaver's awareness with its socket).
  await a.context().close();
  await b.context().close();
  const c = await openEditor("Carol", room, problems);
  await waitForText(c, `# ${last}`, "C, opened after both left");
  await waitForPeers(c, [await clientId(c)], "C alone");
  assert.deepEqual(await users(c), ["Carol (you)"]);
  await c.context().close();

  assert.deepEqual(problems, []);
});
