// maxrf viewer: an image pane (total counts, element maps, band images, composites) and a
// spectrum pane, both drawn on canvases; all data comes from the /api endpoints.
"use strict";
const $ = (id) => document.getElementById(id);
const viewer = (window.viewer = { ready: false, spectrum: null, band: null, imageUrl: null,
                                  imageLoads: 0, timings: [] });
let info = null, img = null, view = { scale: 1, ox: 0, oy: 0 }, pixel = null, rect = null;
let spec = null, drag = null, bandSel = null;
const COLORS = ["#ff3030", "#30ff30", "#3080ff", "#ffff30"];

function status(text) { $("status").textContent = text; }

async function getJSON(url) {
  const t0 = performance.now();
  const r = await fetch(url);
  const body = await r.json();
  viewer.timings.push([url, performance.now() - t0]);
  if (!r.ok) throw new Error(body.error || r.statusText);
  return body;
}

function setImage(url, label) {
  const t0 = performance.now();
  const next = new Image();
  next.onload = () => {
    img = next; viewer.imageUrl = url; viewer.imageLoads += 1;
    const ms = performance.now() - t0;
    viewer.timings.push([url, ms]);
    status(`${label} (${ms.toFixed(0)} ms)`);
    draw();
  };
  next.onerror = async () => {
    try { const r = await fetch(url); status("error: " + (await r.json()).error); }
    catch (e) { status("error loading " + url); }
  };
  next.src = url;
}

// ---- image pane ---------------------------------------------------------------------------
const canvas = $("image"), ctx = canvas.getContext("2d");

// for scripts and browser tests: canvas coordinates of a pixel's centre / of an energy
viewer.pixelToCanvas = (r, c) => [view.ox + (c + 0.5) * view.scale, view.oy + (r + 0.5) * view.scale];
viewer.energyToCanvas = (e) => (axis ? axis.X(e) : null);

function fit() {
  const w = canvas.clientWidth, h = canvas.clientHeight;
  view.scale = Math.min(w / info.width, h / info.height);
  view.ox = (w - info.width * view.scale) / 2;
  view.oy = (h - info.height * view.scale) / 2;
}

function draw() {
  const dpr = window.devicePixelRatio || 1;
  canvas.width = canvas.clientWidth * dpr; canvas.height = canvas.clientHeight * dpr;
  ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
  ctx.clearRect(0, 0, canvas.width, canvas.height);
  if (!img) return;
  ctx.imageSmoothingEnabled = false;
  ctx.drawImage(img, view.ox, view.oy, info.width * view.scale, info.height * view.scale);
  const s = view.scale;
  ctx.lineWidth = 1.5;
  ctx.strokeStyle = "#4fd1ff";
  for (const [r, c] of info.hotmax_spots) {  // hotmax spots: small circles, clickable
    ctx.beginPath();
    ctx.arc(view.ox + (c + 0.5) * s, view.oy + (r + 0.5) * s, Math.max(4, 0.7 * s), 0,
            2 * Math.PI);
    ctx.stroke();
  }
  if (pixel) {
    ctx.strokeStyle = "#fff";
    ctx.strokeRect(view.ox + pixel[1] * s - 1, view.oy + pixel[0] * s - 1, s + 2, s + 2);
  }
  if (rect) {
    ctx.strokeStyle = "#ffe14f";
    ctx.setLineDash([4, 3]);
    ctx.strokeRect(view.ox + rect[2] * s, view.oy + rect[0] * s,
                   (rect[3] - rect[2]) * s, (rect[1] - rect[0]) * s);
    ctx.setLineDash([]);
  }
}

function toPixel(ev) {
  const b = canvas.getBoundingClientRect();
  const x = ev.clientX - b.left, y = ev.clientY - b.top;
  return [Math.floor((y - view.oy) / view.scale), Math.floor((x - view.ox) / view.scale), x, y];
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
    for (const [sr, sc] of info.hotmax_spots) {  // a click near a spot picks the spot
      const sx = view.ox + (sc + 0.5) * view.scale, sy = view.oy + (sr + 0.5) * view.scale;
      if (Math.hypot(sx - x, sy - y) <= 6) { r = sr; c = sc; break; }
    }
    if (r >= 0 && c >= 0 && r < info.height && c < info.width) loadSpectrum(r, c);
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

async function loadMean(q) {
  pixel = null; draw();
  const t0 = performance.now();
  try {
    spec = await getJSON(`/api/mean_spectrum?r0=${q[0]}&r1=${q[1]}&c0=${q[2]}&c1=${q[3]}`);
    viewer.spectrum = spec;
    $("what").textContent = `mean of rows ${q[0]}–${q[1] - 1}, columns ${q[2]}–${q[3] - 1}` +
      ` (${spec.pixels} pixels)`;
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
  if (!spec) {
    sctx.fillStyle = "#789"; sctx.fillText("click a pixel (or shift+drag an area)", 60, 40);
    return;
  }
  const e = spec.energy_kev, log = $("log").checked;
  const e0 = Math.max(e[0], -0.5), e1 = e[e.length - 1];
  const series = [["counts", "show-raw", "rgba(150,155,165,0.45)", "raw counts"],
                  ["smoothed", "show-smooth", "#4fa3ff", "smoothed"],
                  ["fit", "show-fit", "#ff5f5f", "fit"]]
    .filter(([k, box]) => spec[k] && $(box).checked);
  let ymax = 1;
  for (const [k] of series) for (let i = 0; i < e.length; i++)
    if (e[i] >= 0.5 && spec[k][i] > ymax) ymax = spec[k][i];
  const X = (v) => PAD.l + (v - e0) / (e1 - e0) * (W - PAD.l - PAD.r);
  const Y = (v) => log ? H - PAD.b - Math.log10(1 + Math.max(v, 0)) / Math.log10(1 + ymax * 1.2)
                          * (H - PAD.t - PAD.b)
                       : H - PAD.b - Math.max(v, 0) / (ymax * 1.1) * (H - PAD.t - PAD.b);
  axis = { X, e0, e1, W };
  sctx.strokeStyle = "#445"; sctx.fillStyle = "#9ab"; sctx.font = "11px system-ui";
  for (let k = Math.ceil(e0); k <= e1; k += (e1 - e0) > 30 ? 5 : 2) {
    sctx.beginPath(); sctx.moveTo(X(k), H - PAD.b); sctx.lineTo(X(k), H - PAD.b + 4); sctx.stroke();
    sctx.fillText(`${k}`, X(k) - 4, H - PAD.b + 15);
  }
  sctx.fillText("keV", W - 30, H - 4);
  sctx.fillText(log ? "counts (log)" : "counts", 4, 14);
  series.forEach(([, , color, label], i) => {  // legend
    sctx.fillStyle = color; sctx.fillRect(W - 250 + i * 84, 6, 10, 10);
    sctx.fillStyle = "#9ab"; sctx.fillText(label, W - 236 + i * 84, 15);
  });
  for (const [k, , color] of series) {
    sctx.strokeStyle = color; sctx.lineWidth = k === "counts" ? 1 : 1.6; sctx.beginPath();
    for (let i = 0; i < e.length; i++) {
      if (e[i] < e0) continue;
      const x = X(e[i]), y = Y(spec[k][i]);
      i && e[i - 1] >= e0 ? sctx.lineTo(x, y) : sctx.moveTo(x, y);
    }
    sctx.stroke();
  }
  if (bandSel) {  // the selected band, on top
    sctx.fillStyle = "rgba(255,225,79,0.25)";
    sctx.fillRect(X(bandSel[0]), PAD.t, Math.max(2, X(bandSel[1]) - X(bandSel[0])),
                  H - PAD.t - PAD.b);
  }
  // theoretical line markers of the mapped elements: ticks under the top edge (height by
  // relative intensity), labelled at the strongest line, labels staggered on three rows
  const lines = info.lines || {};
  Object.entries(lines).forEach(([el, ls], n) => {
    sctx.strokeStyle = `hsla(${(n * 67) % 360},80%,65%,0.9)`;
    sctx.fillStyle = sctx.strokeStyle;
    const base = PAD.t + 34;
    ls.forEach(([en, rel], j) => {
      if (en < e0 || en > e1) return;
      sctx.beginPath(); sctx.moveTo(X(en), base); sctx.lineTo(X(en), base + 4 + 22 * rel);
      sctx.stroke();
      if (j === 0) sctx.fillText(el, X(en) - 4, PAD.t + 8 + (n % 3) * 11);
    });
  });
}

sc.addEventListener("mousedown", (ev) => {
  if (!axis) return;
  const b = sc.getBoundingClientRect();
  const toE = (x) => axis.e0 + (x - PAD.l) / (axis.W - PAD.l - PAD.r) * (axis.e1 - axis.e0);
  const startE = toE(ev.clientX - b.left);
  const move = (e2) => {
    const en = toE(e2.clientX - b.left);
    bandSel = [Math.min(startE, en), Math.max(startE, en)]; drawSpectrum();
  };
  const up = () => {
    window.removeEventListener("mousemove", move); window.removeEventListener("mouseup", up);
    if (bandSel && bandSel[1] - bandSel[0] > 0.005) showBand(bandSel[0], bandSel[1]);
  };
  window.addEventListener("mousemove", move); window.addEventListener("mouseup", up);
});

function showBand(lo, hi) {
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
    const sel = document.createElement("select"); sel.id = `mix-el-${i}`;
    sel.add(new Option("—", ""));
    info.elements.forEach((el) => sel.add(new Option(el, el)));
    sel.value = (info.suggested || info.elements)[i] || "";
    const col = document.createElement("input"); col.type = "color"; col.id = `mix-color-${i}`;
    col.value = COLORS[i];
    const gain = document.createElement("input"); gain.type = "range"; gain.id = `mix-gain-${i}`;
    gain.min = -1.5; gain.max = 1.5; gain.step = 0.1; gain.value = 0;
    gain.title = "contrast";
    [sel, col, gain].forEach((x) => x.addEventListener("change", showMode));
    row.append(sel, col, gain); box.append(row);
  }
}

function showMode() {
  const mode = $("mode").value;
  $("mix").style.display = mode === "composite" ? "" : "none";
  if (mode === "total") setImage("/api/total.png", "total counts");
  else if (mode === "band") {
    const b = viewer.band;
    setImage(`/api/band.png?lo_kev=${b.lo_kev.toFixed(4)}&hi_kev=${b.hi_kev.toFixed(4)}`,
             `band ${b.lo_kev.toFixed(2)}–${b.hi_kev.toFixed(2)} keV`);
  } else if (mode === "composite") {
    const els = [], cols = [], gains = [];
    for (let i = 0; i < 4; i++) {
      const el = $(`mix-el-${i}`).value;
      if (!el) continue;
      els.push(el); cols.push($(`mix-color-${i}`).value);
      gains.push(Math.pow(10, +$(`mix-gain-${i}`).value).toFixed(3));
    }
    if (!els.length) return;
    setImage(`/api/composite.png?elements=${els.join(",")}&colors=${cols.map(encodeURIComponent)
      .join(",")}&gains=${gains.join(",")}`, "composite " + els.join(", "));
  } else setImage(`/api/map.png?element=${mode.slice(4)}`, `${mode.slice(4)} map (counts)`);
}

$("mode").addEventListener("change", showMode);
["log", "show-raw", "show-smooth", "show-fit"].forEach((id) =>
  $(id).addEventListener("change", drawSpectrum));
$("export").addEventListener("click", () => {
  if (!img) return;
  const off = document.createElement("canvas");
  off.width = info.width; off.height = info.height;
  off.getContext("2d").drawImage(img, 0, 0);
  const a = document.createElement("a");
  a.download = `${info.datastack.split("/").pop().replace(".datastack", "")}-${$("mode").value}.png`;
  a.href = off.toDataURL("image/png"); a.click();
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
  mixControls();
  fit();
  $("mode").value = info.elements.length ? "composite" : "total";
  showMode();
  drawSpectrum();
  viewer.ready = true;
})();
