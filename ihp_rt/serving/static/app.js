// The annotation page: one image, one server session, clicks over a WebSocket.
// The overlay canvas holds the mask in palette colours at full strength; its CSS opacity is
// the opacity slider, so changing it never re-draws the mask.
"use strict";

const KEYS = "1234567890qwertyuiopasdfghjklcvbnm";  // class shortcuts, in label order
const $ = (id) => document.getElementById(id);
const state = { labels: [], selected: 1, session: null, socket: null, sent: [], clicks: [], name: "image", uploads: 0 };

function setStatus(text, isError = false) {
  $("status").textContent = text;
  $("status").classList.toggle("error", isError);
}

async function fetchJson(url, options) {
  const response = await fetch(url, options);
  const body = await response.json().catch(() => ({ detail: response.statusText }));
  if (!response.ok) throw new Error(`${response.status}: ${body.detail}`);
  return body;
}

function buildLegend(info) {
  state.labels = info.labels;
  $("label-set").textContent = `(${info.label_set})`;
  const legend = $("legend");
  legend.replaceChildren();
  for (const label of info.labels) {
    const item = document.createElement("li");
    item.dataset.label = label.id;
    const swatch = document.createElement("span");
    swatch.className = "swatch";
    swatch.style.background = `rgb(${label.color.join(",")})`;
    const name = document.createElement("span");
    name.textContent = label.name;
    item.append(swatch, name);
    if (label.id < KEYS.length) {
      const key = document.createElement("kbd");
      key.textContent = KEYS[label.id].toUpperCase();
      item.append(key);
    }
    item.addEventListener("click", () => select(label.id));
    legend.append(item);
  }
  select(Math.min(1, info.labels.length - 1));
}

function select(id) {
  state.selected = id;
  for (const item of $("legend").children) item.classList.toggle("selected", Number(item.dataset.label) === id);
}

async function openImage(file) {
  if (!file) return;
  closeSession();
  const ticket = ++state.uploads;  // a newer upload supersedes this one
  setStatus(`Uploading ${file.name}…`);
  const form = new FormData();
  form.append("image", file);
  let created;
  try {
    created = await fetchJson("/sessions", { method: "POST", body: form });
  } catch (error) {
    if (ticket === state.uploads) setStatus(`Cannot open ${file.name}: ${error.message}`, true);
    return;
  }
  if (ticket !== state.uploads) {  // another image was opened meanwhile: free this slot at once
    fetch(`/sessions/${created.session_id}`, { method: "DELETE" });
    return;
  }
  const bitmap = await createImageBitmap(file, { imageOrientation: "from-image" });
  for (const id of ["photo", "overlay", "marks"]) {
    $(id).width = created.width;
    $(id).height = created.height;
  }
  $("photo").getContext("2d").drawImage(bitmap, 0, 0, created.width, created.height);
  $("overlay").getContext("2d").clearRect(0, 0, created.width, created.height);
  $("stage").classList.remove("empty");
  state.session = created.session_id;
  state.name = file.name.replace(/\.[^.]*$/, "");
  state.clicks = [];
  drawClicks();
  connect(created.session_id);
}

function connect(sessionId) {
  const scheme = location.protocol === "https:" ? "wss" : "ws";
  const socket = new WebSocket(`${scheme}://${location.host}/sessions/${sessionId}/ws`);
  state.socket = socket;
  state.sent = [];
  socket.onopen = () => {
    setStatus("Ready: pick a part and click on it.");
    for (const id of ["undo", "reset", "download-png", "download-clicks"]) $(id).disabled = false;
  };
  socket.onmessage = (event) => receive(JSON.parse(event.data));
  socket.onclose = () => {
    if (state.socket === socket) setStatus("Connection to the server closed: open the image again.", true);
  };
}

function closeSession() {
  if (state.socket) {
    const socket = state.socket;
    state.socket = null;
    socket.close();
  }
  if (state.session) fetch(`/sessions/${state.session}`, { method: "DELETE" });
  state.session = null;
}

function send(operation) {
  if (!state.socket || state.socket.readyState !== WebSocket.OPEN) return;
  state.sent.push(performance.now());
  state.socket.send(JSON.stringify(operation));
  setStatus("Working…");
}

function receive(reply) {
  const roundTrip = performance.now() - state.sent.shift();
  if (reply.error) {
    setStatus(`Refused (${reply.error.status}): ${reply.error.detail}`, true);
    return;
  }
  state.clicks = reply.clicks;
  drawMask(reply.mask);
  drawClicks();
  $("latency").textContent = `Last update: ${roundTrip.toFixed(0)} ms round trip, ` +
    `${reply.latency_ms.toFixed(0)} ms on the server; ${reply.clicks.length} clicks.`;
  setStatus(`${reply.clicks.length} clicks`);
  document.body.dataset.updates = String(Number(document.body.dataset.updates || 0) + 1);
}

function drawMask(mask) {
  const canvas = $("overlay");
  const image = new ImageData(mask.width, mask.height);
  const colours = state.labels.map((label) => label.color);
  let offset = 0;
  for (let i = 0; i < mask.values.length; i++) {
    const value = mask.values[i];
    const end = offset + mask.counts[i];
    if (value !== 0) {  // background stays transparent
      const [r, g, b] = colours[value];
      for (let p = offset * 4; p < end * 4; p += 4) {
        image.data[p] = r; image.data[p + 1] = g; image.data[p + 2] = b; image.data[p + 3] = 255;
      }
    }
    offset = end;
  }
  canvas.getContext("2d").putImageData(image, 0, 0);
}

function drawClicks() {
  const canvas = $("marks");
  const context = canvas.getContext("2d");
  context.clearRect(0, 0, canvas.width, canvas.height);
  const radius = Math.max(3, Math.round(Math.max(canvas.width, canvas.height) / 120));
  const byName = new Map(state.labels.map((label) => [label.name, label.color]));
  for (const click of state.clicks) {
    context.beginPath();
    context.arc(click.x + 0.5, click.y + 0.5, radius, 0, 2 * Math.PI);
    context.fillStyle = `rgb(${byName.get(click.label).join(",")})`;
    context.fill();
    context.lineWidth = 2;
    context.strokeStyle = "#fff";
    context.stroke();
  }
}

function imagePoint(event) {
  const canvas = $("marks");
  const box = canvas.getBoundingClientRect();
  return {
    x: Math.min(canvas.width - 1, Math.floor((event.clientX - box.left) * canvas.width / box.width)),
    y: Math.min(canvas.height - 1, Math.floor((event.clientY - box.top) * canvas.height / box.height)),
  };
}

async function download(url, filename) {
  try {
    const response = await fetch(url);
    if (!response.ok) throw new Error(`${response.status}: ${(await response.json()).detail}`);
    const link = document.createElement("a");
    link.href = URL.createObjectURL(await response.blob());
    link.download = filename;
    link.click();
    setTimeout(() => URL.revokeObjectURL(link.href), 10000);
  } catch (error) {
    setStatus(`Download failed: ${error.message}`, true);
  }
}

function setOpacity(percent) {
  const value = Math.max(0, Math.min(100, percent));
  $("opacity").value = value;
  $("overlay").style.opacity = value / 100;
}

$("file").addEventListener("change", (event) => openImage(event.target.files[0]));
$("marks").addEventListener("click", (event) => send({ op: "click", ...imagePoint(event), label: state.selected }));
$("marks").addEventListener("contextmenu", (event) => {
  event.preventDefault();
  send({ op: "click", ...imagePoint(event), label: 0 });
});
$("undo").addEventListener("click", () => send({ op: "undo" }));
$("reset").addEventListener("click", () => send({ op: "reset" }));
$("opacity").addEventListener("input", (event) => setOpacity(Number(event.target.value)));
$("download-png").addEventListener("click", () => download(`/sessions/${state.session}/mask.png`, `${state.name}.png`));
$("download-clicks").addEventListener("click",
  () => download(`/sessions/${state.session}/clicks`, `${state.name}_clicks.json`));
$("stage").addEventListener("dragover", (event) => { event.preventDefault(); $("stage").classList.add("drop"); });
$("stage").addEventListener("dragleave", () => $("stage").classList.remove("drop"));
$("stage").addEventListener("drop", (event) => {
  event.preventDefault();
  $("stage").classList.remove("drop");
  openImage(event.dataTransfer.files[0]);
});
document.addEventListener("keydown", (event) => {
  if (event.target instanceof HTMLInputElement && event.target.type !== "range") return;
  const key = event.key.toLowerCase();
  if (key === "z" && !event.altKey) { event.preventDefault(); send({ op: "undo" }); return; }
  if (event.ctrlKey || event.metaKey || event.altKey) return;
  if (key === "x") send({ op: "reset" });
  else if (key === "[") setOpacity(Number($("opacity").value) - 10);
  else if (key === "]") setOpacity(Number($("opacity").value) + 10);
  else if (KEYS.includes(key) && KEYS.indexOf(key) < state.labels.length) select(KEYS.indexOf(key));
});
window.addEventListener("beforeunload", closeSession);

setOpacity(Number($("opacity").value));
fetchJson("/info")
  .then((info) => { buildLegend(info); setStatus(`Model on ${info.backend}. Open a photo to start.`); })
  .catch((error) => setStatus(`Cannot reach the server: ${error.message}`, true));
