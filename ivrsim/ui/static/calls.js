// The calls list, live: every call's events arrive over /ui/api/events/stream; a row is fetched
// from the server (rendered as on page load) when its call changes, or prepended when a call is new.
import { sessionEnded, watchSession } from "./session.js";

const table = document.getElementById("calls");
const liveState = document.getElementById("live-state");

function rowUrl(callId) {
  const params = new URLSearchParams({ status: table.dataset.status || "", number: table.dataset.number || "" });
  return `/ui/api/calls/${encodeURIComponent(callId)}/row?${params}`;
}

const pending = new Map(); // call id -> true while a fetch runs; "again" when another event came meanwhile

async function refresh(callId) {
  if (pending.has(callId)) { pending.set(callId, "again"); return; }
  pending.set(callId, true);
  try {
    const response = await fetch(rowUrl(callId), { credentials: "same-origin", headers: { Accept: "text/html" } });
    const body = tbody();
    const existing = body.querySelector(`tr[data-call-id="${CSS.escape(callId)}"]`);
    if (response.status === 204) { if (existing) existing.remove(); return; }
    if (response.status === 401) { sessionEnded(liveState); return; }
    if (!response.ok) return;
    const template = document.createElement("template");
    template.innerHTML = (await response.text()).trim();
    const row = template.content.firstElementChild;
    if (!row) return;
    if (existing) existing.replaceWith(row);
    else {
      body.prepend(row);
      const limit = Number(table.dataset.limit || 50);
      while (body.rows.length > limit) body.rows[body.rows.length - 1].remove();
      document.getElementById("no-calls")?.remove();
    }
  } finally {
    const again = pending.get(callId) === "again";
    pending.delete(callId);
    if (again) refresh(callId);
  }
}

function tbody() { return table.tBodies[0]; }

if (table && table.dataset.live === "on" && "EventSource" in window) {
  const source = new EventSource("/ui/api/events/stream");
  source.onopen = () => { liveState.textContent = "Live: new calls and status changes appear as they happen."; };
  watchSession(source, liveState, "Live updates paused (reconnecting)…");
  source.addEventListener("overflow", () => location.reload());
  source.onmessage = (message) => {
    const event = JSON.parse(message.data);
    const known = tbody().querySelector(`tr[data-call-id="${CSS.escape(event.call_id)}"]`);
    // Rows change on status events; a new call shows on its first event.
    if (!known || event.type.startsWith("call.") || event.type === "recording.completed") refresh(event.call_id);
  };
}
