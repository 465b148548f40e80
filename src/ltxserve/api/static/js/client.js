// A small Runware WebSocket client: authenticate, keep alive, reconnect, match replies.
//
// It speaks only the public protocol (the same one the SDKs use):
//   -> [{"taskType":"authentication","apiKey":K, "connectionSessionUUID"?: S}]
//   <- {"data":[{"taskType":"authentication","connectionSessionUUID":S}]} or {"errors":[...]}
//   -> [{"taskType":"ping","ping":true}]  <- {"data":[{"taskType":"ping","pong":true}]}
// Every other message is a task array; replies and server pushes are {"data":[...]} and/or
// {"errors":[...]} whose items carry the taskUUID they belong to.

const PING_EVERY_MS = 20_000;
// No message at all for this long (pongs included) means the link is dead even if the
// browser has not noticed yet (sleeping laptop, dropped Wi-Fi): drop it and reconnect.
const DEAD_AFTER_MS = 50_000;
const BACKOFF_MS = [500, 1_000, 2_000, 4_000, 8_000, 15_000];
const REQUEST_TIMEOUT_MS = 60_000;

/** JSON.parse that keeps integers beyond 2^53 exact (seeds go up to 2^63-1) as BigInt. */
export function parseJSON(text) {
  return JSON.parse(text, (_key, value, context) => {
    if (typeof value === "number" && !Number.isSafeInteger(value) && context && /^-?\d+$/.test(context.source)) {
      return BigInt(context.source);
    }
    return value;
  });
}

/**
 * States (the "state" event's detail.state):
 *   idle            no key, nothing to do
 *   connecting      opening the socket
 *   authenticating  socket open, authentication sent
 *   ready           authenticated: tasks may be sent
 *   auth-failed     the server refused the key (no retries until the key changes)
 *   waiting         connection lost; detail.retryAt says when the next attempt starts
 * Events: "state", "message" (detail: the parsed envelope), "auth-error" (detail: error item).
 */
export class RunwareSocket extends EventTarget {
  constructor(url) {
    super();
    this.url = url;
    this.key = "";
    this.ws = null;
    this.state = "idle";
    this.sessionUUID = null; // sent back on reconnect so the server can resume the session
    this.attempt = 0;
    this.retryTimer = null;
    this.lastMessageAt = 0;
    this.pending = []; // [{uuids:Set, resolve, reject, timer}] in send order
    this.pingTimer = setInterval(() => this.#keepAlive(), PING_EVERY_MS);
  }

  /** Use this key from now on: (re)authenticates, or disconnects for an empty key. */
  setKey(key) {
    this.key = key;
    if (!key) {
      this.#close();
      this.#setState("idle");
    } else if (this.ws && this.ws.readyState === WebSocket.OPEN) {
      this.#authenticate();
    } else {
      this.connectNow();
    }
  }

  /** Connect at once (the "Retry now" button), skipping any backoff still to wait. */
  connectNow() {
    clearTimeout(this.retryTimer);
    this.retryTimer = null;
    if (!this.key) return;
    this.#close();
    this.#setState("connecting");
    const ws = new WebSocket(this.url);
    this.ws = ws;
    ws.onopen = () => this.#authenticate();
    ws.onmessage = (event) => this.#receive(event.data);
    ws.onclose = () => this.#lost(ws);
    // onerror is always followed by onclose, which handles it.
  }

  get ready() {
    return this.state === "ready";
  }

  /** Send a task array; false when not authenticated (nothing is queued behind the user's back). */
  send(tasks) {
    if (!this.ready) return false;
    this.ws.send(JSON.stringify(tasks));
    return true;
  }

  /**
   * Send tasks and resolve with the first reply about any of them: {data, errors} holding the
   * items with one of their taskUUIDs and taskTypes (taskCancel shares its taskUUID with the
   * videoInference it cancels, whose pushes must not count as the reply). Rejects if the
   * connection drops first.
   */
  request(tasks) {
    const keys = new Set(tasks.map((t) => `${t.taskType}/${t.taskUUID}`));
    return new Promise((resolve, reject) => {
      if (!this.send(tasks)) {
        reject(new Error("Not connected to the server."));
        return;
      }
      const entry = { keys, resolve, reject };
      entry.timer = setTimeout(() => {
        this.pending = this.pending.filter((p) => p !== entry);
        reject(new Error("The server did not answer in time."));
      }, REQUEST_TIMEOUT_MS);
      this.pending.push(entry);
    });
  }

  #authenticate() {
    this.#setState("authenticating");
    const task = { taskType: "authentication", apiKey: this.key };
    if (this.sessionUUID) task.connectionSessionUUID = this.sessionUUID;
    this.ws.send(JSON.stringify([task]));
  }

  #keepAlive() {
    if (!this.ws || this.ws.readyState !== WebSocket.OPEN) return;
    if (Date.now() - this.lastMessageAt > DEAD_AFTER_MS) {
      this.#lost(this.ws);
      return;
    }
    this.ws.send(JSON.stringify([{ taskType: "ping", ping: true }]));
  }

  #receive(text) {
    this.lastMessageAt = Date.now();
    let body;
    try {
      body = parseJSON(text);
    } catch {
      return; // not ours to handle: the server only sends JSON
    }
    const data = Array.isArray(body.data) ? body.data : [];
    const errors = Array.isArray(body.errors) ? body.errors : [];
    for (const item of data) {
      if (item.taskType === "authentication") {
        this.sessionUUID = item.connectionSessionUUID || this.sessionUUID;
        this.attempt = 0; // backoff restarts only once the server has really accepted us
        this.#setState("ready");
      }
    }
    for (const error of errors) {
      if (error.taskType === "authentication" || error.code === "invalidApiKey") {
        this.sessionUUID = null;
        this.#setState("auth-failed");
        this.dispatchEvent(new CustomEvent("auth-error", { detail: error }));
      }
    }
    this.#settle(data, errors);
    this.dispatchEvent(new CustomEvent("message", { detail: { data, errors } }));
  }

  // Resolve the requests this message answers. An error without a taskUUID (a malformed or
  // oversized message) can only answer the oldest request: the server replies in order.
  #settle(data, errors) {
    for (const entry of [...this.pending]) {
      const mine = (item) => entry.keys.has(`${item.taskType}/${item.taskUUID}`);
      let reply = { data: data.filter(mine), errors: errors.filter(mine) };
      if (!reply.data.length && !reply.errors.length && entry === this.pending[0]) {
        const orphans = errors.filter((e) => !e.taskUUID && e.taskType !== "authentication");
        if (orphans.length) reply = { data: [], errors: orphans };
      }
      if (reply.data.length || reply.errors.length) {
        clearTimeout(entry.timer);
        this.pending = this.pending.filter((p) => p !== entry);
        entry.resolve(reply);
      }
    }
  }

  #lost(ws) {
    if (ws !== this.ws) return; // an old socket we already replaced
    this.#close();
    for (const entry of this.pending) {
      clearTimeout(entry.timer);
      entry.reject(new Error("The connection was lost before the server answered."));
    }
    this.pending = [];
    if (!this.key) {
      this.#setState("idle");
      return;
    }
    if (this.state === "auth-failed") return; // retrying a refused key only hammers the server
    const base = BACKOFF_MS[Math.min(this.attempt, BACKOFF_MS.length - 1)];
    const delay = Math.round(base * (0.8 + Math.random() * 0.4)); // jitter: not all tabs at once
    this.attempt += 1;
    this.retryTimer = setTimeout(() => this.connectNow(), delay);
    this.#setState("waiting", { retryAt: Date.now() + delay, attempt: this.attempt });
  }

  #close() {
    const ws = this.ws;
    this.ws = null;
    if (!ws) return;
    ws.onopen = ws.onmessage = ws.onclose = null;
    if (ws.readyState === WebSocket.OPEN || ws.readyState === WebSocket.CONNECTING) ws.close();
  }

  #setState(state, extra = {}) {
    this.state = state;
    this.dispatchEvent(new CustomEvent("state", { detail: { state, ...extra } }));
  }
}
