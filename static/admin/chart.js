// A small line chart of connected sockets over the last ten minutes, drawn on
// a plain <canvas>. Its CSS size comes from app.css; the drawing buffer
// (width/height attributes) follows that size times devicePixelRatio so lines
// stay sharp. Colours come from CSS custom properties, so the theme owns them.

import {setText} from './dom.js';

const WINDOW_MS = 10 * 60 * 1000;

export class SocketChart {
  /** canvas: the <canvas>; summary: an element for the visible text summary. */
  constructor(canvas, summary) {
    this.canvas = canvas;
    this.summary = summary;
    this.samples = []; // [{t: ms, n: count}]
    this.live = null; // the current count, drawn as the line's last point between samples
    new ResizeObserver(() => this.draw()).observe(canvas);
    matchMedia('(prefers-color-scheme: dark)').addEventListener('change', () => this.draw());
  }

  /** Record the current count (called every 5 s) and redraw. */
  sample(count, t = Date.now()) {
    this.samples.push({t, n: count});
    while (this.samples.length && this.samples[0].t < t - WINDOW_MS) this.samples.shift();
    this.draw();
  }

  /** The count right now (called on every table update), so the line ends at the counter's value. */
  setLive(count) {
    if (count === this.live) return;
    this.live = count;
    this.draw();
  }

  reset() {
    this.samples = [];
    this.live = null;
    this.draw();
  }

  draw() {
    const {canvas} = this;
    const ratio = window.devicePixelRatio || 1;
    const width = Math.round(canvas.clientWidth * ratio);
    const height = Math.round(canvas.clientHeight * ratio);
    if (!width || !height) return; // hidden view
    if (canvas.width !== width) canvas.width = width;
    if (canvas.height !== height) canvas.height = height;

    const ctx = canvas.getContext('2d');
    const css = getComputedStyle(canvas);
    const color = (name) => css.getPropertyValue(name).trim() || '#555';
    ctx.setTransform(ratio, 0, 0, ratio, 0, 0);
    const w = width / ratio;
    const hgt = height / ratio;
    ctx.clearRect(0, 0, w, hgt);

    ctx.font = `11px ${css.fontFamily}`;
    const now = Date.now();
    const series = this.live === null || !this.samples.length ? this.samples : [...this.samples, {t: now, n: this.live}];
    const counts = series.map((s) => s.n);
    const peak = counts.length ? Math.max(...counts) : 0;
    const top = niceCeiling(Math.max(peak, 1));
    const pad = {left: 8 + ctx.measureText(String(top)).width + 8, right: 8, top: 8, bottom: 20};
    const plotW = w - pad.left - pad.right;
    const plotH = hgt - pad.top - pad.bottom;
    const x = (t) => pad.left + plotW * (1 - (now - t) / WINDOW_MS);
    const y = (n) => pad.top + plotH * (1 - n / top);

    ctx.lineWidth = 1;
    ctx.strokeStyle = color('--chart-grid');
    ctx.fillStyle = color('--chart-text');
    ctx.textBaseline = 'middle';
    ctx.textAlign = 'right';
    const lines = Number.isInteger(top / 2) ? [0, top / 2, top] : [0, top];
    for (const n of lines) {
      const yy = Math.round(y(n)) + 0.5;
      ctx.beginPath();
      ctx.moveTo(pad.left, yy);
      ctx.lineTo(w - pad.right, yy);
      ctx.stroke();
      ctx.fillText(String(n), pad.left - 6, yy);
    }
    ctx.textBaseline = 'alphabetic';
    ctx.textAlign = 'left';
    ctx.fillText('10 min ago', pad.left, hgt - 4);
    ctx.textAlign = 'right';
    ctx.fillText('now', w - pad.right, hgt - 4);

    if (series.length) {
      const points = series.map((s) => [x(s.t), y(s.n)]);
      ctx.beginPath();
      ctx.moveTo(points[0][0], y(0));
      for (const [px, py] of points) ctx.lineTo(px, py);
      ctx.lineTo(points.at(-1)[0], y(0));
      ctx.closePath();
      ctx.fillStyle = color('--chart-fill');
      ctx.fill();
      ctx.beginPath();
      points.forEach(([px, py], i) => (i ? ctx.lineTo(px, py) : ctx.moveTo(px, py)));
      ctx.strokeStyle = color('--chart-line');
      ctx.lineWidth = 2;
      ctx.stroke();
      const [lx, ly] = points.at(-1);
      ctx.fillStyle = color('--chart-line');
      ctx.beginPath();
      ctx.arc(lx, ly, 3, 0, Math.PI * 2);
      ctx.fill();
    }
    this.describe(counts, peak);
  }

  describe(counts, peak) {
    const nowCount = counts.at(-1) ?? 0;
    const low = counts.length ? Math.min(...counts) : 0;
    const text = counts.length
      ? `Connected sockets, last 10 minutes: now ${nowCount}, peak ${peak}, low ${low}`
      : 'Connected sockets, last 10 minutes: no samples yet';
    this.canvas.setAttribute('aria-label', text);
    setText(this.summary, counts.length ? `now ${nowCount} · peak ${peak} · low ${low}` : 'collecting…');
  }
}

/** Round up to 1, 2 or 5 × 10^k so the axis labels are round numbers. */
function niceCeiling(n) {
  const power = 10 ** Math.floor(Math.log10(n));
  for (const step of [1, 2, 5, 10]) if (step * power >= n) return step * power;
  return 10 * power;
}
