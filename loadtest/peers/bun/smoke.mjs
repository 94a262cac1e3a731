// Semantics smoke test for a peer: node smoke.mjs [http://127.0.0.1:PORT] [--ws-only]
// Checks: WS text broadcast excludes the sender and is stored, binary is relayed as binary and
// not stored, POST reaches every socket and answers "OK", GET answers the history, other
// methods 405, echo keeps the type. --ws-only skips the HTTP checks (the floor has no HTTP).
import WebSocket from "ws";

const base = (process.argv.find((a) => a.startsWith("http")) ?? "http://127.0.0.1:1999").replace(/\/$/, "");
const wsOnly = process.argv.includes("--ws-only");
const wsBase = base.replace(/^http/, "ws");
const room = `smoke-${process.pid}-${Date.now()}`;
let failures = 0;
const check = (ok, what) => {
  console.log(`${ok ? "ok  " : "FAIL"} ${what}`);
  if (!ok) failures++;
};

const open = (path) =>
  new Promise((resolve, reject) => {
    const ws = new WebSocket(wsBase + path);
    ws.inbox = [];
    ws.on("message", (data, isBinary) => ws.inbox.push({ data: isBinary ? Buffer.from(data) : data.toString(), isBinary }));
    ws.once("open", () => resolve(ws));
    ws.once("error", reject);
  });
const settle = (ms = 200) => new Promise((r) => setTimeout(r, ms));
const texts = (ws) => ws.inbox.filter((m) => !m.isBinary).map((m) => m.data);

const watchdog = setTimeout(() => {
  console.log("FAIL timeout");
  process.exit(1);
}, 10_000);

const a = await open(`/parties/main/${room}`);
const b = await open(`/parties/main/${room}`);
const c = await open(`/party/${room}`); // legacy form, same room of party main
await settle(100);

a.send("hello from a");
a.send(Buffer.from([1, 2, 3]));
await settle();
check(texts(a).length === 0 && a.inbox.length === 0, "sender gets nothing back");
check(texts(b).join() === "hello from a" && texts(c).join() === "hello from a", "text reaches the others (/parties/main and /party)");
const bin = b.inbox.find((m) => m.isBinary);
check(bin !== undefined && bin.data.equals(Buffer.from([1, 2, 3])), "binary reaches the others as binary");

if (!wsOnly) {
  const post = await fetch(`${base}/parties/main/${room}`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ message: "from http" }),
  });
  const postBody = await post.text();
  check(post.status === 200 && postBody === "OK", `POST -> ${post.status} ${JSON.stringify(postBody)} ${post.headers.get("content-type")}`);
  await settle();
  check([a, b, c].every((w) => texts(w).includes("from http")), "POST reaches every socket, the sender-less broadcast");
  const get = await fetch(`${base}/parties/main/${room}`);
  const hist = await get.json();
  check(get.status === 200 && JSON.stringify(hist) === JSON.stringify(["hello from a", "from http"]), `GET history ${JSON.stringify(hist)}`);
  const put = await fetch(`${base}/parties/main/${room}`, { method: "PUT" });
  check(put.status === 405 && (await put.text()) === "Method not allowed", `PUT -> ${put.status}`);
}

const e = await open(`/parties/echo/${room}`);
const other = await open(`/parties/echo/${room}`);
e.send("ping");
e.send(Buffer.from([9, 8]));
await settle();
check(e.inbox.length === 2 && e.inbox[0].data === "ping" && !e.inbox[0].isBinary, "echo text as text");
check(e.inbox[1]?.isBinary && e.inbox[1].data.equals(Buffer.from([9, 8])), "echo binary as binary");
check(other.inbox.length === 0, "echo goes to the sender only");

for (const w of [a, b, c, e, other]) w.close();
clearTimeout(watchdog);
console.log(failures === 0 ? "all ok" : `${failures} failure(s)`);
process.exit(failures === 0 ? 0 : 1);
