// Calendar dates as YYYY-MM-DD strings (the API's form), computed in UTC so no time zone shifts a night.

const DAY_MS = 86_400_000;

const asDate = (iso) => new Date(`${iso}T00:00:00Z`);
const asIso = (date) => date.toISOString().slice(0, 10);

export const isIsoDate = (value) => /^\d{4}-\d{2}-\d{2}$/.test(value || "") && !Number.isNaN(asDate(value).getTime());

// Today where the person is.
export function today() {
  const now = new Date();
  return asIso(new Date(Date.UTC(now.getFullYear(), now.getMonth(), now.getDate())));
}

export const addDays = (iso, days) => asIso(new Date(asDate(iso).getTime() + days * DAY_MS));

export const nightsBetween = (checkIn, checkOut) => Math.round((asDate(checkOut) - asDate(checkIn)) / DAY_MS);

// "2030-03" for the month holding `iso`, the first day of a month, the month after, the month's name.
export const monthOf = (iso) => iso.slice(0, 7);
export const firstDay = (month) => `${month}-01`;

export function addMonths(month, count) {
  const [year, m] = month.split("-").map(Number);
  const date = new Date(Date.UTC(year, m - 1 + count, 1));
  return asIso(date).slice(0, 7);
}

export function monthName(month) {
  return new Intl.DateTimeFormat(undefined, { month: "long", year: "numeric", timeZone: "UTC" }).format(asDate(firstDay(month)));
}

// The weeks of a month, Monday first: arrays of seven ISO dates or nulls for days outside the month.
export function weeksOf(month) {
  const first = asDate(firstDay(month));
  const days = nightsBetween(firstDay(month), firstDay(addMonths(month, 1)));
  const lead = (first.getUTCDay() + 6) % 7;
  const cells = [...Array(lead).fill(null), ...Array.from({ length: days }, (_, i) => addDays(firstDay(month), i))];
  while (cells.length % 7) cells.push(null);
  return Array.from({ length: cells.length / 7 }, (_, w) => cells.slice(w * 7, w * 7 + 7));
}

export const WEEKDAYS = ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"];
export const WEEKDAY_NAMES = ["Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday"];
