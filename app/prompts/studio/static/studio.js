// The template studio: lists the templates and their problems, renders one for a message, and
// tries a draft of one on the newest input messages next to the current file.
"use strict";

const $ = (id) => document.getElementById(id);
const templates = new Map(); // file -> the template as GET /api/studio/templates lists it

function element(tag, className, text) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text !== undefined) node.textContent = text;
  return node;
}

function showError(text) {
  $("error").textContent = text;
  $("error").hidden = !text;
}

// POSTs JSON; the parsed answer, or throws an Error carrying the gateway's error object.
async function post(url, body) {
  const response = await fetch(url, {
    method: "POST",
    headers: { "Content-Type": "application/json" },
    body: JSON.stringify(body),
  });
  const answer = await response.json().catch(() => ({}));
  if (!response.ok) {
    const error = new Error(answer.error?.detail ?? `HTTP ${response.status}`);
    error.body = answer.error ?? {};
    throw error;
  }
  return answer;
}

function conditionsText(t) {
  const when = Object.entries(t.conditions).map(([key, value]) => `${key} ${value}`).join(", ");
  return when || "any message";
}

function problemList(problems, title) {
  const box = element("div", "problems");
  box.append(element("h3", "", title));
  const list = element("ul");
  for (const p of problems) {
    const item = element("li");
    item.append(element("code", "", p.location), document.createTextNode(`: ${p.reason}`));
    list.append(item);
  }
  box.append(list);
  return box;
}

function showTemplates({ templates: listed, problems }) {
  const rows = listed.map((t) => {
    const row = element("tr");
    const variant = t.variant ? ` · variant ${t.variant} (weight ${t.weight})` : "";
    const tokens = Object.entries(t.tokens).map(([sample, n]) => `${sample}: ${n}`).join(", ");
    const cells = [
      ["File", "", t.file],
      ["Template", "", `${t.label}${variant} – ${t.description}`],
      ["When", "", conditionsText(t)],
      ["Version", "mono", t.version],
      ["Tokens per sample", "num", tokens || "once every file loads"],
    ];
    for (const [label, className, text] of cells) {
      const cell = element("td", className, text);
      cell.dataset.label = label; // shown beside the value where the table is stacked (narrow screens)
      row.append(cell);
    }
    return row;
  });
  $("templates").tBodies[0].replaceChildren(...rows);
  const box = $("problems");
  box.replaceChildren(problems.length ? problemList(problems, `${problems.length} problem(s)`) : element("p", "ok", "No problems."));
}

function fillDraft() {
  const t = templates.get($("template").value);
  $("draft-file").textContent = t ? t.file : "the template";
  $("draft").value = t ? t.source : "";
}

async function loadTemplates() {
  const listing = await (await fetch("/api/studio/templates")).json();
  showTemplates(listing);
  const select = $("template");
  for (const t of listing.templates) {
    templates.set(t.file, t);
    select.append(new Option(`${t.file} – ${t.label}`, t.file));
  }
  if (!$("message").value) $("message").value = listing.sample;
  fillDraft();
}

async function loadCustomers() {
  const select = $("customer");
  select.append(new Option("No profile", ""));
  const response = await fetch("/api/studio/customers");
  if (!response.ok) return showError("Customers could not be loaded from Redis; rendering without a profile.");
  const { customers } = await response.json();
  for (const c of customers) {
    const label = c.name ? `${c.name}${c.tier ? ` (${c.tier})` : ""} – ${c.customer_id}` : c.customer_id;
    select.append(new Option(label, c.customer_id));
  }
  if (customers.length) select.value = customers[0].customer_id;
}

// The help-center passages the worker would give the message, best first, or why none can be found.
function passageList(passages, problem) {
  const box = element("div", "passages");
  if (!passages.length) {
    box.append(element("p", "hint", problem ? `No help-center passages: ${problem}.` : "No help-center passage matches this message."));
    return box;
  }
  box.append(element("h4", "", "Help-center passages"));
  const list = element("ol");
  for (const p of passages) {
    const item = element("li", "passage");
    item.append(element("span", "", p.heading || p.title), element("code", "", ` ${p.id} · ${p.score.toFixed(3)}`));
    list.append(item);
  }
  box.append(list);
  return box;
}

function showRendered(shown) {
  const out = [];
  if (shown.worker_choice && shown.worker_choice !== shown.file) {
    out.push(element("p", "note", `Note: the worker answers this message with ${shown.worker_choice}.`));
  }
  for (const m of shown.messages) {
    const item = element("article", `chat-message role-${m.role}`);
    item.append(element("h3", "", `${m.role} · ${m.tokens} tokens`), element("pre", "", m.content));
    out.push(item);
  }
  if (shown.to_llm) out.push(passageList(shown.passages, shown.knowledge_problem));
  const total = shown.to_llm ? `${shown.prompt_tokens} prompt tokens in all` : "This text goes to the customer as it is, without the LLM.";
  out.push(element("p", "total", total));
  $("rendered").replaceChildren(...out);
}

function money(usd) {
  return usd === null || usd === undefined ? "no price" : `$${usd.toFixed(6)}`;
}

function side(title, answer) {
  const column = element("div", "side");
  column.append(element("h4", "", title));
  if (answer.error) {
    column.classList.add("failed");
    column.append(element("p", "reply", answer.error));
    return column;
  }
  column.append(
    element("p", "reply", answer.text),
    element("p", "detail", `${answer.prompt_tokens} + ${answer.completion_tokens} tokens · ${money(answer.cost_usd)} · ${answer.model} · version ${answer.version}`),
  );
  return column;
}

function sum(results, which, key) {
  return results.reduce((total, r) => total + (r[which][key] ?? 0), 0);
}

function showTried({ results, knowledge_problem: problem }) {
  if (!results.length) {
    $("tried").replaceChildren(element("p", "note", "No messages on the input topic yet."));
    return;
  }
  const out = results.map((r) => {
    const item = element("article", "trial");
    item.append(element("h3", "", `“${r.text}” – ${r.customer_id ?? "no customer"}`), passageList(r.passages, problem));
    const pair = element("div", "pair");
    pair.append(side("Current", r.current), side("Draft", r.draft));
    item.append(pair);
    return item;
  });
  const totals = ["current", "draft"].map((which) => {
    const tokens = sum(results, which, "prompt_tokens") + sum(results, which, "completion_tokens");
    return `${which}: ${tokens} tokens, ${money(sum(results, which, "cost_usd"))}`;
  });
  out.push(element("p", "total", `In all for ${results.length} messages – ${totals.join("; ")}`));
  $("tried").replaceChildren(...out);
}

async function busy(button, work) {
  button.disabled = true;
  showError("");
  try {
    await work();
  } catch (error) {
    showError(error.message);
  } finally {
    button.disabled = false;
  }
}

function wire() {
  $("template").addEventListener("change", fillDraft);
  $("reset-draft").addEventListener("click", fillDraft);
  $("render-form").addEventListener("submit", (event) => {
    event.preventDefault();
    const body = { template: $("template").value, text: $("message").value, customer_id: $("customer").value || null };
    busy($("render"), async () => showRendered(await post("/api/studio/render", body)));
  });
  $("try-form").addEventListener("submit", (event) => {
    event.preventDefault();
    const n = Number($("count").value);
    if (!window.confirm(`This calls the configured LLM ${n}×2 times (${2 * n} calls). Proceed?`)) return;
    const body = { template: $("template").value, draft: $("draft").value, n };
    busy($("try"), async () => {
      $("tried").replaceChildren(element("p", "note", "Asking the LLM…"));
      try {
        showTried(await post("/api/studio/try", body));
      } catch (error) {
        const problems = error.body?.problems;
        $("tried").replaceChildren(problems ? problemList(problems, "The draft does not load") : "");
        if (!problems) throw error;
      }
    });
  });
}

wire();
Promise.all([loadTemplates(), loadCustomers()]).catch((error) => showError(`The studio could not load: ${error.message}`));
