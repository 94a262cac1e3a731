// Reference "main" party for partyring interop tests and benchmarks.
// Semantics: the MessageServer of the PartyKit guide "Responding to HTTP requests",
// plus a WebSocket onMessage that stores text and relays to everyone but the sender.
import type * as Party from "partykit/server";

export default class MessageServer implements Party.Server {
  messages: string[] = [];

  constructor(readonly room: Party.Room) {}

  async onRequest(request: Party.Request) {
    if (request.method === "POST") {
      const payload = (await request.json()) as { message: string };
      this.messages.push(payload.message);
      this.room.broadcast(payload.message);
      return new Response("OK");
    }
    if (request.method === "GET") {
      return new Response(JSON.stringify(this.messages));
    }
    return new Response("Method not allowed", { status: 405 });
  }

  onMessage(message: string | ArrayBuffer | ArrayBufferView, sender: Party.Connection) {
    if (typeof message === "string") {
      this.messages.push(message);
    }
    // Text and binary both go to every connection except the sender; binary is not stored.
    this.room.broadcast(message as string | ArrayBuffer, [sender.id]);
  }
}
