// Calls to the booking API: JSON in and out, the ID token on private routes (refreshed once on a 401), and a
// network failure reported as Offline so no screen mistakes it for an answer.
import { idToken, SignInNeeded, signOut } from "./auth.js";
import { config } from "./config.js";

export class Offline extends Error {}

export class ApiError extends Error {
  constructor(response) {
    super(`the API answered ${response.status}`);
    this.response = response;
  }
}

export async function apiUrl(path) {
  const { apiUrl } = await config();
  return new URL(path, apiUrl || location.origin).toString();
}

// One request; answers {status, body, headers} for every HTTP status. `auth`: send the signed-in user's token.
export async function request(path, { method = "GET", body, headers = {}, auth = false } = {}) {
  const url = await apiUrl(path);
  const send = async (token) => {
    const allHeaders = { ...headers };
    if (body !== undefined) allHeaders["Content-Type"] = "application/json";
    if (token) allHeaders.Authorization = `Bearer ${token}`;
    let response;
    try {
      response = await fetch(url, { method, headers: allHeaders, body: body === undefined ? undefined : JSON.stringify(body) });
    } catch {
      throw new Offline("The booking service cannot be reached.");
    }
    const text = await response.text();
    let parsed = {};
    try {
      parsed = text ? JSON.parse(text) : {};
    } catch {
      parsed = {};
    }
    return { status: response.status, body: parsed, headers: response.headers };
  };
  if (!auth) return send(null);
  let answer = await send(await idToken());
  if (answer.status === 401) {
    // The token may have expired on the way or been revoked: one fresh token, then give up and sign out.
    answer = await send(await idToken({ force: true }));
    if (answer.status === 401) {
      signOut();
      throw new SignInNeeded("Your sign-in has expired. Please sign in again.");
    }
  }
  return answer;
}

// A read that must succeed: the body, or ApiError.
export async function getJson(path, options = {}) {
  const answer = await request(path, options);
  if (answer.status !== 200) throw new ApiError(answer);
  return answer;
}

let me = null;

// The signed-in user as the API knows them ({id, email, name, ...}); cached until the session changes.
export async function currentUser() {
  me ||= getJson("/v1/me", { auth: true }).then((answer) => answer.body).catch((error) => {
    me = null;
    throw error;
  });
  return me;
}

export function forgetUser() {
  me = null;
}
