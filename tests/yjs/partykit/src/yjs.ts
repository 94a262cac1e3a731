// y-partykit's own server: what partyring's built-in `yjs` party stands in for. The
// persistence mode comes from `--var YJS_PERSIST=snapshot|history|none` (tests/yjs/server.mjs);
// `?readOnly=true` makes a read-only connection, as partyring's party does.
import type * as Party from "partykit/server";
import { onConnect } from "y-partykit";

export default class Yjs implements Party.Server {
  constructor(readonly room: Party.Room) {}

  onConnect(conn: Party.Connection, ctx: Party.ConnectionContext) {
    const mode = String(this.room.env.YJS_PERSIST ?? "snapshot");
    const readOnly = new URL(ctx.request.url).searchParams.get("readOnly") === "true";
    return onConnect(conn, this.room, {
      persist: mode === "none" ? false : mode === "history" ? { mode: "history" } : { mode: "snapshot" },
      readOnly,
    });
  }
}
