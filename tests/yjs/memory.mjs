// What an idle loaded Yjs document costs the server, measured (docs/yjs.md):
//
//   node tests/yjs/memory.mjs [N]      (default N = 10000; needs target/release/partyring)
//
// Starts the release binary twice (one core, in-memory storage, no Yjs persistence, so only the
// documents differ) and opens N WebSockets: to N `echo` rooms in the first run, to N `yjs` rooms
// in the second, where each connection writes a 64-character Y.Text and an awareness state and
// then idles. The RSS growth over the baseline, per connection, is compared; the difference is
// the document (yrs Doc with its content, awareness table, member entry, room state).
// Loopback only; every wait is bounded.

import { spawn } from "node:child_process";
import { readFileSync } from "node:fs";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import * as encoding from "lib0/encoding";
import * as awarenessProtocol from "y-protocols/awareness";
import WS from "ws";
import * as Y from "yjs";

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), "../..");
const BIN = process.env.PARTYRING_BIN || join(ROOT, "target/release/partyring");
const N = Number(process.argv[2] || 10000);

const rssKiB = (pid) =>
  Number(readFileSync(`/proc/${pid}/status`, "utf8").match(/VmRSS:\s+(\d+)/)[1]);

async function startServer() {
  const child = spawn(
    BIN,
    ["--port", "0", "--threads", "1", "--persist", "false", "--yjs-persist", "none", "--log", "error"],
    { stdio: ["ignore", "pipe", "inherit"] },
  );
  const host = await new Promise((ok, fail) => {
    let out = "";
    const t = setTimeout(() => fail(new Error("server did not start")), 30000);
    child.stdout.on("data", (d) => {
      out += d;
      const m = out.match(/listening on http:\/\/([0-9.:]+)/);
      if (m) {
        clearTimeout(t);
        ok(m[1]);
      }
    });
  });
  return { child, host };
}

function yjsMessages(k) {
  const doc = new Y.Doc();
  doc.getText("t").insert(0, `document ${k} `.padEnd(64, "."));
  const enc = encoding.createEncoder();
  encoding.writeVarUint(enc, 0);
  encoding.writeVarUint(enc, 2);
  encoding.writeVarUint8Array(enc, Y.encodeStateAsUpdate(doc));
  const aw = new awarenessProtocol.Awareness(doc);
  aw.setLocalState({ user: { name: `user ${k}`, color: "#30bced" } });
  const enc2 = encoding.createEncoder();
  encoding.writeVarUint(enc2, 1);
  encoding.writeVarUint8Array(enc2, awarenessProtocol.encodeAwarenessUpdate(aw, [doc.clientID]));
  aw.destroy();
  return [encoding.toUint8Array(enc), encoding.toUint8Array(enc2)];
}

/** Opens n sockets (at most 100 opening at once); resolves once each got its answer. */
async function open(host, party, n) {
  const sockets = [];
  for (let base = 0; base < n; base += 100) {
    await Promise.all(
      Array.from({ length: Math.min(100, n - base) }, (_, i) => {
        const k = base + i;
        return new Promise((ok, fail) => {
          const ws = new WS(`ws://${host}/parties/${party}/mem-${k}`);
          const t = setTimeout(() => fail(new Error(`socket ${k} got no answer`)), 30000);
          sockets.push(ws);
          ws.on("error", fail);
          ws.on("open", () => {
            if (party === "yjs") {
              for (const m of yjsMessages(k)) ws.send(m);
              ws.send(new Uint8Array([3])); // answered once the two above are handled
            } else {
              ws.send("x");
            }
          });
          ws.on("message", (data, isBinary) => {
            const b = new Uint8Array(data);
            if (party === "echo" || (isBinary && b[0] === 1 && b.length > 2)) {
              clearTimeout(t);
              ok();
            }
          });
        });
      }),
    );
  }
  return sockets;
}

async function measure(party) {
  const { child, host } = await startServer();
  await new Promise((r) => setTimeout(r, 200));
  const before = rssKiB(child.pid);
  const sockets = await open(host, party, N);
  await new Promise((r) => setTimeout(r, 500));
  const after = rssKiB(child.pid);
  for (const ws of sockets) ws.terminate();
  child.kill("SIGTERM");
  return { before, after, perConn: ((after - before) * 1024) / N };
}

const echo = await measure("echo");
const yjs = await measure("yjs");
console.log(`N = ${N} connections, one core`);
console.log(`echo rooms: RSS ${echo.before} -> ${echo.after} KiB, ${echo.perConn.toFixed(0)} B per connection`);
console.log(`yjs rooms:  RSS ${yjs.before} -> ${yjs.after} KiB, ${yjs.perConn.toFixed(0)} B per connection`);
console.log(`an idle loaded document: ~${(yjs.perConn - echo.perConn).toFixed(0)} B over an echo connection`);
process.exit(0);
