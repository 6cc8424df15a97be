// aonode dashboard: keeps server-rendered fragments fresh and sends messages from the form.
// No framework, no build step: the server renders every piece of HTML, this only swaps it in.
"use strict";

const POLL_MS = 2000;
const live = () => document.getElementById("live");

function fragmentUrl(el) {
  const url = new URL(el.dataset.poll, location.href);
  if (el.dataset.from) url.searchParams.set("from", el.dataset.from);
  return url.href;
}

async function refresh(el) {
  const resp = await fetch(fragmentUrl(el), { headers: { accept: "text/html" }, cache: "no-store" });
  if (!resp.ok) throw new Error("HTTP " + resp.status);
  const html = await resp.text();
  if (html === el.dataset.last) return;
  const open = new Set([...el.querySelectorAll("details[open]")].map((d) => d.dataset.key || d.textContent.slice(0, 40)));
  el.innerHTML = html;
  el.dataset.last = html;
  for (const d of el.querySelectorAll("details")) {
    if (open.has(d.dataset.key || d.textContent.slice(0, 40))) d.open = true;
  }
}

async function pollAll() {
  const targets = document.querySelectorAll("[data-poll]");
  try {
    if (!document.hidden) await Promise.all([...targets].map(refresh));
    live()?.classList.remove("stale");
  } catch (err) {
    live()?.classList.add("stale");
  }
  setTimeout(pollAll, POLL_MS);
}

function pager() {
  const box = document.getElementById("process-live");
  if (!box) return;
  box.addEventListener("click", (ev) => {
    const a = ev.target.closest("a[data-page]");
    if (!a) return;
    ev.preventDefault();
    box.dataset.from = a.dataset.page;
    history.replaceState(null, "", a.dataset.page ? "?from=" + a.dataset.page : location.pathname);
    refresh(box);
  });
}

function parseTags(text) {
  return text.split(/[,\n]/).map((s) => s.trim()).filter(Boolean).map((pair) => {
    const at = pair.indexOf("=");
    if (at < 1) throw new Error("tags look like Name=Value, not " + JSON.stringify(pair));
    return { name: pair.slice(0, at).trim(), value: pair.slice(at + 1).trim() };
  });
}

function sendForm() {
  const form = document.getElementById("send");
  if (!form) return;
  const status = document.getElementById("send-status");
  form.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    const base = "/" + form.dataset.pid + "~process@1.0";
    try {
      const tags = parseTags(form.elements.tags.value);
      const action = form.elements.action.value.trim();
      if (action) tags.unshift({ name: "Action", value: action });
      status.textContent = "sending…";
      const resp = await fetch(base + "/schedule", {
        method: "POST",
        headers: { "content-type": "application/json", accept: "application/json" },
        body: JSON.stringify({ Tags: tags, Data: form.elements.data.value }),
      });
      const answer = await resp.json();
      if (!resp.ok) throw new Error(answer.error || "HTTP " + resp.status);
      status.textContent = "scheduled at slot " + answer.slot + "; computing…";
      const box = document.getElementById("process-live");
      box.dataset.from = "";
      await refresh(box);
      const now = await fetch(base + "/now/at-slot", { headers: { accept: "application/json" } });
      status.textContent = now.ok ? "slot " + answer.slot + " computed" : "scheduled at slot " + answer.slot;
      await refresh(box);
    } catch (err) {
      status.textContent = "not sent: " + err.message;
    }
  });
}

document.addEventListener("DOMContentLoaded", () => {
  for (const el of document.querySelectorAll("[data-poll]")) el.dataset.last = el.innerHTML;
  pager();
  sendForm();
  setTimeout(pollAll, POLL_MS);
});
