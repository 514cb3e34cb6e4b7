// The page of `maskgen app`: builds requests from the controls, shows each step as the
// server streams it (Server-Sent Events), and paints an inpainting mask on a <canvas>.
"use strict";
const $ = (id) => document.getElementById(id);
let info = null, upload = null, source = null;
window.maskgen = { frames: 0, result: null, error: null, busy: false };  // read by the browser test

function showError(message) {
  $("error").textContent = message || "";
  window.maskgen.error = message || null;
}

// A number field's value; text that is no number goes to the server as it is, which refuses it.
function field(id) {
  const raw = $(id).value.trim();
  if (raw === "") return null;
  return Number.isFinite(Number(raw)) ? Number(raw) : raw;
}

// The settings the chosen fill rule takes on this model (info.fields); the others are hidden.
const SETTINGS = ["choice_temperature", "temperature", "cfg", "self_guidance"];

function request() {
  const body = { class: field("cls"), sampler: $("sampler").value, steps: field("steps"), seed: field("seed") };
  for (const name of info.fields[body.sampler]) body[name] = field(name);
  return body;
}

function showSettings() {
  const taken = info.fields[$("sampler").value];
  for (const name of SETTINGS) $(`${name}-label`).hidden = !taken.includes(name);
}

async function start(url, body) {
  showError("");
  const reply = await fetch(url, { method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(body) });
  const data = await reply.json();
  if (!reply.ok) { showError(data.error); return; }
  watch(data.job, data.steps);
}

function watch(job, steps) {
  if (source) source.close();
  Object.assign(window.maskgen, { frames: 0, result: null, busy: true });
  $("frames").replaceChildren();
  $("gif").hidden = true; $("nfe").textContent = ""; $("status").textContent = "sampling…";
  const seen = new Set();
  source = new EventSource(`/api/jobs/${job}/events`);
  source.addEventListener("step", (e) => {
    const f = JSON.parse(e.data);
    $("tokens").src = f.tokens; $("image").src = f.image;
    $("step").textContent = `${f.i + 1} / ${steps}`;
    $("status").textContent = `${f.masked} tokens still masked`;
    if (seen.has(f.i)) return;  // a reconnected stream starts again from the first step
    seen.add(f.i);
    const thumb = document.createElement("img");
    thumb.className = "px"; thumb.src = f.image; thumb.title = `step ${f.i + 1}`;
    $("frames").append(thumb);
    window.maskgen.frames = seen.size;
  });
  source.addEventListener("done", (e) => {
    source.close();
    const r = JSON.parse(e.data);
    $("final").src = r.image;
    $("gif").href = r.gif; $("gif").hidden = false;
    $("nfe").textContent = `NFE ${r.nfe}`; $("status").textContent = "done";
    Object.assign(window.maskgen, { result: r, busy: false });
  });
  // "cancelled": the server stops a run nobody watches; a page sees it only on a reconnect
  for (const outcome of ["failed", "cancelled"]) {
    source.addEventListener(outcome, (e) => {
      source.close();
      showError(JSON.parse(e.data).error);
      $("status").textContent = outcome; window.maskgen.busy = false;
    });
  }
}

// -- painting: strokes on the transparent #mask canvas over the uploaded #photo ------------
// A stroke: a round-capped line from the previous pointer position (a dot when there is none).
function paintAt(e, from) {
  const canvas = $("mask"), box = canvas.getBoundingClientRect();
  const x = (e.clientX - box.left) * canvas.width / box.width, y = (e.clientY - box.top) * canvas.height / box.height;
  const ctx = canvas.getContext("2d");
  ctx.strokeStyle = "rgb(255, 40, 40)"; ctx.lineCap = ctx.lineJoin = "round";
  ctx.lineWidth = Number($("brush").value) || 1;
  ctx.beginPath(); ctx.moveTo(...(from || [x, y])); ctx.lineTo(x, y); ctx.stroke();
  return [x, y];
}

function setUpPainting() {
  const canvas = $("mask");
  let last = null;  // the stroke's last point while the button is down
  canvas.addEventListener("pointerdown", (e) => { e.preventDefault(); last = paintAt(e, null); });
  canvas.addEventListener("pointermove", (e) => { if (last) last = paintAt(e, last); });
  window.addEventListener("pointerup", () => { last = null; });
  $("clear").onclick = () => canvas.getContext("2d").clearRect(0, 0, canvas.width, canvas.height);
  $("file").onchange = () => {
    const file = $("file").files[0];
    if (!file) return;
    const reader = new FileReader();
    reader.onload = () => {
      upload = reader.result;
      const img = new Image();
      img.onload = () => {
        const ctx = $("photo").getContext("2d");
        ctx.imageSmoothingEnabled = false;
        ctx.drawImage(img, 0, 0, 256, 256);
      };
      img.src = upload;
    };
    reader.readAsDataURL(file);
  };
}

// The mask as the server wants it: white where painted, black elsewhere.
function maskPNG() {
  const src = $("mask"), out = document.createElement("canvas");
  out.width = src.width; out.height = src.height;
  const pixels = src.getContext("2d").getImageData(0, 0, src.width, src.height);
  for (let i = 0; i < pixels.data.length; i += 4) {
    const v = pixels.data[i + 3] > 0 ? 255 : 0;
    pixels.data[i] = pixels.data[i + 1] = pixels.data[i + 2] = v; pixels.data[i + 3] = 255;
  }
  out.getContext("2d").putImageData(pixels, 0, 0);
  return out.toDataURL("image/png");
}

async function init() {
  info = await (await fetch("/api/info")).json();
  $("model").textContent = `${info.width}x${info.height}, ${info.grid[0]}x${info.grid[1]} tokens`;
  info.classes.forEach((name, i) => $("cls").add(new Option(`${i}: ${name}`, i)));
  info.samplers.forEach((name) => $("sampler").add(new Option(name, name)));
  $("steps").value = info.defaults.steps; $("steps").max = info.max_steps;
  $("choice_temperature").value = info.defaults.choice_temperature;
  $("temperature").value = info.defaults.temperature;
  $("sampler").onchange = showSettings; showSettings();
  $("generate").onclick = () => start("/api/generate", request());
  $("inpaint").onclick = () => {
    if (!upload) { showError("upload an image first"); return; }
    start("/api/inpaint", { ...request(), image: upload, mask: maskPNG() });
  };
  setUpPainting();
  document.body.dataset.ready = "1";
}
init().catch((e) => showError(`cannot reach the app: ${e}`));
