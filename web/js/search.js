// Search: the form, the results (title, city, price per night, the stay's total), "More results" with the API's
// cursor. The service worker keeps the last search's answers, so they still show offline, marked as saved.
import { Offline, request } from "./api.js";
import { isIsoDate, nightsBetween, today } from "./dates.js";
import { money, nightsText, fieldProblems, when } from "./text.js";
import { field, h, hideOffline, screenRenderer, say, showOffline } from "./ui.js";

const PAGE = 10;

// The search as the URL holds it (#/?city=&check_in=&check_out=&guests=&max_price=), max_price in whole euros.
function fromParams(params) {
  return {
    city: params.get("city") || "",
    check_in: params.get("check_in") || "",
    check_out: params.get("check_out") || "",
    guests: params.get("guests") || "",
    max_price: params.get("max_price") || "",
  };
}

function apiQuery(search, cursor) {
  const query = new URLSearchParams({ limit: String(PAGE) });
  if (search.city.trim()) query.set("city", search.city.trim());
  if (search.guests) query.set("guests", search.guests);
  if (search.max_price !== "") query.set("max_price_cents", String(Math.round(Number(search.max_price) * 100)));
  if (search.check_in && search.check_out) {
    query.set("check_in", search.check_in);
    query.set("check_out", search.check_out);
  }
  if (cursor) query.set("cursor", cursor);
  return query;
}

// What is wrong with the form, as a sentence, or "".
function problem(search) {
  if (Boolean(search.check_in) !== Boolean(search.check_out)) return "Please choose both a check-in and a check-out date, or neither.";
  if (search.check_in && !isIsoDate(search.check_in)) return "Please enter the check-in date as a full date.";
  if (search.check_out && !isIsoDate(search.check_out)) return "Please enter the check-out date as a full date.";
  if (search.check_in && search.check_in < today()) return "The check-in date must not be in the past.";
  if (search.check_in && search.check_out <= search.check_in) return "The check-out date must be after the check-in date.";
  if (search.guests && !(Number(search.guests) >= 1)) return "Guests must be at least 1.";
  if (search.max_price !== "" && !(Number(search.max_price) >= 0)) return "Max price must be a number of euros.";
  return "";
}

export function searchScreen(params) {
  const render = screenRenderer();
  const search = fromParams(params);
  const form = h("form", { class: "search", novalidate: true, role: "search", "aria-label": "Search stays" },
    field("City", { name: "city", type: "text", value: search.city, autocomplete: "off", placeholder: "Any city" }),
    field("Check-in", { name: "check_in", type: "date", value: search.check_in, min: today() }),
    field("Check-out", { name: "check_out", type: "date", value: search.check_out, min: today() }),
    field("Guests", { name: "guests", type: "number", min: "1", max: "50", value: search.guests, inputmode: "numeric" }),
    field("Max price", { name: "max_price", type: "number", min: "0", step: "1", value: search.max_price, inputmode: "numeric" },
      "Per night, in euros"),
    h("button", { type: "submit", class: "primary" }, "Search"));
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    const wanted = Object.fromEntries(["city", "check_in", "check_out", "guests", "max_price"].map((name) => [name, form.elements[name].value.trim()]));
    const wrong = problem(wanted);
    if (wrong) {
      say(wrong, "error");
      return;
    }
    const query = new URLSearchParams(Object.entries(wanted).filter(([, value]) => value !== ""));
    const target = `#/?${query}`;
    if (location.hash === target) showResults(wanted, results); // same search again: refresh it
    else location.hash = target;
  });
  const results = h("section", { class: "results", "aria-label": "Results" });
  render("Find a stay", form, results);
  showResults(search, results);
}

async function showResults(search, area) {
  const wrong = problem(search);
  if (wrong) {
    say(wrong, "error");
    return;
  }
  area.replaceChildren(h("p", { class: "quiet" }, "Searching…"));
  area.setAttribute("aria-busy", "true");
  const list = h("ol", { class: "result-list" });
  const more = h("button", { type: "button", class: "more", hidden: true }, "More results");
  const summary = h("p", { class: "summary" });
  let cursor = null;
  let shown = 0;
  const nights = search.check_in && search.check_out ? nightsBetween(search.check_in, search.check_out) : 0;

  const loadPage = async () => {
    let answer;
    try {
      answer = await request(`/v1/listings?${apiQuery(search, cursor)}`);
    } catch (error) {
      if (!(error instanceof Offline)) throw error;
      area.removeAttribute("aria-busy");
      showOffline("You are offline, and there are no saved results for this search. Connect to the internet to search.");
      area.replaceChildren(h("p", { class: "quiet" }, "No saved results for this search."));
      return;
    }
    area.removeAttribute("aria-busy");
    if (answer.status === 400) {
      say(fieldProblems(answer.body.fields), "error");
      area.replaceChildren();
      return;
    }
    if (answer.status !== 200) {
      say("Searching did not work just now. Please try again in a moment.", "error");
      return;
    }
    const savedAt = answer.headers.get("X-Saved-At");
    if (answer.headers.get("X-Served-Offline") && savedAt) {
      showOffline(`You are offline. These are the results saved ${when(savedAt)}; booking needs a connection.`);
    } else {
      hideOffline();
    }
    for (const listing of answer.body.items) list.append(resultItem(listing, search, nights));
    shown += answer.body.items.length;
    cursor = answer.body.next_cursor;
    more.hidden = !cursor;
    summary.textContent = shown === 0
      ? "No places match. Try other dates, fewer guests or a higher price."
      : `${shown === 1 ? "1 place" : `${shown} places`}${search.city ? ` in ${search.city}` : ""}${nights ? `, free for ${nightsText(nights)}` : ""}${cursor ? " so far" : ""}.`;
    area.replaceChildren(summary, list, more);
  };

  more.addEventListener("click", async () => {
    const firstNew = list.children.length;
    more.disabled = true;
    await loadPage();
    more.disabled = false;
    list.children[firstNew]?.querySelector("a")?.focus(); // keyboard users continue where the new ones start
  });
  await loadPage();
}

function resultItem(listing, search, nights) {
  const stay = new URLSearchParams();
  if (nights) {
    stay.set("check_in", search.check_in);
    stay.set("check_out", search.check_out);
  }
  if (search.guests) stay.set("guests", search.guests);
  const price = listing.nightly_price_cents;
  return h("li", {},
    h("a", { class: "result", href: `#/listing/${listing.id}${stay.size ? `?${stay}` : ""}` },
      h("span", { class: "title" }, listing.title),
      h("span", { class: "city" }, listing.city),
      h("span", { class: "price" }, `${money(price, listing.currency)} per night`),
      h("span", { class: "total" }, nights ? `${money(price * nights, listing.currency)} for ${nightsText(nights)}` : "Choose dates to see the total"),
      h("span", { class: "guests" }, `Up to ${listing.max_guests} ${listing.max_guests === 1 ? "guest" : "guests"}`)));
}
