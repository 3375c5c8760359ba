"""The phone-first page: one self-contained HTML document (inline CSS and JS, no CDN, no fonts).

Data never goes through innerHTML: names and reasons come from the robot and are set as text.
"""

PAGE = r"""<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1, viewport-fit=cover">
<meta name="theme-color" content="#14532d">
<title>tinycl · label requests</title>
<style>
:root { --bg:#f4f5f2; --card:#fff; --ink:#1c1f1a; --mute:#62685d; --accent:#15803d; --accent-ink:#fff;
        --line:#d9ddd3; --err:#b91c1c; --new:#1d4ed8; }
@media (prefers-color-scheme: dark) {
  :root { --bg:#121410; --card:#1d2119; --ink:#eef0ea; --mute:#a2a99a; --line:#343a2e; --accent:#22a355; }
}
* { box-sizing: border-box; }
html, body { margin:0; background:var(--bg); color:var(--ink);
  font: 17px/1.4 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; -webkit-text-size-adjust:100%; }
header { position:sticky; top:0; z-index:2; display:flex; align-items:center; gap:.6rem;
  padding:.7rem 1rem; padding-top:max(.7rem, env(safe-area-inset-top)); background:#14532d; color:#fff; }
header h1 { font-size:1.1rem; margin:0; flex:1; font-weight:650; letter-spacing:.01em; }
#count { background:#fff; color:#14532d; border-radius:999px; padding:.1rem .6rem; font-weight:700; min-width:2rem; text-align:center; }
#status { font-size:.8rem; padding:.15rem .5rem; border-radius:999px; background:#7f1d1d; }
#status.live { background:#166534; }
main { padding:.8rem; max-width:34rem; margin:0 auto; padding-bottom:6rem; }
.empty { text-align:center; color:var(--mute); padding:2.5rem 1rem; }
.card { background:var(--card); border:1px solid var(--line); border-radius:16px; padding:.8rem; margin:0 0 1rem;
  box-shadow:0 1px 3px rgba(0,0,0,.06); transition:opacity .25s, transform .25s; }
.card.leaving { opacity:0; transform:translateX(40px); }
.card.busy { opacity:.6; }
.pic { display:block; width:100%; height:auto; max-height:42vh; object-fit:contain; background:#000; border-radius:10px;
  image-rendering:pixelated; aspect-ratio:1/1; }
.nopic { display:flex; align-items:center; justify-content:center; height:6rem; background:var(--bg);
  border-radius:10px; color:var(--mute); }
.why { margin:.6rem 0 .1rem; font-weight:600; }
.meta { color:var(--mute); font-size:.85rem; display:flex; justify-content:space-between; gap:.5rem; }
.meta .rid { overflow:hidden; text-overflow:ellipsis; white-space:nowrap; min-width:0; }
.meta .left { white-space:nowrap; }
.choices { display:grid; grid-template-columns:1fr 1fr; gap:.55rem; margin:.75rem 0 .6rem; }
button { font:inherit; border:0; border-radius:12px; min-height:56px; padding:.5rem .7rem; cursor:pointer;
  touch-action:manipulation; }
button:disabled { cursor:default; }
.cls { background:var(--accent); color:var(--accent-ink); font-weight:650; font-size:1.05rem; }
.cls small { display:block; font-weight:400; font-size:.75rem; opacity:.85; }
.cls:active { filter:brightness(.9); }
form.new { display:flex; gap:.5rem; }
form.new input { flex:1; min-width:0; font:inherit; font-size:1rem; min-height:56px; padding:0 .8rem; border-radius:12px;
  border:2px solid var(--line); background:var(--bg); color:var(--ink); }
form.new input:focus { outline:none; border-color:var(--new); }
form.new button { background:var(--new); color:#fff; font-weight:650; min-width:6.5rem; }
.err { color:var(--err); font-weight:600; margin-top:.5rem; }
.err:empty { display:none; }
h2 { font-size:1rem; color:var(--mute); margin:1.6rem .2rem .5rem; font-weight:600; }
#history { list-style:none; margin:0; padding:0; }
#history:empty::before { content:"No answers yet."; color:var(--mute); padding:0 .2rem; font-size:.92rem; }
#history li { display:flex; justify-content:space-between; gap:.6rem; padding:.55rem .8rem; background:var(--card);
  border:1px solid var(--line); border-radius:10px; margin-bottom:.4rem; font-size:.92rem; }
#history .name { font-weight:650; }
#history .tag { color:var(--new); font-size:.75rem; margin-left:.35rem; }
#history .when { color:var(--mute); white-space:nowrap; }
#toast { position:fixed; left:.8rem; right:.8rem; bottom:max(.8rem, env(safe-area-inset-bottom)); z-index:3;
  padding:.9rem 1rem; border-radius:12px; background:#1c1f1a; color:#fff; font-weight:600;
  box-shadow:0 4px 14px rgba(0,0,0,.3); transition:opacity .2s; max-width:34rem; margin:0 auto; }
#toast.error { background:var(--err); }
#toast[hidden] { display:block; opacity:0; pointer-events:none; }
#unpaired { background:#7f1d1d; color:#fff; padding:1rem; border-radius:12px; }
</style>
</head>
<body>
<header><h1>Label requests</h1><span id="status">offline</span><span id="count" aria-label="pending requests">0</span></header>
<main>
  <div id="unpaired" hidden>This phone is not paired any more: scan the QR code in the robot's terminal again.</div>
  <section id="pending" aria-live="polite"></section>
  <p class="empty" id="empty">No pending requests.<br>New ones appear here as the robot asks.</p>
  <h2>Recent answers</h2>
  <ul id="history"></ul>
</main>
<div id="toast" role="alert" hidden></div>
<script>
"use strict";
(() => {
  const $ = (s, el = document) => el.querySelector(s);
  const pendingEl = $("#pending"), historyEl = $("#history"), toastEl = $("#toast");
  const deadlines = new Map();          // request id -> ms deadline (local clock)
  let ws = null, retry = 500, toastTimer = 0, stopped = false;

  function el(tag, props = {}, ...kids) {
    const e = document.createElement(tag);
    for (const [k, v] of Object.entries(props)) {
      if (k === "class") e.className = v; else if (k === "text") e.textContent = v;
      else if (k.startsWith("data-")) e.setAttribute(k, v); else e[k] = v;
    }
    for (const k of kids) if (k) e.append(k);
    return e;
  }
  function toast(text, isError) {
    toastEl.textContent = text;
    toastEl.className = isError ? "error" : "";
    toastEl.hidden = false;
    clearTimeout(toastTimer);
    toastTimer = setTimeout(() => { toastEl.hidden = true; }, isError ? 6000 : 2500);
  }
  function cardOf(id) {
    for (const c of pendingEl.children) if (c.dataset.requestId === id) return c;
    return null;
  }
  function refresh() {
    const n = pendingEl.children.length;
    $("#count").textContent = String(n);
    $("#empty").hidden = n > 0;
    document.title = (n ? "(" + n + ") " : "") + "tinycl · label requests";
  }
  function left(ms) {
    const s = Math.max(0, Math.round(ms / 1000));
    if (s >= 3600) return "expires in " + Math.round(s / 3600) + " h";
    if (s >= 60) return "expires in " + Math.round(s / 60) + " min";
    return "expires in " + s + " s";
  }
  function setBusy(card, busy) {
    card.classList.toggle("busy", busy);
    for (const b of card.querySelectorAll("button, input")) b.disabled = busy;
  }
  function send(message) {
    if (!ws || ws.readyState !== WebSocket.OPEN) { toast("Not connected: answer not sent", true); return false; }
    ws.send(typeof message === "string" ? message : JSON.stringify(message));
    return true;
  }
  function answer(card, body) {
    $(".err", card).textContent = "";
    setBusy(card, true);
    if (!send(Object.assign({type: "answer", request_id: card.dataset.requestId}, body))) setBusy(card, false);
  }
  function addRequest(r) {
    deadlines.set(r.id, Date.now() + r.expires_in_s * 1000);
    const pic = r.image
      ? el("img", {class: "pic", src: r.image, alt: "sample " + r.id, width: r.width, height: r.height})
      : el("div", {class: "nopic", text: "no picture"});
    if (r.image && r.width && r.height) pic.style.aspectRatio = r.width + " / " + r.height;
    const choices = el("div", {class: "choices"});
    for (const c of r.candidates) {
      const b = el("button", {class: "cls", type: "button", "data-class-id": String(c.id)},
                   document.createTextNode(c.name), el("small", {text: "class " + c.id}));
      b.addEventListener("click", () => answer(card, {class_id: c.id}));
      choices.append(b);
    }
    const input = el("input", {name: "new", type: "text", placeholder: "New class name", maxLength: 64,
                               autocomplete: "off", enterKeyHint: "send"});
    input.setAttribute("aria-label", "new class name");
    const form = el("form", {class: "new"}, input, el("button", {type: "submit", text: "Add class"}));
    form.addEventListener("submit", (ev) => {
      ev.preventDefault();
      const name = input.value.trim();
      if (!name) { $(".err", card).textContent = "Type a name for the new class."; input.focus(); return; }
      answer(card, {new_class_name: name});
    });
    const card = el("article", {class: "card", "data-request-id": r.id}, pic,
      el("div", {class: "why", text: r.reason ? "Why: " + r.reason : "Which class is this?"}),
      el("div", {class: "meta"}, el("span", {class: "rid", text: r.id}), el("span", {class: "left", text: left(r.expires_in_s * 1000)})),
      r.candidates.length ? choices : null, form, el("div", {class: "err", role: "status"}));
    const old = cardOf(r.id);
    if (old) {                          // an update: keep what the person is typing
      const was = $("input[name=new]", old), focused = document.activeElement === was;
      input.value = was.value;
      old.replaceWith(card);
      if (focused) input.focus();
      if (old.classList.contains("busy")) setBusy(card, true);
    } else pendingEl.append(card);
    refresh();
  }
  function removeRequest(id) {
    deadlines.delete(id);
    const card = cardOf(id);
    if (!card) return;
    card.classList.add("leaving");
    card.dataset.requestId = "";            // gone for the protocol at once, gone from view after the fade
    setTimeout(() => { card.remove(); refresh(); }, 250);
  }
  function addHistory(item, atEnd) {
    const when = new Date(item.answered_s * 1000);
    const li = el("li", {"data-request-id": item.id},
      el("span", {}, el("span", {class: "name", text: item.class_name}), item.new ? el("span", {class: "tag", text: "new class"}) : null),
      el("span", {class: "when", text: when.toLocaleTimeString([], {hour: "2-digit", minute: "2-digit"})}));
    if (atEnd) historyEl.append(li); else historyEl.prepend(li);
    while (historyEl.children.length > 20) historyEl.lastChild.remove();
  }
  function onMessage(m) {
    switch (m.type) {
      case "snapshot":
        pendingEl.textContent = ""; historyEl.textContent = ""; deadlines.clear();
        for (const r of m.pending) addRequest(r);
        for (const h of m.history) addHistory(h, true);
        refresh(); break;
      case "request": addRequest(m.request); break;
      case "remove": removeRequest(m.id); break;
      case "answered": addHistory(m.item, false); break;
      case "ok": toast("Sent: " + m.class_name, false); break;
      case "error": {
        const card = m.request_id ? cardOf(m.request_id) : null;
        if (card) { setBusy(card, false); $(".err", card).textContent = m.message; }
        toast(m.message, true); break;
      }
    }
  }
  function setStatus(live) {
    const s = $("#status");
    s.textContent = live ? "live" : "offline";
    s.className = live ? "live" : "";
  }
  function connect() {
    if (stopped) return;
    ws = new WebSocket((location.protocol === "https:" ? "wss://" : "ws://") + location.host + "/ws");
    ws.onopen = () => { retry = 500; setStatus(true); };
    ws.onmessage = (ev) => { try { onMessage(JSON.parse(ev.data)); } catch (e) { console.error(e); } };
    ws.onclose = async () => {
      setStatus(false);
      try {
        const r = await fetch("api/state", {cache: "no-store"});
        if (r.status === 403) { stopped = true; $("#unpaired").hidden = false; return; }
      } catch (e) { /* server down: retry */ }
      setTimeout(connect, retry);
      retry = Math.min(retry * 2, 10000);
    };
  }
  setInterval(() => {
    const now = Date.now();
    for (const [id, t] of deadlines) { const c = cardOf(id); if (c) $(".left", c).textContent = left(t - now); }
  }, 1000);
  window.tinycl = {send};               // for tests and the curious
  refresh();
  connect();
})();
</script>
</body>
</html>
"""
