// Sign-in against Cognito's JSON API (the endpoint named by config.json): sign up, confirm, sign in, refresh,
// sign out. The session (ID, access and refresh tokens) is kept in localStorage so a reload stays signed in.
import { config } from "./config.js";

const SESSION = "stays.session";
const EARLY_MS = 60_000; // refresh a minute before the ID token expires, so no request carries a stale one

export class AuthError extends Error {
  constructor(type, message) {
    super(message);
    this.type = type;
  }
}

export class SignInNeeded extends Error {}

const listeners = new Set();

export function onSessionChange(listener) {
  listeners.add(listener);
}

function store(session) {
  if (session) localStorage.setItem(SESSION, JSON.stringify(session));
  else localStorage.removeItem(SESSION);
  for (const listener of listeners) listener(session);
}

export function session() {
  try {
    return JSON.parse(localStorage.getItem(SESSION));
  } catch {
    return null;
  }
}

// The claims of a JWT (no verification: the API verifies; the app only reads the name, email and expiry).
export function claims(token) {
  const part = token.split(".")[1].replace(/-/g, "+").replace(/_/g, "/");
  const bytes = Uint8Array.from(atob(part.padEnd(part.length + ((4 - (part.length % 4)) % 4), "=")), (c) => c.charCodeAt(0));
  return JSON.parse(new TextDecoder().decode(bytes));
}

async function cognito(operation, body) {
  const { cognitoEndpoint, userPoolClientId } = await config();
  if (!userPoolClientId) throw new AuthError("NotConfigured", "Sign-in is not set up for this site.");
  let response;
  try {
    response = await fetch(cognitoEndpoint, {
      method: "POST",
      headers: {
        "Content-Type": "application/x-amz-json-1.1",
        "X-Amz-Target": `AWSCognitoIdentityProviderService.${operation}`,
      },
      body: JSON.stringify({ ClientId: userPoolClientId, ...body }),
    });
  } catch {
    throw new AuthError("Offline", "The sign-in service cannot be reached. Please check your connection.");
  }
  const answer = await response.json().catch(() => ({}));
  if (!response.ok) {
    const type = String(answer.__type || answer.code || "Error").split("#").pop();
    throw new AuthError(type, answer.message || "");
  }
  return answer;
}

function fromResult(result, refreshToken) {
  const idClaims = claims(result.IdToken);
  return {
    idToken: result.IdToken,
    accessToken: result.AccessToken,
    refreshToken: result.RefreshToken || refreshToken,
    expiresAt: Math.min(Date.now() + result.ExpiresIn * 1000, idClaims.exp * 1000),
    email: idClaims.email || "",
    name: idClaims.name || "",
    sub: idClaims.sub,
  };
}

export async function signIn(email, password) {
  const answer = await cognito("InitiateAuth", {
    AuthFlow: "USER_PASSWORD_AUTH",
    AuthParameters: { USERNAME: email, PASSWORD: password },
  });
  if (!answer.AuthenticationResult) {
    throw new AuthError(answer.ChallengeName || "Challenge", "This account needs a step this app does not offer.");
  }
  const signedIn = fromResult(answer.AuthenticationResult);
  store(signedIn);
  return signedIn;
}

export function signUp(email, password, name) {
  return cognito("SignUp", {
    Username: email,
    Password: password,
    UserAttributes: [{ Name: "email", Value: email }, { Name: "name", Value: name }],
  });
}

export function confirmSignUp(email, code) {
  return cognito("ConfirmSignUp", { Username: email, ConfirmationCode: code });
}

export function signOut() {
  store(null);
}

let refreshing = null;

async function refresh(current) {
  refreshing ||= cognito("InitiateAuth", {
    AuthFlow: "REFRESH_TOKEN_AUTH",
    AuthParameters: { REFRESH_TOKEN: current.refreshToken },
  }).then((answer) => {
    const renewed = fromResult(answer.AuthenticationResult, current.refreshToken);
    store(renewed);
    return renewed;
  }).catch((error) => {
    if (error.type !== "Offline") store(null); // the refresh token is no longer good: sign in again
    throw error.type === "Offline" ? error : new SignInNeeded("Your sign-in has expired. Please sign in again.");
  }).finally(() => {
    refreshing = null;
  });
  return refreshing;
}

// A valid ID token for an API call, refreshed first when it is about to expire (or when `force`, after a 401).
export async function idToken({ force = false } = {}) {
  const current = session();
  if (!current) throw new SignInNeeded("Please sign in first.");
  if (force || Date.now() > current.expiresAt - EARLY_MS) return (await refresh(current)).idToken;
  return current.idToken;
}

// The sentence for a failed sign-in step.
export function authProblem(error) {
  const sentences = {
    NotAuthorizedException: "The email or password is not right.",
    UserNotFoundException: "The email or password is not right.",
    UserNotConfirmedException: "This account is not confirmed yet. Please enter the confirmation code we sent you.",
    UsernameExistsException: "An account with this email already exists. Please sign in instead.",
    InvalidPasswordException: "Please choose a longer password with upper- and lower-case letters, a digit and a symbol.",
    CodeMismatchException: "That confirmation code is not right. Please check it and try again.",
    ExpiredCodeException: "That confirmation code has expired. Please ask for a new one.",
    TooManyRequestsException: "Too many attempts. Please wait a minute and try again.",
    LimitExceededException: "Too many attempts. Please wait a minute and try again.",
    InvalidParameterException: "Please check the email address and the other fields.",
  };
  if (error instanceof AuthError) return sentences[error.type] || error.message || "Signing in did not work. Please try again.";
  return error.message || "Signing in did not work. Please try again.";
}
