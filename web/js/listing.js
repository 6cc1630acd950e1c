// A listing: its details, a month of availability (free/booked, the chosen stay highlighted), and booking it.
import { ApiError, getJson, Offline } from "./api.js";
import { SignInNeeded, session } from "./auth.js";
import { book, follow } from "./booking.js";
import { addDays, addMonths, firstDay, isIsoDate, monthName, monthOf, nightsBetween, today, WEEKDAY_NAMES, WEEKDAYS, weeksOf } from "./dates.js";
import { CARDS, confirmed, day, fieldProblems, money, nightsText, pending, refusal } from "./text.js";
import { field, go, h, screenRenderer, say } from "./ui.js";

export async function listingScreen(id, params) {
  const render = screenRenderer();
  let listing;
  try {
    listing = (await getJson(`/v1/listings/${id}`)).body;
  } catch (error) {
    if (error instanceof Offline) {
      render("Place", h("p", {}, "You are offline. A place's details and free dates need a connection."));
      return;
    }
    if (error instanceof ApiError && error.response.status === 404) {
      render("Place not found", h("p", {}, "This place is not listed. "), h("a", { href: "#/" }, "Back to search"));
      return;
    }
    throw error;
  }

  const stay = { checkIn: params.get("check_in") || "", checkOut: params.get("check_out") || "" };
  let month = monthOf(isIsoDate(stay.checkIn) ? stay.checkIn : today());

  const form = h("form", { class: "book", novalidate: true, "aria-label": "Book this place" },
    field("Check-in", { name: "check_in", type: "date", value: stay.checkIn, min: today(), required: true }),
    field("Check-out", { name: "check_out", type: "date", value: stay.checkOut, min: today(), required: true }),
    field("Guests", { name: "guests", type: "number", min: "1", max: String(listing.max_guests), value: params.get("guests") || "1", required: true, inputmode: "numeric" }),
    field("Card", { tag: "select", name: "card", options: CARDS.map(([token, name]) => h("option", { value: token }, name)) },
      "Sandbox cards: nothing real is charged"),
    h("p", { class: "total", "aria-live": "polite" }),
    h("button", { type: "submit", class: "primary" }, "Book"));
  const totalLine = form.querySelector(".total");
  const bookButton = form.querySelector("button[type=submit]");

  const caption = h("span", { class: "month-name", "aria-live": "polite" });
  const grid = h("div", { class: "calendar-grid" });
  const calendar = h("section", { class: "calendar", "aria-label": "Availability" },
    h("h2", {}, "Availability"),
    h("div", { class: "month-nav" },
      h("button", { type: "button", onclick: () => showMonth(addMonths(month, -1)) }, "Previous month"),
      caption,
      h("button", { type: "button", onclick: () => showMonth(addMonths(month, 1)) }, "Next month")),
    grid,
    h("ul", { class: "legend", "aria-label": "Legend" },
      h("li", { class: "free" }, "Free"), h("li", { class: "booked" }, "Booked"), h("li", { class: "stay" }, "Your stay")));

  render(listing.title,
    h("p", { class: "facts" },
      h("span", {}, listing.city), h("span", {}, `Up to ${listing.max_guests} ${listing.max_guests === 1 ? "guest" : "guests"}`),
      h("span", {}, `${money(listing.nightly_price_cents, listing.currency)} per night`),
      listing.active ? null : h("strong", {}, "Not taking bookings")),
    h("div", { class: "listing-layout" }, calendar, form));

  const chosen = () => ({ checkIn: form.elements.check_in.value, checkOut: form.elements.check_out.value });

  function showTotal() {
    const { checkIn, checkOut } = chosen();
    const nights = isIsoDate(checkIn) && isIsoDate(checkOut) ? nightsBetween(checkIn, checkOut) : 0;
    totalLine.textContent = nights > 0
      ? `${nightsText(nights)} × ${money(listing.nightly_price_cents, listing.currency)} = ${money(listing.nightly_price_cents * nights, listing.currency)}`
      : "Choose your dates to see the total.";
  }

  let nights = new Map(); // date → free | booked, for the month shown
  const confirmedHere = new Set(); // nights booked from this page
  async function showMonth(wanted) {
    month = wanted;
    caption.textContent = monthName(month);
    try {
      const answer = await getJson(`/v1/listings/${id}/availability?from=${firstDay(month)}&to=${firstDay(addMonths(month, 1))}`);
      if (month !== wanted) return; // the person has moved on to another month meanwhile
      nights = new Map(answer.body.nights.map((night) => [night.date, confirmedHere.has(night.date) ? "booked" : night.status]));
    } catch (error) {
      if (!(error instanceof Offline)) throw error;
      nights = new Map();
    }
    drawMonth();
  }

  function drawMonth() {
    const { checkIn, checkOut } = chosen();
    const inStay = (date) => isIsoDate(checkIn) && isIsoDate(checkOut) && date >= checkIn && date < checkOut;
    const past = today();
    const table = h("table", {},
      h("caption", { class: "visually-hidden" }, `${monthName(month)}: free and booked nights`),
      h("thead", {}, h("tr", {}, WEEKDAYS.map((name, i) => h("th", { scope: "col", abbr: WEEKDAY_NAMES[i] }, name)))),
      h("tbody", {}, weeksOf(month).map((week) => h("tr", {}, week.map((date) => {
        if (!date) return h("td", { class: "empty" });
        const status = date < past ? "past" : (nights.get(date) || "unknown");
        const words = [status === "past" ? "past" : status === "unknown" ? "" : status, inStay(date) ? "your stay" : ""].filter(Boolean);
        return h("td", { class: `night ${status}${inStay(date) ? " stay" : ""}`, "data-date": date, "data-status": status },
          h("span", { "aria-hidden": "true" }, String(Number(date.slice(8)))),
          h("span", { class: "visually-hidden" }, `${day(date)}${words.length ? `: ${words.join(", ")}` : ""}`));
      })))));
    grid.replaceChildren(table);
  }

  // After a decision the month is read again, now and a few times more: the read model follows the bookings a
  // moment later (a declined card's hold shows as booked until its release is applied). Nights this page saw
  // confirmed stay booked meanwhile.
  function refreshAfterDecision(decision, checkIn, checkOut) {
    if (decision.status === "confirmed") {
      for (let night = checkIn; night < checkOut; night = addDays(night, 1)) confirmedHere.add(night);
    }
    const shown = month;
    showMonth(shown);
    for (const delay of [1500, 5000, 15000]) setTimeout(() => grid.isConnected && month === shown && showMonth(shown), delay);
  }

  form.addEventListener("input", (event) => {
    showTotal();
    const { checkIn } = chosen();
    if (event.target.name === "check_in" && isIsoDate(checkIn) && monthOf(checkIn) !== month) showMonth(monthOf(checkIn));
    else drawMonth();
  });

  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const { checkIn, checkOut } = chosen();
    const guests = Number(form.elements.guests.value);
    const wrong = !isIsoDate(checkIn) || !isIsoDate(checkOut) ? "Please choose a check-in and a check-out date."
      : checkIn < today() ? "The check-in date must not be in the past."
        : checkOut <= checkIn ? "The check-out date must be after the check-in date."
          : !(guests >= 1) ? "Guests must be at least 1."
            : guests > listing.max_guests ? `This place hosts at most ${listing.max_guests} ${listing.max_guests === 1 ? "guest" : "guests"}.` : "";
    if (wrong) {
      say(wrong, "error");
      return;
    }
    if (!session()) {
      const back = `#/listing/${id}?${new URLSearchParams({ check_in: checkIn, check_out: checkOut, guests: String(guests) })}`;
      say("Please sign in to book. Your dates are kept.", "info");
      go(`#/sign-in?${new URLSearchParams({ next: back })}`);
      return;
    }
    const details = { listing_id: id, check_in: checkIn, check_out: checkOut, guests, payment_token: form.elements.card.value };
    const stayNights = nightsBetween(checkIn, checkOut);
    bookButton.disabled = true;
    form.setAttribute("aria-busy", "true");
    say("Sending your booking…", "info");
    try {
      const result = await book(details, {
        title: listing.title,
        onWait: (seconds) => say(`The booking service is busy; trying again in ${seconds} ${seconds === 1 ? "second" : "seconds"}.`, "info"),
      });
      announce(result, stayNights);
      if (result.kind === "pending") {
        follow(result.decision.booking_key, result.decision.status_url, (decision) => {
          if (decision.status === "confirmed" || decision.status === "rejected") {
            announce({ kind: decision.status, decision }, stayNights);
            refreshAfterDecision(decision, checkIn, checkOut);
          }
        }).catch(() => {});
      }
      if (["confirmed", "rejected"].includes(result.kind)) refreshAfterDecision(result.decision, checkIn, checkOut);
    } catch (error) {
      if (!(error instanceof SignInNeeded)) throw error;
      say(error.message, "error");
      go(`#/sign-in?${new URLSearchParams({ next: location.hash })}`);
    } finally {
      bookButton.disabled = false;
      form.removeAttribute("aria-busy");
    }
  });

  function announce(result, stayNights) {
    const sentences = {
      confirmed: () => [confirmed(result.decision, stayNights, listing.title), "ok"],
      pending: () => [pending(result.decision), "pending"],
      rejected: () => [refusal(result.decision), "error"],
      invalid: () => [fieldProblems(result.fields), "error"],
      offline: () => ["You are offline, so nothing was sent and nothing was booked. Please try again when you are back online.", "error"],
      unreachable: () => ["The booking service could not be reached. Pressing Book again sends the same request, so you cannot be booked or charged twice.", "error"],
      busy: () => [`The booking service is busy and nothing has been booked yet. Please press Book again in ${result.waitSeconds} ${result.waitSeconds === 1 ? "second" : "seconds"}.`, "error"],
      forbidden: () => ["This account cannot make that booking.", "error"],
      failed: () => ["Something went wrong on our side. Pressing Book again sends the same request, so you cannot be booked or charged twice.", "error"],
    };
    const [text, kind] = sentences[result.kind]();
    say(text, kind);
  }

  showTotal();
  await showMonth(month);
}
