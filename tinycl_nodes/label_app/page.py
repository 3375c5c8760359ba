"""The phone-first page: one self-contained HTML document (inline CSS and JS, no CDN, no fonts),
its web app manifest and icons (installable).

Data never goes through innerHTML: names and reasons come from the robot and are set as text.
Two views: the questions (with the history of answers, undo and change) and what the robot knows
(classes, counts, examples, last seen, recent predictions). When the page or the robot is offline
every answer button is disabled and the page says so: nothing is queued (a name field stays editable). A
name being typed survives a redraw of its question, and its question leaving before it was sent (keep()). A
button that has just appeared, or moved because a card or an answer above it came or went, ignores taps for
SETTLE_MS (a tap that began then is ignored even if the finger lifts later): a tap aimed at the card that left
lands on nothing rather than answering the one that took its place.
"""

from functools import lru_cache

import numpy as np

from ..core.names import MAX_NAME_CHARS
from ..images import encoded
from .store import NO_VERDICT

PAGE = r"""<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1, viewport-fit=cover">
<meta name="theme-color" content="#14532d">
<link rel="manifest" href="/manifest.webmanifest">
<link rel="icon" href="/icon-192.png">
<link rel="apple-touch-icon" href="/icon-192.png">
<title>tinycl · label requests</title>
<style>
:root { --head:3.2rem; --bg:#f4f5f2; --card:#fff; --ink:#1c1f1a; --mute:#62685d; --accent:#166534; --accent-ink:#fff;
        --line:#8a9184; --err:#b91c1c; --new:#1d4ed8; --err-ink:#b91c1c; --new-ink:#1d4ed8; }
@media (prefers-color-scheme: dark) {   /* text in red or blue on the dark card: lighter (the fills stay) */
  :root { --bg:#121410; --card:#1d2119; --ink:#eef0ea; --mute:#a2a99a; --line:#5c6455; --accent:#15803d;
          --err-ink:#fca5a5; --new-ink:#93c5fd; }
}
* { box-sizing: border-box; }
html, body { margin:0; background:var(--bg); color:var(--ink); overflow-wrap:anywhere;   /* a name without spaces */
  font: 17px/1.4 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; -webkit-text-size-adjust:100%; }
header { position:sticky; top:0; z-index:2; display:flex; align-items:center; gap:.6rem; min-height:var(--head);
  padding:.7rem 1rem; padding-top:max(.7rem, env(safe-area-inset-top)); background:#14532d; color:#fff; }
header h1 { font-size:1.1rem; margin:0; flex:1; font-weight:650; letter-spacing:.01em; }
#count { background:#fff; color:#14532d; border-radius:999px; padding:.1rem .6rem; font-weight:700; min-width:2rem; text-align:center; }
#status { font-size:.8rem; padding:.15rem .5rem; border-radius:999px; background:#7f1d1d; color:#fff; }
#status.live { background:#166534; }
main { padding:.8rem; max-width:34rem; margin:0 auto; padding-bottom:6rem; }
.empty { text-align:center; color:var(--mute); padding:2.5rem 1rem; }
.card { background:var(--card); border:1px solid var(--line); border-radius:16px; padding:.8rem; margin:0 0 1rem;
  box-shadow:0 1px 3px rgba(0,0,0,.06); transition:opacity .25s, transform .25s; }
.card.leaving { opacity:0; transform:translateX(40px); }
.card.busy, #history li.busy .acts, #history li.busy .picker { opacity:.6; }
.pic { display:block; width:100%; height:auto; max-height:42vh; object-fit:contain; background:#000; border-radius:10px;
  image-rendering:pixelated; aspect-ratio:1/1; }
.nopic { display:flex; align-items:center; justify-content:center; height:6rem; background:var(--bg);
  border-radius:10px; color:var(--mute); }
.why { margin:.6rem 0 .1rem; font-weight:600; }
.meta { color:var(--mute); font-size:.85rem; display:flex; justify-content:flex-end; gap:.5rem; }
.meta .left { white-space:nowrap; }
.choices { display:grid; grid-template-columns:repeat(auto-fit, minmax(min(100%, 9rem), 1fr)); gap:.55rem; margin:.75rem 0 .6rem; }
button { font:inherit; border:0; border-radius:12px; min-height:56px; padding:.5rem .7rem; cursor:pointer;
  touch-action:manipulation; }
button:disabled { cursor:default; }
.cls { background:var(--accent); color:var(--accent-ink); font-weight:650; font-size:1.05rem; }
.cls small { display:block; font-weight:400; font-size:.8rem; }
.cls:active { filter:brightness(.9); }
form.new { display:flex; gap:.5rem; }
form.new input { flex:1; min-width:0; font:inherit; font-size:1rem; min-height:56px; padding:0 .8rem; border-radius:12px;
  border:2px solid var(--line); background:var(--bg); color:var(--ink); }
form.new input:focus { outline:none; border-color:var(--new); }
form.new button { background:var(--new); color:#fff; font-weight:650; min-width:5rem; }
.err { color:var(--err-ink); font-weight:600; margin-top:.5rem; }
.err:empty { display:none; }
h2 { font-size:1rem; color:var(--mute); margin:1.6rem .2rem .5rem; font-weight:600; }
#history { list-style:none; margin:0; padding:0; }
#history li { display:flex; align-items:center; flex-wrap:wrap; gap:.6rem; padding:.55rem .8rem; background:var(--card);
  border:1px solid var(--line); border-radius:10px; margin-bottom:.4rem; font-size:.92rem; }
#history .txt { flex:1; min-width:8rem; }
#history .state { display:block; color:var(--mute); font-size:.8rem; }
#history .state.refused, #history .state.unanswered { color:var(--err-ink); font-weight:600; }
#history .acts { display:flex; gap:.4rem; }
#history .acts small { display:block; font-size:.75rem; color:var(--mute); }
#history .acts button, .alt button { min-height:48px; min-width:48px; background:var(--bg); color:var(--ink); border:2px solid var(--line); font-size:.9rem; }
.thumb { width:48px; height:48px; object-fit:contain; background:#000; border-radius:6px; image-rendering:pixelated; }
button.zoom { min-height:48px; min-width:48px; padding:0; background:none; border-radius:6px; }
#zoom { position:fixed; inset:0; z-index:4; background:rgba(0,0,0,.88); display:flex; flex-direction:column;
  align-items:center; justify-content:center; gap:.8rem; padding:.8rem; color:#fff; }
#zoom[hidden] { display:none; }
#zoom img { width:100%; max-width:40rem; height:auto; max-height:calc(100vh - 9rem); object-fit:contain;   /* turned */
  min-height:0; border-radius:8px; image-rendering:pixelated; }
#zoom p { margin:0; font-weight:600; overflow-wrap:anywhere; text-align:center; }
.alt { display:flex; gap:.55rem; margin-top:.55rem; }
.alt button { flex:1; }
nav { display:flex; gap:.4rem; max-width:34rem; margin:.6rem auto 0; padding:0 .8rem; }
nav button { flex:1; background:var(--card); color:var(--ink); border:2px solid var(--line); min-height:48px; }
nav button[aria-selected=true] { border-color:var(--accent); font-weight:700; }
#kept { background:var(--card); border:2px solid var(--new); padding:.8rem 1rem; border-radius:12px; margin:0 0 1rem; font-weight:600; }
#offline { background:#7f1d1d; color:#fff; padding:.9rem 1rem; border-radius:12px; margin-bottom:1rem; font-weight:600; }
.cls-list { list-style:none; margin:0; padding:0; }
.cls-list li { background:var(--card); border:1px solid var(--line); border-radius:12px; padding:.7rem .8rem; margin-bottom:.6rem; }
.cls-list .name { font-weight:700; font-size:1.05rem; }
.cls-list .ex { display:flex; gap:.4rem; margin-top:.4rem; }
#preds li { display:flex; justify-content:space-between; gap:.5rem; padding:.45rem .8rem; border-bottom:1px solid var(--line); }
#preds { list-style:none; margin:0; padding:0; }
label.sr { position:absolute; width:1px; height:1px; overflow:hidden; clip:rect(0 0 0 0); }

#history .name { font-weight:650; }
#history .tag { color:var(--new-ink); font-size:.75rem; margin-left:.35rem; }
#history .when { color:var(--mute); white-space:nowrap; }
#history .picker { flex-basis:100%; }          /* Change's choices: under the answer, the question's buttons */
#history .picker .choices { margin:.1rem 0 0; }
#history .acts button[aria-expanded=true] { border-color:var(--accent); }
/* the toast lies on the header's band (the header is always at the top): at the bottom it hid the newest answer in
   the history, or the buttons of the next question, for 2.5 s */
#toast { position:fixed; top:0; left:0; right:0; z-index:3; min-height:var(--head); display:flex; align-items:center;
  padding:.4rem 1rem; padding-top:max(.4rem, env(safe-area-inset-top)); background:#1c1f1a; color:#fff;
  font-weight:600; line-height:1.25; box-shadow:0 2px 8px rgba(0,0,0,.3); transition:opacity .2s; }
#toast.error { background:var(--err); }
#toast[hidden] { display:flex; opacity:0; pointer-events:none; }
#unpaired { background:#7f1d1d; color:#fff; padding:1rem; border-radius:12px; }
</style>
</head>
<body>
<header><h1>Label requests</h1><span id="status" role="status">offline</span><span id="count" role="status" aria-label="questions waiting">0</span></header>
<nav role="tablist" aria-label="views">
  <button type="button" role="tab" id="tab-ask" aria-controls="view-ask" aria-selected="true">Questions</button>
  <button type="button" role="tab" id="tab-know" aria-controls="view-know" aria-selected="false">What the robot knows</button>
</nav>
<main>
  <div id="unpaired" role="alert" hidden>This phone is not paired any more: scan the QR code in the robot's terminal again (<code>tinycl pair</code> shows it).</div>
  <div id="offline" role="alert" hidden>The robot is unreachable. Answering is off until it is back; nothing is queued.</div>
  <section id="view-ask" role="tabpanel" aria-labelledby="tab-ask">
    <p id="kept" role="status" hidden></p>
    <section id="pending" aria-live="polite" aria-label="questions"></section>
    <p class="empty" id="empty">No questions right now.<br>New ones appear here as the robot asks.</p>
    <h2 id="h-history">Your recent answers</h2>
    <p class="empty" id="nohistory">No answers yet.</p>
    <ul id="history" aria-labelledby="h-history"></ul>
  </section>
  <section id="view-know" role="tabpanel" aria-labelledby="tab-know" hidden>
    <h2 id="h-classes">Things the robot has learned</h2>
    <ul class="cls-list" id="classes" aria-labelledby="h-classes"></ul>
    <p class="empty" id="noclasses">Nothing learned yet.</p>
    <h2 id="h-preds">What it saw last</h2>
    <ul id="preds" aria-labelledby="h-preds"></ul>
  </section>
</main>
<div id="toast" role="alert" hidden></div>
<div id="zoom" role="dialog" aria-modal="true" aria-label="the picture, larger" hidden><img alt=""><p></p>
  <button type="button" class="alt-close">Close</button></div>
<script>
"use strict";
(() => {
  const $ = (s, el = document) => el.querySelector(s);
  const pendingEl = $("#pending"), historyEl = $("#history"), toastEl = $("#toast");
  const deadlines = new Map();          // request id -> ms deadline (local clock)
  const SETTLE_MS = 600;               // a button that just appeared or moved ignores taps this long
  const MAX_NAME = __MAX_NAME_CHARS__;  // the robot's limit (core/names.MAX_NAME_CHARS), put here by page.py
  let ws = null, retry = 500, retryTimer = 0, toastTimer = 0, stopped = false, robotOnline = true, netOff = false,
      undoS = 120, robotChanges = true, robotVerdicts = true,
      classes = [];
  // The page's own check that the app hears it: a link cut without a FIN (the robot's Wi-Fi drops) never fires
  // onclose, and aiohttp's heartbeat pings are invisible to JS. The app replies to each message in order (ok, error
  // or pong): no reply within REPLY_MS and the socket is given up; an idle page pings every PING_MS.
  const PING_MS = 5000, REPLY_MS = 5000, CONNECT_MS = 8000;
  let waiting = [], lastSent = 0;       // the messages whose reply is awaited, oldest first: {at, ping}

  function el(tag, props = {}, ...kids) {
    const e = document.createElement(tag);
    for (const [k, v] of Object.entries(props)) {
      if (k === "class") e.className = v; else if (k === "text") e.textContent = v;
      else if (k.startsWith("data-") || k.startsWith("aria-")) e.setAttribute(k, v); else e[k] = v;
    }
    for (const k of kids) if (k) e.append(k);
    return e;
  }
  function toast(text, isError) {      // "" hides it: one left from an earlier reply would read as the next one's
    clearTimeout(toastTimer);
    if (!text) { toastEl.hidden = true; return; }
    toastEl.textContent = text;
    toastEl.className = isError ? "error" : "";
    toastEl.hidden = false;
    toastTimer = setTimeout(() => { toastEl.hidden = true; }, isError ? 6000 : 2500);
  }
  function cardOf(id) {
    for (const c of pendingEl.children) if (c.dataset.requestId === id) return c;
    return null;
  }
  // netOff: the browser's own "offline" (no network at all), until its "online" or a socket that opens
  function connected() { return !!ws && ws.readyState === WebSocket.OPEN && !netOff; }
  function online() { return connected() && robotOnline; }
  function refresh() {
    const n = pendingEl.children.length;
    $("#count").textContent = String(n);
    $("#empty").hidden = n > 0;
    $("#nohistory").hidden = historyEl.children.length > 0;
    document.title = (n ? "(" + n + ") " : "") + "tinycl · label requests";
    const off = !online();
    $("#offline").hidden = !off || stopped;
    const buttons = "#pending button, #pending input, #history .acts button, #history .picker .cls, " +
                    "#history .picker .typed, #classes button.rename";   // Cancel works offline
    for (const b of document.querySelectorAll(buttons)) {
      const card = b.closest(".card"), typing = b.tagName === "INPUT";   // a name being typed stays editable
      b.disabled = (off && !typing) || (!!card && card.classList.contains("busy")) || (!typing && !!b.closest(".settling"));
    }
    for (const b of document.querySelectorAll("#history li.busy .acts button, #history li.busy .picker button"))
      b.disabled = true;                // a change sent: off until its verdict (or a reconnect), Cancel too
  }
  function settle(items) {             // text fields stay usable: what the person types never jumps
    for (const e of items) {
      e.classList.add("settling");
      clearTimeout(e.settleTimer);
      e.settleTimer = setTimeout(() => { e.classList.remove("settling"); refresh(); }, SETTLE_MS);
    }
    refresh();
  }
  // a press that began on a settling button: its click is dropped even if the button settles before the finger lifts.
  // pointerdown starts every press; the same press's later events only add to it: a tap's mousedown comes after the
  // finger lifts, and, the button settled by then, it cleared the flag and the click answered the card that moved in
  let pressedSettling = false;
  const onSettling = (e) => !!(e.target.closest && e.target.closest(".settling"));
  addEventListener("pointerdown", (e) => { pressedSettling = onSettling(e); }, {capture: true});
  for (const type of ["touchstart", "mousedown"])
    addEventListener(type, (e) => { pressedSettling = pressedSettling || onSettling(e); }, {capture: true});
  addEventListener("keydown", () => { pressedSettling = false; }, {capture: true});
  addEventListener("click", (e) => {
    if (pressedSettling) { e.stopPropagation(); e.preventDefault(); }
    pressedSettling = false;
  }, {capture: true});
  function after(e) {                  // the siblings below e: they move when it goes
    const out = [];
    for (let n = e.nextElementSibling; n; n = n.nextElementSibling) out.push(n);
    return out;
  }
  function left(ms) {
    const s = Math.max(0, Math.round(ms / 1000));
    if (s >= 3600) return "expires in " + Math.round(s / 3600) + " h";
    if (s >= 60) return "expires in " + Math.round(s / 60) + " min";
    return "expires in " + s + " s";
  }
  function ago(t) {                    // t: seconds by the phone's clock (a robot's answer time is given as an age)
    const s = Math.max(0, Math.round(Date.now() / 1000 - t));
    if (s < 60) return "just now";
    if (s < 3600) return Math.round(s / 60) + " min ago";
    return new Date(t * 1000).toLocaleTimeString([], {hour: "2-digit", minute: "2-digit"});
  }
  function setBusy(card, busy) {
    card.classList.toggle("busy", busy);
    refresh();
  }
  // A change or withdrawal sent: its answer's buttons (and Change's choices, left where they are) are off until the
  // labeler's verdict, an error from the app or a reconnect. The choices closed at the first tap and the answer below
  // moved up under the thumb: a bounce withdrew it, or changed it.
  const changing = new Set();           // request ids whose change awaits its verdict
  function changeSent(li) {
    changing.add(li.dataset.requestId);
    li.classList.add("busy");
    refresh();
  }
  function changeDone(id) {              // a verdict, an error or a reconnect: the answer's buttons are on again
    changing.delete(id);
    const li = historyEl.querySelector('li[data-request-id="' + CSS.escape(id) + '"]');
    if (li) li.classList.remove("busy");
    refresh();
  }
  function send(message) {
    if (!online()) { toast("The robot is unreachable: nothing was sent", true); return false; }
    toast("");                          // the reply to this one will say what happened to it
    put(message);
    return true;
  }
  function put(message) {               // onto the socket, its reply awaited (see checkLink)
    ws.send(typeof message === "string" ? message : JSON.stringify(message));
    waiting.push({at: lastSent = Date.now(), ping: message.type === "ping"});
  }
  function ping() { if (ws && ws.readyState === WebSocket.OPEN) put({type: "ping"}); }
  function checkLink() {
    const sock = ws, now = Date.now();
    if (!sock) return;
    if (sock.readyState === WebSocket.CONNECTING) { if (now - sock.startedAt > CONNECT_MS) lost(sock); }
    else if (sock.readyState !== WebSocket.OPEN) return;
    else if (waiting.length) { if (now - waiting[0].at > REPLY_MS) lost(sock); }
    else if (now - lastSent >= PING_MS) ping();
  }
  function answer(card, body) {
    $(".err", card).textContent = "";
    $("#kept").hidden = true;
    setBusy(card, true);
    if (!send(Object.assign({type: "answer", request_id: card.dataset.requestId}, body))) setBusy(card, false);
  }
  // What is wrong with a name, in one line ("": nothing), counted as the robot keeps it (NFC, spaces collapsed).
  function nameProblem(name) {
    const clean = name.normalize("NFC").trim().split(/\s+/).join(" "), n = [...clean].length;
    if (!clean) return "The name is empty: type one";
    return n > MAX_NAME ? "A name has at most " + MAX_NAME + " characters; this one has " + n : "";
  }
  function askName(question, current) {   // a name from a prompt, or null: cancelled, unchanged, or what is wrong said
    toast("");
    const typed = prompt(question, current);
    if (typed === null) return null;
    const name = typed.trim(), problem = nameProblem(name);
    if (problem) { toast(problem + ": nothing was sent", true); return null; }
    if (name === current) { toast("That is its name already: nothing was sent", false); return null; }
    return name;
  }
  function examples(n) { return n === 1 ? "1 example" : n + " examples"; }
  let audio = null;                     // a sound needs a tap first (browsers' autoplay rule)
  document.addEventListener("pointerdown", () => {
    if (!audio && window.AudioContext) { try { audio = new AudioContext(); } catch (e) { audio = null; } }
  }, {once: true});
  function notify() {                   // a new question while the person looks elsewhere
    if (!document.hidden && document.hasFocus()) return;
    if (navigator.vibrate) { try { navigator.vibrate(150); } catch (e) { /* not allowed */ } }
    if (audio && audio.state === "running") {
      const o = audio.createOscillator(), g = audio.createGain();
      g.gain.value = 0.05; o.frequency.value = 880;
      o.connect(g).connect(audio.destination); o.start(); o.stop(audio.currentTime + 0.12);
    }
  }
  function addRequest(r) {
    deadlines.set(r.id, Date.now() + r.expires_in_s * 1000);
    const pic = r.image
      ? el("img", {class: "pic", src: r.image, alt: "the sample the robot asks about", width: r.width, height: r.height})
      : el("div", {class: "nopic", text: "The robot could not keep a picture of this sample."});
    if (r.image && r.width && r.height) pic.style.aspectRatio = r.width + " / " + r.height;
    const choices = el("div", {class: "choices", role: "group", "aria-label": "known things"});
    for (const c of r.candidates)
      choices.append(classButton(c.id, c.name, c.sample_count, (b) => answer(b.closest(".card"), {class_id: c.id})));
    const skip = el("button", {type: "button", class: "skip", text: "Skip"});
    const unsure = el("button", {type: "button", class: "unsure", text: "Not sure"});
    for (const [b, why] of [[skip, "skip"], [unsure, "unsure"]])
      b.addEventListener("click", () => {
        const card = b.closest(".card");
        if (send({type: "skip", request_id: card.dataset.requestId, why})) { $("#kept").hidden = true; setBusy(card, true); }
      });
    const n = r.group_size > 1 ? " (" + r.group_size + " alike samples: one answer labels them all)" : "";
    const old = cardOf(r.id);
    // an update (or a snapshot after a reconnect) redraws around the name field: the field itself stays, with what
    // is typed, the caret and the focus (a phone's keyboard stays up)
    const form = old ? $("form.new", old) : nameForm();
    const parts = [pic, el("div", {class: "why", text: (r.reason || "What is this?") + n}),
      el("div", {class: "meta"}, el("span", {class: "left", text: left(r.expires_in_s * 1000)})),
      r.candidates.length ? choices : null, form, el("div", {class: "alt"}, skip, unsure),
      el("div", {class: "err", role: "status"})].filter(Boolean);
    let card = old;
    if (old) {
      for (const k of [...old.children]) if (k !== form) k.remove();
      const at = parts.indexOf(form);
      form.before(...parts.slice(0, at));
      form.after(...parts.slice(at + 1));
    } else {
      card = el("article", {class: "card", "data-request-id": r.id, "aria-label": "question"}, ...parts);
      pendingEl.append(card);
      offerKept(card);
      notify();
    }
    settle([card]);                     // new, or redrawn (its choices may have changed order)
  }
  function nameForm() {
    const inputId = "new-" + Math.random().toString(36).slice(2);
    const input = el("input", {name: "new", type: "text", placeholder: "Or type a new name",
                               autocomplete: "off", enterKeyHint: "send", id: inputId});
    const form = el("form", {class: "new"}, el("label", {class: "sr", htmlFor: inputId, text: "name of something new"}),
                    input, el("button", {type: "submit", text: "Add"}));
    form.addEventListener("submit", (ev) => {
      ev.preventDefault();
      const card = form.closest(".card"), name = input.value.trim(), problem = nameProblem(name);
      if (problem) {                    // said on the card and on the toast (the card's line may be off screen)
        $(".err", card).textContent = problem;
        toast(problem + ": nothing was sent", true);
        input.focus();
        return;
      }
      answer(card, {new_class_name: name});
    });
    // too long is said as it is typed (a maxLength cut a pasted name without a word); the text stays to be edited
    input.addEventListener("input", () => {
      const err = $(".err", form.closest(".card")), problem = input.value.trim() ? nameProblem(input.value) : "";
      if (problem || err.dataset.name) { err.textContent = problem; err.dataset.name = problem ? "1" : ""; }
    });
    return form;
  }
  // A name typed for a question that left before it was sent (expired, answered or skipped elsewhere) is not thrown
  // away: the page says so and puts it in the next question's name field (not sent: the person taps Add).
  const LEFT = {expired: "expired", dropped: "was dropped (too many questions)", answered: "was answered elsewhere",
                skipped: "was skipped elsewhere"};
  let kept = "";
  function keep(name, why) {
    kept = name;
    const k = $("#kept");
    k.textContent = "The question you were typing for " + (LEFT[why] || "left") + " before you sent it: nothing was " +
      "sent. \u201c" + name + "\u201d is kept: it waits in the name field of the next question.";
    k.hidden = false;
    for (const c of pendingEl.children) if (offerKept(c)) break;
  }
  function offerKept(card) {           // the kept name into this question's field, if it is free
    const input = $("input[name=new]", card);
    if (!kept || !card.dataset.requestId || card.classList.contains("busy") || input.value) return false;
    input.value = kept;
    kept = "";
    return true;
  }
  function removeRequest(id, why) {
    deadlines.delete(id);
    const card = cardOf(id);
    if (!card) return;
    const input = $("input[name=new]", card), typing = document.activeElement === input;
    // busy or unconfirmed: this page answered it (a reply lost with the link: the snapshot says it arrived)
    const draft = card.classList.contains("busy") || card.dataset.unconfirmed ? "" : input.value.trim();
    card.classList.add("leaving", "busy");
    card.dataset.requestId = "";            // gone for the protocol at once, gone from view after the fade
    refresh();
    setTimeout(() => { const moved = after(card); card.remove(); settle(moved); }, 250);
    if (draft) {
      keep(draft, why);
      const next = [...pendingEl.children].find(c => c.dataset.requestId && $("input[name=new]", c).value === draft);
      if (typing && next) $("input[name=new]", next).focus();
    }
  }
  const STATE = {sent: "sent, waiting for the robot", learned: "learned", refused: "refused", withdrawn: "withdrawn",
                 unanswered: "no word from the robot"};
  // An answer's two ways back, each saying what it does on the button: "Undo" withdrew the answer and the question with
  // it (nothing learned, never asked again), where a person after a mis-tap wanted Change (the right class).
  const ACTS = {change: "Change the answer ", undo: "Withdraw the answer "};
  function act(kind, text, what, name) {
    return el("button", {type: "button", class: kind, "aria-label": ACTS[kind] + name}, text,
              el("small", {text: what}));
  }
  // A robot that says no verdict (a board on a library built for fewer publishers): its answers cannot say "learned"
  const NO_VERDICT = "sent; __NO_VERDICT__";   // label_app/store.NO_VERDICT
  function said(status) { return status === "sent" && !robotVerdicts ? NO_VERDICT : STATE[status]; }
  function addHistory(item, atEnd) {
    const name = nameOf(item.class_id, item.class_name);
    const state = el("span", {class: "state " + item.status, text: said(item.status) + (item.message ? ": " + item.message : "")});
    const acts = el("span", {class: "acts"});
    const at = Date.now() / 1000 - (item.age_s || 0);   // the phone's clock: the robot's may be minutes off
    fillActs(acts, item.id, name, item.status === "withdrawn" || (item.age_s || 0) >= undoS);
    const li = el("li", {"data-request-id": item.id, "data-at": String(at), "data-class-id": String(item.class_id),
                         "data-sent-name": item.class_name},
      item.image ? thumb(item.image, "the sample you answered " + name) : null,
      el("span", {class: "txt"}, el("span", {class: "name", text: name}),
         item.new ? el("span", {class: "tag", text: "new"}) : null, state),
      el("span", {class: "when", text: ago(at)}), acts);
    const old = historyEl.querySelector('li[data-request-id="' + CSS.escape(item.id) + '"]');
    // a change of this page's awaits its verdict while the answer says "sent"; the verdict closes Change's choices.
    // A robot that says no verdict gives none: its change is done once sent (it kept the answer busy for good)
    const sentHere = changing.has(item.id), waits = sentHere && item.status === "sent" && robotVerdicts;
    if (waits) li.classList.add("busy"); else changing.delete(item.id);
    if (old) {
      old.replaceWith(li);
      if ($(".picker", old) && $("button.change", li) && (waits || !sentHere)) pick(li, false);   // still open
    } else if (atEnd) historyEl.append(li); else historyEl.prepend(li);
    while (historyEl.children.length > 20) historyEl.lastChild.remove();
    if (!old && !atEnd) settle(historyEl.children);   // prepended: every answer below moved
    // the verdict on this page's change closed its choices (a withdrawal, its buttons): the answers below move up,
    // under a thumb that may still be bouncing
    else if (old && sentHere && !waits) settle(after(li));
    else refresh();
  }
  // An answer's Change answer and Withdraw (none once withdrawn or past undo_s), or, for a robot that cannot change
  // an answer (e.g. a board's latent app: no reader of label_correction), a line that says so: the app refuses it too.
  function fillActs(acts, id, name, over) {
    acts.textContent = "";
    if (over) return;
    if (!robotChanges) {
      acts.append(el("small", {class: "nochange", text: "this robot cannot change an answer"}));
      return;
    }
    const change = act("change", "Change answer", "pick the right one", name);
    change.setAttribute("aria-expanded", "false");
    change.addEventListener("click", () => pick(change.closest("li"), true));
    const undo = act("undo", "Withdraw", "not asked again", name);
    undo.addEventListener("click", () => {
      if (send({type: "undo", request_id: id})) changeSent(undo.closest("li"));
    });
    acts.append(change, undo);        // after a mis-tap Change is the one wanted: first, where the thumb goes
  }
  // The app found whether the robot takes changes: every answer's buttons follow (the questions are left alone)
  function setChanges(on) {
    if (on === robotChanges) return;
    robotChanges = on;
    for (const li of historyEl.children) {
      const picker = $(".picker", li);
      if (picker) picker.remove();
      fillActs($(".acts", li), li.dataset.requestId, $(".name", li).textContent, !!$(".state.withdrawn", li) ||
               Date.now() / 1000 - Number(li.dataset.at) >= undoS);
    }
    refresh();
  }
  // The app found whether the robot says verdicts: the answers still sent say whether one will come
  function setVerdicts(on) {
    if (on === robotVerdicts) return;
    robotVerdicts = on;
    for (const s of historyEl.querySelectorAll(".state.sent"))
      s.textContent = s.textContent.replace(on ? NO_VERDICT : STATE.sent, said("sent"));
  }
  // Change answer: the known classes as the question's buttons (one tap, as answering), "New class…" (typed) and
  // Cancel, under the answer; a second tap on Change closes them. A prompt asked to type a class's name instead.
  function pick(li, toggle) {
    const change = $("button.change", li), open = $(".picker", li), id = li.dataset.requestId;
    const current = Number(li.dataset.classId);
    for (const p of historyEl.querySelectorAll(".picker")) unpick(p);
    if (open && toggle) { change.focus(); return; }
    const choices = el("div", {class: "choices", role: "group", "aria-label": "what it is instead"});
    for (const k of classes)
      if (k.id !== current)
        choices.append(classButton(k.id, k.name, k.count, () => {
          if (send({type: "undo", request_id: id, class_id: k.id})) changeSent(li);
        }));
    const typed = el("button", {type: "button", class: "typed", text: "New class\u2026"});
    typed.addEventListener("click", () => {
      const name = askName("What is it instead? Type its name", "");
      if (name && send({type: "undo", request_id: id, new_class_name: name})) changeSent(li);
    });
    const cancel = el("button", {type: "button", class: "cancel", text: "Cancel"});
    cancel.addEventListener("click", () => { unpick(picker); change.focus(); });
    const picker = el("div", {class: "picker", id: "pick-" + id, "data-classes": others(current)},
                      choices.children.length ? choices : null, el("div", {class: "alt"}, typed, cancel));
    li.append(picker);
    change.setAttribute("aria-controls", picker.id);
    change.setAttribute("aria-expanded", "true");
    if (!toggle) { refresh(); return; }  // redrawn: the classes changed, or the answer's verdict came
    toast("");                          // a toast left from before would read as the reply to this
    settle([picker]);                   // a bounce of the tap on Change answers nothing
  }
  function others(current) {          // the classes Change offers, as a key: its choices are redrawn when they change
    return classes.filter(k => k.id !== current).map(k => k.id).join(" ");
  }
  function unpick(picker) {
    const change = $("button.change", picker.closest("li"));
    if (change) change.setAttribute("aria-expanded", "false");
    picker.remove();
  }
  // The labeler owns a class's name and count; the app passes its list on (m.classes). A question's buttons and the
  // history carry the name (and count) as of when they were sent: a class renamed or taught since (here, on another
  // phone, over ROS 2) is shown as the class list shows it ("sitting" on a button beside a list saying "seated", "7
  // examples" on a button beside "8" in the list, the history's old name after a rename).
  function nameOf(id, sent) {
    const known = classes.find(k => k.id === id);
    return known ? known.name : sent;
  }
  function countOf(id, sent) {
    const known = classes.find(k => k.id === id);
    return known ? known.count : sent;
  }
  // A known class as one large button, the same in a question and in Change's choices (showClasses keeps its name
  // and count the labeler's)
  function classButton(id, name, count, tapped) {
    const b = el("button", {class: "cls", type: "button", "data-class-id": String(id)},
                 document.createTextNode(name), el("small"));
    nameButton(b, nameOf(id, name), countOf(id, count));
    b.addEventListener("click", () => tapped(b));
    return b;
  }
  function nameButton(b, name, count) {
    b.firstChild.textContent = name;
    b.lastChild.textContent = examples(count);
    b.dataset.count = String(count);
    b.setAttribute("aria-label", "It is " + name);
  }
  function thumb(src, alt) {            // a 320x200 plot is unreadable at 48 px: a tap shows it as wide as the phone
    const b = el("button", {type: "button", class: "zoom", "aria-label": "Show larger: " + alt},
                 el("img", {class: "thumb", src, alt}));
    b.addEventListener("click", () => {
      const z = $("#zoom");
      $("img", z).src = src; $("img", z).alt = alt; $("p", z).textContent = alt;
      z.hidden = false;
      history.pushState({zoom: true}, "");   // the phone's Back closes it (it left the page)
      $("button", z).focus();
    });
    return b;
  }
  function closeZoom() {
    if ($("#zoom").hidden) return;
    $("#zoom").hidden = true;
    if (history.state && history.state.zoom) history.back();
  }
  if (history.state && history.state.zoom) history.replaceState(null, "");   // reloaded with it open
  window.addEventListener("popstate", () => { $("#zoom").hidden = true; });
  $("#zoom").addEventListener("click", closeZoom);
  document.addEventListener("keydown", (ev) => {
    if (ev.key !== "Escape") return;
    if (!$("#zoom").hidden) { closeZoom(); return; }
    const picker = $("#history .picker");
    if (picker) { const change = $("button.change", picker.closest("li")); unpick(picker); if (change) change.focus(); }
  });
  function classItem(id) {              // one class of the list; Rename asks about the name it shows then
    const rename = el("button", {type: "button", class: "rename", text: "Rename"});
    const li = el("li", {"data-class-id": String(id)}, el("div", {class: "name"}), el("div", {class: "meta-c"}),
                  el("div", {class: "ex"}), el("div", {class: "alt"}, rename));
    rename.addEventListener("click", () => {
      const name = askName("New name for " + li.dataset.name, li.dataset.name);
      if (name) send({type: "rename", class_id: id, name});
    });
    return li;
  }
  function fillClass(li, c) {           // only what changed: a node replaced under a finger loses its tap
    const last = c.last_age_s != null ? " · last seen " + ago(Date.now() / 1000 - c.last_age_s) : "";
    const seen = examples(c.count) + last;
    li.dataset.name = c.name;
    for (const [sel, text] of [[".name", c.name], [".meta-c", seen]])
      if ($(sel, li).textContent !== text) $(sel, li).textContent = text;
    $("button.rename", li).setAttribute("aria-label", "Rename " + c.name);
    const pictures = c.examples.join(" ") + " " + c.name;
    if (li.dataset.pictures === pictures) return;
    li.dataset.pictures = pictures;
    const ex = $(".ex", li);
    ex.textContent = "";
    for (const src of c.examples) ex.append(thumb(src, "an example of " + c.name));
  }
  function showClasses(m) {
    classes = m.classes;
    for (const b of document.querySelectorAll("main button.cls[data-class-id]")) {   // questions, Change's choices
      const id = Number(b.dataset.classId), name = nameOf(id, b.firstChild.textContent);
      const count = countOf(id, Number(b.dataset.count));
      if (b.firstChild.textContent !== name || b.dataset.count !== String(count)) nameButton(b, name, count);
    }
    for (const li of historyEl.querySelectorAll("li[data-class-id]")) {   // in place: a tap on Undo is not lost
      const name = nameOf(Number(li.dataset.classId), li.dataset.sentName), n = $(".name", li);
      if (n.textContent === name) continue;
      n.textContent = name;
      for (const b of li.querySelectorAll(".acts button")) b.setAttribute("aria-label", ACTS[b.className] + name);
      const img = $("img.thumb", li);
      if (img) {
        img.alt = "the sample you answered " + name;
        img.parentNode.setAttribute("aria-label", "Show larger: " + img.alt);
      }
    }
    for (const p of historyEl.querySelectorAll(".picker")) {   // a class taught or gone meanwhile
      const li = p.closest("li");
      if (p.dataset.classes !== others(Number(li.dataset.classId))) pick(li, false);
    }
    // in place, as the history: the list comes with every labelled sample (30 a second from a camera), and a press
    // on Rename or a picture that spans a rebuild is lost
    const list = $("#classes"), listed = new Set(m.classes.map(c => String(c.id)));
    for (const li of [...list.children]) if (!listed.has(li.dataset.classId)) li.remove();
    let prev = null, added = false;
    for (const c of m.classes) {
      let li = list.querySelector('li[data-class-id="' + c.id + '"]');
      if (!li) { li = classItem(c.id); added = true; }
      fillClass(li, c);
      const at = prev ? prev.nextSibling : list.firstChild;
      if (at !== li) list.insertBefore(li, at);
      prev = li;
    }
    if (added) refresh();                // a new Rename is off while the robot is unreachable, as the others
    $("#noclasses").hidden = m.classes.length > 0;
    // what it saw and when, not how sure: the learner's confidence is a softmax of distances, not a probability
    // (on MNIST 95 % of its predictions said "100% sure", and so did 75 % of its mistakes and 88 % of the digits
    // it had never been taught)
    const preds = $("#preds"); preds.textContent = "";
    for (const p of m.predictions)
      preds.append(el("li", {}, el("span", {text: p.class_name || "not sure yet"}),
                      el("span", {text: ago(Date.now() / 1000 - p.age_s)})));
  }
  function onMessage(m) {
    if (m.type === "ok" || m.type === "error" || m.type === "pong") waiting.shift();   // the replies
    switch (m.type) {
      case "snapshot": {                // e.g. after a reconnect: the questions still open keep what is typed
        undoS = m.undo_s || undoS; robotOnline = m.robot ? m.robot.online : true;
        robotChanges = m.robot ? m.robot.changes !== false : true;     // its answers' buttons, redrawn below
        robotVerdicts = m.robot ? m.robot.verdicts !== false : true;
        const open = new Set(m.pending.map(r => r.id)), answered = new Set(m.history.map(h => h.id));
        for (const c of [...pendingEl.children]) {
          const id = c.dataset.requestId;
          if (id && !open.has(id)) removeRequest(id, answered.has(id) ? "answered" : "expired");
        }
        for (const r of m.pending) addRequest(r);
        for (const c of pendingEl.children)
          if (c.dataset.unconfirmed && c.dataset.requestId) {   // its answer's reply was lost, and it is still asked
            delete c.dataset.unconfirmed;
            $(".err", c).textContent = "Your answer has not reached the robot: answer again.";
          }
        const picking = $("#history .picker"), pickedId = picking && picking.closest("li").dataset.requestId;
        historyEl.textContent = "";
        for (const h of m.history) addHistory(h, true);
        showClasses(m);
        // Change's choices open across the redraw, as a name being typed: the thumb on its way finds them there
        const picked = pickedId && historyEl.querySelector('li[data-request-id="' + CSS.escape(pickedId) + '"]');
        if (picked && $("button.change", picked)) pick(picked, false);
        refresh(); break;
      }
      case "request": addRequest(m.request); break;
      case "remove": removeRequest(m.id, m.why); break;
      case "answered": addHistory(m.item, false);
        if (m.item.status === "refused") toast("The robot refused " + m.item.class_name + ": " + m.item.message, true);
        else if (m.item.status === "unanswered") toast("No word from the robot: " + m.item.message, true);
        else if (m.item.message) toast("Still " + m.item.class_name + ": " + m.item.message, true);   // a change refused
        break;
      case "classes": showClasses(m); break;
      case "robot": robotOnline = m.online; setChanges(m.changes !== false); setVerdicts(m.verdicts !== false);
        setStatus(); break;
      case "ok": toast("Sent: " + m.class_name, false); break;
      case "rename": toast(m.message, m.status !== "renamed"); break;   // the labeler's verdict, or its silence
      case "error": {
        const card = m.request_id ? cardOf(m.request_id) : null;
        if (card) { setBusy(card, false); $(".err", card).textContent = m.message; }
        if (m.request_id && changing.has(m.request_id)) changeDone(m.request_id);   // refused by the app: nothing sent
        toast(m.message, true); break;
      }
    }
  }
  function setStatus() {
    const s = $("#status"), ok = online();
    s.textContent = ok ? "live" : (connected() ? "robot unreachable" : "offline");
    s.className = ok ? "live" : "";
    refresh();
  }
  function tab(which) {
    for (const [t, v] of [["tab-ask", "view-ask"], ["tab-know", "view-know"]]) {
      const on = t === which;
      $("#" + t).setAttribute("aria-selected", String(on));
      $("#" + v).hidden = !on;
    }
  }
  $("#tab-ask").addEventListener("click", () => tab("tab-ask"));
  $("#tab-know").addEventListener("click", () => tab("tab-know"));
  function connect() {
    clearTimeout(retryTimer);
    if (stopped || (ws && ws.readyState <= WebSocket.OPEN)) return;   // connecting or open already
    const sock = ws = new WebSocket((location.protocol === "https:" ? "wss://" : "ws://") + location.host + "/ws");
    sock.startedAt = Date.now();
    sock.onopen = () => { retry = 500; netOff = false; waiting = []; lastSent = Date.now(); setStatus(); };
    sock.onmessage = (ev) => { try { onMessage(JSON.parse(ev.data)); } catch (e) { console.error(e); } };
    sock.onclose = () => lost(sock);
  }
  // The socket is over: it closed, or it is silent (closed from here: over a dead link its onclose may never come).
  // What was in flight is not confirmed: its card is answerable again once the snapshot says it is still asked.
  async function lost(sock) {
    if (ws !== sock) return;            // given up already, or replaced
    sock.onopen = sock.onmessage = sock.onclose = null;
    sock.close();
    ws = null;
    const unconfirmed = waiting.some(w => !w.ping);
    waiting = [];
    for (const id of [...changing]) {   // in flight: the snapshot says where the answer stands; Change is on again
      const li = historyEl.querySelector('li[data-request-id="' + CSS.escape(id) + '"]');
      if (li && $(".picker", li)) { unpick($(".picker", li)); settle(after(li)); }
      changeDone(id);
    }
    for (const c of pendingEl.children)
      if (c.dataset.requestId && c.classList.contains("busy")) {
        c.classList.remove("busy");
        c.dataset.unconfirmed = "1";
        $(".err", c).textContent = "No reply from the robot: your answer is not confirmed.";
      }
    setStatus();
    if (unconfirmed) toast("No reply from the robot: what you sent is not confirmed. Reconnecting…", true);
    try {                               // bounded: over a dead link a request may hang for minutes
      const r = await fetch("api/state", {cache: "no-store", signal: AbortSignal.timeout(CONNECT_MS)});
      if (r.status === 403) { stopped = true; $("#unpaired").hidden = false; refresh(); return; }
    } catch (e) { /* server down or unreachable: retry */ }
    if (ws || stopped) return;          // a newer connection (see reconnectNow) retries for itself
    retryTimer = setTimeout(connect, retry);
    retry = Math.min(retry * 2, 10000);
  }
  // Back online, or back from the background: try now, not when the backoff says (up to 10 s later); an open socket
  // is pinged, not trusted (after a sleep or a cut it may be silent).
  function reconnectNow() {
    if (connected()) { setStatus(); ping(); } else connect();
  }
  window.addEventListener("offline", () => { netOff = true; if (ws) lost(ws); else setStatus(); });
  window.addEventListener("online", () => { netOff = false; reconnectNow(); });
  document.addEventListener("visibilitychange", () => { if (document.visibilityState === "visible") reconnectNow(); });
  setInterval(() => {
    checkLink();
    const now = Date.now();
    for (const [id, t] of deadlines) { const c = cardOf(id); if (c) $(".left", c).textContent = left(t - now); }
    for (const li of historyEl.children) {    // "ago" moves on; Undo and Change go when undo_s is over
      const at = Number(li.dataset.at);
      $(".when", li).textContent = ago(at);
      if (now / 1000 - at < undoS) continue;
      $(".acts", li).textContent = "";
      const picker = $(".picker", li);
      if (picker) picker.remove();
    }
  }, 1000);
  window.tinycl = {send};               // for tests and the curious
  refresh();
  connect();
})();
</script>
</body>
</html>
""".replace("__MAX_NAME_CHARS__", str(MAX_NAME_CHARS)).replace("__NO_VERDICT__", NO_VERDICT)

MANIFEST = """{"name": "tinycl label requests", "short_name": "Label", "start_url": "/", "scope": "/",
 "display": "standalone", "background_color": "#f4f5f2", "theme_color": "#14532d",
 "description": "Answer the robot's questions about what it sees",
 "icons": [{"src": "/icon-192.png", "sizes": "192x192", "type": "image/png", "purpose": "any maskable"},
           {"src": "/icon-512.png", "sizes": "512x512", "type": "image/png", "purpose": "any maskable"}]}
"""

PUBLIC = frozenset({"/manifest.webmanifest", "/icon-192.png", "/icon-512.png"})


@lru_cache(maxsize=2)
def icon_png(size: int) -> bytes:
    """The app icon: a white question mark-like tag on the header's green, drawn with numpy."""
    yy, xx = np.mgrid[0:size, 0:size] / size
    img = np.zeros((size, size, 3), np.uint8)
    img[:] = (0x14, 0x53, 0x2D)
    ring = np.abs(np.hypot(xx - 0.5, yy - 0.42) - 0.2) < 0.06
    ring &= ~((yy > 0.42) & (xx < 0.5))
    stem = (np.abs(xx - 0.5) < 0.06) & (yy > 0.55) & (yy < 0.7)
    dot = np.hypot(xx - 0.5, yy - 0.8) < 0.06
    img[ring | stem | dot] = 255
    return encoded(img, "png")
