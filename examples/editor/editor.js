// The editor page: one Y.Text ("text") in a Yjs document per room, synced with the yjs party of
// the server that served this page (`/parties/yjs/<room>`), and the awareness of who else has the
// page open. Everything it loads comes from that server: `vendor/yjs-partykit.js` is yjs and
// y-partykit/provider bundled by vendor/build.sh (the `?v=` names the versions, so a rebuilt
// bundle is a new URL).
import { Y, YPartyKitProvider } from "./vendor/yjs-partykit.js?v=yjs-13.6.33.y-partykit-0.0.33";
import { bindTextarea } from "./binding.js";

const $ = (id) => document.getElementById(id);
const params = new URLSearchParams(location.search);
const room = params.get("room") || "lobby";

document.title = `${room} · partyring editor`;
$("room-name").textContent = room;
$("room-input").value = room;
// The provider puts the room into the URL as it is: encode it once here.
$("room-url").textContent = `/parties/yjs/${encodeURIComponent(room)}`;

const doc = new Y.Doc();
const text = doc.getText("text");
const provider = new YPartyKitProvider(location.host, encodeURIComponent(room), doc, {
  party: "yjs",
  // The provider would pick ws:// only for localhost and LAN addresses; follow the page instead.
  protocol: location.protocol === "https:" ? "wss" : "ws",
  // Tabs of one browser would otherwise also sync through a BroadcastChannel; this example
  // sends every edit through the server.
  disableBc: true,
});

// Connection status: the socket's state, and whether the server's copy has been received.
const status = $("status");
function showStatus(state) {
  status.dataset.state = state;
  status.dataset.synced = String(provider.synced);
  status.textContent =
    state === "connected" ? (provider.synced ? "connected, in sync" : "connected, syncing…")
    : state === "connecting" ? "connecting…"
    : "disconnected, retrying…";
}
provider.on("status", ({ status: state }) => showStatus(state));
provider.on("sync", () => showStatus(status.dataset.state));

bindTextarea(text, $("editor"));

// Awareness: every open page announces a name and a colour; the list shows them all.
const NAMES = ["Ada", "Alan", "Barbara", "Edsger", "Grace", "Ken", "Margaret", "Niklaus"];
const nameInput = $("name");
const name =
  params.get("name") || `${NAMES[Math.floor(Math.random() * NAMES.length)]} ${doc.clientID % 100}`;
const color = `hsl(${doc.clientID % 360} 60% 40%)`;
nameInput.value = name;
provider.awareness.setLocalStateField("user", { name, color });
nameInput.addEventListener("input", () => {
  const user = provider.awareness.getLocalState()?.user;
  provider.awareness.setLocalStateField("user", { ...user, name: nameInput.value.trim() || name });
});

function showUsers() {
  const items = [];
  for (const [client, state] of provider.awareness.getStates()) {
    if (!state.user) continue;
    const li = document.createElement("li");
    li.textContent = client === doc.clientID ? `${state.user.name} (you)` : state.user.name;
    li.dataset.self = String(client === doc.clientID);
    li.style.setProperty("--color", state.user.color);
    items.push(li);
  }
  $("users").replaceChildren(...items);
  $("user-count").textContent = String(items.length);
  $("user-count").dataset.count = String(items.length);
}
provider.awareness.on("change", showUsers);
showUsers();

// For tests and the console.
window.editor = { doc, text, provider };
