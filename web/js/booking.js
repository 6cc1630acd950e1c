// Booking: one Idempotency-Key per attempt (reused when the same attempt is sent again), the answer read as a
// decision, and pending/queued requests followed on their status URL with back-off until they are final. Requests
// still awaiting a decision are remembered per user, so My bookings can show them and a reload keeps following them.
import { Offline, request } from "./api.js";
import { session } from "./auth.js";

const ATTEMPT = "stays.attempt";
const FIRST_POLL_MS = 1000;
const MAX_POLL_MS = 30_000;
const AUTO_RETRIES = 2; // for 429/503 with a short Retry-After
const MAX_AUTO_WAIT_S = 10;

// The key for this booking attempt: the same details as the last unanswered attempt → the same key, so the
// API recognises a re-send (after a lost answer) instead of booking twice.
function attemptKey(details) {
  const fingerprint = JSON.stringify(details);
  const saved = JSON.parse(sessionStorage.getItem(ATTEMPT) || "null");
  if (saved && saved.fingerprint === fingerprint) return saved.key;
  const key = crypto.randomUUID();
  sessionStorage.setItem(ATTEMPT, JSON.stringify({ fingerprint, key }));
  return key;
}

function attemptAnswered() {
  sessionStorage.removeItem(ATTEMPT);
}

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

function retryAfterSeconds(headers) {
  const value = Number(headers.get("Retry-After"));
  return Number.isFinite(value) && value >= 0 ? value : 1;
}

// Send the booking. Returns {kind, decision?, fields?, waitSeconds?}: kind is one of confirmed, pending,
// rejected, invalid, offline, busy, unreachable, forbidden, failed.
// `title` is remembered with a pending request, for the sentence that announces its final answer.
export async function book(details, { title = "", onWait = () => {} } = {}) {
  if (!navigator.onLine) return { kind: "offline" }; // never queued: nothing leaves while offline
  const key = attemptKey(details);
  for (let attempt = 0; ; attempt++) {
    let answer;
    try {
      answer = await request("/v1/bookings", { method: "POST", body: details, headers: { "Idempotency-Key": key }, auth: true });
    } catch (error) {
      if (error instanceof Offline) return { kind: navigator.onLine ? "unreachable" : "offline" };
      throw error;
    }
    const { status, body } = answer;
    if ((status === 429 || status === 503) && attempt < AUTO_RETRIES && retryAfterSeconds(answer.headers) <= MAX_AUTO_WAIT_S) {
      const wait = retryAfterSeconds(answer.headers);
      onWait(wait);
      await sleep(wait * 1000);
      continue;
    }
    if (status === 429 || status === 503) return { kind: "busy", waitSeconds: retryAfterSeconds(answer.headers) };
    if (status >= 500) return { kind: "failed" }; // the same key is reused if the person presses Book again
    attemptAnswered();
    if (status === 201) return { kind: "confirmed", decision: body };
    if (status === 202) {
      remember(body, { ...details, title });
      return { kind: "pending", decision: body };
    }
    if (status === 400) return { kind: "invalid", fields: body.fields || {} };
    if (status === 403) return { kind: "forbidden" };
    if (body.status === "rejected") return { kind: "rejected", decision: body };
    if (body.error === "idempotency_key_reused") return { kind: "rejected", decision: { status: "rejected", reason: body.error } };
    return { kind: "failed" };
  }
}

const following = new Map(); // booking key → the promise of its final decision: one poller per request

// Follow a pending/queued request until it is final; `onUpdate(decision)` on each answer. Waits while offline.
export function follow(key, statusUrl, onUpdate) {
  if (!following.has(key)) {
    following.set(key, poll(statusUrl, (decision) => listenersOf(key).forEach((listener) => listener(decision)))
      .finally(() => {
        following.delete(key);
        updateListeners.delete(key);
      }));
  }
  listenersOf(key).add(onUpdate);
  return following.get(key);
}

const updateListeners = new Map();

function listenersOf(key) {
  if (!updateListeners.has(key)) updateListeners.set(key, new Set());
  return updateListeners.get(key);
}

async function poll(statusUrl, onUpdate) {
  let delay = FIRST_POLL_MS;
  for (;;) {
    await sleep(delay);
    delay = Math.min(delay * 1.6, MAX_POLL_MS);
    if (!navigator.onLine) continue;
    let answer;
    try {
      answer = await request(statusUrl, { auth: true });
    } catch (error) {
      if (error instanceof Offline) continue;
      throw error;
    }
    if (answer.status !== 200) continue;
    update(answer.body);
    onUpdate(answer.body);
    if (answer.body.status === "confirmed" || answer.body.status === "rejected") return answer.body;
  }
}

// Cancel a request still awaiting a decision. Returns the decision after it (rejected/cancelled, or the final
// decision it already had), or null when the API cannot cancel it.
export async function cancel(key) {
  const answer = await request(`/v1/bookings/requests/${encodeURIComponent(key)}`, { method: "DELETE", auth: true });
  if (answer.status === 200) {
    update(answer.body);
    return answer.body;
  }
  if (answer.status === 409) {
    const now = await request(`/v1/bookings/requests/${encodeURIComponent(key)}`, { auth: true });
    if (now.status === 200) {
      update(now.body);
      return now.body;
    }
  }
  return null;
}

// ---- requests awaiting a decision, per signed-in user -------------------------------------------------------

function storageKey() {
  const current = session();
  return current ? `stays.requests.${current.sub}` : null;
}

export function awaiting() {
  const key = storageKey();
  return key ? JSON.parse(localStorage.getItem(key) || "[]") : [];
}

function save(list) {
  const key = storageKey();
  if (key) localStorage.setItem(key, JSON.stringify(list));
}

function remember(decision, details) {
  const list = awaiting().filter((item) => item.key !== decision.booking_key);
  const { payment_token: _card, ...stay } = details; // the card is not kept
  list.unshift({ key: decision.booking_key, statusUrl: decision.status_url, status: decision.status, ...stay });
  save(list);
}

// Keep the stored request in step with its latest decision; a final one is dropped (My bookings shows it).
function update(decision) {
  const list = awaiting();
  const final = decision.status === "confirmed" || decision.status === "rejected";
  save(final ? list.filter((item) => item.key !== decision.booking_key)
    : list.map((item) => (item.key === decision.booking_key ? { ...item, status: decision.status } : item)));
}
