// maxrf viewer: an image pane (total counts, element maps, band images, composites) and a
// spectrum pane, both drawn on canvases; all data comes from the /api endpoints. Images are the
// values themselves (.npy arrays) coloured here, so contrast, colour bars, hover readouts and the
// composite's sliders follow every change at once.
"use strict";
const $ = (id) => document.getElementById(id);
const viewer = (window.viewer = { ready: false, spectrum: null, band: null, imageUrl: null,
                                  imageLoads: 0, timings: [], hover: null, drawn: {} });
let info = null, view = { scale: 1, ox: 0, oy: 0 }, pixel = null, rect = null;
let spec = null, drag = null, bandSel = null;
// composite defaults: colour-blind-safe hues of which no two add up to a third
const COLORS = ["#ff00ff", "#00e000", "#00a0ff", "#ff9900"];
const arrays = new Map();  // url -> {data: Float32Array, h, w, p995, max}
let layers = [];  // what is shown: [{label, arr, color|null, gain, on}]
let contrast = { lo: 0, hi: 1, gamma: 1 };
let rendered = null;  // an offscreen canvas of the current image at scan resolution
let photoImg = null;  // the registered photograph on the scan's grid
let mask = null;  // pixels selected in the scatter plot (null: all shown)
let scatterData = null;  // {x, y: Float32Array, X, Y: axis functions}

function status(text) { $("status").textContent = text; }

async function getJSON(url) {
  const t0 = performance.now();
  const r = await fetch(url);
  const body = await r.json();
  viewer.timings.push([url, performance.now() - t0]);
  if (!r.ok) throw new Error(body.error || r.statusText);
  return body;
}

function parseNpy(buf) {
  // NumPy .npy: magic, version, header length, a dict header, then the data (C order)
  const bytes = new Uint8Array(buf);
  const major = bytes[6];
  const dv = new DataView(buf);
  const hlen = major === 1 ? dv.getUint16(8, true) : dv.getUint32(8, true);
  const start = (major === 1 ? 10 : 12) + hlen;
  const header = new TextDecoder().decode(bytes.subarray(major === 1 ? 10 : 12, start));
  const descr = /'descr':\s*'([^']+)'/.exec(header)[1];
  const shape = /'shape':\s*\(([^)]*)\)/.exec(header)[1].split(",").filter((x) => x.trim())
    .map(Number);
  const kinds = { "<f4": Float32Array, "<f8": Float64Array, "<i4": Int32Array,
                  "<u4": Uint32Array, "<i2": Int16Array, "<u2": Uint16Array, "|u1": Uint8Array,
                  "<i8": BigInt64Array, "<u8": BigUint64Array };
  const T = kinds[descr];
  if (!T) throw new Error("unsupported array type " + descr);
  const raw = new T(buf.slice(start));
  const data = new Float32Array(raw.length);
  for (let i = 0; i < raw.length; i++) data[i] = Number(raw[i]);
  return { data, shape };
}

function stats(data) {  // 99.5th percentile of a subsample, and the maximum
  let max = 0;
  for (let i = 0; i < data.length; i++) if (data[i] > max) max = data[i];
  const step = Math.max(1, Math.floor(data.length / 200000)), sample = [];
  for (let i = 0; i < data.length; i += step) sample.push(data[i]);
  sample.sort((a, b) => a - b);
  const p995 = sample[Math.min(sample.length - 1, Math.floor(0.995 * sample.length))] || max;
  return { p995: p995 > 0 ? p995 : max || 1, max: max || 1 };
}

async function getArray(url) {
  if (arrays.has(url)) return arrays.get(url);
  const t0 = performance.now();
  const r = await fetch(url);
  if (!r.ok) throw new Error((await r.json()).error || r.statusText);
  const { data, shape } = parseNpy(await r.arrayBuffer());
  const a = { data, h: shape[0], w: shape[1], ...stats(data) };
  viewer.timings.push([url, performance.now() - t0]);
  if (url.includes("band")) for (const k of [...arrays.keys()]) if (k.includes("band"))
    arrays.delete(k);  // keep one band: they are many
  arrays.set(url, a);
  return a;
}

// inferno, 9 stops (matplotlib's), interpolated to 256 entries
const INFERNO = (() => {
  const stops = [[0, 0, 4], [31, 12, 72], [85, 15, 109], [136, 34, 106], [186, 54, 85],
                 [227, 89, 51], [249, 140, 10], [249, 201, 50], [252, 255, 164]];
  const lut = new Uint8Array(256 * 3);
  for (let i = 0; i < 256; i++) {
    const t = i / 255 * 8, k = Math.min(7, Math.floor(t)), f = t - k;
    for (let c = 0; c < 3; c++) lut[3 * i + c] = Math.round(stops[k][c] * (1 - f) + stops[k + 1][c] * f);
  }
  return lut;
})();
const hex = (c) => [1, 3, 5].map((i) => parseInt(c.slice(i, i + 2), 16));
// materials: 12 distinct colours (Okabe–Ito, then Tol's muted)
const CATEGORIES = ["#e69f00", "#56b4e9", "#009e73", "#f0e442", "#0072b2", "#d55e00", "#cc79a7",
                    "#999999", "#882255", "#44aa99", "#117733", "#ddcc77"];

function render() {
  // the shown layers coloured into an offscreen canvas at the scan's resolution
  const on = layers.filter((l) => l.on);
  if (!layers.length) { rendered = null; draw(); return; }
  const { h, w } = layers[0].arr;
  const off = rendered && rendered.width === w && rendered.height === h ? rendered
    : Object.assign(document.createElement("canvas"), { width: w, height: h });
  const octx = off.getContext("2d"), im = octx.createImageData(w, h), px = im.data;
  if (layers[0].color === "categorical") {  // materials: one colour each
    const d = layers[0].arr.data, pal = CATEGORIES.map(hex);
    for (let i = 0; i < d.length; i++) {
      const [r, g, b] = pal[d[i] % pal.length];
      px[4 * i] = r; px[4 * i + 1] = g; px[4 * i + 2] = b; px[4 * i + 3] = 255;
    }
  } else if (layers[0].color === null) {  // one map: black/white point and gamma through inferno
    const d = layers[0].arr.data, lo = contrast.lo, span = Math.max(contrast.hi - lo, 1e-12);
    const g = contrast.gamma;
    for (let i = 0; i < d.length; i++) {
      let t = (d[i] - lo) / span;
      t = t <= 0 ? 0 : t >= 1 ? 1 : (g === 1 ? t : Math.pow(t, g));
      const k = 3 * Math.round(t * 255);
      px[4 * i] = INFERNO[k]; px[4 * i + 1] = INFERNO[k + 1]; px[4 * i + 2] = INFERNO[k + 2];
      px[4 * i + 3] = 255;
    }
  } else {  // a composite: each map stretched to its 99.5th percentile × gain, added in colour
    const acc = new Float32Array(w * h * 3);
    for (const l of on) {
      const d = l.arr.data, k = l.gain / l.arr.p995, [r, gg, b] = hex(l.color);
      for (let i = 0; i < d.length; i++) {
        const t = Math.min(Math.max(d[i] * k, 0), 1);
        acc[3 * i] += t * r; acc[3 * i + 1] += t * gg; acc[3 * i + 2] += t * b;
      }
    }
    for (let i = 0; i < w * h; i++) {
      px[4 * i] = acc[3 * i]; px[4 * i + 1] = acc[3 * i + 1]; px[4 * i + 2] = acc[3 * i + 2];
      px[4 * i + 3] = 255;
    }
  }
  if (mask) for (let i = 0; i < mask.length; i++) if (!mask[i]) {  // outside the selection
    px[4 * i] *= 0.2; px[4 * i + 1] *= 0.2; px[4 * i + 2] *= 0.2;
  }
  octx.putImageData(im, 0, 0);
  rendered = off;
  draw();
}

// ---- image pane ---------------------------------------------------------------------------
const canvas = $("image"), ctx = canvas.getContext("2d");

// for scripts and browser tests: canvas coordinates of a pixel's centre / of an energy
viewer.pixelToCanvas = (r, c) => [view.ox + (c + 0.5) * view.scale, view.oy + (r + 0.5) * view.scale];
viewer.energyToCanvas = (e) => (axis ? axis.X(e) : null);

function fit() {
  const w = canvas.clientWidth - BAR_W, h = canvas.clientHeight;
  view.scale = Math.min(w / info.width, h / info.height);
  view.ox = (w - info.width * view.scale) / 2;
  view.oy = (h - info.height * view.scale) / 2;
}

const BAR_W = 80;  // the colour bar's strip at the right of the image pane (px)
const fmt = (v) => Math.abs(v) >= 1e4 ? v.toExponential(1) : Math.abs(v) >= 100 ? v.toFixed(0)
  : Math.abs(v) >= 1 ? v.toFixed(1) : v.toPrecision(2);
const niceStep = (x) => { const p = Math.pow(10, Math.floor(Math.log10(x))), m = x / p;
                          return (m >= 5 ? 5 : m >= 2 ? 2 : 1) * p; };

function legend(c, W, k, entries) {
  // a legend in the strip right of the image (where a single map's colour bar goes), boxed to
  // its text, so that it hides no paint; a long one (materials) reaches back over the image
  const wide = Math.max(0, ...entries.map(([label]) => c.measureText(label).width));
  const bw = wide + 26 * k, x = W - Math.max(BAR_W - 4, 0) * k;
  const x0 = Math.min(x, W - bw - 4 * k);
  c.fillStyle = "rgba(0,0,0,0.55)";
  c.fillRect(x0, 6 * k, bw, (entries.length * 16 + 8) * k);
  viewer.drawn.legendBox = [x0 / k, 6, bw / k, entries.length * 16 + 8];
  entries.forEach(([label, color], i) => {
    c.fillStyle = color; c.fillRect(x0 + 6 * k, (12 + 16 * i) * k, 10 * k, 10 * k);
    c.fillStyle = "#fff"; c.fillText(label, x0 + 22 * k, (17 + 16 * i) * k);
  });
}

function decorate(c, W, H, s, ox, oy, big) {
  // colour bar (one map) or legend (composite), and the scale bar: what makes an image readable
  const k = big ? 3 : 1;
  c.font = `${11 * k}px system-ui, sans-serif`;
  c.textBaseline = "middle";
  if (layers.length && layers[0].color === "categorical") {
    const mats = info.materials || [];
    legend(c, W, k, mats.map((m, i) => [`${i}: ${m.top.join(", ")}`, CATEGORIES[i % CATEGORIES.length]]));
    viewer.drawn.legend = mats.map((m, i) => [`${i}`, CATEGORIES[i % CATEGORIES.length]]);
  } else if (layers.length && layers[0].color === null) {
    const x = W - (BAR_W - 8) * k, top = 12 * k, bh = H - 24 * k, bw = 12 * k;
    for (let i = 0; i < bh; i++) {
      const t = 1 - i / bh, v = Math.pow(t, contrast.gamma), q = 3 * Math.round(v * 255);
      c.fillStyle = `rgb(${INFERNO[q]},${INFERNO[q + 1]},${INFERNO[q + 2]})`;
      c.fillRect(x, top + i, bw, 1.5);
    }
    c.strokeStyle = "#889"; c.lineWidth = k; c.strokeRect(x, top, bw, bh);
    c.fillStyle = "#dde";
    const ticks = [contrast.lo, (contrast.lo + contrast.hi) / 2, contrast.hi];
    ticks.forEach((v, i) => c.fillText(fmt(v), x + bw + 3 * k, top + bh * (1 - i / 2)));
    c.save(); c.translate(W - 5 * k, top + bh / 2); c.rotate(-Math.PI / 2);
    c.textAlign = "center"; c.fillText(layers[0].units, 0, 0); c.restore();
    viewer.drawn.colorbar = { lo: contrast.lo, hi: contrast.hi, units: layers[0].units };
  } else if (layers.length) {
    const on = layers.filter((l) => l.on);
    legend(c, W, k, on.map((l) => [l.label, l.color]));
    viewer.drawn.legend = on.map((l) => [l.label, l.color]);
  }
  if (info.pixel_size_mm) {  // a scale bar of a round length, ~1/5 of the image's width
    const mmPerPx = info.pixel_size_mm / s, target = (W - BAR_W * k) / 5 * mmPerPx;
    const mm = niceStep(target), len = mm / mmPerPx;
    const x0 = 14 * k, y0 = H - 16 * k;
    c.fillStyle = "rgba(0,0,0,0.55)"; c.fillRect(x0 - 6 * k, y0 - 18 * k, len + 12 * k, 26 * k);
    c.fillStyle = "#fff"; c.fillRect(x0, y0, len, 4 * k);
    const label = mm >= 1 ? `${mm} mm` : `${Math.round(mm * 1000)} µm`;
    c.fillText(label, x0, y0 - 8 * k);
    viewer.drawn.scalebar = { mm, px: len / k, label };
  }
}

function draw() {
  const dpr = window.devicePixelRatio || 1;
  canvas.width = canvas.clientWidth * dpr; canvas.height = canvas.clientHeight * dpr;
  ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
  ctx.clearRect(0, 0, canvas.width, canvas.height);
  viewer.drawn = {};
  if (!rendered) return;
  ctx.imageSmoothingEnabled = false;
  const W0 = info.width * view.scale, H0 = info.height * view.scale;
  if (photoImg && $("photo").checked) {  // the photograph under the maps, swipe and opacity
    ctx.imageSmoothingEnabled = true;
    ctx.drawImage(photoImg, view.ox, view.oy, W0, H0);
    ctx.imageSmoothingEnabled = false;
    const split = +$("swipe").value;
    ctx.save();
    ctx.beginPath(); ctx.rect(view.ox, view.oy, W0 * split, H0); ctx.clip();
    ctx.globalAlpha = +$("photo-alpha").value;
    ctx.drawImage(rendered, view.ox, view.oy, W0, H0);
    ctx.restore();
    if (split < 1) {
      ctx.strokeStyle = "#fff"; ctx.lineWidth = 1.5; ctx.beginPath();
      ctx.moveTo(view.ox + W0 * split, view.oy); ctx.lineTo(view.ox + W0 * split, view.oy + H0);
      ctx.stroke();
    }
    viewer.drawn.photo = { alpha: +$("photo-alpha").value, swipe: split };
  } else ctx.drawImage(rendered, view.ox, view.oy, W0, H0);
  const s = view.scale;
  if ($("spots").checked) {
    ctx.lineWidth = 1.5;
    ctx.strokeStyle = "#4fd1ff";
    for (const [r, c] of info.hotmax_spots) {  // hotmax spots: small circles, clickable
      ctx.beginPath();
      ctx.arc(view.ox + (c + 0.5) * s, view.oy + (r + 0.5) * s, Math.max(4, 0.7 * s), 0,
              2 * Math.PI);
      ctx.stroke();
    }
  }
  if (pixel) {  // a crosshair with a gap at the pixel, black under white: visible on any colour
    const [x, y] = viewer.pixelToCanvas(pixel[0], pixel[1]), g = Math.max(4, s);
    for (const [color, width] of [["#000", 3], ["#fff", 1.2]]) {
      ctx.strokeStyle = color; ctx.lineWidth = width; ctx.beginPath();
      ctx.moveTo(x - g - 12, y); ctx.lineTo(x - g, y); ctx.moveTo(x + g, y); ctx.lineTo(x + g + 12, y);
      ctx.moveTo(x, y - g - 12); ctx.lineTo(x, y - g); ctx.moveTo(x, y + g); ctx.lineTo(x, y + g + 12);
      ctx.stroke();
      ctx.strokeRect(x - s / 2, y - s / 2, s, s);
    }
  }
  if (rect) {
    ctx.strokeStyle = "#ffe14f"; ctx.lineWidth = 1.5;
    ctx.setLineDash([4, 3]);
    ctx.strokeRect(view.ox + rect[2] * s, view.oy + rect[0] * s,
                   (rect[3] - rect[2]) * s, (rect[1] - rect[0]) * s);
    ctx.setLineDash([]);
  }
  decorate(ctx, canvas.clientWidth, canvas.clientHeight, s, view.ox, view.oy, false);
}

function toPixel(ev) {
  const b = canvas.getBoundingClientRect();
  const x = ev.clientX - b.left, y = ev.clientY - b.top;
  return [Math.floor((y - view.oy) / view.scale), Math.floor((x - view.ox) / view.scale), x, y];
}

function hover(ev) {  // (row, col) and the value of every shown map under the cursor
  const [r, c] = toPixel(ev);
  if (!layers.length || r < 0 || c < 0 || r >= info.height || c >= info.width) {
    $("hover").textContent = ""; viewer.hover = null; return;
  }
  const i = r * info.width + c;
  const vals = layers.filter((l) => l.on).map((l) => [l.label, l.arr.data[i]]);
  if (layers[0].color === "categorical") {
    const m = layers[0].arr.data[i], mat = (info.materials || [])[m];
    viewer.hover = { row: r, col: c, values: { material: m } };
    $("hover").textContent = `row ${r}, col ${c}: material ${m}` + (mat ? ` (${mat.top.join(", ")})` : "");
    return;
  }
  viewer.hover = { row: r, col: c, values: Object.fromEntries(vals) };
  $("hover").textContent = `row ${r}, col ${c}: ` +
    vals.map(([k, v]) => `${k} ${fmt(v)}`).join(" · ") + ` (${layers[0].units})`;
}

canvas.addEventListener("wheel", (ev) => {
  ev.preventDefault();
  const [, , x, y] = toPixel(ev);
  const k = ev.deltaY < 0 ? 1.25 : 0.8;
  view.ox = x - (x - view.ox) * k; view.oy = y - (y - view.oy) * k; view.scale *= k;
  draw();
}, { passive: false });

canvas.addEventListener("mousedown", (ev) => {
  drag = { start: toPixel(ev), x: ev.clientX, y: ev.clientY, ox: view.ox, oy: view.oy,
           shift: ev.shiftKey, moved: false };
});
canvas.addEventListener("mousemove", (ev) => { if (!drag) hover(ev); });
canvas.addEventListener("mouseleave", () => { $("hover").textContent = ""; viewer.hover = null; });
window.addEventListener("mousemove", (ev) => {
  if (!drag) return;
  const dx = ev.clientX - drag.x, dy = ev.clientY - drag.y;
  if (Math.abs(dx) + Math.abs(dy) > 3) drag.moved = true;
  if (drag.shift) {
    const [r, c] = toPixel(ev), [r0, c0] = drag.start;
    rect = [Math.min(r0, r), Math.max(r0, r) + 1, Math.min(c0, c), Math.max(c0, c) + 1];
  } else { view.ox = drag.ox + dx; view.oy = drag.oy + dy; }
  draw();
});
window.addEventListener("mouseup", (ev) => {
  if (!drag) return;
  const d = drag; drag = null;
  if (d.shift && rect) {
    rect = [Math.max(0, rect[0]), Math.min(info.height, rect[1]),
            Math.max(0, rect[2]), Math.min(info.width, rect[3])];
    if (rect[1] > rect[0] && rect[3] > rect[2]) loadMean(rect);
  } else if (!d.moved) {
    let [r, c, x, y] = d.start;
    for (const [sr, sc] of ($("spots").checked ? info.hotmax_spots : [])) {  // near a spot
      const sx = view.ox + (sc + 0.5) * view.scale, sy = view.oy + (sr + 0.5) * view.scale;
      if (Math.hypot(sx - x, sy - y) <= 6) { r = sr; c = sc; break; }
    }
    if (r >= 0 && c >= 0 && r < info.height && c < info.width) {
      if ($("mode").value === "materials" && layers[0]) loadMaterial(layers[0].arr.data[r * info.width + c], r, c);
      else loadSpectrum(r, c);
    }
  }
});

async function loadSpectrum(r, c) {
  pixel = [r, c]; rect = null; draw();
  const t0 = performance.now();
  try {
    spec = await getJSON(`/api/spectrum?row=${r}&col=${c}`);
    viewer.spectrum = spec;
    const fitted = spec.fit_counts ? "  fit: " + Object.entries(spec.fit_counts)
      .filter(([, v]) => v >= 1).map(([k, v]) => `${k} ${v.toFixed(0)}`).join(", ") : "";
    $("what").textContent = `pixel (row ${r}, col ${c}): ${sum(spec.counts)} counts` + fitted;
    status(`spectrum (${(performance.now() - t0).toFixed(0)} ms)`);
    drawSpectrum();
  } catch (e) { status("error: " + e.message); }
}

async function loadMaterial(m, r, c) {  // a material's mean raw spectrum
  pixel = [r, c]; rect = null; draw();
  try {
    spec = await getJSON(`/api/material_spectrum?m=${m}`);
    viewer.spectrum = spec;
    const top = (info.materials[m] || { top: [] }).top.join(", ");
    $("what").textContent = `material ${m} (${top}): mean of its ${spec.pixels} pixels`;
    drawSpectrum();
  } catch (e) { status("error: " + e.message); }
}

async function loadMean(q, whole) {
  pixel = null; if (!whole) draw(); else rect = null;
  const t0 = performance.now();
  try {
    spec = await getJSON(`/api/mean_spectrum?r0=${q[0]}&r1=${q[1]}&c0=${q[2]}&c1=${q[3]}`);
    viewer.spectrum = spec;
    $("what").textContent = (whole ? "mean spectrum of the whole scan" :
      `mean of rows ${q[0]}–${q[1] - 1}, columns ${q[2]}–${q[3] - 1}`) + ` (${spec.pixels} pixels)`;
    status(`mean spectrum (${(performance.now() - t0).toFixed(0)} ms)`);
    drawSpectrum();
  } catch (e) { status("error: " + e.message); }
}

const sum = (a) => Math.round(a.reduce((x, y) => x + y, 0));

// ---- spectrum pane ------------------------------------------------------------------------
const sc = $("spectrum"), sctx = sc.getContext("2d");
const PAD = { l: 48, r: 10, t: 22, b: 26 };  // plot margins (px)
let axis = null;

function drawSpectrum() {
  const dpr = window.devicePixelRatio || 1;
  sc.width = sc.clientWidth * dpr; sc.height = sc.clientHeight * dpr;
  sctx.setTransform(dpr, 0, 0, dpr, 0, 0);
  const W = sc.clientWidth, H = sc.clientHeight;
  sctx.clearRect(0, 0, W, H);
  if ($("scatter").checked) { drawScatter(W, H); return; }
  if (!spec) {
    sctx.fillStyle = "#789"; sctx.fillText("click a pixel (or shift+drag an area)", 60, 40);
    return;
  }
  const e = spec.energy_kev, log = $("log").checked;
  const full = [Math.max(e[0], -0.5), e[e.length - 1]];
  const [e0, e1] = ezoom || full;
  const series = [["counts", "show-raw", "rgba(150,155,165,0.45)", "raw counts"],
                  ["smoothed", "show-smooth", "#4fa3ff", "smoothed"],
                  ["fit", "show-fit", "#ff5f5f", "fit"]]
    .filter(([k, box]) => spec[k] && $(box).checked);
  let ymax = 1;
  for (const [k] of series) for (let i = 0; i < e.length; i++)
    if (e[i] >= Math.max(0.5, e0) && e[i] <= e1 && spec[k][i] > ymax) ymax = spec[k][i];
  const X = (v) => PAD.l + (v - e0) / (e1 - e0) * (W - PAD.l - PAD.r);
  const Y = (v) => log ? H - PAD.b - Math.log10(1 + Math.max(v, 0)) / Math.log10(1 + ymax * 1.2)
                          * (H - PAD.t - PAD.b)
                       : H - PAD.b - Math.max(v, 0) / (ymax * 1.1) * (H - PAD.t - PAD.b);
  axis = { X, e0, e1, W };
  sctx.strokeStyle = "#445"; sctx.fillStyle = "#9ab"; sctx.font = "11px system-ui";
  const step = niceStep((e1 - e0) / 8);
  for (let k = Math.ceil(e0 / step) * step; k <= e1; k += step) {
    sctx.beginPath(); sctx.moveTo(X(k), H - PAD.b); sctx.lineTo(X(k), H - PAD.b + 4); sctx.stroke();
    sctx.fillText(`${+k.toFixed(3)}`, X(k) - 4, H - PAD.b + 15);
  }
  sctx.fillText("keV", W - 30, H - 4);
  // y ticks: decades (log) or round steps (linear)
  const yt = log ? Array.from({ length: Math.floor(Math.log10(ymax * 1.2)) + 1 }, (_, i) => 10 ** i)
    : Array.from({ length: 5 }, (_, i) => i * niceStep(ymax / 4)).filter((v) => v <= ymax * 1.1);
  viewer.yticks = yt;
  for (const v of yt) {
    const y = Y(v);
    sctx.beginPath(); sctx.moveTo(PAD.l - 4, y); sctx.lineTo(PAD.l, y); sctx.stroke();
    sctx.fillText(fmt(v), 2, y + 3);
  }
  sctx.fillText(log ? "counts (log)" : "counts", 4, 14);
  series.forEach(([, , color, label], i) => {  // legend
    sctx.fillStyle = color; sctx.fillRect(W - 250 + i * 84, 6, 10, 10);
    sctx.fillStyle = "#9ab"; sctx.fillText(label, W - 236 + i * 84, 15);
  });
  for (const [k, , color] of series) {
    sctx.strokeStyle = color; sctx.lineWidth = k === "counts" ? 1 : 1.6; sctx.beginPath();
    for (let i = 0; i < e.length; i++) {
      if (e[i] < e0 || e[i] > e1) continue;
      const x = X(e[i]), y = Y(spec[k][i]);
      i && e[i - 1] >= e0 ? sctx.lineTo(x, y) : sctx.moveTo(x, y);
    }
    sctx.stroke();
  }
  if (info.fit_range_kev && spec.fit && $("show-fit").checked) {  // where the fit does not go
    const [flo, fhi] = info.fit_range_kev;
    sctx.fillStyle = "rgba(120,130,150,0.12)";
    for (const [a, b2] of [[e0, flo], [fhi, e1]]) {
      if (b2 <= a) continue;
      sctx.fillRect(X(Math.max(a, e0)), PAD.t, X(Math.min(b2, e1)) - X(Math.max(a, e0)),
                    H - PAD.t - PAD.b);
    }
    if (fhi < e1) {
      sctx.fillStyle = "#9ab";
      sctx.fillText(`not fitted above ${fhi.toFixed(1)} keV`, X(fhi) + 4, H - PAD.b - 8);
    }
  }
  if ($("show-parts").checked && spec.parts) {  // each element's part of the fit
    const names = Object.keys(info.lines || {});
    for (const [el, part] of Object.entries(spec.parts)) {
      const n = names.indexOf(el);
      sctx.strokeStyle = `hsla(${(n * 67) % 360},80%,65%,0.95)`; sctx.lineWidth = 1.2;
      sctx.beginPath();
      part.values.forEach((v, j) => {
        const en = e[part.start + j];
        if (en < e0 || en > e1) return;
        j ? sctx.lineTo(X(en), Y(v)) : sctx.moveTo(X(en), Y(v));
      });
      sctx.stroke();
    }
  }
  if (bandSel) {  // the selected band, on top
    sctx.fillStyle = "rgba(255,225,79,0.25)";
    sctx.fillRect(X(bandSel[0]), PAD.t, Math.max(2, X(bandSel[1]) - X(bandSel[0])),
                  H - PAD.t - PAD.b);
  }
  // theoretical line markers of the mapped elements: dashed full-height lines (opacity by
  // relative intensity), each element labelled at its strongest line on the first row of labels
  // where it collides with none
  const lines = info.lines || {};
  const labels = [];
  Object.entries(lines).forEach(([el, ls], n) => {
    const color = `hsla(${(n * 67) % 360},80%,65%,`;
    sctx.setLineDash([3, 3]);
    ls.forEach(([en, rel], j) => {
      if (en < e0 || en > e1) return;
      sctx.strokeStyle = color + (0.25 + 0.6 * rel) + ")";
      sctx.beginPath(); sctx.moveTo(X(en), PAD.t + 40); sctx.lineTo(X(en), H - PAD.b);
      sctx.stroke();
      if (j === 0) labels.push([X(en), el, color + "1)"]);
    });
    sctx.setLineDash([]);
  });
  labels.sort((a, b) => a[0] - b[0]);
  const rowEnd = [-1e9, -1e9, -1e9, -1e9];
  viewer.labels = [];
  for (const [x, el, color] of labels) {
    const w = sctx.measureText(el).width, left = x - w / 2;
    const row = rowEnd.findIndex((end) => left > end + 3);
    if (row < 0) continue;  // no room: the dashed line stays
    rowEnd[row] = left + w;
    sctx.fillStyle = color; sctx.fillText(el, left, PAD.t + 8 + row * 11);
    viewer.labels.push([el, left, row, w]);
  }
}

async function drawScatter(W, H) {  // element against element; a box selects pixels
  const ex = $("sx").value, ey = $("sy").value;
  if (!ex || !ey) return;
  const [a, b] = await Promise.all([getArray(`/api/map.npy?element=${ex}`),
                                    getArray(`/api/map.npy?element=${ey}`)]);
  const root = (v) => Math.sqrt(Math.max(v, 0));  // sqrt axes: counts spread as their noise
  const mx = root(a.max), my = root(b.max);
  const X = (v) => PAD.l + root(v) / mx * (W - PAD.l - PAD.r);
  const Y = (v) => H - PAD.b - root(v) / my * (H - PAD.t - PAD.b);
  const box = scatterData && scatterData.ex === ex && scatterData.ey === ey ? scatterData.box : null;
  scatterData = { a, b, X, Y, W, H, mx, my, ex, ey, box };
  sctx.clearRect(0, 0, W, H);
  sctx.fillStyle = "rgba(120,190,255,0.35)";
  const step = Math.max(1, Math.floor(a.data.length / 40000));
  for (let i = 0; i < a.data.length; i += step)
    sctx.fillRect(X(a.data[i]), Y(b.data[i]), 1.5, 1.5);
  sctx.fillStyle = "#9ab"; sctx.font = "11px system-ui";
  for (const f of [0, 0.25, 0.5, 1]) {
    const vx = (f * mx) ** 2, vy = (f * my) ** 2;
    sctx.fillText(fmt(vx), X(vx) - 6, H - PAD.b + 14);
    sctx.fillText(fmt(vy), 2, Y(vy) + 3);
  }
  sctx.fillText(`${ex} (counts per pixel, √ scale)`, W - 210, H - 4);
  sctx.fillText(`${ey}`, 4, 14);
  if (scatterData.box) {
    const [x0, x1, y0, y1] = scatterData.box;
    sctx.strokeStyle = "#ffe14f"; sctx.setLineDash([4, 3]);
    sctx.strokeRect(X(x0), Y(y1), X(x1) - X(x0), Y(y0) - Y(y1)); sctx.setLineDash([]);
  }
}

function selectBox(x0, x1, y0, y1) {  // counts ranges → the mask of pixels inside them
  const { a, b } = scatterData;
  mask = new Uint8Array(a.data.length);
  let n = 0;
  for (let i = 0; i < mask.length; i++) {
    const inside = a.data[i] >= x0 && a.data[i] <= x1 && b.data[i] >= y0 && b.data[i] <= y1;
    mask[i] = inside; n += inside;
  }
  scatterData.box = [x0, x1, y0, y1];
  viewer.selection = { pixels: n, box: [x0, x1, y0, y1] };
  $("what").textContent = `${n} pixels with ${$("sx").value} ${fmt(x0)}–${fmt(x1)} and ` +
    `${$("sy").value} ${fmt(y0)}–${fmt(y1)} counts (others dimmed; untick scatter to clear)`;
  render(); drawSpectrum();
}
viewer.selectBox = selectBox;

$("scatter").addEventListener("change", () => {
  const on = $("scatter").checked;
  for (const id of ["sx", "sy"]) {
    $(id).style.display = on ? "" : "none";
    if (!$(id).options.length) info.elements.forEach((el) => $(id).add(new Option(el, el)));
  }
  const pick = info.suggested || info.elements;  // the two most structured maps first
  if (on && pick.length > 1 && $("sx").value === $("sy").value) {
    $("sx").value = pick[0]; $("sy").value = pick[1];
  }
  if (!on) { mask = null; scatterData = null; viewer.selection = null; render(); }
  drawSpectrum();
});
["sx", "sy"].forEach((id) => $(id).addEventListener("change", () => {
  mask = null; if (scatterData) scatterData.box = null; render(); drawSpectrum();
}));

let ezoom = null;  // the energy range shown, [lo, hi] keV (null: all)
sc.addEventListener("wheel", (ev) => {  // zoom the energy axis around the cursor
  if (!axis || !spec || $("scatter").checked) return;
  ev.preventDefault();
  const b = sc.getBoundingClientRect();
  const at = axis.e0 + (ev.clientX - b.left - PAD.l) / (axis.W - PAD.l - PAD.r) * (axis.e1 - axis.e0);
  const k = ev.deltaY < 0 ? 0.8 : 1.25, e = spec.energy_kev;
  let lo = at - (at - axis.e0) * k, hi = at + (axis.e1 - at) * k;
  lo = Math.max(lo, Math.max(e[0], -0.5)); hi = Math.min(hi, e[e.length - 1]);
  ezoom = hi - lo > 0.05 ? [lo, hi] : ezoom;
  drawSpectrum();
}, { passive: false });
sc.addEventListener("dblclick", () => { ezoom = null; drawSpectrum(); });

sc.addEventListener("mousedown", (ev) => {
  if ($("scatter").checked) {
    if (!scatterData) return;
    const b = sc.getBoundingClientRect(), d = scatterData;
    const toX = (px) => (((px - PAD.l) / (d.W - PAD.l - PAD.r)) * d.mx) ** 2 *
      Math.sign(px - PAD.l);
    const toY = (py) => (((d.H - PAD.b - py) / (d.H - PAD.t - PAD.b)) * d.my) ** 2 *
      Math.sign(d.H - PAD.b - py);
    const x0 = ev.clientX - b.left, y0 = ev.clientY - b.top;
    const up = (e2) => {
      window.removeEventListener("mouseup", up);
      const x1 = e2.clientX - b.left, y1 = e2.clientY - b.top;
      if (Math.abs(x1 - x0) + Math.abs(y1 - y0) < 4) return;
      const xs = [toX(Math.min(x0, x1)), toX(Math.max(x0, x1))];
      const ys = [toY(Math.max(y0, y1)), toY(Math.min(y0, y1))];
      selectBox(xs[0], xs[1], ys[0], ys[1]);
    };
    window.addEventListener("mouseup", up);
    return;
  }
  if (!axis) return;
  const b = sc.getBoundingClientRect();
  const toE = (x) => axis.e0 + (x - PAD.l) / (axis.W - PAD.l - PAD.r) * (axis.e1 - axis.e0);
  const startE = toE(ev.clientX - b.left);
  const move = (e2) => {
    const en = toE(e2.clientX - b.left);
    bandSel = [Math.min(startE, en), Math.max(startE, en)]; drawSpectrum();
  };
  const up = (e2) => {
    window.removeEventListener("mousemove", move); window.removeEventListener("mouseup", up);
    const en = toE(e2.clientX - b.left);
    if (bandSel && bandSel[1] - bandSel[0] > 0.02) showBand(bandSel[0], bandSel[1]);
    else { bandSel = null; drawSpectrum(); identify(en); }
  };
  window.addEventListener("mousemove", move); window.addEventListener("mouseup", up);
});

async function identify(kev) {  // what a clicked peak may be, and "add and refit"
  try {
    const found = await getJSON(`/api/lines_near?kev=${kev.toFixed(3)}`);
    viewer.identified = found;
    const box = $("identify");
    box.innerHTML = `${kev.toFixed(2)} keV (±${(found.width_kev * 1000).toFixed(0)} eV): `;
    if (!found.candidates.length) box.append("no line of a painting element here");
    for (const c of found.candidates) {
      const btn = document.createElement("button");
      btn.textContent = c.mapped ? `${c.line} (mapped)` : `${c.line}: add ${c.element} and refit`;
      btn.disabled = c.mapped || !info.elements.length;
      btn.dataset.element = c.element;
      btn.addEventListener("click", () => refit(c.element));
      box.append(btn);
    }
  } catch (e) { status("error: " + e.message); }
}

async function refit(element) {
  const box = $("identify");
  try {
    const r = await fetch(`/api/refit?add=${element}`,
                          { method: "POST", headers: { "X-Maxrf-Action": "refit" } });
    const body = await r.json();
    if (!r.ok) throw new Error(body.error || r.statusText);
    box.textContent = `fitting the element maps again with ${body.add.join(", ")} added…`;
    viewer.refit = body;
    for (;;) {
      await new Promise((ok) => setTimeout(ok, 1000));
      const st = await getJSON("/api/refit");
      viewer.refit = st;
      if (st.state === "error") throw new Error(st.error);
      if (st.state === "done") {
        box.textContent = `element maps fitted again in ${st.seconds} s with ${st.add.join(", ")} added`;
        break;
      }
    }
    await reloadInfo();
  } catch (e) { box.textContent = "refit failed: " + e.message; }
}

async function reloadInfo() {  // new maps: the element list, the modes, the shown spectrum
  info = await getJSON("/api/info");
  const keep = $("mode").value;
  $("mode").innerHTML = "";
  $("mode").add(new Option("total counts", "total"));
  info.elements.forEach((el) => $("mode").add(new Option(`${el} map`, `map:${el}`)));
  if (info.elements.length) $("mode").add(new Option("composite (up to 4)", "composite"));
  addQualityModes();
  if (viewer.band) showBand(viewer.band.lo_kev, viewer.band.hi_kev);
  mixControls();
  arrays.clear();
  $("mode").value = [...$("mode").options].some((o) => o.value === keep) ? keep : "total";
  await showMode();
  if (pixel) await loadSpectrum(pixel[0], pixel[1]);
  else if (spec && spec.r0 !== undefined) await loadMean([spec.r0, spec.r1, spec.c0, spec.c1]);
  viewer.reloads = (viewer.reloads || 0) + 1;
}

function snapBand(lo, hi) {
  // a band on the band layers' group boundaries (the image the server can make), never empty
  const e = info && info.band_edges_kev;
  if (!e) return [lo, hi];
  const near = (x) => e.reduce((best, v, i) => Math.abs(v - x) < Math.abs(e[best] - x) ? i : best, 0);
  let a = near(lo), b = near(hi);
  if (b <= a) { b = Math.min(a + 1, e.length - 1); a = b - 1; }
  return [e[a], e[b]];
}

function showBand(lo, hi) {
  [lo, hi] = snapBand(lo, hi);
  if (bandSel) bandSel = [lo, hi];  // the highlight shows the band the image sums
  viewer.band = { lo_kev: lo, hi_kev: hi };
  let opt = [...$("mode").options].find((o) => o.value === "band");
  if (!opt) { opt = new Option("", "band"); $("mode").add(opt); }
  opt.text = `band ${lo.toFixed(2)}–${hi.toFixed(2)} keV`;
  $("mode").value = "band";
  showMode();
}

// ---- modes: total, element maps, band, composite -------------------------------------------
function mixControls() {
  const box = $("mix");
  box.innerHTML = "";
  for (let i = 0; i < 4; i++) {
    const row = document.createElement("span"); row.className = "row";
    const on = document.createElement("input"); on.type = "checkbox"; on.id = `mix-on-${i}`;
    on.checked = true; on.title = "show (untick to mute this channel)";
    const sel = document.createElement("select"); sel.id = `mix-el-${i}`;
    sel.add(new Option("—", ""));
    info.elements.forEach((el) => sel.add(new Option(el, el)));
    sel.value = (info.suggested || info.elements)[i] || "";
    const col = document.createElement("input"); col.type = "color"; col.id = `mix-color-${i}`;
    col.value = COLORS[i];
    const gain = document.createElement("input"); gain.type = "range"; gain.id = `mix-gain-${i}`;
    gain.min = -1.5; gain.max = 1.5; gain.step = 0.05; gain.value = 0;
    gain.title = "contrast (brightness of this map)";
    const solo = document.createElement("button"); solo.textContent = "solo"; solo.id = `mix-solo-${i}`;
    solo.title = "show only this channel (again: all)";
    sel.addEventListener("change", showMode);
    [on, col, gain].forEach((x) => x.addEventListener("input", updateMix));
    solo.addEventListener("click", () => {
      const alone = [0, 1, 2, 3].every((j) => j === i || !$(`mix-on-${j}`).checked);
      for (let j = 0; j < 4; j++) $(`mix-on-${j}`).checked = alone || j === i;
      updateMix();
    });
    row.append(on, sel, col, gain, solo); box.append(row);
  }
}

function updateMix() {  // colours, gains and mutes change the picture at once (no refetch)
  for (const l of layers) {
    if (l.slot === undefined) continue;
    l.color = $(`mix-color-${l.slot}`).value;
    l.gain = Math.pow(10, +$(`mix-gain-${l.slot}`).value);
    l.on = $(`mix-on-${l.slot}`).checked;
  }
  render();
}

function setContrastRange(arr, keep) {
  for (const id of ["lo", "hi"]) { $(id).max = arr.max; $(id).step = arr.max / 1000; }
  if (!keep) contrast = { lo: 0, hi: arr.p995, gamma: 1 };
  $("lo").value = contrast.lo; $("hi").value = contrast.hi; $("gamma").value = contrast.gamma;
  showContrast();
}

function showContrast() {
  $("lo-val").value = fmt(contrast.lo); $("hi-val").value = fmt(contrast.hi);
  $("gamma-val").value = contrast.gamma.toFixed(2);
}

["lo", "hi", "gamma"].forEach((id) => $(id).addEventListener("input", () => {
  contrast[id] = +$(id).value;
  if (contrast.hi <= contrast.lo) contrast.hi = contrast.lo + (+$("hi").step || 1e-6);
  showContrast(); render();
}));
$("auto").addEventListener("click", () => { if (layers[0]) setContrastRange(layers[0].arr, false); render(); });

function addQualityModes() {  // materials; how good the fit is, where: χ², background, σ
  if (info.materials) $("mode").add(new Option(`materials (${info.materials.length})`, "materials"));
  const names = { residual: "fit: reduced χ² per pixel", background: "fit: background counts" };
  for (const q of info.quality || []) $("mode").add(new Option(names[q], `quality:${q}`));
  info.elements.forEach((el) =>
    $("mode").add(new Option(`fit: ${el} uncertainty (1σ)`, `quality:sigma:${el}`)));
}

async function showMode() {
  const mode = $("mode").value;
  const composite = mode === "composite";
  $("mix").style.visibility = composite ? "visible" : "hidden";  // no jump: space kept
  $("contrast").style.visibility = composite || mode === "materials" ? "hidden" : "visible";
  if (mode !== "band" && bandSel) { bandSel = null; drawSpectrum(); }  // the band no longer shown
  const t0 = performance.now();
  try {
    let label, next;
    if (mode === "total") {
      next = [{ label: "total", url: "/api/total.npy", units: "counts" }];
      label = "total counts";
    } else if (mode === "band") {
      const b = viewer.band;
      label = `band ${b.lo_kev.toFixed(2)}–${b.hi_kev.toFixed(2)} keV`;
      next = [{ label: "band", units: "counts in the band",
                url: `/api/band.npy?lo_kev=${b.lo_kev.toFixed(6)}&hi_kev=${b.hi_kev.toFixed(6)}` }];
    } else if (composite) {
      next = [];
      for (let i = 0; i < 4; i++) {
        const el = $(`mix-el-${i}`).value;
        if (el) next.push({ label: el, url: `/api/map.npy?element=${el}`, slot: i,
                            units: info.map_units });
      }
      label = "composite " + next.map((l) => l.label).join(", ");
      if (!next.length) { layers = []; render(); return; }
    } else if (mode === "materials") {
      next = [{ label: "material", url: "/api/materials.npy", units: "material" }];
      label = "materials";
    } else if (mode.startsWith("quality:")) {
      const what = mode.slice(8);
      const units = what === "residual" ? "reduced χ²" : "counts per pixel";
      next = [{ label: what.replace("sigma:", "σ "), url: `/api/quality.npy?what=${what}`, units }];
      label = $("mode").selectedOptions[0].text;
    } else {
      const el = mode.slice(4);
      next = [{ label: el, url: `/api/map.npy?element=${el}`, units: info.map_units }];
      label = `${el} map`;
    }
    const arrs = await Promise.all(next.map((l) => getArray(l.url)));
    layers = next.map((l, i) => ({ ...l, arr: arrs[i], gain: 1, on: true,
                                   color: mode === "materials" ? "categorical" : null }));
    if (composite) updateMix(); else { setContrastRange(arrs[0], false); render(); }
    viewer.imageUrl = next.map((l) => l.url).join(" ");
    viewer.imageLoads += 1;
    status(`${label} (${(performance.now() - t0).toFixed(0)} ms)`);
  } catch (e) { status("error: " + e.message); }
}

$("mode").addEventListener("change", showMode);
$("spots").addEventListener("change", draw);
["photo-alpha", "swipe"].forEach((id) => $(id).addEventListener("input", draw));
$("photo").addEventListener("change", () => {
  if (!$("photo").checked || photoImg) { draw(); return; }
  const img = new Image();
  img.onload = () => { photoImg = img; viewer.photoLoaded = true; draw(); };
  img.src = "/api/photo.png";
});
["log", "show-raw", "show-smooth", "show-fit", "show-parts"].forEach((id) =>
  $(id).addEventListener("change", drawSpectrum));

function figureName() {
  const base = info.datastack.split("/").pop().replace(".datastack", "");
  const mode = $("mode").value;
  if (mode === "band") return `${base}-band-${viewer.band.lo_kev.toFixed(2)}-${viewer.band.hi_kev.toFixed(2)}keV.png`;
  if (mode === "composite") return `${base}-composite-${layers.filter((l) => l.on).map((l) => l.label).join("-")}.png`;
  return `${base}-${mode.replace("map:", "").replaceAll(":", "-")}.png`;
}

function exportFigure() {
  // the whole scan at 3 device pixels per scan pixel (at least 1800 px wide), with the colour
  // bar or legend, the scale bar and a title; 300 dpi written into the PNG
  if (!rendered) return null;
  const k = 3, s = Math.max(1, Math.ceil(1800 / info.width)), W = info.width * s + BAR_W * k;
  const H = info.height * s + 40 * k;
  const off = Object.assign(document.createElement("canvas"), { width: W, height: H });
  const c = off.getContext("2d");
  c.fillStyle = "#000"; c.fillRect(0, 0, W, H);
  c.imageSmoothingEnabled = false;
  c.drawImage(rendered, 0, 40 * k, info.width * s, info.height * s);
  c.fillStyle = "#fff"; c.font = `${14 * k}px system-ui, sans-serif`; c.textBaseline = "middle";
  c.fillText(`${info.datastack.split("/").pop()} · ${$("mode").selectedOptions[0].text}`,
             10 * k, 20 * k);
  c.save(); c.translate(0, 40 * k);
  decorate(c, W, info.height * s, s, 0, 0, true);
  c.restore();
  return withDpi(off.toDataURL("image/png"), 300);
}

function withDpi(dataUrl, dpi) {  // a pHYs chunk after IHDR: readers see the print size
  const bin = atob(dataUrl.split(",")[1]);
  const bytes = Uint8Array.from(bin, (ch) => ch.charCodeAt(0));
  const ppm = Math.round(dpi / 0.0254);
  const chunk = new Uint8Array(21), dv = new DataView(chunk.buffer);
  dv.setUint32(0, 9); chunk.set([0x70, 0x48, 0x59, 0x73], 4);
  dv.setUint32(8, ppm); dv.setUint32(12, ppm); chunk[16] = 1;
  let crc = -1;
  for (let i = 4; i < 17; i++) {
    crc ^= chunk[i];
    for (let b = 0; b < 8; b++) crc = (crc >>> 1) ^ (0xedb88320 & -(crc & 1));
  }
  dv.setUint32(17, (crc ^ -1) >>> 0);
  const out = new Uint8Array(bytes.length + 21);
  out.set(bytes.subarray(0, 33)); out.set(chunk, 33); out.set(bytes.subarray(33), 54);
  let s = ""; for (let i = 0; i < out.length; i += 8192) s += String.fromCharCode(...out.subarray(i, i + 8192));
  return "data:image/png;base64," + btoa(s);
}
viewer.exportFigure = exportFigure;

$("export").addEventListener("click", () => {
  const url = exportFigure();
  if (!url) return;
  const a = document.createElement("a");
  a.download = figureName(); a.href = url; a.click();
});
window.addEventListener("resize", () => { fit(); draw(); drawSpectrum(); });

(async function start() {
  try {
    info = await getJSON("/api/info");
  } catch (e) { status("error: " + e.message); return; }
  $("title").textContent = `${info.datastack.split("/").pop()} · ${info.height} × ${info.width}` +
    ` × ${info.channels} · ${info.energy_kev[0].toFixed(2)}–${info.energy_kev[1].toFixed(2)} keV`;
  $("mode").add(new Option("total counts", "total"));
  info.elements.forEach((el) => $("mode").add(new Option(`${el} map`, `map:${el}`)));
  if (info.elements.length) $("mode").add(new Option("composite (up to 4)", "composite"));
  addQualityModes();
  mixControls();
  if (info.photo) {
    $("photo-controls").style.display = "";
    $("photo-controls").title = `${info.photo.name} (${info.photo.model}, ` +
      `${info.photo.quality}) under the maps`;
  }
  fit();
  $("mode").value = info.elements.length ? "composite" : "total";
  await showMode();
  drawSpectrum();
  loadMean([0, info.height, 0, info.width], true);  // the whole scan's mean spectrum at once
  viewer.ready = true;
})();
