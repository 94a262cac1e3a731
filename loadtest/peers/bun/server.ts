// Bun peer for partyring's benchmarks: the same routes and semantics as partyring's built-in
// parties (see README.md "Routes"), served by Bun.serve, whose WebSockets are uWebSockets and
// whose room broadcast is uWebSockets' native pub/sub (one topic per room).
//
//   main  WS text   -> appended to the room history, published to the others (ws.publish skips the sender)
//         WS binary -> published to the others, not stored
//         POST {"message": "..."} -> appended, published to every socket of the room (server.publish), 200 OK
//         GET -> the history as a JSON array; other methods 405
//   echo  WS message -> back to its sender, text as text, binary as binary
//
// Usage: bun server.ts PORT   (listens on 127.0.0.1 only)
//
// BUN_PER_MESSAGE_DEFLATE=1 turns on permessage-deflate (`perMessageDeflate: true`: uWebSockets'
// shared compressor, no context takeover) and publishes and echoes compressed
// (`publish(topic, msg, true)`, `send(msg, true)`): a member that negotiated the extension gets
// the compressed frame, the others the plain one. Unset or 0: no compression, as before.

const port = Number(process.argv[2] ?? process.env.PORT ?? 1999);
if (!Number.isInteger(port) || port < 0 || port > 65535) {
  console.error(`usage: bun server.ts PORT (got ${process.argv[2]})`);
  process.exit(2);
}

// Same bound as partyring's default --history-limit: the oldest messages are dropped.
const HISTORY_LIMIT = Number(process.env.HISTORY_LIMIT ?? 10_000);
const MiB = 1024 * 1024;
const DEFLATE = (process.env.BUN_PER_MESSAGE_DEFLATE ?? "0") !== "0";

type Party = "main" | "echo";
type SocketData = { party: Party; topic: string };

// A room's history: the live messages are items[start..]. Dropping the oldest only moves
// `start`; the array is compacted once `start` reaches the limit, so a POST to a full room costs
// O(1) amortised, as partyring's VecDeque. (`splice(0, 1)` on a full 10,000-message array moves
// every element: ~11 µs per append in a micro-benchmark on this machine, more than the rest of
// the request, which would hand partyring an unearned lead in every POST run past the 10,000th
// message.)
type History = { items: string[]; start: number };
const histories = new Map<string, History>();

function remember(topic: string, message: string) {
  let h = histories.get(topic);
  if (h === undefined) {
    h = { items: [], start: 0 };
    histories.set(topic, h);
  }
  h.items.push(message);
  if (h.items.length - h.start > HISTORY_LIMIT) h.start = h.items.length - HISTORY_LIMIT;
  if (h.start >= Math.max(HISTORY_LIMIT, 1024)) {
    h.items = h.items.slice(h.start);
    h.start = 0;
  }
}

function historyOf(topic: string): string[] {
  const h = histories.get(topic);
  if (h === undefined) return [];
  return h.start === 0 ? h.items : h.items.slice(h.start);
}

// "/parties/:party/:room[/*rest]" or "/party/:room[/*rest]" (party "main"); the room is the raw,
// not percent-decoded segment and the query is not part of it, as in PartyKit and partyring.
function route(url: string): { party: string; room: string } | null {
  const start = url.indexOf("/", url.indexOf("//") + 2);
  if (start < 0) return null;
  let end = url.indexOf("?", start);
  if (end < 0) end = url.length;
  const hash = url.indexOf("#", start);
  if (hash >= 0 && hash < end) end = hash;
  const seg = url.slice(start + 1, end).split("/");
  if (seg[0] === "parties" && seg.length >= 3 && seg[1] !== "" && seg[2] !== "") {
    return { party: seg[1], room: seg[2] };
  }
  if (seg[0] === "party" && seg.length >= 2 && seg[1] !== "") {
    return { party: "main", room: seg[1] };
  }
  return null;
}

const text = (body: string, status = 200, headers: Record<string, string> = {}) =>
  new Response(body, {
    status,
    headers: { "content-type": "text/plain;charset=UTF-8", ...headers },
  });

const server = Bun.serve<SocketData, never>({
  hostname: "127.0.0.1",
  port,
  development: false,

  async fetch(req, server) {
    const r = route(req.url);
    if (r === null) return text("Not found", 404);
    if (r.party !== "main" && r.party !== "echo") return text(`Party ${r.party} not found`, 404);
    const party = r.party as Party;
    const topic = `${party}/${r.room}`;

    if (req.headers.get("upgrade")?.toLowerCase() === "websocket") {
      if (server.upgrade(req, { data: { party, topic } })) return undefined;
      return text("Bad WebSocket upgrade", 400);
    }
    if (party === "echo") return text("Expected a WebSocket upgrade", 426);

    if (req.method === "POST") {
      let message: unknown;
      try {
        message = ((await req.json()) as { message?: unknown })?.message;
      } catch {
        return text("Body is not JSON", 400);
      }
      if (typeof message !== "string") return text("Body has no string `message`", 400);
      remember(topic, message);
      server.publish(topic, message, DEFLATE);
      return text("OK");
    }
    if (req.method === "GET") {
      return new Response(JSON.stringify(historyOf(topic)), {
        headers: { "content-type": "application/json" },
      });
    }
    return text("Method not allowed", 405, { allow: "GET, POST" });
  },

  websocket: {
    perMessageDeflate: DEFLATE,
    maxPayloadLength: MiB,
    // Like partyring's default outbound cap: a reader that falls 4 MiB behind is closed.
    backpressureLimit: 4 * MiB,
    closeOnBackpressureLimit: true,
    // Idle benchmark connections must stay up; uWebSockets pings them while idle.
    idleTimeout: 960,
    sendPings: true,
    publishToSelf: false,

    open(ws) {
      if (ws.data.party === "main") ws.subscribe(ws.data.topic);
    },
    message(ws, message) {
      if (ws.data.party === "echo") {
        ws.send(message, DEFLATE);
        return;
      }
      if (typeof message === "string") remember(ws.data.topic, message);
      // Text stays text, a Buffer goes out binary; the sender is excluded.
      ws.publish(ws.data.topic, message, DEFLATE);
    },
    // close: uWebSockets drops a closed socket's subscriptions itself; the history stays.
  },
});

console.log(
  `bun ${Bun.version} listening on http://127.0.0.1:${server.port}` +
    (DEFLATE ? " (perMessageDeflate, compressed publish)" : ""),
);
