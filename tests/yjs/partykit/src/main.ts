// partykit.json needs a `main` party; the yjs tests use only `yjs` (src/yjs.ts).
import type * as Party from "partykit/server";

export default class Main implements Party.Server {
  constructor(readonly room: Party.Room) {}
}
