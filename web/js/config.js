// The deployment's settings, from /config.json next to the app (written by the stack locally, at deploy on AWS).
let loaded = null;

export function config() {
  loaded ||= fetch("config.json", { cache: "no-cache" }).then((response) => {
    if (!response.ok) throw new Error(`config.json answered ${response.status}`);
    return response.json();
  }).catch((error) => {
    loaded = null; // try again next time (offline at start, say)
    throw error;
  });
  return loaded;
}
