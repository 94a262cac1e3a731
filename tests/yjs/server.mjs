// Starts and restarts the server under test for yjs.test.mjs.
//
//   YJS_TARGET=partyring (default)  the release binary (PARTYRING_BIN, default
//                                    target/release/partyring) on port 0, with its own data
//                                    dir, serving the built-in `yjs` party;
//   YJS_TARGET=partykit              `partykit dev` (tests/yjs/partykit/) on PARTYKIT_PORT
//                                    (default 19998): a y-partykit server whose `persist` mode
//                                    comes from `--var YJS_PERSIST=...`, storage kept across
//                                    restarts with `--persist <dir>`.
//
// `start(mode)` resolves to { host, stop(signal) } once the server is listening; `stop`
// resolves once the process has exited. Every wait is bounded.

import { spawn } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";

const HERE = dirname(fileURLToPath(import.meta.url));
const ROOT = resolve(HERE, "../..");
export const TARGET = process.env.YJS_TARGET || "partyring";
if (!["partyring", "partykit"].includes(TARGET)) {
  throw new Error(`YJS_TARGET must be "partyring" or "partykit", got ${TARGET}`);
}
const BIN = process.env.PARTYRING_BIN || join(ROOT, "target/release/partyring");
const START_MS = 60000;

/** A fresh storage directory; removed at process exit. */
export function dataDir() {
  const dir = mkdtempSync(join(tmpdir(), "partyring-yjs-"));
  process.on("exit", () => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

function waitForLine(child, stream, re, what) {
  return new Promise((resolveLine, reject) => {
    let seen = "";
    const timer = setTimeout(() => {
      reject(new Error(`${what} did not start in ${START_MS} ms; output:\n${seen}`));
    }, START_MS);
    const onData = (chunk) => {
      seen += chunk.toString();
      const m = seen.match(re);
      if (m) {
        clearTimeout(timer);
        resolveLine(m);
      }
    };
    stream.on("data", onData);
    child.on("exit", (code) => {
      clearTimeout(timer);
      reject(new Error(`${what} exited (${code}) before it was ready; output:\n${seen}`));
    });
  });
}

function stopper(child) {
  return (signal = "SIGTERM") =>
    new Promise((done) => {
      if (child.exitCode !== null || child.signalCode !== null) return done();
      const timer = setTimeout(() => child.kill("SIGKILL"), 20000);
      child.once("exit", () => {
        clearTimeout(timer);
        done();
      });
      // partykit dev runs workerd as a child: signal the whole process group.
      try {
        process.kill(-child.pid, signal);
      } catch {
        child.kill(signal);
      }
    });
}

/**
 * Starts the server with persistence `mode` ("snapshot", "history" or "none") over storage
 * directory `dir` (partyring: on `threads` cores).
 */
export async function start(mode, dir, { threads = 2 } = {}) {
  if (TARGET === "partyring") {
    const child = spawn(
      BIN,
      ["--port", "0", "--threads", String(threads), "--data-dir", dir, "--yjs-persist", mode, "--log", "warn"],
      { stdio: ["ignore", "pipe", "inherit"], detached: true },
    );
    const m = await waitForLine(child, child.stdout, /listening on http:\/\/([0-9.:]+)/, "partyring");
    return { host: m[1], stop: stopper(child) };
  }
  const port = process.env.PARTYKIT_PORT || "19998";
  const child = spawn(
    join(HERE, "partykit/node_modules/.bin/partykit"),
    [
      "dev",
      "--port", port,
      "--persist", dir,
      "--disable-request-cf-fetch",
      "--no-hotkeys",
      "--var", `YJS_PERSIST=${mode}`,
    ],
    {
      cwd: join(HERE, "partykit"),
      env: { ...process.env, NO_UPDATE_NOTIFIER: "1" },
      stdio: ["ignore", "pipe", "pipe"],
      detached: true,
    },
  );
  child.stderr.on("data", (d) => process.stderr.write(d));
  await waitForLine(child, child.stdout, /Ready on/, "partykit dev");
  return { host: `127.0.0.1:${port}`, stop: stopper(child) };
}
