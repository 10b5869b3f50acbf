// A small line chart drawn as inline SVG: one line per engine over the series' steps.
import { fmt } from "./dom.js";

const NS = "http://www.w3.org/2000/svg";
const W = 480, H = 180, PAD = 32;
export const COLOURS = ["#2563eb", "#dc2626", "#16a34a", "#9333ea", "#ea580c", "#0891b2"];

function svg(tag, attrs, text) {
  const node = document.createElementNS(NS, tag);
  for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, String(v));
  if (text !== undefined) node.textContent = text;
  return node;
}

/** lines: {engine: [value|null per point]}; labels: the points' times. */
export function lineChart(title, lines, labels) {
  const values = Object.values(lines).flat().filter((v) => v !== null);
  const top = Math.max(1, ...values);
  const x = (i) => PAD + (labels.length > 1 ? (i * (W - 2 * PAD)) / (labels.length - 1) : 0);
  const y = (v) => H - PAD - (v * (H - 2 * PAD)) / top;
  const root = svg("svg", { viewBox: `0 0 ${W} ${H}`, role: "img", "aria-label": title, class: "chart" });
  root.append(svg("title", {}, title));
  root.append(svg("line", { x1: PAD, y1: H - PAD, x2: W - PAD, y2: H - PAD, class: "axis" }));
  root.append(svg("line", { x1: PAD, y1: PAD, x2: PAD, y2: H - PAD, class: "axis" }));
  root.append(svg("text", { x: 2, y: PAD, class: "tick" }, fmt(top)));
  root.append(svg("text", { x: 2, y: H - PAD, class: "tick" }, "0"));
  if (labels.length) {
    root.append(svg("text", { x: PAD, y: H - 8, class: "tick" }, labels[0]));
    root.append(svg("text", { x: W - PAD, y: H - 8, class: "tick", "text-anchor": "end" }, labels[labels.length - 1]));
  }
  Object.entries(lines).forEach(([engine, points], n) => {
    const colour = COLOURS[n % COLOURS.length];
    // A gap (nothing measured) breaks the line rather than drawing it down to zero.
    let path = "", pen = "M";
    points.forEach((v, i) => {
      if (v === null) { pen = "M"; return; }
      path += `${pen}${x(i).toFixed(1)},${y(v).toFixed(1)} `;
      pen = "L";
    });
    root.append(svg("path", { d: path, stroke: colour, class: "series", "data-engine": engine }));
    // Dots too: a lone point between gaps has no line to show it.
    points.forEach((v, i) => { if (v !== null) root.append(svg("circle", { cx: x(i), cy: y(v), r: 2.5, fill: colour })); });
    root.append(svg("text", { x: PAD + 8, y: PAD + 12 * n, class: "legend", fill: colour }, engine));
  });
  return root;
}
