// The request form: builds a videoInference task from the inputs marked data-param, and puts
// the server's error items next to the input their `parameter` path names.

const GRID = 64; // width and height are multiples of 64 (the contract's step)

const $ = (id) => document.getElementById(id);

/** Every parameter input, by its dotted wire path (data-param). */
export function paramInputs(form) {
  return [...form.querySelectorAll("[data-param]")];
}

/** Write "range · default" under each numeric input, from the input's own attributes. */
export function describeRanges(form) {
  for (const input of paramInputs(form)) {
    if (input.type !== "number") continue;
    const parts = [];
    if (input.min && input.max) parts.push(`${input.min}–${input.max}`);
    else if (input.min) parts.push(`at least ${input.min}`);
    if (input.step && input.step !== "1") parts.push(`step ${input.step}`);
    parts.push(input.defaultValue ? `default ${input.defaultValue}` : `empty: ${input.placeholder || "left out"}`);
    const hint = document.createElement("p");
    hint.className = "hint range";
    hint.textContent = parts.join(" · ");
    input.after(hint);
  }
}

/** Nearest multiple of 64 within 128..2048. */
export function snap(value) {
  const n = Math.round(Number(value) / GRID) * GRID;
  return Math.min(2048, Math.max(128, n));
}

/** Set nested `path` ("a.b.c") in `obj`. */
function put(obj, path, value) {
  const keys = path.split(".");
  let node = obj;
  for (const key of keys.slice(0, -1)) node = node[key] ??= {};
  node[keys.at(-1)] = value;
}

/** A number input's value for the wire: absent when empty, exact digits for big integers. */
function numberValue(input) {
  const text = input.value.trim();
  if (text === "") return undefined;
  // Seeds reach 2^63-1, beyond what a JS number holds exactly: send the typed digits as is.
  if (/^-?\d+$/.test(text) && !Number.isSafeInteger(Number(text)) && JSON.rawJSON) {
    return JSON.rawJSON(text);
  }
  return Number(text);
}

/**
 * The videoInference task for the form's current values. `imageUUID` (from imageUpload) goes
 * into inputs.frameImages. Empty optional fields are left out, so the server's defaults apply.
 */
export function buildTask(form, taskUUID, imageUUID) {
  // Keys listed up front fix the order the JSON shows them in (undefined ones are left out).
  const task = { taskType: "videoInference", taskUUID, model: undefined, positivePrompt: undefined };
  Object.assign(task, { negativePrompt: undefined, inputs: undefined, deliveryMethod: "async", outputType: "URL" });
  for (const input of paramInputs(form)) {
    const path = input.dataset.param;
    let value;
    if (input.type === "checkbox") value = input.checked;
    else if (input.type === "number") value = numberValue(input);
    else value = input.value.trim() || undefined;
    if (path === "safety.mode") {
      // checkContent is the older switch; both are sent so either reading of the task agrees.
      if (value !== "none") task.safety = { checkContent: true, mode: value };
      continue;
    }
    if (value !== undefined) put(task, path, value);
  }
  if (imageUUID) task.inputs = { frameImages: [{ image: imageUUID, frame: "first" }] };
  return task;
}

/** Width/height from the size preset, or snapped custom values (unless raw mode is on). */
export function syncSize(form, { snapNow = false } = {}) {
  const preset = $("size").value;
  const custom = preset === "custom";
  $("custom-size").hidden = !custom;
  if (!custom) {
    const [w, h] = preset.split("x");
    $("width").value = w;
    $("height").value = h;
  } else if (snapNow && !$("raw").checked) {
    for (const input of [$("width"), $("height")]) {
      if (input.value.trim() !== "") input.value = String(snap(input.value));
    }
  }
}

// --------------------------------------------------------------------------- errors

/** Where to show an error about `parameter`: the slot whose path is its longest prefix. */
function errorSlot(root, parameter) {
  if (parameter === "image") parameter = "inputs.frameImages"; // imageUpload's own field
  const parts = (parameter || "").replace(/\[\d+\]/g, "").split(".");
  for (let n = parts.length; n > 0; n--) {
    const path = parts.slice(0, n).join(".");
    const slot = root.querySelector(`[data-error-for="${CSS.escape(path)}"]`);
    // (the slot itself is hidden while empty; a slot inside a hidden block is not shown)
    if (slot && !slot.parentElement.closest("[hidden]")) return slot;
  }
  return root.querySelector("#form-error");
}

// Extra words for codes whose fix is not obvious from the server's message alone.
const HINTS = {
  invalidApiKey: "Check the key, or create one with “ltxserve keys create”.",
  missingApiKey: "Enter an API key and connect first.",
  rateLimitExceeded: "Wait for a running task to finish, then try again.",
  conflictTaskUUID: "Press Generate again: the page makes a new taskUUID each time.",
  requestTooLarge: "Try a smaller image.",
  capacityExceeded: "Try a smaller size, a shorter video or fewer results.",
};

/** The words shown for an error item: the server's message, plus a hint for some codes. */
export function describeError(error) {
  const message = error.message || error.code || "The server refused the request.";
  const hint = HINTS[error.code];
  return hint ? `${message} ${hint}` : message;
}

export function clearErrors(root) {
  for (const slot of root.querySelectorAll(".field-error")) {
    slot.hidden = true;
    slot.textContent = "";
  }
  for (const input of root.querySelectorAll("[aria-invalid]")) input.removeAttribute("aria-invalid");
}

/**
 * Show error items next to the fields their `parameter` names (anywhere under `root`, the
 * API key field included); returns the first slot used, to scroll to it.
 */
export function showErrors(root, errors) {
  let first = null;
  for (const error of errors) {
    const slot = errorSlot(root, error.parameter);
    const details = slot.closest("details");
    if (details) details.open = true;
    const line = document.createElement("span");
    line.className = "error-line";
    // Errors with no field of their own say which parameter they are about.
    const prefix = slot.id === "form-error" && error.parameter ? `${error.parameter}: ` : "";
    line.textContent = prefix + describeError(error);
    if (slot.childNodes.length) slot.append(document.createElement("br"));
    slot.append(line);
    slot.hidden = false;
    const input = slot.closest(".field")?.querySelector("input, select, textarea");
    if (input) input.setAttribute("aria-invalid", "true");
    first ??= slot;
  }
  return first;
}
