// One call's page: the timeline grows live from the call's event stream, the status follows it, and
// the live-control forms post with fetch (the CSRF token in a header) so the page stays put.
import { watchSession } from "./session.js";

const root = document.getElementById("call");
const callId = root.dataset.callId;
const timeline = document.getElementById("timeline").tBodies[0];
const statusEl = document.getElementById("call-status");
const result = document.getElementById("control-result");
const csrf = document.querySelector('meta[name="csrf-token"]')?.content || "";
const FINAL = new Set(["call.completed", "call.busy", "call.no-answer", "call.failed"]);

function details(event) {
  const rest = {};
  for (const [key, value] of Object.entries(event)) {
    if (!["call_id", "type", "sequence", "timestamp", "call_time_s"].includes(key)) rest[key] = value;
  }
  return Object.keys(rest).length ? JSON.stringify(rest) : "";
}

function addRow(event) {
  if (timeline.querySelector(`tr[data-sequence="${event.sequence}"]`)) return;
  const row = timeline.insertRow();
  row.dataset.sequence = event.sequence;
  const cells = [String(event.sequence), Number(event.call_time_s).toFixed(2), event.type, details(event)];
  const labels = ["#", "Call time (s)", "Event", "Details"];
  cells.forEach((text, i) => {
    const cell = row.insertCell();
    cell.textContent = text;
    cell.className = i < 2 ? "num" : "mono";
    cell.dataset.label = labels[i];
  });
}

// A recorded live call: the canvas and the player are on the page from the start (waveform.js waits for the
// recording); when it is complete the player gets its file and the waveform is drawn, with no reload.
function recordingDone(event) {
  const audio = document.getElementById("recording");
  const url = `/ui/api/recordings/${encodeURIComponent(event.recording_id)}.wav`;
  if (audio && !audio.getAttribute("src")) audio.src = url;
  const facts = document.getElementById("recording-facts");
  if (facts) {
    facts.textContent = `${event.channels || ""} recording, ${Number(event.duration_s || 0).toFixed(1)} s; `;
    const link = document.createElement("a");
    link.href = url;
    link.download = "";
    link.textContent = "download the WAV";
    facts.append(link, ".");
  }
  document.getElementById("waveform")?.waveform?.refresh();
}

function setStatus(status) {
  const el = document.getElementById("call-status") || statusEl;
  el.textContent = status;
  el.className = `status status-${status}`;
}

// Answered, Ended, Duration (and a failure's reason) as the server renders them, fetched when the status
// changes; the status span itself stays (it is the live region), only its text and class follow.
let factsAgain = false;
let factsBusy = false;
async function refreshFacts() {
  if (factsBusy) { factsAgain = true; return; }
  factsBusy = true;
  try {
    const response = await fetch(`/ui/api/calls/${encodeURIComponent(callId)}/facts`, { credentials: "same-origin", headers: { Accept: "text/html" } });
    if (!response.ok) return;
    const template = document.createElement("template");
    template.innerHTML = (await response.text()).trim();
    const fresh = template.content.getElementById("call-facts");
    if (!fresh) return;
    for (const id of ["call-answered", "call-ended", "call-duration"]) {
      const now = document.getElementById(id);
      const then = fresh.querySelector(`#${id}`);
      if (now && then) now.textContent = then.textContent;
    }
    const status = fresh.querySelector("#call-status");
    if (status) setStatus(status.textContent);
    const reason = fresh.querySelector("#call-reason");
    if (reason && !document.getElementById("call-reason")) {
      const span = document.createElement("span");
      span.id = "call-reason";
      span.textContent = reason.textContent;
      document.getElementById("call-status").after(" — ", span);
    }
  } finally {
    factsBusy = false;
    if (factsAgain) { factsAgain = false; refreshFacts(); }
  }
}

if (root.dataset.live === "on" && "EventSource" in window) {
  const after = Number(root.dataset.lastSequence || 0);
  const source = new EventSource(`/ui/api/calls/${encodeURIComponent(callId)}/events/stream?after=${after}`);
  const onEvent = (message) => {
    const event = JSON.parse(message.data);
    addRow(event);
    if (event.type.startsWith("call.") && event.status) { setStatus(event.status); refreshFacts(); }
    if (event.type === "recording.completed") { recordingDone(event); refreshFacts(); }
    if (FINAL.has(event.type)) {
      document.getElementById("waveform")?.waveform?.refresh();  // an unanswered call: says there is no recording
      source.close();
      const note = document.getElementById("timeline-live");
      if (note) {
        note.textContent = "The call has ended. ";
        const link = document.createElement("a");
        link.href = location.pathname;
        link.textContent = "Reload for the webhook log";
        note.append(link);
      }
      document.getElementById("control")?.setAttribute("hidden", "");
    }
  };
  source.onmessage = onEvent;
  watchSession(source, document.getElementById("timeline-live"), "Live updates paused (reconnecting)…");
}

for (const form of document.querySelectorAll("form.js-control")) {
  form.addEventListener("submit", async (submit) => {
    submit.preventDefault();
    const data = new URLSearchParams(new FormData(form, submit.submitter));
    const response = await fetch(form.action, {
      method: "POST", credentials: "same-origin", body: data,
      headers: { "X-CSRF-Token": csrf, Accept: "application/json" },
    });
    let body = {};
    try { body = await response.json(); } catch { /* empty */ }
    if (response.ok) {
      result.textContent = body.injected === "dtmf" ? `Pressed ${body.digits} at ${body.call_time_s.toFixed(2)} s.`
        : body.injected === "speech" ? `Said it (${body.duration_s.toFixed(1)} s) at ${body.call_time_s.toFixed(2)} s.`
        : body.hangup ? `Hung up at ${body.call_time_s.toFixed(2)} s.` : "Done.";
      if (form.querySelector("#say-text, #digits")) form.reset();
    } else {
      result.textContent = `Not done: ${body.error?.message || response.statusText}`;
    }
  });
}
