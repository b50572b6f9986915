// lattice_plan plan viewer: linked CT slices with dose wash, isodose lines and structure
// outlines drawn on 2D canvases; DVHs and the 3D view through plotly.js (inlined beside it).
// The data (JSON in #lpv-data) is written by lattice_plan.viz.viewer.payload.
"use strict";
(function () {
  const $ = (id) => document.getElementById(id);
  const status = (text) => { $("lpv-status").textContent = text; };

  async function inflate(b64) {
    const bin = atob(b64);
    const bytes = new Uint8Array(bin.length);
    for (let n = 0; n < bin.length; n++) bytes[n] = bin.charCodeAt(n);
    const stream = new Blob([bytes]).stream().pipeThrough(new DecompressionStream("deflate"));
    return new Uint8Array(await new Response(stream).arrayBuffer());
  }

  // ---------------------------------------------------------------- colour maps
  const JET = [[0, 0, 0.55], [0, 0, 1], [0, 0.5, 1], [0, 1, 1], [0.5, 1, 0.5], [1, 1, 0], [1, 0.5, 0], [1, 0, 0], [0.55, 0, 0]];
  const DIVERGING = [[0.1, 0.2, 0.8], [0.5, 0.7, 1], [1, 1, 1], [1, 0.6, 0.5], [0.8, 0.05, 0.05]];
  function lut(stops) {
    const out = new Uint8ClampedArray(256 * 3);
    for (let n = 0; n < 256; n++) {
      const t = (n / 255) * (stops.length - 1), a = Math.min(Math.floor(t), stops.length - 2), f = t - a;
      for (let c = 0; c < 3; c++) out[3 * n + c] = 255 * (stops[a][c] * (1 - f) + stops[a + 1][c] * f);
    }
    return out;
  }
  const WASH = lut(JET), DIFF = lut(DIVERGING);
  const lutColor = (table, t) => {
    const n = 3 * Math.max(0, Math.min(255, Math.round(255 * t)));
    return `rgb(${table[n]},${table[n + 1]},${table[n + 2]})`;
  };

  // ---------------------------------------------------------------- geometry
  function invertAffine(m) {  // 4x4 affine [[r, t], [0, 1]] -> inverse
    const [a, b, c] = m[0], [d, e, f] = m[1], [g, h, i] = m[2];
    const det = a * (e * i - f * h) - b * (d * i - f * g) + c * (d * h - e * g);
    const r = [
      [(e * i - f * h) / det, (c * h - b * i) / det, (b * f - c * e) / det],
      [(f * g - d * i) / det, (a * i - c * g) / det, (c * d - a * f) / det],
      [(d * h - e * g) / det, (b * g - a * h) / det, (a * e - b * d) / det]];
    const t = [m[0][3], m[1][3], m[2][3]];
    return r.map((row, n) => [...row, -(row[0] * t[0] + row[1] * t[1] + row[2] * t[2])]).concat([[0, 0, 0, 1]]);
  }
  const mul = (a, b) => a.map((row) => [0, 1, 2, 3].map((c) => row.reduce((s, v, k) => s + v * b[k][c], 0)));
  const apply = (m, p) => [0, 1, 2].map((r) => m[r][0] * p[0] + m[r][1] * p[1] + m[r][2] * p[2] + m[r][3]);

  // ---------------------------------------------------------------- marching squares
  // Segments (pairs of cell edges) for the 16 corner cases; corners 0..3 = (x,y), (x+1,y),
  // (x+1,y+1), (x,y+1); edges 0 top, 1 right, 2 bottom, 3 left.
  const CASES = [[], [3, 0], [0, 1], [3, 1], [1, 2], [3, 0, 1, 2], [0, 2], [3, 2], [2, 3], [0, 2], [0, 1, 2, 3], [1, 2], [1, 3], [0, 1], [0, 3], []];
  function contour(field, w, h, level, ctx, sx, sy) {
    const v = (x, y) => field[y * w + x];
    const frac = (a, b) => (a === b ? 0.5 : (level - a) / (b - a));
    for (let y = 0; y < h - 1; y++) {
      for (let x = 0; x < w - 1; x++) {
        const f0 = v(x, y), f1 = v(x + 1, y), f2 = v(x + 1, y + 1), f3 = v(x, y + 1);
        const c = (f0 >= level) | ((f1 >= level) << 1) | ((f2 >= level) << 2) | ((f3 >= level) << 3);
        const edges = CASES[c];
        if (!edges.length) continue;
        const point = (e) => (e === 0 ? [x + frac(f0, f1), y] : e === 1 ? [x + 1, y + frac(f1, f2)]
          : e === 2 ? [x + frac(f3, f2), y + 1] : [x, y + frac(f0, f3)]);
        for (let s = 0; s < edges.length; s += 2) {
          const p = point(edges[s]), q = point(edges[s + 1]);
          ctx.moveTo((p[0] + 0.5) * sx, (p[1] + 0.5) * sy);
          ctx.lineTo((q[0] + 0.5) * sx, (q[1] + 0.5) * sy);
        }
      }
    }
  }

  // ---------------------------------------------------------------- the viewer
  async function start() {
    const t0 = performance.now();
    if (typeof DecompressionStream === "undefined") throw new Error("this browser lacks DecompressionStream; use a current Chrome, Edge, Firefox or Safari");
    const data = JSON.parse($("lpv-data").textContent);
    const ct = data.ct, [nk, nj, ni] = ct.shape;
    const hu = new Int16Array((await inflate(ct.data)).buffer);
    const A = ct.lps_from_ijk;
    const spacing = [0, 1, 2].map((c) => Math.hypot(A[0][c], A[1][c], A[2][c]));
    const flip = { i: A[0][0] < 0, j: A[1][1] < 0, k: A[2][2] > 0 };  // radiological axial, superior up

    const plans = await Promise.all(data.plans.map(async (p) => {
      const d = p.dose;
      const raw = new Uint16Array((await inflate(d.data)).buffer);
      const dose = new Float32Array(raw.length);
      for (let n = 0; n < raw.length; n++) dose[n] = raw[n] * d.scale_gy;
      return { ...p, values: dose, shape: d.shape, max: d.max_gy, fromCt: mul(invertAffine(d.lps_from_ijk), A) };
    }));
    const structures = await Promise.all(data.structures.map(async (s) => ({ ...s, bits: await inflate(s.mask), visible: !["RING", "AVOIDANCE", "VALLEY"].includes(s.kind) })));
    const bySize = [...structures].sort((a, b) => a.volume_cc - b.volume_cc);
    const reference = plans.find((p) => p.name === data.reference_plan) || null;

    const state = { plan: plans.find((p) => p !== reference) || plans[0], diff: false, window: [400, 40], threshold: 20, opacity: 0.45, levels: [], slice: { i: ni >> 1, j: nj >> 1, k: nk >> 1 } };
    const focus = structures.find((s) => s.kind === "GTV") || structures.find((s) => ["PTV", "CTV"].includes(s.kind));
    if (focus) {  // open on the middle of the target's bounding box
      const [k0, j0, i0] = focus.box_lo, [bk, bj, bi] = focus.box_shape;
      state.slice = { i: i0 + (bi >> 1), j: j0 + (bj >> 1), k: k0 + (bk >> 1) };
    }

    function trilinear(plan, u, v, w) {  // dose grid continuous index -> Gy; 0 outside
      const [dk, dj, di] = plan.shape;
      if (!(u >= 0 && v >= 0 && w >= 0 && u <= di - 1 && v <= dj - 1 && w <= dk - 1)) return 0;
      const u0 = Math.min(Math.floor(u), Math.max(di - 2, 0)), v0 = Math.min(Math.floor(v), Math.max(dj - 2, 0)), w0 = Math.min(Math.floor(w), Math.max(dk - 2, 0));
      const fu = u - u0, fv = v - v0, fw = w - w0, d = plan.values, row = di, plane = di * dj;
      const n = w0 * plane + v0 * row + u0, su = di > 1 ? 1 : 0, sv = dj > 1 ? row : 0, sw = dk > 1 ? plane : 0;
      const c00 = d[n] * (1 - fu) + d[n + su] * fu, c10 = d[n + sv] * (1 - fu) + d[n + sv + su] * fu;
      const c01 = d[n + sw] * (1 - fu) + d[n + sw + su] * fu, c11 = d[n + sw + sv] * (1 - fu) + d[n + sw + sv + su] * fu;
      return (c00 * (1 - fv) + c10 * fv) * (1 - fw) + (c01 * (1 - fv) + c11 * fv) * fw;
    }
    const doseAt = (plan, i, j, k) => { const [u, v, w] = apply(plan.fromCt, [i, j, k]); return trilinear(plan, u, v, w); };
    function inStructure(s, i, j, k) {
      const [k0, j0, i0] = s.box_lo, [bk, bj, bi] = s.box_shape;
      const a = i - i0, b = j - j0, c = k - k0;
      if (a < 0 || b < 0 || c < 0 || a >= bi || b >= bj || c >= bk) return false;
      const n = (c * bj + b) * bi + a;
      return (s.bits[n >> 3] >> (7 - (n & 7))) & 1;
    }

    // Each view: the slice's fixed axis and its horizontal/vertical index axes.
    const VIEWS = {
      axial: { fixed: "k", ax: "i", ay: "j" },
      coronal: { fixed: "j", ax: "i", ay: "k" },
      sagittal: { fixed: "i", ax: "j", ay: "k" },
    };
    const N = { i: ni, j: nj, k: nk }, SP = { i: spacing[0], j: spacing[1], k: spacing[2] };
    const views = {};
    for (const fig of document.querySelectorAll("#lpv .lpv-view")) {
      const name = fig.dataset.view, def = VIEWS[name];
      const w = N[def.ax], h = N[def.ay];
      const scale = 380 / Math.max(w * SP[def.ax], h * SP[def.ay]);
      const canvas = fig.querySelector("canvas");
      canvas.width = Math.round(w * SP[def.ax] * scale);
      canvas.height = Math.round(h * SP[def.ay] * scale);
      const slider = fig.querySelector("input");
      slider.max = N[def.fixed] - 1;
      const off = document.createElement("canvas");
      off.width = w; off.height = h;
      views[name] = { ...def, name, fig, canvas, slider, off, w, h, sx: canvas.width / w, sy: canvas.height / h, caption: fig.querySelector("figcaption") };
    }
    const index = (view, x, y) => {  // pixel (x, y) of a view -> {i, j, k}
      const p = { [view.fixed]: state.slice[view.fixed] };
      p[view.ax] = flip[view.ax] ? view.w - 1 - x : x;
      p[view.ay] = flip[view.ay] ? view.h - 1 - y : y;
      return p;
    };
    const pixel = (view, axis, value) => (flip[axis] ? N[axis] - 1 - value : value);

    const AXIS = { i: 0, j: 1, k: 2 };
    function sliceFields(view) {  // CT (HU) and dose (Gy) of each pixel of the view's slice
      const n = view.w * view.h, ctv = new Float32Array(n), dose = new Float32Array(n);
      const ref = state.diff && reference && reference !== state.plan ? new Float32Array(n) : null;
      const corner = (x, y) => { const p = index(view, x, y); return [p.i, p.j, p.k]; };
      const c0 = corner(0, 0), cx = corner(1, 0), cy = corner(0, 1);  // the view is linear in x, y
      const stride = [1, ni, ni * nj], lin = (c) => c[0] * stride[0] + c[1] * stride[1] + c[2] * stride[2];
      const base = lin(c0), dx = lin(cx) - base, dy = lin(cy) - base;
      const fill = (plan, out) => {
        const o = apply(plan.fromCt, c0), ox = apply(plan.fromCt, cx), oy = apply(plan.fromCt, cy);
        for (let y = 0; y < view.h; y++) for (let x = 0; x < view.w; x++)
          out[y * view.w + x] = trilinear(plan, o[0] + x * (ox[0] - o[0]) + y * (oy[0] - o[0]),
            o[1] + x * (ox[1] - o[1]) + y * (oy[1] - o[1]), o[2] + x * (ox[2] - o[2]) + y * (oy[2] - o[2]));
      };
      for (let y = 0; y < view.h; y++) for (let x = 0; x < view.w; x++) ctv[y * view.w + x] = hu[base + x * dx + y * dy];
      fill(state.plan, dose);
      if (ref) fill(reference, ref);
      return { ctv, dose, ref };
    }
    function maskField(view, s, out) {  // 1 inside structure s on the view's slice; false if none
      const f = AXIS[view.fixed], a = AXIS[view.ax], b = AXIS[view.ay];
      const lo = [s.box_lo[2], s.box_lo[1], s.box_lo[0]], shape = [s.box_shape[2], s.box_shape[1], s.box_shape[0]];
      const at = state.slice[view.fixed] - lo[f];
      if (at < 0 || at >= shape[f]) return false;
      out.fill(0);
      const boxStride = [1, shape[0], shape[0] * shape[1]], c = [0, 0, 0];
      c[f] = at;
      for (let q = 0; q < shape[b]; q++) {
        c[b] = q;
        const y = pixel(view, view.ay, lo[b] + q);
        for (let r = 0; r < shape[a]; r++) {
          c[a] = r;
          const n = c[0] + c[1] * boxStride[1] + c[2] * boxStride[2];
          if ((s.bits[n >> 3] >> (7 - (n & 7))) & 1) out[y * view.w + pixel(view, view.ax, lo[a] + r)] = 1;
        }
      }
      return true;
    }

    function draw(view) {
      const { ctv, dose, ref } = sliceFields(view);
      const [width, level] = state.window, lo = level - width / 2;
      const rx = state.plan.prescription_gy, thr = (state.threshold / 100) * rx;
      const img = view.off.getContext("2d").createImageData(view.w, view.h), px = img.data;
      const top = ref ? Math.max(state.plan.max, reference.max) * 0.5 : Math.max(state.plan.max, thr + 1e-6);
      washLegend(ref ? -top : thr, top, ref ? DIVERGING : JET);
      for (let m = 0; m < ctv.length; m++) {
        const g = Math.max(0, Math.min(255, ((ctv[m] - lo) / width) * 255));
        let r = g, gr = g, b = g;
        const value = ref ? dose[m] - ref[m] : dose[m];
        if (ref ? Math.abs(value) >= thr && Math.abs(value) > 0 : value >= thr && value > 0) {
          const t = ref ? 0.5 + value / (2 * top) : (value - thr) / Math.max(top - thr, 1e-6);
          const table = ref ? DIFF : WASH, n = 3 * Math.max(0, Math.min(255, Math.round(255 * t))), a = state.opacity;
          r = (1 - a) * g + a * table[n]; gr = (1 - a) * g + a * table[n + 1]; b = (1 - a) * g + a * table[n + 2];
        }
        px[4 * m] = r; px[4 * m + 1] = gr; px[4 * m + 2] = b; px[4 * m + 3] = 255;
      }
      view.off.getContext("2d").putImageData(img, 0, 0);
      const ctx = view.canvas.getContext("2d");
      ctx.imageSmoothingEnabled = true;
      ctx.drawImage(view.off, 0, 0, view.canvas.width, view.canvas.height);
      ctx.lineWidth = 1.5;
      for (const { gy, color } of state.levels) {
        ctx.beginPath(); ctx.strokeStyle = color;
        contour(dose, view.w, view.h, gy, ctx, view.sx, view.sy); ctx.stroke();
      }
      const mask = new Float32Array(view.w * view.h);
      for (const s of structures) {
        if (!s.visible || !maskField(view, s, mask)) continue;
        ctx.beginPath(); ctx.strokeStyle = `rgb(${s.color.join(",")})`; ctx.lineWidth = 1.2;
        contour(mask, view.w, view.h, 0.5, ctx, view.sx, view.sy); ctx.stroke();
        ctx.beginPath();
        for (const c of s.vertices_ijk) {  // vertex centres within 2 voxels of this slice
          const p = { i: c[0], j: c[1], k: c[2] };
          if (Math.abs(p[view.fixed] - state.slice[view.fixed]) > 2) continue;
          const x = (pixel(view, view.ax, p[view.ax]) + 0.5) * view.sx, y = (pixel(view, view.ay, p[view.ay]) + 0.5) * view.sy;
          ctx.moveTo(x - 5, y); ctx.lineTo(x + 5, y); ctx.moveTo(x, y - 5); ctx.lineTo(x, y + 5);
        }
        ctx.stroke();
      }
      ctx.setLineDash([4, 4]); ctx.strokeStyle = "rgba(255,255,120,.6)"; ctx.lineWidth = 1;
      const cx = (pixel(view, view.ax, state.slice[view.ax]) + 0.5) * view.sx, cy = (pixel(view, view.ay, state.slice[view.ay]) + 0.5) * view.sy;
      ctx.beginPath(); ctx.moveTo(cx, 0); ctx.lineTo(cx, view.canvas.height); ctx.moveTo(0, cy); ctx.lineTo(view.canvas.width, cy); ctx.stroke();
      ctx.setLineDash([]);
      view.slider.value = state.slice[view.fixed];
      const mm = apply(A, [state.slice.i, state.slice.j, state.slice.k])["ijk".indexOf(view.fixed)];
      view.caption.textContent = `${view.name} ${state.slice[view.fixed] + 1}/${N[view.fixed]} (${"xyz"["ijk".indexOf(view.fixed)]} = ${mm.toFixed(1)} mm)`;
    }
    const drawAll = () => { for (const v of Object.values(views)) draw(v); };
    function washLegend(lo, hi, stops) {  // the wash's colour scale, e.g. "3.0 Gy [gradient] 20.1 Gy"
      const css = stops.map((c) => `rgb(${c.map((v) => Math.round(255 * v)).join(",")})`).join(",");
      $("lpv-wash-legend").innerHTML = `${lo.toFixed(1)} Gy <span class="lpv-gradient" style="background:linear-gradient(to right,${css})"></span> ${hi.toFixed(1)} Gy`;
    }

    function readout(view, event) {
      const rect = view.canvas.getBoundingClientRect();
      const x = Math.floor(((event.clientX - rect.left) / rect.width) * view.w), y = Math.floor(((event.clientY - rect.top) / rect.height) * view.h);
      if (x < 0 || y < 0 || x >= view.w || y >= view.h) return null;
      return index(view, x, y);
    }
    function showReadout(p) {
      const lps = apply(A, [p.i, p.j, p.k]);
      const d = doseAt(state.plan, p.i, p.j, p.k), n = state.plan.fractions;
      const inside = bySize.find((s) => inStructure(s, p.i, p.j, p.k));
      const ab = inside ? inside.alpha_beta_gy : data.default_alpha_beta_gy;
      const eqd2 = (dose) => dose * (dose / n + ab) / (2 + ab);
      let text = `LPS (${lps.map((v) => v.toFixed(1)).join(", ")}) mm · ${hu[(p.k * nj + p.j) * ni + p.i]} HU · ${inside ? inside.name : "no structure"} · ` +
        `${state.plan.name}: ${d.toFixed(2)} Gy, EQD2 ${eqd2(d).toFixed(2)} Gy (${n} fx, α/β ${ab} Gy)`;
      if (state.diff && reference && reference !== state.plan) {
        const r = doseAt(reference, p.i, p.j, p.k);
        text += ` · ${reference.name}: ${r.toFixed(2)} Gy · difference ${(d - r).toFixed(2)} Gy`;
      }
      $("lpv-readout").textContent = text;
    }
    for (const view of Object.values(views)) {
      view.canvas.addEventListener("mousemove", (e) => { const p = readout(view, e); if (p) showReadout(p); });
      view.canvas.addEventListener("click", (e) => {
        const p = readout(view, e); if (!p) return;
        state.slice[view.ax] = p[view.ax]; state.slice[view.ay] = p[view.ay]; drawAll();
      });
      view.canvas.addEventListener("wheel", (e) => {
        e.preventDefault();
        setSlice(view.name, state.slice[view.fixed] + (e.deltaY > 0 ? 1 : -1));
      }, { passive: false });
      view.slider.addEventListener("input", () => setSlice(view.name, Number(view.slider.value)));
      view.canvas.tabIndex = 0;  // arrow keys / Page Up-Down step through the slices
      view.canvas.addEventListener("keydown", (e) => {
        const step = { ArrowUp: 1, ArrowRight: 1, PageUp: 5, ArrowDown: -1, ArrowLeft: -1, PageDown: -5 }[e.key];
        if (step) { e.preventDefault(); setSlice(view.name, state.slice[view.fixed] + step); }
      });
    }
    function setSlice(name, value) {
      const view = views[name];
      state.slice[view.fixed] = Math.max(0, Math.min(N[view.fixed] - 1, Math.round(value)));
      drawAll();
    }

    // ---------------------------------------------------------------- controls
    const planSelect = $("lpv-plan");
    for (const p of plans) planSelect.add(new Option(`${p.name} (${p.arm}, ${p.prescription_gy.toFixed(1)} Gy in ${p.fractions})`, p.name));
    planSelect.value = state.plan.name;
    $("lpv-ref").textContent = reference ? reference.name : "reference";
    const diffBox = $("lpv-diff");
    const syncDiff = () => { diffBox.disabled = !reference || reference === state.plan; if (diffBox.disabled) diffBox.checked = false; state.diff = diffBox.checked; };
    function parseLevels() {
      const unit = $("lpv-level-unit").value, rx = state.plan.prescription_gy;
      const values = $("lpv-levels").value.split(/[,;\s]+/).map(Number).filter((v) => Number.isFinite(v) && v > 0);
      const gys = values.map((v) => (unit === "pct" ? (v / 100) * rx : v)).sort((a, b) => a - b);
      const topGy = Math.max(...gys, 1e-6);
      state.levels = gys.map((gy) => ({ gy, color: lutColor(WASH, 0.25 + 0.75 * (gy / topGy)) }));
      $("lpv-isodose-legend").innerHTML = "";
      for (const l of state.levels) {
        const span = document.createElement("span");
        span.innerHTML = `<span class="lpv-swatch" style="background:${l.color}"></span>`;
        span.append(`${l.gy.toFixed(1)} Gy (${((100 * l.gy) / rx).toFixed(0)} %) `);
        $("lpv-isodose-legend").append(span);
      }
    }
    function syncThreshold() {
      state.threshold = Number($("lpv-threshold").value);
      $("lpv-threshold-value").textContent = `${state.threshold} % of Rx = ${((state.threshold / 100) * state.plan.prescription_gy).toFixed(1)} Gy${state.diff ? " (|difference|)" : ""}`;
    }
    planSelect.addEventListener("change", () => {
      state.plan = plans.find((p) => p.name === planSelect.value);
      syncDiff(); parseLevels(); syncThreshold(); drawAll(); if (shown3d) draw3d();
    });
    diffBox.addEventListener("change", () => { state.diff = diffBox.checked; syncThreshold(); drawAll(); });
    $("lpv-window").addEventListener("change", (e) => { state.window = e.target.value.split(",").map(Number); drawAll(); });
    $("lpv-threshold").addEventListener("input", () => { syncThreshold(); drawAll(); });
    $("lpv-opacity").addEventListener("input", (e) => { state.opacity = Number(e.target.value) / 100; drawAll(); });
    $("lpv-levels").addEventListener("change", () => { parseLevels(); drawAll(); });
    $("lpv-level-unit").addEventListener("change", () => { parseLevels(); drawAll(); });

    const box = $("lpv-structures");
    for (const s of structures) {
      const label = document.createElement("label");
      const input = document.createElement("input");
      input.type = "checkbox"; input.checked = s.visible; input.dataset.structure = s.name;
      input.addEventListener("change", () => { s.visible = input.checked; drawAll(); dvhVisibility(); });
      label.append(input);
      label.insertAdjacentHTML("beforeend", `<span class="lpv-swatch" style="background:rgb(${s.color.join(",")})"></span>`);
      label.append(`${s.name} (${s.kind.toLowerCase()}${s.vertices_ijk.length ? `, ${s.vertices_ijk.length} vertices` : ""})`);
      box.append(label);
    }

    // ---------------------------------------------------------------- DVH (plotly)
    const DASH = ["solid", "dash", "dot", "dashdot", "longdash"];
    const color = (name) => { const s = structures.find((t) => t.name === name); return s ? `rgb(${s.color.join(",")})` : "#888"; };
    const dvhTraces = [];
    plans.forEach((p, n) => {
      for (const c of p.dvh) dvhTraces.push({ plan: p, curve: c });
    });
    function dvhData(quantity) {
      return dvhTraces.map(({ plan, curve }, n) => ({
        type: "scatter", mode: "lines", x: curve[quantity], y: curve.volume_pct,
        name: `${curve.structure} · ${plan.name}`, legendgroup: curve.structure,
        line: { color: color(curve.structure), dash: DASH[plans.indexOf(plan) % DASH.length], width: 1.8 },
        visible: (structures.find((s) => s.name === curve.structure) || { visible: true }).visible ? true : "legendonly",
        hovertemplate: `${curve.structure} (${plan.name}${quantity === "eqd2_gy" ? `, α/β ${curve.alpha_beta_gy} Gy` : ""})<br>%{x:.2f} Gy: %{y:.1f} %<extra></extra>`,
      }));
    }
    function dvhLayout(quantity) {
      return {
        margin: { l: 55, r: 10, t: 10, b: 45 }, hovermode: "closest",
        xaxis: { title: { text: quantity === "eqd2_gy" ? "EQD2 (Gy; α/β per structure, plan fractions)" : "dose (Gy)" }, rangemode: "tozero" },
        yaxis: { title: { text: "volume (%)" }, range: [0, 102] },
        legend: { font: { size: 10 } },
      };
    }
    const plotConfig = { displaylogo: false, responsive: true };
    const drawDvh = () => { const q = $("lpv-dvh-quantity").value; return Plotly.react("lpv-dvh", dvhData(q), dvhLayout(q), plotConfig); };
    function dvhVisibility() {
      if (!dvhTraces.length) return;
      const vis = dvhTraces.map(({ curve }) => ((structures.find((s) => s.name === curve.structure) || { visible: true }).visible ? true : "legendonly"));
      Plotly.restyle("lpv-dvh", { visible: vis });
    }
    $("lpv-dvh-quantity").addEventListener("change", drawDvh);

    // ---------------------------------------------------------------- 3D (plotly, WebGL)
    let shown3d = false;
    const meshCache = new Map();
    async function meshTrace(m, name, rgb, opacity, group) {
      if (!meshCache.has(m)) {
        const pts = new Float32Array((await inflate(m.points)).buffer), tri = new Uint32Array((await inflate(m.triangles)).buffer);
        const x = [], y = [], z = [], a = [], b = [], c = [];
        for (let n = 0; n < pts.length; n += 3) { x.push(pts[n]); y.push(pts[n + 1]); z.push(pts[n + 2]); }
        for (let n = 0; n < tri.length; n += 3) { a.push(tri[n]); b.push(tri[n + 1]); c.push(tri[n + 2]); }
        meshCache.set(m, { x, y, z, i: a, j: b, k: c });
      }
      return { type: "mesh3d", ...meshCache.get(m), name, color: rgb, opacity, showlegend: true, legendgroup: group, hoverinfo: "name", flatshading: false };
    }
    async function draw3d() {
      const traces = [];
      for (const m of data.meshes) {
        const opacity = m.kind === "EXTERNAL" ? 0.1 : m.kind === "VERTEX" || m.kind === "CORE" ? 0.9 : 0.35;
        traces.push(await meshTrace(m, m.name, `rgb(${m.color.join(",")})`, opacity, m.name));
      }
      for (const m of state.plan.isodose_meshes) {
        traces.push(await meshTrace(m, `${state.plan.name} ${m.percent} % isodose (${m.level_gy.toFixed(1)} Gy)`, lutColor(WASH, m.percent >= 100 ? 0.85 : 0.45), 0.25, "isodose"));
      }
      for (const b of state.plan.beams) {
        traces.push({ type: "scatter3d", mode: "lines", x: [b.from_lps_mm[0], b.to_lps_mm[0]], y: [b.from_lps_mm[1], b.to_lps_mm[1]], z: [b.from_lps_mm[2], b.to_lps_mm[2]],
          line: { color: "#444", width: 4 }, name: `${b.name} (gantry ${b.gantry_deg.toFixed(0)}°)`, legendgroup: "beams", hoverinfo: "name" });
      }
      const axis = (t) => ({ title: { text: t } });
      await Plotly.react("lpv-3d", traces, {
        margin: { l: 0, r: 0, t: 0, b: 0 }, legend: { font: { size: 10 } },
        scene: { aspectmode: "data", xaxis: axis("x (L) mm"), yaxis: axis("y (P) mm"), zaxis: axis("z (S) mm"), camera: { up: { x: 0, y: 0, z: 1 }, eye: { x: 1.4, y: -1.6, z: 0.6 } } },
      }, plotConfig);
    }
    $("lpv-3d-show").addEventListener("click", async () => {
      shown3d = true; $("lpv-3d-show").disabled = true;
      await draw3d();
      window.viewer3dReady = true;
    });

    syncDiff(); parseLevels(); syncThreshold(); drawAll();
    window.lpViewer = { setSlice, state, views, plans, structures, drawAll };
    window.viewerReady = true;
    window.viewerReadyMs = performance.now();
    const took = `slices ready ${(performance.now() - t0).toFixed(0)} ms after the viewer script started (CT ${ni}×${nj}×${nk}${ct.stride > 1 ? `, every ${ct.stride}th voxel` : ""}; ${plans.length} plans; ${structures.length} structures)`;
    status(`${took}; loading the DVH and 3D panels…`);
    await new Promise((resolve) => setTimeout(resolve, 0));  // let the slices paint first
    if (document.readyState === "loading") {  // plotly.js sits after this script in the page
      await new Promise((resolve) => document.addEventListener("DOMContentLoaded", resolve, { once: true }));
    }
    loadPlotly();
    await drawDvh();
    $("lpv-3d-show").disabled = false;
    window.viewerPlotsReadyMs = performance.now();
    window.viewerPlotsReady = true;
    status(took);
  }

  function loadPlotly() {  // run the inlined plotly.js (held as text so the slices come first)
    if (window.Plotly) return;
    const script = document.createElement("script");
    script.textContent = $("lpv-plotly").textContent;
    document.head.append(script);
  }

  start().catch((err) => {
    status(`the viewer could not start: ${err.message}`);
    console.error("lattice_plan viewer:", err);
    window.viewerError = String(err);
  });
})();
