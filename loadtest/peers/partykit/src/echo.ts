// "echo" party: every message goes back to its sender only, keeping its type.
import type * as Party from "partykit/server";

export default class EchoServer implements Party.Server {
  constructor(readonly room: Party.Room) {}

  onMessage(message: string | ArrayBuffer | ArrayBufferView, sender: Party.Connection) {
    sender.send(message as string | ArrayBuffer);
  }
}
