// This tab's task history: state kept in sessionStorage, one card per task, one slot per result.
//
// Results reach a task three ways, all handled by applyMessage: the server's pushes on the
// connection that submitted it (progress, then the finished items), and getResponse replies
// (the fallback after a reconnect or a page reload, when no pushes come).

import { describeError } from "./form.js";

const STORE_KEY = "ltxserve.playground.tasks";
const KEEP = 30; // tasks kept in the history
const ACTIVE = new Set(["queued", "processing", "cancelling"]);

const el = (tag, props = {}, ...children) => {
  const node = Object.assign(document.createElement(tag), props);
  node.append(...children);
  return node;
};

/** Only http(s) URLs become a src/href (never javascript: or data: from a reply). */
function safeURL(url) {
  try {
    const parsed = new URL(url, location.href);
    return parsed.protocol === "http:" || parsed.protocol === "https:" ? parsed.href : null;
  } catch {
    return null;
  }
}

export class TaskList {
  constructor(list, empty, { onCancel, onEmpty }) {
    this.list = list;
    this.empty = empty;
    this.onCancel = onCancel;
    this.onEmpty = onEmpty;
    this.tasks = new Map(); // taskUUID -> task, oldest first
    this.cards = new Map(); // taskUUID -> <li>
    for (const task of this.#load()) this.add(task, { save: false });
    this.#toggleEmpty();
  }

  get active() {
    return [...this.tasks.values()].filter((t) => ACTIVE.has(t.status));
  }

  /** A task the server has accepted; `request` is the task object that was sent. */
  accepted(request) {
    const task = {
      uuid: request.taskUUID,
      createdAt: Date.now(),
      prompt: request.positivePrompt,
      summary: summarize(request),
      format: request.outputFormat || "MP4",
      safety: request.safety?.mode || "none",
      status: "queued",
      progress: null,
      results: Array.from({ length: Number(request.numberResults) || 1 }, () => ({ state: "pending" })),
    };
    this.add(task);
    return task;
  }

  add(task, { save = true } = {}) {
    task.lastHeard = Date.now();
    this.tasks.set(task.uuid, task);
    const card = this.#card(task);
    this.cards.set(task.uuid, card);
    this.list.prepend(card);
    this.render(task);
    if (save) this.save();
  }

  clear() {
    // Running tasks stay: they are still the user's, and their results are still coming.
    for (const task of [...this.tasks.values()]) {
      if (ACTIVE.has(task.status)) continue;
      this.tasks.delete(task.uuid);
      this.cards.get(task.uuid)?.remove();
      this.cards.delete(task.uuid);
    }
    this.save();
    this.#toggleEmpty();
  }

  /** Apply one server message ({data, errors}) to the tasks it mentions. */
  applyMessage({ data, errors }) {
    const touched = new Set();
    const finals = new Map(); // taskUUID -> finished items of this message
    for (const item of data) {
      const task = this.tasks.get(item.taskUUID);
      if (!task || item.taskType !== "videoInference") continue;
      task.lastHeard = Date.now();
      touched.add(task);
      if (item.status === "processing") {
        if (ACTIVE.has(task.status) && task.status !== "cancelling") task.status = "processing";
        if (typeof item.progress === "number") task.progress = Math.max(task.progress ?? 0, item.progress);
        // queue position while it waits, estimated seconds to finish (extra fields of ltxserve)
        task.position = typeof item.queuePosition === "number" ? item.queuePosition : null;
        if (typeof item.etaSeconds === "number") task.etaAt = Date.now() + item.etaSeconds * 1000;
      } else if (item.status === "success" || item.videoUUID) {
        finals.set(task.uuid, [...(finals.get(task.uuid) || []), { ok: true, item }]);
      }
    }
    for (const error of errors) {
      const task = this.tasks.get(error.taskUUID);
      if (!task) continue;
      task.lastHeard = Date.now();
      touched.add(task);
      if (error.taskType === "getResponse") {
        // The server does not know the task (another key, or it was cleaned up).
        this.#finish(task, task.results.map(() => ({ ok: false, item: error })));
      } else if (error.taskType === "taskCancel") {
        task.note = describeError(error);
        if (task.status === "cancelling") task.status = "processing";
      } else {
        finals.set(task.uuid, [...(finals.get(task.uuid) || []), { ok: false, item: error }]);
      }
    }
    for (const [uuid, items] of finals) this.#finish(this.tasks.get(uuid), items);
    for (const task of touched) this.render(task);
    if (touched.size) this.save();
  }

  cancelling(task) {
    task.status = "cancelling";
    task.note = "";
    this.render(task);
  }

  // The server reports all of a task's results together once it ends (getResponse repeats
  // them on every poll), so the first finished message is the whole answer.
  #finish(task, items) {
    if (!ACTIVE.has(task.status)) return;
    const successes = items.filter((i) => i.ok);
    const failures = items.filter((i) => !i.ok);
    task.results = [...successes, ...failures].map(({ ok, item }) =>
      ok
        ? {
            state: "success",
            videoUUID: item.videoUUID,
            videoURL: item.videoURL,
            seed: item.seed === undefined ? null : String(item.seed), // BigInt-safe, storable
            cost: item.cost ?? null,
            nsfw: item.NSFWContent ?? null,
          }
        : { state: "error", code: item.code, message: describeError(item) },
    );
    const cancelled = failures.some((f) => f.item.code === "taskCancelled");
    task.status = failures.length === 0 ? "done" : cancelled ? "cancelled" : successes.length ? "done" : "failed";
    if (failures.some((f) => f.item.code === "taskNotFound")) task.status = "lost";
    task.finishedAt = Date.now();
  }

  // ------------------------------------------------------------------ rendering

  #card(task) {
    const cancel = el("button", { type: "button", className: "cancel", textContent: "Cancel" });
    cancel.addEventListener("click", () => this.onCancel(task));
    return el(
      "li",
      { className: "task" },
      el(
        "header",
        {},
        el("span", { className: "prompt", textContent: task.prompt }),
        el("span", { className: "status" }),
        cancel,
      ),
      el("p", { className: "meta", textContent: `${task.summary} · taskUUID ${task.uuid}` }),
      el("div", { className: "slots" }),
    );
  }

  /** Bring a task's card up to date; result slots are rebuilt only when their state changes. */
  render(task) {
    const card = this.cards.get(task.uuid);
    if (!card) return;
    card.dataset.status = task.status;
    card.dataset.taskUuid = task.uuid;
    card.querySelector(".status").textContent = statusText(task);
    card.querySelector(".cancel").hidden = !ACTIVE.has(task.status);
    card.querySelector(".cancel").disabled = task.status === "cancelling";
    const slots = card.querySelector(".slots");
    task.results.forEach((result, index) => {
      let slot = slots.children[index];
      if (!slot) slot = slots.appendChild(el("div", { className: "slot" }));
      if (slot.dataset.state !== result.state) {
        slot.dataset.state = result.state;
        slot.replaceChildren(...this.#slotContent(task, result, index));
      }
      if (result.state === "pending") updateProgress(slot, task, task.results.length > 1 ? `Result ${index + 1} · ` : "");
    });
    this.#toggleEmpty();
  }

  #slotContent(task, result, index) {
    const label = task.results.length > 1 ? `Result ${index + 1}: ` : "";
    if (result.state === "pending") {
      return [el("p", { className: "slot-status" }), el("progress", { max: 100 })];
    }
    if (result.state === "error") {
      return [el("p", { className: "error", textContent: label + result.message })];
    }
    const url = safeURL(result.videoURL);
    const video = el("video", { controls: true, preload: "metadata", playsInline: true });
    const shape = el("dd", { textContent: "…" });
    video.addEventListener("loadedmetadata", () => {
      shape.textContent = `${video.videoWidth}×${video.videoHeight}, ${video.duration.toFixed(2)} s`;
      // preload="metadata" leaves the player black; seeking a hair in paints the first frame
      // while downloading only what that frame needs.
      if (video.currentTime === 0 && video.paused) video.currentTime = 0.001;
    }, { once: true });
    video.addEventListener("error", () => {
      // Chrome reports an expired file (404) and an unplayable format alike.
      shape.textContent = `cannot be played here (expired, or ${task.format} unsupported by this browser)`;
    });
    if (url) video.src = url;
    const nsfw =
      result.nsfw === null ? "not reported" : result.nsfw ? "yes — flagged" : task.safety === "none" ? "no (not checked)" : "no";
    const cost = result.cost === null ? "not requested (includeCost)" : `$${Number(result.cost).toFixed(4)}`;
    const download = el("a", { textContent: `Download ${task.format}`, className: "download" });
    if (url) {
      download.href = url;
      download.download = `ltx-${result.seed ?? result.videoUUID}.${task.format.toLowerCase()}`;
    }
    shape.dataset.field = "shape";
    return [
      video,
      el(
        "dl",
        {},
        ...row("Seed", result.seed ?? "—", "seed"),
        ...row("Cost", cost, "cost"),
        ...row("NSFW", nsfw, "nsfw"),
        ...row("Format", task.format, "format"),
        el("dt", { textContent: "Video" }),
        shape,
      ),
      download,
    ];
  }

  #toggleEmpty() {
    this.empty.hidden = this.tasks.size > 0;
    this.onEmpty?.(this.tasks.size === 0);
  }

  // ------------------------------------------------------------------ storage

  save() {
    const tasks = [...this.tasks.values()].slice(-KEEP);
    try {
      const transient = new Set(["lastHeard", "lastPolled"]);
      sessionStorage.setItem(STORE_KEY, JSON.stringify(tasks, (key, value) => (transient.has(key) ? undefined : value)));
    } catch {
      // Storage full or disabled: the history simply does not survive a reload.
    }
  }

  #load() {
    try {
      const tasks = JSON.parse(sessionStorage.getItem(STORE_KEY) || "[]");
      return Array.isArray(tasks) ? tasks.filter((t) => t && t.uuid && Array.isArray(t.results)) : [];
    } catch {
      return [];
    }
  }
}

/** A <dt>/<dd> pair; data-field names the value for tests and scripts. */
function row(term, value, field) {
  const dd = el("dd", { textContent: value });
  dd.dataset.field = field;
  return [el("dt", { textContent: term }), dd];
}

/** Progress bar and words of a pending result slot. */
function updateProgress(slot, task, label) {
  const bar = slot.querySelector("progress");
  const words = slot.querySelector(".slot-status");
  if (task.progress === null) {
    bar.removeAttribute("value"); // indeterminate until the first progress report
  } else {
    bar.value = task.progress;
  }
  const waiting = task.status === "queued" || task.position;
  words.textContent =
    label + (waiting ? `waiting for a worker${queued(task)}…` : `${task.progress ?? 0}%`) + etaText(task);
}

/** " (#2 in the queue)" while the server reports a queue position. */
function queued(task) {
  return task.position ? ` (#${task.position} in the queue)` : "";
}

/** " · about 12 s left", counting down from the server's last estimate. */
function etaText(task) {
  if (!task.etaAt || !ACTIVE.has(task.status)) return "";
  const left = Math.max(0, Math.round((task.etaAt - Date.now()) / 1000));
  return left > 0 ? ` · about ${left} s left` : " · finishing";
}

function statusText(task) {
  const seconds = Math.round(((task.finishedAt || Date.now()) - task.createdAt) / 1000);
  const note = task.note ? ` — ${task.note}` : "";
  switch (task.status) {
    case "queued":
      return `Queued${queued(task)}${etaText(task)} · ${seconds} s${note}`;
    case "processing":
      if (task.position) return `Queued${queued(task)}${etaText(task)} · ${seconds} s${note}`;
      return `Generating ${task.progress ?? 0}%${etaText(task)} · ${seconds} s${note}`;
    case "cancelling":
      return "Cancelling…";
    case "done":
      return `Done in ${seconds} s`;
    case "cancelled":
      return "Cancelled";
    case "lost":
      return "Unknown to the server";
    default:
      return "Failed";
  }
}

/** One line describing a request, for the card. */
function summarize(r) {
  const parts = [];
  if (r.width !== undefined || r.height !== undefined) parts.push(`${r.width ?? "?"}×${r.height ?? "?"}`);
  if (r.duration !== undefined) parts.push(`${r.duration} s`);
  if (r.fps !== undefined) parts.push(`${r.fps} fps`);
  if (r.steps !== undefined) parts.push(`${r.steps} steps`);
  parts.push(r.outputFormat || "MP4");
  if (r.inputs?.frameImages) parts.push("first-frame image");
  return parts.join(" · ");
}
