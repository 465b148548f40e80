// Playground entry point: wires the form, the connection and the task list together.
// Everything goes over the public WebSocket API on /v1, exactly as an SDK would send it.

import { RunwareSocket } from "./client.js";
import { buildTask, clearErrors, describeRanges, showErrors, syncSize } from "./form.js";
import { TaskList } from "./tasks.js";

const KEY_STORE = "ltxserve.playground.apiKey"; // sessionStorage only: gone when the tab closes
const POLL_AFTER_MS = 3_000; // poll getResponse when a running task was silent this long

const $ = (id) => document.getElementById(id);
const form = $("form");
const keyInput = $("apiKey");
const socket = new RunwareSocket(`${location.protocol === "https:" ? "wss" : "ws"}://${location.host}/v1`);
const tasks = new TaskList($("tasks"), $("empty"), {
  onCancel: cancel,
  onEmpty: (empty) => ($("clear-history").hidden = empty),
});

/** UUID v4; crypto.randomUUID exists only in secure contexts (not plain http on a LAN IP). */
function uuid4() {
  if (crypto.randomUUID) return crypto.randomUUID();
  const b = crypto.getRandomValues(new Uint8Array(16));
  b[6] = (b[6] & 0x0f) | 0x40;
  b[8] = (b[8] & 0x3f) | 0x80;
  const h = [...b].map((x) => x.toString(16).padStart(2, "0")).join("");
  return `${h.slice(0, 8)}-${h.slice(8, 12)}-${h.slice(12, 16)}-${h.slice(16, 20)}-${h.slice(20)}`;
}

// ------------------------------------------------------------------ API key and connection

function useKey() {
  const key = keyInput.value.trim();
  if (key) sessionStorage.setItem(KEY_STORE, key);
  else sessionStorage.removeItem(KEY_STORE);
  uploads.clear(); // imageUUIDs belong to the key that uploaded them
  clearErrors($("apiKey").parentElement);
  socket.setKey(key);
}

$("connect").addEventListener("click", useKey);
keyInput.addEventListener("keydown", (event) => {
  if (event.key === "Enter") useKey();
});
$("reconnect").addEventListener("click", () => socket.connectNow());
$("clear-history").addEventListener("click", () => tasks.clear());

let retryAt = 0;
let retryAttempt = 0;
const STATE_TEXT = {
  idle: "Not connected — enter an API key",
  connecting: "Connecting…",
  authenticating: "Authenticating…",
  ready: "Connected",
  "auth-failed": "Key refused",
};

function showConnection(state) {
  const box = $("connection");
  box.dataset.state = state;
  let text = STATE_TEXT[state];
  if (state === "waiting") {
    const seconds = Math.max(0, Math.ceil((retryAt - Date.now()) / 1000));
    text = `Connection lost — reconnecting in ${seconds} s (attempt ${retryAttempt})`;
  }
  $("connection-text").textContent = text;
  $("reconnect").hidden = state !== "waiting";
}

socket.addEventListener("state", ({ detail }) => {
  if (detail.state === "waiting") {
    retryAt = detail.retryAt;
    retryAttempt = detail.attempt;
  }
  if (detail.state === "ready") {
    clearErrors($("apiKey").parentElement);
    // Pushes only reach the connection that submitted a task: after a reconnect or a reload
    // the running tasks are followed by polling, starting now.
    for (const task of tasks.active) poll(task);
  }
  showConnection(detail.state);
});
socket.addEventListener("auth-error", ({ detail }) => {
  clearErrors($("apiKey").parentElement);
  showErrors(document, [{ ...detail, parameter: "apiKey" }]);
});
socket.addEventListener("message", ({ detail }) => tasks.applyMessage(detail));

// ------------------------------------------------------------------ polling fallback

function poll(task) {
  task.lastPolled = Date.now();
  socket.send([{ taskType: "getResponse", taskUUID: task.uuid }]);
}

setInterval(() => {
  const now = Date.now();
  for (const task of tasks.active) {
    tasks.render(task); // the elapsed time moves on
    const silent = now - task.lastHeard > POLL_AFTER_MS && now - (task.lastPolled || 0) > POLL_AFTER_MS;
    if (socket.ready && silent) poll(task);
  }
  if (socket.state === "waiting") showConnection("waiting"); // the countdown
}, 1000);

async function cancel(task) {
  tasks.cancelling(task);
  try {
    const reply = await socket.request([{ taskType: "taskCancel", taskUUID: task.uuid }]);
    // Success: the task's results arrive as taskCancelled errors (pushed, or on the next poll).
    if (reply.errors.length) tasks.applyMessage({ data: [], errors: reply.errors });
  } catch (error) {
    tasks.applyMessage({ data: [], errors: [{ taskType: "taskCancel", taskUUID: task.uuid, message: error.message }] });
  }
}

// ------------------------------------------------------------------ first-frame image

const imageInput = $("image");
const drop = $("drop");
const uploads = new Map(); // File -> imageUUID, so Generate twice does not upload twice
let image = null;
let previewURL = null;

function setImage(file) {
  clearErrors(drop.parentElement);
  if (file && !file.type.startsWith("image/")) {
    showErrors(document, [{ parameter: "inputs.frameImages", message: `${file.name} is not an image.` }]);
    file = null;
  }
  image = file;
  if (previewURL) URL.revokeObjectURL(previewURL);
  previewURL = file ? URL.createObjectURL(file) : null;
  $("image-preview").hidden = !file;
  if (file) $("image-preview").src = previewURL;
  else {
    $("image-preview").removeAttribute("src");
    imageInput.value = "";
  }
  $("image-clear").hidden = !file;
  $("image-text").firstChild.textContent = file ? `${file.name} — drop another image, or ` : "Drop an image here, or ";
  updatePreview();
}

imageInput.addEventListener("change", () => setImage(imageInput.files[0] || null));
$("image-clear").addEventListener("click", () => setImage(null));
for (const type of ["dragenter", "dragover"]) {
  drop.addEventListener(type, (event) => {
    event.preventDefault();
    drop.classList.add("over");
  });
}
for (const type of ["dragleave", "drop"]) drop.addEventListener(type, () => drop.classList.remove("over"));
drop.addEventListener("drop", (event) => {
  event.preventDefault();
  const file = event.dataTransfer.files[0];
  if (!file) return;
  imageInput.files = event.dataTransfer.files; // keep the file input in step with the drop
  setImage(file);
});
// A file dropped beside the drop zone would otherwise make the browser leave the page.
for (const type of ["dragover", "drop"]) window.addEventListener(type, (event) => event.preventDefault());

function readDataURI(file) {
  return new Promise((resolve, reject) => {
    const reader = new FileReader();
    reader.onload = () => resolve(reader.result);
    reader.onerror = () => reject(new Error(`Could not read ${file.name}.`));
    reader.readAsDataURL(file);
  });
}

/** imageUpload the chosen image (once per file); its imageUUID, or throws the error items. */
async function uploadImage(file) {
  if (uploads.has(file)) return uploads.get(file);
  const reply = await socket.request([{ taskType: "imageUpload", taskUUID: uuid4(), image: await readDataURI(file) }]);
  if (reply.errors.length) throw Object.assign(new Error("upload refused"), { items: reply.errors });
  const imageUUID = reply.data[0].imageUUID;
  uploads.set(file, imageUUID);
  return imageUUID;
}

// ------------------------------------------------------------------ form

function updatePreview() {
  const messages = [];
  if (image) {
    messages.push([{ taskType: "imageUpload", taskUUID: "<new UUID v4>", image: "data:image/…;base64,…" }]);
  }
  messages.push([buildTask(form, "<new UUID v4>", image ? "<imageUUID from imageUpload>" : undefined)]);
  $("request-preview").textContent = messages.map((m) => JSON.stringify(m, null, 2)).join("\n\n");
}

$("size").addEventListener("change", () => syncSize(form));
// Custom sizes snap to the 64 grid when edited, and when "exactly as typed" is switched off.
for (const id of ["width", "height", "raw"]) $(id).addEventListener("change", () => syncSize(form, { snapNow: true }));
form.addEventListener("input", updatePreview);
form.addEventListener("change", updatePreview);

$("reset").addEventListener("click", () => {
  form.reset();
  clearErrors(form);
  setImage(null);
  syncSize(form);
  updatePreview();
});

form.addEventListener("submit", async (event) => {
  event.preventDefault(); // never a native submit: nothing of the form may end up in a URL
  clearErrors(form);
  if (!socket.ready) {
    const why = keyInput.value.trim() ? "Not connected yet: wait for “Connected” at the top." : "Enter your API key and press Connect.";
    showErrors(document, [{ parameter: keyInput.value.trim() ? "" : "apiKey", message: why }]);
    return;
  }
  syncSize(form, { snapNow: true });
  const button = $("generate");
  button.disabled = true;
  try {
    let imageUUID;
    if (image) {
      button.textContent = "Uploading image…";
      imageUUID = await uploadImage(image);
    }
    button.textContent = "Sending…";
    const task = buildTask(form, uuid4(), imageUUID);
    const reply = await socket.request([task]);
    if (reply.errors.length) {
      showErrors(document, reply.errors)?.scrollIntoView({ block: "center", behavior: "smooth" });
      return;
    }
    tasks.accepted(task);
  } catch (error) {
    showErrors(document, error.items || [{ message: error.message }]);
  } finally {
    button.disabled = false;
    button.textContent = "Generate";
  }
});

// ------------------------------------------------------------------ start

describeRanges(form);
syncSize(form);
updatePreview();
showConnection("idle");
keyInput.value = sessionStorage.getItem(KEY_STORE) || "";
if (keyInput.value) socket.setKey(keyInput.value);
