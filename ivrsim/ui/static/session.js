// When a page's event stream fails: ask /ui/api whether the session still holds. On 401 (the server
// restarted, or the browser logged out) the stream stops retrying and the page says so, with a login link
// that comes back here; otherwise the browser's own reconnecting goes on.
export function sessionEnded(element) {
  element.replaceChildren("Your session ended (the server restarted or you logged out): ");
  const link = document.createElement("a");
  link.href = `/ui/login?next=${encodeURIComponent(location.pathname + location.search)}`;
  link.textContent = "log in again";
  link.id = "log-in-again";
  element.append(link, ".");
  element.classList.add("error");
}

export function watchSession(source, element, pausedText) {
  let checking = false;
  source.addEventListener("error", async () => {
    if (element && pausedText) element.textContent = pausedText;
    if (checking) return;
    checking = true;
    try {
      const response = await fetch("/ui/api", { credentials: "same-origin", headers: { Accept: "application/json" } });
      if (response.status === 401) {
        source.close();
        if (element) sessionEnded(element);
      }
    } catch {
      // the server is not answering yet: the stream keeps retrying, and fails (and asks) again
    } finally {
      checking = false;
    }
  });
}
