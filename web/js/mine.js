// My bookings (with the requests still awaiting a decision, which can be cancelled) and My payments, newest first.
import { ApiError, currentUser, getJson, Offline } from "./api.js";
import { session, SignInNeeded } from "./auth.js";
import { awaiting, cancel } from "./booking.js";
import { nightsBetween } from "./dates.js";
import { BOOKING_STATUS, day, money, nightsText, PAYMENT_STATUS, refusal, when } from "./text.js";
import { go, h, screenRenderer, say } from "./ui.js";

const PAGE = 20;

// The signed-in user's id, or null after sending the person to sign in.
async function me(next) {
  if (!session()) {
    say("Please sign in to see your bookings and payments.", "info");
    go(`#/sign-in?${new URLSearchParams({ next })}`);
    return null;
  }
  try {
    return (await currentUser()).id;
  } catch (error) {
    if (error instanceof SignInNeeded) {
      say(error.message, "error");
      go(`#/sign-in?${new URLSearchParams({ next })}`);
      return null;
    }
    throw error;
  }
}

const titles = new Map(); // listing id → promise of its title

function titleOf(listingId) {
  if (!titles.has(listingId)) {
    titles.set(listingId, getJson(`/v1/listings/${listingId}`).then((answer) => answer.body.title, () => `Place ${listingId}`));
  }
  return titles.get(listingId);
}

// A paged list: fetches `path` with limit/cursor, renders each item with `item`, "Show more" while there are more.
async function pagedList(path, item, emptyText) {
  const list = h("ol", { class: "records" });
  const more = h("button", { type: "button", class: "more", hidden: true }, "Show more");
  const area = h("div", {}, list, more);
  let cursor = null;
  const load = async () => {
    const query = new URLSearchParams({ limit: String(PAGE) });
    if (cursor) query.set("cursor", cursor);
    const { body } = await getJson(`${path}?${query}`, { auth: true });
    const first = list.children.length;
    list.append(...(await Promise.all(body.items.map(item))));
    cursor = body.next_cursor;
    more.hidden = !cursor;
    if (list.children.length === 0) area.replaceChildren(h("p", { class: "quiet" }, emptyText));
    return first;
  };
  more.addEventListener("click", async () => {
    more.disabled = true;
    const first = await load();
    more.disabled = false;
    list.children[first]?.focus();
  });
  await load();
  return area;
}

function offlineOr(error, title, render) {
  if (error instanceof Offline) {
    render(title, h("p", {}, "You are offline. This page needs a connection."));
    return;
  }
  if (error instanceof ApiError) {
    render(title, h("p", {}, "This page cannot be shown just now. Please try again in a moment."));
    return;
  }
  throw error;
}

export async function bookingsScreen() {
  const render = screenRenderer();
  const title = "My bookings";
  const userId = await me("#/bookings");
  if (userId === null) return;
  try {
    const open = awaiting();
    const openKeys = new Set(open.map((request) => request.key));
    const bookings = await pagedList(`/v1/users/${userId}/bookings`, async (booking) => {
      const place = await titleOf(booking.listing_id);
      const status = openKeys.has(booking.booking_key) ? "Pending" : (BOOKING_STATUS[booking.status] || booking.status);
      return h("li", { class: `record ${booking.status}`, tabindex: "-1", "data-booking-key": booking.booking_key },
        h("a", { href: `#/listing/${booking.listing_id}` }, place),
        h("span", {}, `${day(booking.check_in)} – ${day(booking.check_out)} (${nightsText(nightsBetween(booking.check_in, booking.check_out))}, ${booking.guests} ${booking.guests === 1 ? "guest" : "guests"})`),
        h("span", {}, money(booking.amount_cents, booking.currency)),
        h("strong", { class: "state" }, status),
        h("small", {}, `Booking ${booking.id}, made ${when(booking.created_at)}`));
    }, "No bookings yet.");
    render(title,
      open.length ? h("section", { "aria-labelledby": "awaiting" },
        h("h2", { id: "awaiting" }, "Requests awaiting a decision"),
        h("ol", { class: "records" }, open.map(awaitingItem))) : null,
      h("section", { "aria-labelledby": "made" }, h("h2", { id: "made" }, "Bookings"), bookings));
  } catch (error) {
    offlineOr(error, title, render);
  }
}

function awaitingItem(request) {
  const describedBy = `request-${request.key}`;
  const button = h("button", { type: "button", "aria-describedby": describedBy }, "Cancel");
  const item = h("li", { class: "record awaiting", "data-booking-key": request.key },
    h("span", { id: describedBy }, `${request.title || `Place ${request.listing_id}`}, ${day(request.check_in)} – ${day(request.check_out)}`),
    h("strong", { class: "state" }, "Pending"),
    button);
  button.addEventListener("click", async () => {
    button.disabled = true;
    try {
      const decision = await cancel(request.key);
      if (!decision) {
        say("This request cannot be cancelled just now. Please try again in a moment.", "error");
        button.disabled = false;
        return;
      }
      say(decision.status === "confirmed" ? "This request had already been confirmed, so it was not cancelled." : refusal(decision),
        decision.status === "confirmed" ? "ok" : "info");
      item.querySelector(".state").textContent = decision.status === "confirmed" ? "Confirmed" : "Not booked";
      button.remove();
    } catch (error) {
      button.disabled = false;
      say(error instanceof Offline ? "You are offline, so the request was not cancelled." : "The request could not be cancelled just now.", "error");
    }
  });
  return item;
}

export async function paymentsScreen() {
  const render = screenRenderer();
  const title = "My payments";
  const userId = await me("#/payments");
  if (userId === null) return;
  try {
    const payments = await pagedList(`/v1/users/${userId}/payments`, (payment) => h("li", { class: `record ${payment.status}`, tabindex: "-1" },
      h("span", { class: "amount" }, money(payment.amount_cents, payment.currency)),
      h("strong", { class: "state" }, PAYMENT_STATUS[payment.status] || payment.status),
      h("span", {}, `for booking ${payment.booking_id}`),
      h("small", {}, `Recorded ${when(payment.created_at)}`)), "No payments yet.");
    render(title, payments);
  } catch (error) {
    offlineOr(error, title, render);
  }
}
