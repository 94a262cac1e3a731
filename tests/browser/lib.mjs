// What both browser suites share: launching Debian's Chromium headless for this machine's
// closed network, and watching a page for anything that went wrong (a page error, a console
// error, a request or a WebSocket that left the server under test).
import { chromium } from "playwright-core";

export async function launchChromium(executablePath) {
  return chromium.launch({
    executablePath,
    headless: true,
    // Without the background-networking flags Chromium tries to reach Google's hosts, which
    // this machine's closed network refuses.
    args: [
      "--no-sandbox",
      "--disable-background-networking",
      "--disable-component-update",
      "--disable-sync",
      "--disable-gpu",
      "--disable-quic",
      "--no-first-run",
    ],
  });
}

// Records in `problems` (as "<name>: ...") every page error, every console message that
// `isProblem` flags (default: console errors), and every request or WebSocket that does not
// go to `addr` (host:port) or a data: URL; `checkSocket(url)` may add a complaint about a
// WebSocket to the server (return a string) or accept it (return nothing).
export function watchPage(page, name, addr, problems, { isProblem, checkSocket } = {}) {
  const ours = (url) =>
    url.startsWith(`http://${addr}/`) || url.startsWith(`ws://${addr}/`) || url.startsWith("data:");
  const flag = isProblem ?? ((m) => m.type() === "error");
  page.on("pageerror", (e) => problems.push(`${name}: page error: ${e.message}`));
  page.on("console", (m) => {
    if (flag(m)) problems.push(`${name}: console ${m.type()}: ${m.text()}`);
  });
  page.on("request", (r) => {
    if (!ours(r.url())) problems.push(`${name}: request outside the server: ${r.url()}`);
  });
  page.on("websocket", (ws) => {
    if (!ours(ws.url())) {
      problems.push(`${name}: websocket outside the server: ${ws.url()}`);
      return;
    }
    const complaint = checkSocket?.(ws.url());
    if (complaint) problems.push(`${name}: ${complaint}`);
  });
}
