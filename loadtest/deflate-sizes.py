#!/usr/bin/env python3
"""Compressed size of small WebSocket messages under permessage-deflate's framing (raw deflate,
a sync flush, its 4 trailing bytes dropped; no context takeover), at zlib level 1 as the server
uses (src/ws/deflate/codec.rs). Python's zlib, not the server's zlib-rs: sizes may differ by a
byte or two. PERF.md §1g quotes it for the --compression-threshold discussion.

    python3 loadtest/deflate-sizes.py
"""
import random
import zlib

random.seed(7)
WORDS = ("the a to and of in is it you that he was for on are as with his they at be this have "
         "from or one had by word but not what all were we when your can said there use an each "
         "which she do how their if will up other about out many then them these so some her "
         "would make like him into time has look two more write go see number no way could "
         "people my than first water been call who oil its now find long down day did get come "
         "made may part").split()


def chat(n):
    head = '{"type":"chat","id":"0000000000000000000000000000000a","user":{"id":"u-0042","name":"Ada"},"text":"'
    t = ""
    while len(head) + len(t) + 2 < n:
        t += (" " if t else "") + random.choice(WORDS)
    return (head + t)[: n - 2] + '"}'


def deflated_len(message):
    c = zlib.compressobj(1, zlib.DEFLATED, -15)
    out = c.compress(message.encode()) + c.flush(zlib.Z_SYNC_FLUSH)
    assert out.endswith(b"\x00\x00\xff\xff")
    return len(out) - 4


samples = {
    'cursor {"type":"cursor","id":..,"x":..,"y":..}': [
        '{"type":"cursor","id":"u-%d","x":%d,"y":%d}'
        % (random.randint(1, 999), random.randint(0, 1999), random.randint(0, 999))
        for _ in range(200)
    ],
}
for n in (48, 64, 96, 128, 160, 200, 256, 512):
    samples[f"chat json {n} B"] = [chat(n) for _ in range(200)]
for name, messages in samples.items():
    plain = sum(len(m) for m in messages) / len(messages)
    packed = sum(deflated_len(m) for m in messages) / len(messages)
    print(f"{name:48} {plain:6.0f} B -> {packed:6.1f} B ({100 * packed / plain:5.1f}%)")
