// DOM helpers shared by the screens: build elements without innerHTML (API text is never parsed as HTML), the one
// status region, the offline notice.

export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs)) {
    if (value === false || value === null || value === undefined) continue;
    if (name.startsWith("on")) el.addEventListener(name.slice(2), value);
    else if (name === "class") el.className = value;
    else el.setAttribute(name, value === true ? "" : value);
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined || child === false) continue;
    el.append(child instanceof Node ? child : String(child));
  }
  return el;
}

let fieldIds = 0;

// A labelled input (the label is what people and tests find it by); `hint` is read out with the field.
export function field(label, attrs = {}, hint = "") {
  const id = attrs.id || `f${++fieldIds}`;
  const hintId = hint ? `${id}-hint` : null;
  const control = attrs.tag === "select"
    ? h("select", { id, name: attrs.name, "aria-describedby": hintId }, attrs.options || [])
    : h("input", { id, "aria-describedby": hintId, ...attrs });
  return h("div", { class: "field" },
    h("label", { for: id }, label),
    control,
    hint ? h("small", { id: hintId }, hint) : null);
}

const statusEl = () => document.getElementById("status");

// The status region: "Confirmed", "Pending", or a plain sentence. kind: info | ok | pending | error.
export function say(text, kind = "info") {
  const el = statusEl();
  el.dataset.kind = kind;
  el.textContent = text;
}

export function clearStatus() {
  const el = statusEl();
  el.textContent = "";
  delete el.dataset.kind;
}

export function showOffline(text) {
  const el = document.getElementById("offline-notice");
  el.textContent = text;
  el.hidden = false;
}

export function hideOffline() {
  document.getElementById("offline-notice").hidden = true;
}

let generation = 0;

// A new screen starts (every navigation): screens still loading for an earlier one no longer draw.
export function nextScreen() {
  generation += 1;
}

// `render` for the screen starting now: a no-op once the person has navigated elsewhere meanwhile, so a slow
// answer for an earlier screen never replaces the current one.
export function screenRenderer() {
  const mine = generation;
  return (title, ...content) => (mine === generation ? render(title, ...content) : null);
}

// Replace the main area with a screen and move focus to its heading, so a keyboard or screen-reader user lands
// on the new content rather than at the top of the page.
function render(title, ...content) {
  const main = document.getElementById("main");
  const heading = h("h1", { tabindex: "-1" }, title);
  main.replaceChildren(heading, ...content.filter(Boolean));
  document.title = `${title} · Stays`;
  if (document.activeElement === document.body || !main.contains(document.activeElement)) {
    heading.focus({ preventScroll: true });
  }
  return main;
}

let keepStatus = false;

// Navigate to another screen keeping what the status region says ("Please sign in to book." on the sign-in
// screen); any other navigation starts with an empty status region.
export function go(hash) {
  keepStatus = true;
  if (location.hash === hash) window.dispatchEvent(new HashChangeEvent("hashchange"));
  else location.hash = hash;
}

export function statusKeptForThisScreen() {
  const kept = keepStatus;
  keepStatus = false;
  return kept;
}
