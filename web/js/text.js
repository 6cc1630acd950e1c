// Everything the app says in words: cards, money, dates, and one sentence per refusal (never a raw code).

export const CARDS = [
  ["tok_visa", "Visa — succeeds"],
  ["tok_mastercard", "Mastercard — succeeds"],
  ["tok_chargeDeclined", "Declined card"],
  ["tok_insufficientFunds", "Insufficient funds"],
  ["tok_processingError", "Processing error (retried later)"],
];

export function money(cents, currency = "EUR") {
  return new Intl.NumberFormat(undefined, { style: "currency", currency }).format(cents / 100);
}

const dayFormat = new Intl.DateTimeFormat(undefined, { weekday: "short", day: "numeric", month: "short", year: "numeric", timeZone: "UTC" });

export function day(iso) {
  return dayFormat.format(new Date(`${iso}T00:00:00Z`));
}

// "at 14:05" today, "on 3 Mar 2030, 14:05" another day.
export function when(isoTimestamp) {
  const date = new Date(isoTimestamp);
  if (Number.isNaN(date.getTime())) return isoTimestamp;
  const time = date.toLocaleTimeString(undefined, { hour: "numeric", minute: "2-digit" });
  return date.toDateString() === new Date().toDateString()
    ? `at ${time}` : `on ${date.toLocaleDateString(undefined, { day: "numeric", month: "short", year: "numeric" })}, ${time}`;
}

export function nightsText(n) {
  return n === 1 ? "1 night" : `${n} nights`;
}

const DECLINES = {
  card_declined: "Your card was declined, so nothing was booked or charged. Please try another card.",
  insufficient_funds: "Your card was declined for insufficient funds, so nothing was booked or charged. Please try another card.",
};

const REFUSALS = {
  unavailable: "Someone else has just booked some of these nights, so they are no longer free. Nothing was charged; please choose other dates.",
  unknown_listing: "This place is no longer listed, so it cannot be booked.",
  listing_inactive: "This place is not taking bookings at the moment. Nothing was charged.",
  too_many_guests: "This place cannot host that many guests. Please lower the number of guests.",
  check_in_passed: "The check-in date had passed before the booking could be completed, so nothing was booked or charged.",
  retries_exhausted: "The payment still could not be processed after several tries, so nothing was booked or charged. Please try again or use another card.",
  idempotency_key_reused: "The booking details changed while the request was being sent. Please check them and press Book again.",
  cancelled: "You cancelled this request. Nothing was booked or charged.",
  expired: "This request ran out of time before it could be completed. Nothing was booked or charged.",
  unknown_user: "Your account is not ready to book yet. Please sign out, sign in again and retry.",
};

// The sentence for a rejected decision.
export function refusal(decision) {
  if (decision.reason === "payment_declined") {
    return DECLINES[decision.detail] || "Your card could not be used, so nothing was booked or charged. Please try another card.";
  }
  return REFUSALS[decision.reason] || "This booking was not accepted, and nothing was charged.";
}

export function confirmed(decision, nights, title) {
  const paid = decision.amount_cents != null ? `, ${money(decision.amount_cents, decision.currency)} paid` : "";
  return `Confirmed. Booking ${decision.booking_id}: ${nightsText(nights)} at ${title}${paid}.`;
}

export function pending(decision) {
  if (decision.status === "queued") {
    return "Pending. The payment could not be processed just now, so it will be tried again later; nothing has been charged yet. "
      + "This page updates by itself, and you can cancel the request in My bookings.";
  }
  return "Pending. The booking is being processed; this page updates by itself.";
}

const FIELD_NAMES = {
  check_in: "Check-in", check_out: "Check-out", guests: "Guests", listing_id: "The place",
  payment_token: "Card", max_price_cents: "Max price", city: "City", body: "The request",
  "Idempotency-Key": "The request reference", user_id: "Your account",
};

// 400 invalid_request {"fields": {...}} as sentences: "Check-out must be after check-in."
export function fieldProblems(fields = {}) {
  return Object.entries(fields).map(([name, problem]) => {
    const said = String(problem).replace(/\b(check_in|check_out|max_price_cents|listing_id|user_id)\b/g,
      (word) => (FIELD_NAMES[word] || word).toLowerCase());
    return `${FIELD_NAMES[name] || "A field"} ${said}.`;
  }).join(" ");
}

export const BOOKING_STATUS = { confirmed: "Confirmed", held: "Being confirmed", released: "Not booked" };
export const PAYMENT_STATUS = { captured: "Paid", declined: "Declined", refunded: "Refunded" };
