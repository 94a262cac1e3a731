"""Dependency-free SVG line plots for the loadtest reports (perf-report.py, ab-report.py,
ratio-plot.py).

One encoding everywhere: the colour says which server (or which ratio), the line style says
which percentile, so two servers' p50s never share a colour and a server's p50 and p99 never
share a style. Unknown names get colours from a spare palette, in order.
"""
import math

# One colour per server, fixed across every plot.
SERVER_COLOURS = {
    "partyring": "#d62728",  # red
    "bun": "#1f77b4",  # blue
    "partykit": "#2ca02c",  # green
    "floor": "#7f7f7f",  # grey
    "old": "#ff7f0e",  # orange (A/B: the build before)
    "new": "#d62728",  # red (A/B: the build after, partyring's colour)
}
SPARE = ["#9467bd", "#8c564b", "#e377c2", "#17becf", "#bcbd22"]

# One line style per percentile (SVG stroke-dasharray; "" is solid).
PERCENTILE_DASHES = {"p50": "", "p99": "8 4", "p999": "2 3", "max": "10 3 2 3"}
DASH_NAMES = {"": "solid", "8 4": "dashed", "2 3": "dotted", "10 3 2 3": "dash-dot"}


def colour_of(name, _assigned={}):
    if name in SERVER_COLOURS:
        return SERVER_COLOURS[name]
    if name not in _assigned:
        _assigned[name] = SPARE[len(_assigned) % len(SPARE)]
    return _assigned[name]


def esc(t):
    return str(t).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def line_plot(path, title, xlabel, ylabel, series, log_y=False, xticks=None, hlines=()):
    """series: list of dicts {label, colour, dash, points: [(x, y), ...]}; xticks: optional
    {x: label}; hlines: [(y, label)] reference lines. Returns False when there is nothing to
    draw (and writes nothing)."""
    pts_all = [(x, y) for s in series for x, y in s["points"] if y is not None and (y > 0 or not log_y)]
    if not pts_all:
        return False
    w, h, ml, mr, mt, mb = 720, 420, 75, 190, 40, 55
    xs = [x for x, _ in pts_all]
    ys = [y for _, y in pts_all] + [y for y, _ in hlines]
    x0, x1 = min(xs), max(xs)
    if x0 == x1:
        x0, x1 = x0 - 1, x1 + 1
    pad = (x1 - x0) * 0.04
    x0, x1 = x0 - pad, x1 + pad
    if log_y:
        ty = lambda y: math.log10(max(y, 1e-9))
        y0, y1 = ty(min(ys) / 1.5), ty(max(ys) * 1.5)
    else:
        ty = lambda y: y
        lo, hi = min(ys + [0]), max(ys)
        y0, y1 = lo, hi * 1.1 if hi > 0 else 1
    if y0 == y1:
        y1 = y0 + 1
    sx = lambda x: ml + (x - x0) / (x1 - x0) * (w - ml - mr)
    sy = lambda y: h - mb - (ty(y) - y0) / (y1 - y0) * (h - mt - mb)
    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" font-family="sans-serif" font-size="12">',
        f'<rect width="{w}" height="{h}" fill="white"/>',
        f'<text x="{w / 2}" y="20" text-anchor="middle" font-size="14">{esc(title)}</text>',
        f'<line x1="{ml}" y1="{h - mb}" x2="{w - mr}" y2="{h - mb}" stroke="black"/>',
        f'<line x1="{ml}" y1="{mt}" x2="{ml}" y2="{h - mb}" stroke="black"/>',
        f'<text x="{(ml + w - mr) / 2}" y="{h - 12}" text-anchor="middle">{esc(xlabel)}</text>',
        f'<text x="15" y="{h / 2}" transform="rotate(-90 15 {h / 2})" text-anchor="middle">{esc(ylabel)}</text>',
    ]
    if log_y:
        ticks = [10 ** e for e in range(math.floor(y0), math.ceil(y1) + 1) if y0 <= e <= y1]
    else:
        step = nice_step((y1 - y0) / 6)
        ticks = [i * step for i in range(math.ceil(y0 / step), math.floor(y1 / step) + 1)]
    for t in ticks:
        y = sy(t)
        out.append(f'<line x1="{ml}" y1="{y:.1f}" x2="{w - mr}" y2="{y:.1f}" stroke="#e5e5e5"/>')
        out.append(f'<text x="{ml - 5}" y="{y + 4:.1f}" text-anchor="end">{t:g}</text>')
    for x in sorted(set(xs)):
        label = (xticks or {}).get(x, f"{x:g}")
        out.append(f'<text x="{sx(x):.1f}" y="{h - mb + 15}" text-anchor="middle">{esc(label)}</text>')
    for y, label in hlines:
        out.append(f'<line x1="{ml}" y1="{sy(y):.1f}" x2="{w - mr}" y2="{sy(y):.1f}" stroke="black" stroke-dasharray="1 3"/>')
        out.append(f'<text x="{w - mr - 4}" y="{sy(y) - 4:.1f}" text-anchor="end" fill="#555">{esc(label)}</text>')
    for i, s in enumerate(series):
        pts = sorted((x, y) for x, y in s["points"] if y is not None and (y > 0 or not log_y))
        if not pts:
            continue
        c, dash = s["colour"], s.get("dash", "")
        da = f' stroke-dasharray="{dash}"' if dash else ""
        d = " ".join(f"{sx(x):.1f},{sy(y):.1f}" for x, y in pts)
        out.append(f'<polyline points="{d}" fill="none" stroke="{c}" stroke-width="2"{da}/>')
        for x, y in pts:
            out.append(f'<circle cx="{sx(x):.1f}" cy="{sy(y):.1f}" r="3" fill="{c}"/>')
        ly = mt + 15 + i * 18
        out.append(f'<line x1="{w - mr + 10}" y1="{ly - 4}" x2="{w - mr + 40}" y2="{ly - 4}" stroke="{c}" stroke-width="2"{da}/>')
        out.append(f'<text x="{w - mr + 45}" y="{ly}">{esc(s["label"])}</text>')
    out.append("</svg>")
    with open(path, "w") as f:
        f.write("\n".join(out) + "\n")
    return True


def nice_step(raw):
    if raw <= 0:
        return 1
    mag = 10 ** math.floor(math.log10(raw))
    for m in (1, 2, 2.5, 5, 10):
        if raw <= m * mag:
            return m * mag
    return 10 * mag
