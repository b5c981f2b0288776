// chart.js draws line charts as SVG elements. Every point is a <circle>
// carrying its series, time and value as data attributes and a <title>,
// so a person hovering and a test reading the page see the same numbers.
// Hand-written because the console fetches nothing and needs only this.

const NS = "http://www.w3.org/2000/svg";
const PALETTE = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#17becf", "#8c564b", "#e377c2"];

function el(name, attrs, text) {
  const e = document.createElementNS(NS, name);
  for (const [k, v] of Object.entries(attrs || {})) e.setAttribute(k, String(v));
  if (text !== undefined) e.textContent = text;
  return e;
}

// fmt writes a value for an axis or a title: short, without noise.
export function fmt(v) {
  if (v === 0) return "0";
  const a = Math.abs(v);
  if (a >= 1000) return v.toFixed(0);
  if (a >= 10) return v.toFixed(1);
  if (a >= 1) return v.toFixed(2);
  return v.toPrecision(2);
}

// lineChart returns an <svg>: one line per series of {name, points:
// [{t: Date, v: number}]}, time on x, value on y from 0; lines holds
// horizontal reference lines [{v, label}] (a cap, a burn rate of 1);
// from and to (Dates), when given, are the x axis' range, so a sparse
// series is drawn where it happened within the range asked for.
export function lineChart({ title, unit, series, lines = [], from, to, width = 760, height = 260 }) {
  const m = { l: 56, r: 150, t: 24, b: 30 };
  const svg = el("svg", { viewBox: `0 0 ${width} ${height}`, width, height, role: "img", class: "chart" });
  svg.appendChild(el("title", {}, title));
  svg.appendChild(el("text", { x: m.l, y: 15, class: "chart-title" }, title + (unit ? ` (${unit})` : "")));
  const pts = series.flatMap((s) => s.points);
  if (pts.length === 0) {
    svg.appendChild(el("text", { x: width / 2, y: height / 2, "text-anchor": "middle", class: "empty" }, "no data in this range"));
    return svg;
  }
  const t0 = Math.min(...pts.map((p) => p.t.getTime()), from ? from.getTime() : Infinity);
  let t1 = Math.max(...pts.map((p) => p.t.getTime()), to ? to.getTime() : -Infinity);
  if (t1 === t0) t1 = t0 + 1;
  let vmax = Math.max(...pts.map((p) => p.v), ...lines.map((l) => l.v));
  if (!(vmax > 0)) vmax = 1;
  vmax *= 1.1;
  const w = width - m.l - m.r, h = height - m.t - m.b;
  const x = (t) => m.l + ((t - t0) / (t1 - t0)) * w;
  const y = (v) => m.t + h - (v / vmax) * h;
  svg.appendChild(el("line", { x1: m.l, y1: m.t + h, x2: m.l + w, y2: m.t + h, class: "axis" }));
  svg.appendChild(el("line", { x1: m.l, y1: m.t, x2: m.l, y2: m.t + h, class: "axis" }));
  for (let i = 0; i <= 4; i++) {
    const v = (vmax / 4) * i;
    svg.appendChild(el("text", { x: m.l - 6, y: y(v) + 4, "text-anchor": "end", class: "tick" }, fmt(v)));
  }
  for (const t of [t0, (t0 + t1) / 2, t1]) {
    svg.appendChild(el("text", { x: x(t), y: height - 10, "text-anchor": "middle", class: "tick" },
      new Date(t).toISOString().slice(0, 16).replace("T", " ")));
  }
  for (const l of lines) {
    svg.appendChild(el("line", { x1: m.l, y1: y(l.v), x2: m.l + w, y2: y(l.v), class: "ref", "data-ref": l.label, "data-v": l.v }));
    svg.appendChild(el("text", { x: m.l + w + 4, y: y(l.v) + 4, class: "tick" }, `${l.label} ${fmt(l.v)}`));
  }
  series.forEach((s, i) => {
    const color = PALETTE[i % PALETTE.length];
    const g = el("g", { "data-series": s.name });
    const sorted = [...s.points].sort((a, b) => a.t - b.t);
    g.appendChild(el("polyline", { points: sorted.map((p) => `${x(p.t.getTime())},${y(p.v)}`).join(" "), fill: "none", stroke: color, "stroke-width": 2 }));
    for (const p of sorted) {
      const c = el("circle", { cx: x(p.t.getTime()), cy: y(p.v), r: 3, fill: color, "data-t": p.t.toISOString(), "data-v": p.v });
      c.appendChild(el("title", {}, `${s.name} ${p.t.toISOString()}: ${fmt(p.v)}${unit ? " " + unit : ""}`));
      g.appendChild(c);
    }
    svg.appendChild(g);
    svg.appendChild(el("rect", { x: m.l + w + 10, y: m.t + 16 * i, width: 10, height: 10, fill: color }));
    svg.appendChild(el("text", { x: m.l + w + 24, y: m.t + 16 * i + 9, class: "legend" }, s.name.length > 22 ? s.name.slice(0, 21) + "…" : s.name));
  });
  return svg;
}
