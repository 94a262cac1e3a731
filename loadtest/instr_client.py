"""Exactly N rounds of keep-alive HTTP requests for loadtest/instr-per-req.sh.

    python3 loadtest/instr_client.py PORT get|post CONNS ROUNDS

Each round sends one request on every connection, then reads every response (a 200 with its
Content-Length body, or the run fails): GET /parties/main/r1, or POST {"message":"x" * 64} to
it. A bounded count, not a duration, so a server's instruction count per request can be taken
from a fixed amount of work.
"""

import socket
import sys


def main() -> None:
    port, method, conns, rounds = int(sys.argv[1]), sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
    if method not in ("get", "post") or not (1 <= conns <= 1000) or not (0 <= rounds <= 1_000_000):
        raise SystemExit("usage: instr_client.py PORT get|post CONNS(1-1000) ROUNDS(0-1000000)")
    body = b'{"message":"' + b"x" * 64 + b'"}'
    if method == "post":
        req = (
            b"POST /parties/main/r1 HTTP/1.1\r\nHost: a\r\nContent-Type: application/json\r\n"
            b"Content-Length: %d\r\n\r\n" % len(body)
        ) + body
    else:
        req = b"GET /parties/main/r1 HTTP/1.1\r\nHost: a\r\n\r\n"
    socks = [socket.create_connection(("127.0.0.1", port), timeout=30) for _ in range(conns)]
    bufs = [b""] * conns

    def read_one(i: int) -> None:
        buf = bufs[i]
        while True:
            end = buf.find(b"\r\n\r\n")
            if end >= 0:
                head = buf[:end].decode("latin-1")
                length = 0
                for line in head.split("\r\n")[1:]:
                    name, _, value = line.partition(":")
                    if name.strip().lower() == "content-length":
                        length = int(value)
                if len(buf) >= end + 4 + length:
                    if not head.startswith("HTTP/1.1 200"):
                        raise SystemExit(f"instr_client: unexpected response: {head.splitlines()[0]}")
                    bufs[i] = buf[end + 4 + length :]
                    return
            data = socks[i].recv(65536)
            if not data:
                raise SystemExit("instr_client: the server closed a connection")
            buf += data

    for _ in range(rounds):
        for s in socks:
            s.sendall(req)
        for i in range(conns):
            read_one(i)
    print(f"instr_client: {conns * rounds} requests")


if __name__ == "__main__":
    main()
