// The chat page: posts the customer's messages, shows replies as their chunks stream in over
// server-sent events, then the final reply (the source of truth) with its details. It acts as the
// customer whose token it holds: on a demo stack (ENRICHER_CHAT_DEV_LOGIN=on) the gateway gives
// one for the customer picked; elsewhere the chat frontend's backend gives it.
"use strict";

const $ = (id) => document.getElementById(id);
const log = $("log");
const statusLine = $("status");
const formError = $("form-error");

const state = {
  token: "", // the customer's JWT
  picks: 0, // customers picked so far: a login answered after a later pick is dropped
  conversationId: "",
  source: null, // the EventSource of the current conversation
  lastEventId: "", // for a stream we reopen ourselves (EventSource resends it on its own retries)
  wasOffline: false,
  replies: new Map(), // message_id -> {element, text, seq, final}
  customers: new Map(), // message_id -> the customer's bubble
};

function newConversationId() {
  return `c-${crypto.randomUUID()}`;
}

function element(tag, className, text) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text !== undefined) node.textContent = text;
  return node;
}

function append(node) {
  $("empty")?.remove();
  log.append(node);
  log.scrollTop = log.scrollHeight;
}

function setStatus(name, text) {
  statusLine.dataset.state = name;
  statusLine.textContent = text;
}

function showError(text) {
  formError.textContent = text;
  formError.hidden = !text;
}

function authorized(headers = {}) {
  return { ...headers, Authorization: `Bearer ${state.token}` };
}

// --- the event stream -------------------------------------------------------------------------

function openStream() {
  state.source?.close();
  const base = `/api/conversations/${encodeURIComponent(state.conversationId)}/events`;
  // EventSource cannot send headers: the token goes in the query, for this endpoint only.
  const query = new URLSearchParams({ access_token: state.token });
  if (state.lastEventId) query.set("last_event_id", state.lastEventId);
  const source = new EventSource(`${base}?${query}`);
  state.source = source;
  const track = (handler) => (event) => {
    if (event.lastEventId) state.lastEventId = event.lastEventId;
    handler(JSON.parse(event.data));
  };
  source.addEventListener("ready", () => {
    setStatus("online", "Online");
    if (state.wasOffline) recoverPending();
    state.wasOffline = false;
  });
  source.addEventListener("chunk", track(onChunk));
  source.addEventListener("reply", track(onReply));
  source.addEventListener("handoff", track(onHandoff));
  source.addEventListener("error", () => {
    if (source !== state.source) return;
    state.wasOffline = true;
    setStatus("offline", "Offline – reconnecting…");
    // EventSource retries by itself while CONNECTING; once CLOSED (an HTTP error) it gives up.
    if (source.readyState === EventSource.CLOSED) setTimeout(() => source === state.source && openStream(), 2000);
  });
}

// Replies published while the page was offline never reach it as events: ask for them.
async function recoverPending() {
  for (const [messageId, reply] of state.replies) {
    if (reply.final) continue;
    const url = `/api/conversations/${encodeURIComponent(state.conversationId)}/replies/${encodeURIComponent(messageId)}`;
    try {
      const response = await fetch(url, { headers: authorized() });
      if (response.ok) onReply(await response.json());
    } catch {
      // still offline: the next reconnect asks again
    }
  }
}

// --- replies ----------------------------------------------------------------------------------

function replyFor(messageId) {
  let reply = state.replies.get(messageId);
  if (!reply) {
    const node = element("article", "message agent");
    node.dataset.messageId = messageId;
    node.dataset.state = "waiting";
    node.setAttribute("aria-label", "Reply");
    node.append(element("p", "text", ""));
    append(node);
    reply = { element: node, text: "", seq: -1, final: false };
    state.replies.set(messageId, reply);
  }
  return reply;
}

function onChunk(chunk) {
  const reply = replyFor(chunk.message_id);
  if (reply.final || chunk.seq <= reply.seq) return; // settled already, or seen before a reconnect
  reply.seq = chunk.seq;
  reply.text = chunk.reset ? chunk.delta : reply.text + chunk.delta;
  reply.element.dataset.state = "streaming";
  reply.element.querySelector(".text").textContent = reply.text;
  log.scrollTop = log.scrollHeight;
}

function detailLine(doc) {
  const usage = doc.usage || {};
  const prompt = doc.prompt || {};
  const parts = [
    doc.model,
    `${prompt.name ?? "?"} ${(prompt.version ?? "").slice(0, 12)}${prompt.variant ? ` (${prompt.variant})` : ""}`,
    `${doc.latency_ms} ms`,
    `${usage.total_tokens ?? 0} tokens (${usage.prompt_tokens ?? 0} in, ${usage.completion_tokens ?? 0} out)`,
    usage.cost_usd == null ? "cost n/a" : `$${usage.cost_usd.toFixed(6)}`,
  ];
  return parts.join(" · ");
}

// The help-center articles the reply's prompt carried, best first (the reply's `sources`).
function sourceList(sources) {
  const box = element("div", "sources");
  box.append(element("p", "sources-title", "Sources"));
  const list = element("ol");
  for (const source of sources) list.append(element("li", "source", source.title || source.id));
  box.append(list);
  return box;
}

function onReply(doc) {
  const reply = replyFor(doc.message_id);
  if (reply.final) return;
  reply.final = true;
  const node = reply.element;
  node.dataset.state = "final";
  node.dataset.status = doc.status;
  node.replaceChildren();
  if (doc.status === "fallback" || doc.status === "handoff") {
    node.classList.add(doc.status);
    node.append(element("span", "badge", doc.status === "fallback" ? "Fallback reply" : "Handed to a human"));
  }
  node.append(element("p", "text", doc.text));
  const answers = doc.answers || [doc.message_id];
  if (answers.length > 1) {
    node.append(element("p", "note answers", `Answers your ${answers.length} messages together`));
    answers.forEach((id, index) => {
      state.customers.get(id)?.querySelector(".note")?.replaceWith(element("p", "note", `answered together (${index + 1}/${answers.length})`));
      const other = state.replies.get(id);
      if (id !== doc.message_id && other && !other.final) {
        other.element.remove(); // its answer is this reply
        other.final = true;
      }
    });
  }
  if (doc.sources?.length) node.append(sourceList(doc.sources));
  node.append(element("p", "detail", detailLine(doc)));
  log.scrollTop = log.scrollHeight;
}

function onHandoff(doc) {
  if (doc.message_id) { // a message the worker passed on to the human, unanswered by the AI
    const reply = state.replies.get(doc.message_id);
    if (reply && !reply.final) {
      reply.final = true;
      reply.element.remove();
    }
    state.customers.get(doc.message_id)?.querySelector(".note")?.replaceWith(element("p", "note", "passed to a human agent"));
    return;
  }
  const reason = doc.reason?.detail || doc.reason?.kind || "";
  append(element("p", "notice", `A human agent takes over this conversation${reason ? `: ${reason}` : ""}.`));
}

// --- sending ----------------------------------------------------------------------------------

async function send(text) {
  const bubble = element("article", "message customer");
  bubble.setAttribute("aria-label", "You");
  bubble.append(element("p", "text", text), element("p", "note", "sending…"));
  append(bubble);
  showError("");
  const body = { conversation_id: state.conversationId, text };
  let response;
  try {
    response = await fetch("/api/messages", {
      method: "POST",
      headers: authorized({ "Content-Type": "application/json" }),
      body: JSON.stringify(body),
    });
  } catch {
    response = null;
  }
  const result = response ? await response.json().catch(() => ({})) : {};
  if (!response || response.status !== 202) {
    bubble.classList.add("failed");
    bubble.querySelector(".note").textContent = "not sent";
    showError(`Not sent: ${result.error?.detail ?? "the chat service cannot be reached"}`);
    return false;
  }
  bubble.dataset.messageId = result.message_id;
  bubble.querySelector(".note").textContent = "sent";
  state.customers.set(result.message_id, bubble);
  replyFor(result.message_id);
  return true;
}

function startConversation() {
  state.conversationId = newConversationId();
  state.lastEventId = "";
  state.replies.clear();
  state.customers.clear();
  log.replaceChildren(element("p", "empty", "Write a message, press Enter."));
  log.firstChild.id = "empty";
  $("conversation-id").textContent = state.conversationId;
  setStatus("connecting", "Connecting…");
  openStream();
}

// The demo stack's customers to play; false when the gateway has no demo login.
async function loadCustomers() {
  const response = await fetch("/api/customers").catch(() => null);
  if (!response?.ok) return false;
  const { customers } = await response.json();
  const select = $("customer");
  for (const c of customers) {
    const label = c.name ? `${c.name}${c.tier ? ` (${c.tier})` : ""} – ${c.customer_id}` : c.customer_id;
    select.append(new Option(label, c.customer_id));
  }
  return customers.length > 0;
}

// The demo login: a token for `customerId`, from the gateway itself ("" without one).
async function logIn(customerId) {
  const response = await fetch("/api/dev/login", {
    method: "POST",
    headers: { "Content-Type": "application/json" },
    body: JSON.stringify({ customer_id: customerId }),
  }).catch(() => null);
  return response?.ok ? (await response.json()).token : "";
}

// A conversation as the customer picked. Only the latest pick's login counts: the one the page
// makes as it loads may be answered after the customer picked another.
async function playCustomer() {
  const pick = ++state.picks;
  const token = await logIn($("customer").value);
  if (pick !== state.picks) return;
  state.token = token;
  if (!token) showError("No customer token: this gateway has no demo login.");
  else startConversation();
}

function wire() {
  const form = $("composer");
  const text = $("text");
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const value = text.value.trim();
    if (!value) return;
    $("send").disabled = true;
    if (await send(value)) text.value = "";
    $("send").disabled = false;
    text.focus();
  });
  text.addEventListener("keydown", (event) => {
    if (event.key === "Enter" && !event.shiftKey && !event.isComposing) {
      event.preventDefault();
      form.requestSubmit();
    }
  });
  $("customer").addEventListener("change", playCustomer); // one customer per conversation
  $("restart").addEventListener("click", startConversation);
}

wire();
loadCustomers().then((found) => {
  if (found) return playCustomer();
  setStatus("offline", "Not signed in");
  showError("No demo customers: this gateway takes customers' tokens from the chat frontend's backend.");
});
