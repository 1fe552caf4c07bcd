// ProofNet explorer: draws /explorer/api/overview and redraws it whenever /events reports
// something new (long-poll with a cursor). Plain DOM, no framework, no CDN.
"use strict";

const LONG_POLL_SECONDS = 20;
const RETRY_MS = 2000;
const MAX_FEED = 60;

let cursor = 0;  // the id of the last event seen

// --- small helpers ---------------------------------------------------------------------

/** Build an element; strings become text nodes (never HTML), null children are skipped. */
function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs || {})) {
    if (key === "class") node.className = value;
    else node.setAttribute(key, value);
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined) continue;
    node.append(child instanceof Node ? child : String(child));
  }
  return node;
}

const short = (hex) => (hex ? hex.slice(0, 10) + "…" : "—");
const addr = (a) => el("code", { title: a || "" }, short(a));
const badge = (text) => el("span", { class: "badge " + text }, text.replaceAll("_", " "));
const num = (n) => el("td", { class: "num" }, n === null || n === undefined ? "—" : n);
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

function table(headings, rows) {
  return el("table", {},
    el("thead", {}, el("tr", {}, headings.map((h) => el("th", {}, h)))),
    el("tbody", {}, rows));
}

async function getJSON(url) {
  const response = await fetch(url, { cache: "no-store" });
  if (!response.ok) throw new Error(`${url}: HTTP ${response.status}`);
  return response.json();
}

/** Replace a section's contents with ``content`` (a node or a list), or a note if empty. */
function fill(id, content, emptyText) {
  const nodes = Array.isArray(content) ? content : [content];
  document.getElementById(id).replaceChildren(
    ...(nodes.length === 0 ? [el("p", { class: "empty" }, emptyText)] : nodes));
}

// --- disputes --------------------------------------------------------------------------

/** The bar of one move: what was still disputed after it, on the leaves or steps scale. */
function narrowingBar(entry, dispute) {
  if (entry.scale === null || entry.lo === null) return el("div");
  const total = entry.scale === "leaves" ? dispute.num_leaves : dispute.steps;
  const pct = (x) => `${(100 * x) / Math.max(total, 1)}%`;
  const track = el("div", { class: "track", title: `0 … ${total} ${entry.scale}` },
    el("div", {
      class: "span " + entry.scale,
      style: `left:${pct(entry.lo)};width:${pct(entry.hi - entry.lo)}`,
    }));
  if (entry.midpoint !== null) {
    track.append(el("div", { class: "tick", style: `left:${pct(entry.midpoint)}` }));
  }
  return track;
}

function rangeLabel(entry) {
  if (entry.scale === "leaves") return `leaves [${entry.lo}, ${entry.hi})`;
  if (entry.scale === "steps") return `steps [${entry.lo}, ${entry.hi}]`;
  return "";
}

function moveRow(entry, dispute) {
  return el("li", { class: "move", "data-move": entry.move },
    el("span", { class: "height" }, `height ${entry.height}`),
    el("span", { class: entry.party }, entry.party),
    el("span", {}, el("b", {}, entry.move.replaceAll("_", " ")), " — ", entry.text),
    el("div", {}, narrowingBar(entry, dispute), el("span", { class: "range" }, rangeLabel(entry))));
}

function statusLine(d) {
  if (d.status === "open") {
    return el("div", { class: "status-line open" },
      "Open — ", el("b", {}, `${d.turn}'s turn`), ` (${d.phase.replaceAll("_", " ")}) by `,
      addr(d.turn_address), ` — deadline height ${d.deadline} (${d.blocks_left} blocks left)`);
  }
  const winner = d.winner === "solver" ? d.solver : d.winner === "challenger" ? d.challenger : null;
  return el("div", { class: "status-line closed" },
    el("b", {}, d.winner === "nobody" ? "Closed" : `Winner: ${d.winner}`), " ",
    winner ? addr(winner) : null,
    ` — ${d.reason}`,
    d.located_step !== null ? ` — faulty step ${d.located_step}` : null,
    ` — closed at height ${d.closed_height}`);
}

function disputeCard(d) {
  return el("article", { class: "dispute", "data-dispute-id": d.dispute_id },
    el("h3", {}, "Dispute ", el("code", {}, short(d.dispute_id)), " ", badge(d.status),
      " on job ", el("code", {}, short(d.job_id))),
    el("div", { class: "parties" },
      el("span", { class: "solver" }, "solver"), " ", addr(d.solver), " vs ",
      el("span", { class: "challenger" }, "challenger"), " ", addr(d.challenger),
      ` — bond ${d.bond} — ${d.rounds} moves — job of ${d.steps} steps, ${d.num_leaves} leaves`),
    statusLine(d),
    el("ol", { class: "moves" }, d.timeline.map((entry) => moveRow(entry, d))));
}

// --- jobs, blocks, transactions, accounts ----------------------------------------------

function jobRows(job) {
  const deadline = job.challenge_deadline ?? job.train_deadline ?? job.bid_deadline;
  return [
    el("tr", { "data-job-id": job.job_id },
      el("td", {}, el("code", { title: job.job_id }, short(job.job_id))),
      el("td", {}, badge(job.status)),
      el("td", {}, addr(job.submitter)),
      el("td", {}, addr(job.solver)),
      num(job.payment), num(job.steps), num(deadline), num(job.disputes.length)),
    el("tr", { class: "lifecycle-row" },
      el("td", { colspan: 8 },
        el("div", { class: "lifecycle" }, lifecycleRuns(job.lifecycle).map((run) =>
          el("span", { class: "chip" }, run.heights + " ", el("b", {}, run.kind),
            run.count > 1 ? ` ×${run.count}` : null))))),
  ];
}

/** A job's events with consecutive ones of a kind folded (a dispute's moves: one chip). */
function lifecycleRuns(events) {
  const runs = [];
  for (const event of events) {
    const last = runs[runs.length - 1];
    if (last && last.kind === event.kind) {
      last.count += 1;
      last.heights = `h${last.first}–${event.height}`;
    } else {
      runs.push({ kind: event.kind, count: 1, first: event.height, heights: `h${event.height}` });
    }
  }
  return runs;
}

function blockRow(block) {
  const kinds = block.txs.map((tx) => tx.kind).join(", ");
  return el("tr", {},
    num(block.height), el("td", {}, el("code", { title: block.hash }, short(block.hash))),
    el("td", {}, new Date(block.time * 1000).toLocaleTimeString()),
    num(block.txs.length), el("td", {}, kinds));
}

function txRows(blocks) {
  return blocks.flatMap((block) => block.txs.map((tx) =>
    el("tr", {},
      el("td", {}, el("code", { title: tx.hash }, short(tx.hash))),
      num(block.height), el("td", {}, tx.kind), el("td", {}, addr(tx.sender)), num(tx.nonce))));
}

function accountRow(account) {
  return el("tr", {},
    el("td", {}, el("code", {}, account.address)),
    num(account.balance), num(account.stake), num(account.locked), num(account.nonce),
    num(account.jobs_completed), num(account.jobs_slashed));
}

function render(view) {
  document.getElementById("chain").textContent =
    `chain ${view.chain_id} — height ${view.height} — head ${short(view.head_hash)}`;
  fill("dispute-list", view.disputes.map(disputeCard), "No disputes yet.");
  fill("job-list", view.jobs.length === 0 ? [] : table(
    ["job", "status", "submitter", "solver", "payment", "steps", "deadline", "disputes"],
    view.jobs.flatMap(jobRows)), "No jobs yet.");
  fill("block-list", table(["height", "hash", "time", "txs", "kinds"],
    view.blocks.map(blockRow)), "");
  const txs = txRows(view.blocks);
  fill("tx-list", txs.length === 0 ? [] : table(
    ["hash", "height", "kind", "sender", "nonce"], txs),
    "No transactions in recent blocks.");
  fill("account-list", table(
    ["address", "balance", "stake", "locked", "nonce", "completed", "slashed"],
    view.accounts.map(accountRow)), "");
}

// --- the live event feed ---------------------------------------------------------------

function describeEvent(event) {
  const data = event.data || {};
  const parts = [];
  for (const key of ["job_id", "dispute_id", "move", "party", "winner_role", "reason"]) {
    if (data[key] !== undefined && data[key] !== null) {
      const value = String(data[key]);
      parts.push(`${key}=${/^[0-9a-f]{64}$/.test(value) ? short(value) : value}`);
    }
  }
  return parts.join(" ");
}

function addEvents(events, fresh) {
  const list = document.getElementById("event-list");
  for (const event of events) {
    if (event.kind === "block") continue;  // one per block: the header shows the height
    const item = el("li", { class: fresh ? "fresh" : "" },
      el("span", { class: "height" }, `h${event.height} `),
      el("span", { class: "kind" }, event.kind), " ", describeEvent(event));
    list.prepend(item);
    if (fresh) setTimeout(() => item.classList.remove("fresh"), 3000);
  }
  while (list.children.length > MAX_FEED) list.lastChild.remove();
}

function setLive(on) {
  const badgeNode = document.getElementById("live");
  badgeNode.className = "live " + (on ? "on" : "off");
  badgeNode.textContent = on ? "live" : "reconnecting…";
}

async function refresh() {
  const view = await getJSON("/explorer/api/overview");
  render(view);
  return view;
}

/** Draw once, then long-poll /events and redraw after every page of new events. */
async function follow() {
  while (true) {
    try {
      const page = await getJSON(`/events?since=${cursor}&timeout=${LONG_POLL_SECONDS}`);
      setLive(true);
      if (page.events.length > 0) {
        cursor = page.last_id;
        addEvents(page.events, true);
        await refresh();
      }
    } catch (error) {
      setLive(false);
      await sleep(RETRY_MS);
    }
  }
}

async function start() {
  while (true) {
    try {
      const view = await refresh();
      cursor = view.last_event_id;
      const recent = await getJSON(`/events?since=${Math.max(cursor - MAX_FEED, 0)}&limit=${MAX_FEED}`);
      addEvents(recent.events, false);
      setLive(true);
      break;
    } catch (error) {
      setLive(false);
      await sleep(RETRY_MS);
    }
  }
  follow();
}

start();
