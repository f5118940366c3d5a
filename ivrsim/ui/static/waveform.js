// ivrsim dashboard: a call's two-channel waveform on <canvas id="waveform">, from the server's min/max
// envelope (data-envelope-url) and the call's events (data-events-url): prompt spans, gather windows, DTMF
// digits where they were decoded, transcript segments; a cursor following <audio id="recording">; click or
// arrow keys to seek. Plain ES module, no dependencies. HiDPI aware; redrawn on resize.
//
// Times: events carry call time; the recording starts at the answer, so x(t) = (t - answered_s) / duration_s.
// With data-marks (the id of a JSON script element) it draws a Canonical call's analysis instead: turns per
// speaker, latency gaps, interruptions, dead air (recording times).
// For tests and other scripts the canvas gets a `waveform` property (state, lanes, marks, timeToX, refresh)
// and data-state / data-dtmf attributes.

const AXIS_PX = 18;      // the time axis under the lanes
const LABEL_PX = 16;     // the label row above the lanes (prompts, gathers)
const RETRY_MS = 3000;   // while the recording is not finished (a live call), ask again this often
const INK = "#1b1b1b";
const MUTED = "#555";
const WAVE = ["#0b57d0", "#146c2e"];  // platform, callee (labels say which: colour is not needed)

function cssVar(name, fallback) {
  const v = getComputedStyle(document.documentElement).getPropertyValue(name).trim();
  return v || fallback;
}

function pairSpans(events, startType, endType) {
  // [{start, end, event}] pairing each start with the next end; an unfinished one runs to the end.
  const spans = [];
  let open = null;
  for (const e of events) {
    if (e.type === startType) {
      if (open) spans.push({ start: open.call_time_s, end: e.call_time_s, event: open });
      open = e;
    } else if (e.type === endType && open) {
      spans.push({ start: open.call_time_s, end: e.call_time_s, event: open, end_event: e });
      open = null;
    }
  }
  if (open) spans.push({ start: open.call_time_s, end: Infinity, event: open });
  return spans;
}

function hatch(ctx, dpr) {
  // A diagonal-line pattern: gather windows read without colour.
  const tile = document.createElement("canvas");
  const s = Math.round(8 * dpr);
  tile.width = tile.height = s;
  const t = tile.getContext("2d");
  t.strokeStyle = "rgba(27,27,27,0.35)";
  t.lineWidth = Math.max(1, dpr);
  t.beginPath();
  t.moveTo(0, s); t.lineTo(s, 0);
  t.stroke();
  const pattern = ctx.createPattern(tile, "repeat");
  if (pattern && pattern.setTransform) pattern.setTransform(new DOMMatrix().scale(1 / dpr));
  return pattern;
}

export class Waveform {
  constructor(canvas, audio) {
    this.canvas = canvas;
    this.audio = audio;
    this.envelope = null;
    this.events = [];
    this.state = "loading";
    this.message = "Loading the waveform…";
    this.lanes = [];
    this.marks = { dtmf: [], prompts: [], gathers: [], transcripts: [], analysis: null };
    this.analysis = null;
    this.colours = WAVE;
    this._raf = 0;
    this._retry = 0;
    canvas.waveform = this;
    if (!canvas.hasAttribute("tabindex")) canvas.tabIndex = 0;
    canvas.addEventListener("click", (e) => this._click(e));
    canvas.addEventListener("keydown", (e) => this._key(e));
    new ResizeObserver(() => this.draw()).observe(canvas);
    window.matchMedia(`(resolution: ${window.devicePixelRatio}dppx)`).addEventListener?.("change", () => this.draw());
    if (audio) {
      for (const type of ["timeupdate", "seeked", "loadedmetadata", "pause"]) audio.addEventListener(type, () => this.draw());
      audio.addEventListener("play", () => this._animate());
    }
  }

  get duration_s() {
    if (this.envelope && this.envelope.duration_s > 0) return this.envelope.duration_s;
    return this.audio && isFinite(this.audio.duration) ? this.audio.duration : 0;
  }

  get answered_s() {
    return this.envelope && this.envelope.answered_s != null ? this.envelope.answered_s : 0;
  }

  /** x in CSS pixels of call time ``t`` (null when the recording has no length yet). */
  timeToX(callTime_s) {
    const d = this.duration_s;
    if (!d) return null;
    return ((callTime_s - this.answered_s) / d) * this.canvas.clientWidth;
  }

  xToRecordingTime(x) {
    return Math.max(0, Math.min(this.duration_s, (x / this.canvas.clientWidth) * this.duration_s));
  }

  async refresh() {
    clearTimeout(this._retry);
    const { envelopeUrl, eventsUrl, marks } = this.canvas.dataset;
    if (marks) {  // a Canonical call's analysis, in the page as JSON (recording times: no answered_s)
      try { this.analysis = JSON.parse(document.getElementById(marks).textContent); } catch { this.analysis = null; }
    }
    try {
      const [env, evs] = await Promise.all([fetch(envelopeUrl, { credentials: "same-origin" }), eventsUrl ? fetch(eventsUrl, { credentials: "same-origin" }) : null]);
      if (evs && evs.ok) this.events = (await evs.json()).data || [];
      if (env.ok) {
        this.envelope = await env.json();
        const ac = this.analysis && this.analysis.assistant_channel;
        if (ac && this.envelope.lanes.length === 2) {  // a Canonical call's lanes are its speakers, by the analysis
          this.envelope.lanes.forEach((lane, i) => { lane.name = `channel ${i + 1}: ${i + 1 === ac ? "assistant" : "user"}`; });
        }
        this.state = "drawn";
        this.message = "";
      } else {
        const body = await env.json().catch(() => ({}));
        const code = body.error && body.error.code;
        this.state = code === "recording_not_ready" ? "waiting" : "unavailable";
        this.message = (body.error && body.error.message) || `The waveform could not be loaded (HTTP ${env.status}).`;
        if (code === "recording_not_ready") this._retry = setTimeout(() => this.refresh(), RETRY_MS);
      }
    } catch (error) {
      this.state = "unavailable";
      this.message = `The waveform could not be loaded: ${error}`;
    }
    this._collectMarks();
    this.draw();
  }

  _collectMarks() {
    const evs = this.events;
    this.marks = {
      prompts: pairSpans(evs, "prompt.started", "prompt.completed").map((s) => ({ start_s: s.start, end_s: s.end, kind: s.event.kind, text: s.event.text || s.event.source || s.event.kind })),
      gathers: pairSpans(evs, "gather.started", "gather.completed").map((s) => ({ start_s: s.start, end_s: s.end, digits: s.end_event ? s.end_event.digits : null })),
      dtmf: evs.filter((e) => e.type === "dtmf.received").map((e) => ({ digit: e.digit, start_s: e.start_s, end_s: e.end_s, x: null })),
      transcripts: evs.filter((e) => e.type === "transcription.final").map((e) => ({ channel: e.channel, start_s: e.start_s, end_s: e.end_s, text: e.text })),
      analysis: this.analysis || null,
    };
  }

  _layout(width, height) {
    const body = Math.max(20, height - AXIS_PX - LABEL_PX);
    const names = this.envelope ? this.envelope.lanes.map((l) => l.name) : ["platform", "callee"];
    const each = body / names.length;
    return names.map((name, i) => ({ name, top: LABEL_PX + i * each, height: each }));
  }

  draw() {
    const canvas = this.canvas;
    const dpr = window.devicePixelRatio || 1;
    const width = canvas.clientWidth;
    const height = canvas.clientHeight;
    if (!width || !height) return;
    const pw = Math.round(width * dpr), ph = Math.round(height * dpr);
    if (canvas.width !== pw || canvas.height !== ph) { canvas.width = pw; canvas.height = ph; }
    const ctx = canvas.getContext("2d");
    ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
    ctx.clearRect(0, 0, width, height);
    ctx.fillStyle = cssVar("--bg", "#fff");
    ctx.fillRect(0, 0, width, height);
    ctx.font = "12px system-ui, sans-serif";
    ctx.textBaseline = "middle";
    this.lanes = this._layout(width, height);
    canvas.dataset.state = this.state;
    if (!this.envelope) {
      ctx.fillStyle = MUTED;
      ctx.fillText(this.message, 8, height / 2, width - 16);
      return;
    }
    const d = this.duration_s;
    const xOf = (t) => ((t - this.answered_s) / d) * width;
    // Shading first, the waves over it (they keep their colour), then lines and labels on top.
    this._drawSpans(ctx, xOf, width, dpr);
    this._drawDtmf(ctx, xOf, width, "shade");
    if (this.marks.analysis) this._drawAnalysis(ctx, xOf, dpr, "shade");
    this.envelope.lanes.forEach((lane, i) => this._drawLane(ctx, lane, this.lanes[i], width, WAVE[i % WAVE.length]));
    if (this.marks.analysis) this._drawAnalysis(ctx, xOf, dpr, "marks");
    this.envelope.lanes.forEach((lane, i) => this._drawLaneLabel(ctx, lane, this.lanes[i]));
    this._drawTranscripts(ctx, xOf, width);
    this._drawDtmf(ctx, xOf, width, "marks");
    this._drawAxis(ctx, width, height, d);
    this._drawCursor(ctx, width, height, d);
  }

  _drawLane(ctx, lane, box, width, colour) {
    const mid = box.top + box.height / 2;
    const half = box.height / 2 - 2;
    const n = lane.min.length;
    ctx.strokeStyle = cssVar("--line", "#c8c8c8");
    ctx.lineWidth = 1;
    ctx.beginPath(); ctx.moveTo(0, mid + 0.5); ctx.lineTo(width, mid + 0.5); ctx.stroke();
    if (n) {
      // One filled outline: the maxima left to right, the minima back; at least a pixel tall.
      ctx.fillStyle = colour;
      ctx.beginPath();
      for (let i = 0; i < n; i++) ctx.lineTo(((i + 0.5) / n) * width, mid - Math.max(0.5, lane.max[i] * half));
      for (let i = n - 1; i >= 0; i--) ctx.lineTo(((i + 0.5) / n) * width, mid - Math.min(-0.5, lane.min[i] * half));
      ctx.closePath();
      ctx.fill();
    }
  }

  _drawLaneLabel(ctx, lane, box) {
    // Drawn after the marks, so that no box hides which lane is which.
    ctx.textAlign = "left";
    const label = lane.name === "mix" ? "mix (mono)" : lane.name;
    const w = ctx.measureText(label).width + 8;
    ctx.fillStyle = "rgba(255,255,255,0.85)";
    ctx.fillRect(2, box.top + 2, w, 16);
    ctx.fillStyle = INK;
    ctx.fillText(label, 6, box.top + 10);
  }

  _drawSpans(ctx, xOf, width, dpr) {
    const platform = this.lanes[0];
    const all = { top: this.lanes[0].top, bottom: this.lanes[this.lanes.length - 1].top + this.lanes[this.lanes.length - 1].height };
    const end = this.answered_s + this.duration_s;
    for (const p of this.marks.prompts) {
      const x0 = xOf(p.start_s), x1 = xOf(Math.min(p.end_s, end));
      ctx.fillStyle = "rgba(11,87,208,0.10)";
      ctx.fillRect(x0, platform.top, Math.max(1, x1 - x0), platform.height);
      ctx.strokeStyle = "rgba(11,87,208,0.6)";
      ctx.strokeRect(x0 + 0.5, 0.5, Math.max(1, x1 - x0 - 1), LABEL_PX - 1);
      ctx.fillStyle = INK;
      ctx.textAlign = "left";
      ctx.fillText(`▶ ${p.kind === "say" ? "" : p.kind + ": "}${p.text}`, x0 + 3, LABEL_PX / 2, Math.max(0, x1 - x0 - 6));
    }
    const pattern = hatch(ctx, dpr);
    for (const g of this.marks.gathers) {
      const x0 = xOf(g.start_s), x1 = xOf(Math.min(g.end_s, end));
      ctx.fillStyle = pattern || "rgba(0,0,0,0.08)";
      ctx.fillRect(x0, all.top, Math.max(1, x1 - x0), all.bottom - all.top);
      ctx.strokeStyle = INK;
      ctx.setLineDash([4, 3]);
      ctx.strokeRect(x0 + 0.5, all.top + 0.5, Math.max(1, x1 - x0 - 1), all.bottom - all.top - 1);
      ctx.setLineDash([]);
      const label = g.digits != null ? `gather → ${g.digits || "(none)"}` : "gather";
      const lw = ctx.measureText(label).width;
      ctx.fillStyle = INK;
      ctx.textAlign = "right";
      if (x1 - x0 > lw + 6) ctx.fillText(label, x1 - 3, LABEL_PX / 2);
      ctx.textAlign = "left";
    }
  }

  _drawDtmf(ctx, xOf, width, layer) {
    const lane = this.lanes[this.lanes.length - 1];  // the callee presses the keys
    for (const m of this.marks.dtmf) {
      const x = xOf(m.start_s);
      m.x = Math.round(x * 100) / 100;
      if (layer === "shade") {
        const x1 = Math.max(x + 1, xOf(m.end_s));
        ctx.fillStyle = "rgba(165,14,14,0.18)";
        ctx.fillRect(x, lane.top, x1 - x, lane.height);
        continue;
      }
      ctx.strokeStyle = "#a50e0e";
      ctx.lineWidth = 1.5;
      ctx.beginPath(); ctx.moveTo(x, lane.top); ctx.lineTo(x, lane.top + lane.height); ctx.stroke();
      ctx.lineWidth = 1;
      const tag = String(m.digit);
      ctx.font = "bold 12px system-ui, sans-serif";
      const w = ctx.measureText(tag).width + 6;
      ctx.fillStyle = "#fff";
      ctx.fillRect(x - w / 2, lane.top + 1, w, 15);
      ctx.strokeStyle = "#a50e0e";
      ctx.strokeRect(x - w / 2 + 0.5, lane.top + 1.5, w - 1, 14);
      ctx.fillStyle = INK;
      ctx.textAlign = "center";
      ctx.fillText(tag, x, lane.top + 9);
      ctx.textAlign = "left";
      ctx.font = "12px system-ui, sans-serif";
    }
    this.canvas.dataset.dtmf = JSON.stringify(this.marks.dtmf.map((m) => ({ digit: m.digit, start_s: m.start_s, x: m.x })));
  }

  _speakerLane(channel) {
    // Stereo: channel 1 is the first lane; a mono (diarized) recording has one lane for both.
    return this.lanes.length > 1 && channel ? this.lanes[Math.min(channel, this.lanes.length) - 1] : this.lanes[0];
  }

  _drawAnalysis(ctx, xOf, dpr, layer) {
    // A Canonical call's analysis: turns per speaker (boxes in their lane), dead air (hatched, across the
    // lanes), latency gaps (brackets with their ms) and interruptions (dashed lines), labelled in words.
    const a = this.marks.analysis;
    const top = this.lanes[0].top, bottom = this.lanes[this.lanes.length - 1].top + this.lanes[this.lanes.length - 1].height;
    const placed = { turns: [], dead_air: [], latencies: [], interruptions: [] };
    if (layer === "shade") {
      const pattern = hatch(ctx, dpr);
      for (const d of a.dead_air) {
        const x0 = xOf(d.start_s), x1 = xOf(d.end_s);
        ctx.fillStyle = pattern || "rgba(0,0,0,0.08)";
        ctx.fillRect(x0, top, Math.max(1, x1 - x0), bottom - top);
      }
      for (const t of a.turns) {
        const lane = this._speakerLane(t.channel);
        const x0 = xOf(t.start_s), x1 = xOf(t.end_s);
        ctx.fillStyle = t.speaker === "assistant" ? "rgba(11,87,208,0.10)" : "rgba(20,108,46,0.12)";
        ctx.fillRect(x0, lane.top, Math.max(1, x1 - x0), lane.height);
      }
      return;
    }
    ctx.textAlign = "left";
    for (const t of a.turns) {
      const lane = this._speakerLane(t.channel);
      const x0 = xOf(t.start_s), x1 = xOf(t.end_s);
      ctx.strokeStyle = t.speaker === "assistant" ? "rgba(11,87,208,0.8)" : "rgba(20,108,46,0.8)";
      ctx.setLineDash(t.speaker === "assistant" ? [] : [5, 3]);
      ctx.strokeRect(x0 + 0.5, lane.top + 0.5, Math.max(1, x1 - x0 - 1), lane.height - 1);
      ctx.setLineDash([]);
      const label = t.speaker === "assistant" ? "assistant" : "user";
      if (x1 - x0 > ctx.measureText(label).width + 6) {
        ctx.fillStyle = INK;
        ctx.fillText(label, x0 + 3, lane.top + lane.height - 9);
      }
      placed.turns.push({ speaker: t.speaker, x0: Math.round(x0 * 100) / 100, x1: Math.round(x1 * 100) / 100 });
    }
    for (const d of a.dead_air) {
      const x0 = xOf(d.start_s), x1 = xOf(d.end_s);
      ctx.strokeStyle = INK;
      ctx.setLineDash([2, 2]);
      ctx.strokeRect(x0 + 0.5, top + 0.5, Math.max(1, x1 - x0 - 1), bottom - top - 1);
      ctx.setLineDash([]);
      const label = `dead air ${(d.end_s - d.start_s).toFixed(1)} s`;  // inside the span, mid-height: the label row is the interruptions'
      const w = Math.min(ctx.measureText(label).width + 6, Math.max(0, x1 - x0 - 2));
      const mid = (top + bottom) / 2;
      ctx.fillStyle = "rgba(255,255,255,0.92)";
      ctx.fillRect((x0 + x1) / 2 - w / 2, mid - 8, w, 16);
      ctx.fillStyle = INK;
      ctx.textAlign = "center";
      ctx.fillText(label, (x0 + x1) / 2, mid, Math.max(0, w - 4));
      ctx.textAlign = "left";
      placed.dead_air.push({ x0: Math.round(x0 * 100) / 100, x1: Math.round(x1 * 100) / 100 });
    }
    for (const g of a.latencies) {
      const x0 = xOf(g.start_s), x1 = xOf(g.end_s), y = top + 20;  // under the lane's label
      ctx.strokeStyle = "#6b3fa0";
      ctx.lineWidth = 1.5;
      ctx.beginPath(); ctx.moveTo(x0, y + 6); ctx.lineTo(x0, y); ctx.lineTo(x1, y); ctx.lineTo(x1, y + 6); ctx.stroke();
      ctx.lineWidth = 1;
      const label = `${g.ms} ms`;
      const w = ctx.measureText(label).width + 6;
      ctx.fillStyle = "rgba(255,255,255,0.9)";
      ctx.fillRect((x0 + x1) / 2 - w / 2, y + 2, w, 14);
      ctx.fillStyle = INK;
      ctx.textAlign = "center";
      ctx.fillText(label, (x0 + x1) / 2, y + 9);
      ctx.textAlign = "left";
      placed.latencies.push({ ms: g.ms, x0: Math.round(x0 * 100) / 100, x1: Math.round(x1 * 100) / 100 });
    }
    for (const i of a.interruptions) {
      const x = xOf(i.at_s);
      ctx.strokeStyle = "#a50e0e";
      ctx.lineWidth = 2;
      ctx.setLineDash([6, 3]);
      ctx.beginPath(); ctx.moveTo(x, 0); ctx.lineTo(x, bottom); ctx.stroke();
      ctx.setLineDash([]);
      ctx.lineWidth = 1;
      const label = `⚡ ${i.interrupter} cuts in`;
      const w = ctx.measureText(label).width + 6;
      ctx.fillStyle = "#fff";
      ctx.fillRect(x + 2, 1, w, LABEL_PX - 2);
      ctx.fillStyle = "#a50e0e";
      ctx.fillText(label, x + 5, LABEL_PX / 2);
      placed.interruptions.push({ interrupter: i.interrupter, x: Math.round(x * 100) / 100 });
    }
    this.canvas.dataset.analysis = JSON.stringify(placed);
  }

  _drawTranscripts(ctx, xOf, width) {
    for (const t of this.marks.transcripts) {
      const lane = this.lanes.find((l) => l.name === t.channel) || this.lanes[0];
      const x0 = xOf(t.start_s), x1 = Math.max(x0 + 2, xOf(t.end_s));
      const y = lane.top + lane.height - 15;
      ctx.fillStyle = "rgba(255,255,255,0.85)";
      ctx.fillRect(x0, y, x1 - x0, 14);
      ctx.strokeStyle = MUTED;
      ctx.strokeRect(x0 + 0.5, y + 0.5, x1 - x0 - 1, 13);
      ctx.fillStyle = INK;
      ctx.textAlign = "left";
      ctx.fillText(`“${t.text}”`, x0 + 3, y + 7, Math.max(0, x1 - x0 - 6));
    }
  }

  _drawAxis(ctx, width, height, d) {
    const y = height - AXIS_PX;
    ctx.strokeStyle = INK;
    ctx.beginPath(); ctx.moveTo(0, y + 0.5); ctx.lineTo(width, y + 0.5); ctx.stroke();
    // A tick step that leaves at least ~70 px between labels.
    const steps = [0.1, 0.2, 0.5, 1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 1800, 3600];
    const step = steps.find((s) => (s / d) * width >= 70) || 3600;
    ctx.fillStyle = MUTED;
    ctx.textAlign = "center";
    for (let t = 0; t <= d + 1e-9; t += step) {
      const x = (t / d) * width;
      ctx.beginPath(); ctx.moveTo(x + 0.5, y); ctx.lineTo(x + 0.5, y + 4); ctx.stroke();
      const label = d >= 120 ? `${Math.floor(t / 60)}:${String(Math.round(t % 60)).padStart(2, "0")}` : `${+t.toFixed(1)} s`;
      ctx.textAlign = x < 20 ? "left" : x > width - 20 ? "right" : "center";
      ctx.fillText(label, x, y + 11);
    }
    ctx.textAlign = "left";
  }

  _drawCursor(ctx, width, height, d) {
    if (!this.audio) return;
    const t = this.audio.currentTime || 0;
    const x = Math.round((t / d) * width) + 0.5;
    ctx.strokeStyle = "#d93025";
    ctx.lineWidth = 2;
    ctx.beginPath(); ctx.moveTo(x, 0); ctx.lineTo(x, height - AXIS_PX); ctx.stroke();
    ctx.lineWidth = 1;
    this.canvas.dataset.cursorS = t.toFixed(3);
  }

  _animate() {
    cancelAnimationFrame(this._raf);
    const tick = () => {
      this.draw();
      if (this.audio && !this.audio.paused && !this.audio.ended) this._raf = requestAnimationFrame(tick);
    };
    this._raf = requestAnimationFrame(tick);
  }

  _seek(recording_s) {
    if (!this.audio || !this.duration_s) return;
    this.audio.currentTime = Math.max(0, Math.min(this.duration_s, recording_s));
    this.draw();
  }

  _click(event) {
    const box = this.canvas.getBoundingClientRect();
    this._seek(this.xToRecordingTime(event.clientX - box.left));
  }

  _key(event) {
    if (!this.audio) return;
    const step = event.shiftKey ? 10 : 1;
    const now = this.audio.currentTime || 0;
    const to = { ArrowLeft: now - step, ArrowRight: now + step, Home: 0, End: this.duration_s }[event.key];
    if (to === undefined) {
      if (event.key === " " || event.key === "k") {
        event.preventDefault();
        this.audio.paused ? this.audio.play() : this.audio.pause();
      }
      return;
    }
    event.preventDefault();
    this._seek(to);
  }
}

const canvas = document.getElementById("waveform");
if (canvas) {
  const waveform = new Waveform(canvas, document.getElementById("recording"));
  waveform.refresh();
}
