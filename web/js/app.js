// The app: hash routes → screens, the header's sign-in state, the offline notice, the service worker.
import { confirmScreen, signInScreen, signUpScreen } from "./account.js";
import { forgetUser } from "./api.js";
import { onSessionChange, session, signOut } from "./auth.js";
import { awaiting, follow } from "./booking.js";
import { nightsBetween } from "./dates.js";
import { listingScreen } from "./listing.js";
import { bookingsScreen, paymentsScreen } from "./mine.js";
import { searchScreen } from "./search.js";
import { confirmed, refusal } from "./text.js";
import { clearStatus, go, h, hideOffline, nextScreen, say, screenRenderer, showOffline, statusKeptForThisScreen } from "./ui.js";

const ROUTES = [
  [/^\/$/, (match, params) => searchScreen(params)],
  [/^\/listing\/(\d+)$/, (match, params) => listingScreen(Number(match[1]), params)],
  [/^\/sign-in$/, (match, params) => signInScreen(params)],
  [/^\/sign-up$/, (match, params) => signUpScreen(params)],
  [/^\/confirm$/, (match, params) => confirmScreen(params)],
  [/^\/bookings$/, () => bookingsScreen()],
  [/^\/payments$/, () => paymentsScreen()],
];

async function show() {
  const raw = location.hash.slice(1) || "/";
  if (!raw.startsWith("/")) return; // an in-page anchor such as #main, not a route
  const [path, query = ""] = raw.split("?");
  nextScreen();
  if (!statusKeptForThisScreen()) clearStatus();
  if (navigator.onLine) hideOffline();
  else showOffline(OFFLINE);
  markCurrent(path);
  const params = new URLSearchParams(query);
  for (const [pattern, screen] of ROUTES) {
    const match = path.match(pattern);
    if (match) {
      try {
        await screen(match, params);
      } catch (error) {
        console.error(error);
        say("Something went wrong while showing this page. Please reload it.", "error");
      }
      return;
    }
  }
  screenRenderer()("Page not found", h("p", {}, h("a", { href: "#/" }, "Go to search")));
}

function markCurrent(path) {
  for (const link of document.querySelectorAll("nav a")) {
    if (new URL(link.href).hash.slice(1).split("?")[0] === path) link.setAttribute("aria-current", "page");
    else link.removeAttribute("aria-current");
  }
}

function showAccount(current) {
  const who = document.getElementById("who");
  who.textContent = current ? `Signed in as ${current.name || current.email}` : "";
  document.getElementById("sign-in-link").hidden = Boolean(current);
  document.getElementById("sign-out").hidden = !current;
}

const OFFLINE = "You are offline. Saved search results can still be seen; booking needs a connection.";

// Requests still awaiting a decision when the app (re)opens: keep following them and say how they end.
function resumeFollowing() {
  for (const request of awaiting()) {
    follow(request.key, request.statusUrl, (decision) => {
      if (decision.status === "confirmed") say(confirmed(decision, nightsBetween(request.check_in, request.check_out), request.title), "ok");
      else if (decision.status === "rejected") say(refusal(decision), "error");
    }).catch(() => {});
  }
}

document.getElementById("sign-out").addEventListener("click", () => {
  signOut();
  say("You are signed out.", "info");
  go("#/");
});

let signedIn = Boolean(session());
onSessionChange((current) => {
  forgetUser();
  showAccount(current);
  if (current && !signedIn) resumeFollowing(); // a token refresh is not a new sign-in
  signedIn = Boolean(current);
});

window.addEventListener("hashchange", show);
window.addEventListener("offline", () => showOffline(OFFLINE));
window.addEventListener("online", () => {
  hideOffline();
  if ((location.hash.slice(1) || "/").split("?")[0] === "/") show(); // fresh results instead of the saved ones
});

if ("serviceWorker" in navigator) {
  navigator.serviceWorker.register("sw.js").catch((error) => console.warn("no offline support:", error));
}

showAccount(session());
show();
if (signedIn) resumeFollowing();
