// Sign in, create an account, confirm it.
import { authProblem, confirmSignUp, signIn, signUp } from "./auth.js";
import { field, go, h, screenRenderer, say } from "./ui.js";

// Only a route inside this app is a place to go back to after signing in.
const safeNext = (next) => (next && next.startsWith("#/") ? next : "#/");

function busy(form, on) {
  form.querySelector("button[type=submit]").disabled = on;
  if (on) form.setAttribute("aria-busy", "true");
  else form.removeAttribute("aria-busy");
}

export function signInScreen(params) {
  const render = screenRenderer();
  const next = safeNext(params.get("next"));
  const form = h("form", { class: "account", novalidate: true, "aria-label": "Sign in" },
    field("Email", { name: "email", type: "email", autocomplete: "username", required: true, value: params.get("email") || "" }),
    field("Password", { name: "password", type: "password", autocomplete: "current-password", required: true }),
    h("button", { type: "submit", class: "primary" }, "Sign in"));
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const email = form.elements.email.value.trim();
    if (!email || !form.elements.password.value) {
      say("Please enter your email and password.", "error");
      return;
    }
    busy(form, true);
    try {
      const signedIn = await signIn(email, form.elements.password.value);
      say(`Signed in as ${signedIn.name || signedIn.email}.`, "ok");
      go(next);
    } catch (error) {
      if (error.type === "UserNotConfirmedException") {
        say(authProblem(error), "error");
        go(`#/confirm?${new URLSearchParams({ email })}`);
        return;
      }
      say(authProblem(error), "error");
    } finally {
      busy(form, false);
    }
  });
  render("Sign in", form,
    h("p", {}, "New here? ", h("a", { href: `#/sign-up?${new URLSearchParams({ next })}` }, "Create an account")));
}

export function signUpScreen(params) {
  const render = screenRenderer();
  const form = h("form", { class: "account", novalidate: true, "aria-label": "Create an account" },
    field("Name", { name: "name", type: "text", autocomplete: "name", required: true }),
    field("Email", { name: "email", type: "email", autocomplete: "username", required: true }),
    field("Password", { name: "password", type: "password", autocomplete: "new-password", required: true, minlength: "8" },
      "At least 8 characters, with upper- and lower-case letters, a digit and a symbol"),
    h("button", { type: "submit", class: "primary" }, "Create account"));
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const email = form.elements.email.value.trim();
    const name = form.elements.name.value.trim();
    if (!email || !name || !form.elements.password.value) {
      say("Please fill in your name, email and a password.", "error");
      return;
    }
    busy(form, true);
    try {
      await signUp(email, form.elements.password.value, name);
      say("Your account is created. Please enter the confirmation code we sent to your email.", "ok");
      go(`#/confirm?${new URLSearchParams({ email, next: safeNext(params.get("next")) })}`);
    } catch (error) {
      say(authProblem(error), "error");
    } finally {
      busy(form, false);
    }
  });
  render("Create an account", form, h("p", {}, "Have an account? ", h("a", { href: "#/sign-in" }, "Sign in")));
}

export function confirmScreen(params) {
  const render = screenRenderer();
  const form = h("form", { class: "account", novalidate: true, "aria-label": "Confirm your account" },
    field("Email", { name: "email", type: "email", autocomplete: "username", required: true, value: params.get("email") || "" }),
    field("Confirmation code", { name: "code", type: "text", autocomplete: "one-time-code", inputmode: "numeric", required: true }),
    h("button", { type: "submit", class: "primary" }, "Confirm"));
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const email = form.elements.email.value.trim();
    busy(form, true);
    try {
      await confirmSignUp(email, form.elements.code.value.trim());
      say("Your account is confirmed. Please sign in.", "ok");
      go(`#/sign-in?${new URLSearchParams({ email, next: safeNext(params.get("next")) })}`);
    } catch (error) {
      say(authProblem(error), "error");
    } finally {
      busy(form, false);
    }
  });
  render("Confirm your account", form);
}
