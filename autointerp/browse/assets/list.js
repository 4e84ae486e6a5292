// The latent list of `autointerp browse`. Served: each change asks /api/latents, which pages, sorts,
// filters and searches in DuckDB. Static (file://): data/index.js and the chunk files it names hand
// the rows to window.autointerpStatic, and the same operations run here over them.
// Explanations are untrusted text: the table is built with createElement and textContent only.
(function () {
  "use strict";

  const mode = document.body.dataset.mode;
  const NUMERIC = new Set(["frequency", "n_firing", "max_activation", "mean_activation"]);
  const state = { sort: "latent", order: "asc", q: "", status: "", explained: false, offset: 0, limit: 100 };
  let scorers = [];
  const $ = (id) => document.getElementById(id);

  function columns() {
    const cols = [{ key: "latent", label: "latent" }, { key: "explanation", label: "explanation" }];
    for (const s of scorers) cols.push({ key: "score:" + s, label: s, scorer: s });
    cols.push({ key: "frequency", label: "frequency" }, { key: "max_activation", label: "max act." },
      { key: "n_firing", label: "firing" }, { key: "status", label: "status" });
    return cols;
  }

  function defaultOrder(key) {
    return key.startsWith("score:") || NUMERIC.has(key) ? "desc" : "asc";
  }

  function fmt(x, digits) {
    if (x === null || x === undefined) return "—";
    if (Number.isInteger(x)) return x.toLocaleString("en-US");
    return String(Number(x.toPrecision(digits || 4)));
  }

  function percent(x) {
    return x === null || x === undefined ? "—" : String(Number((x * 100).toPrecision(3))) + "%";
  }

  function readHash() {
    const p = new URLSearchParams(location.hash.slice(1));
    if (p.has("sort")) state.sort = p.get("sort");
    if (p.get("order") === "asc" || p.get("order") === "desc") state.order = p.get("order");
    if (p.has("q")) state.q = p.get("q");
    if (p.has("status")) state.status = p.get("status");
    state.explained = p.get("explained") === "1";
    const offset = parseInt(p.get("offset") || "0", 10);
    state.offset = Number.isFinite(offset) && offset >= 0 ? offset : 0;
    const limit = parseInt(p.get("limit") || "100", 10);
    state.limit = [50, 100, 500].includes(limit) ? limit : 100;
    $("q").value = state.q;
    $("status").value = state.status;
    $("explained").checked = state.explained;
    $("limit").value = String(state.limit);
  }

  function params() {
    const p = new URLSearchParams({ sort: state.sort, order: state.order, offset: state.offset, limit: state.limit });
    if (state.q) p.set("q", state.q);
    if (state.status) p.set("status", state.status);
    if (state.explained) p.set("explained", "1");
    return p;
  }

  function writeHash() {
    try {
      location.replace("#" + params().toString());
    } catch (err) {
      // Keeping the state in the address is a convenience; the list works without it.
    }
  }

  function header() {
    const tr = $("header-row");
    tr.replaceChildren();
    for (const col of columns()) {
      const th = document.createElement("th");
      th.dataset.key = col.key;
      if (col.key === state.sort) th.setAttribute("aria-sort", state.order === "asc" ? "ascending" : "descending");
      const button = document.createElement("button");
      button.type = "button";
      button.dataset.sort = col.key;
      button.textContent = col.label + (col.key === state.sort ? (state.order === "asc" ? " ▲" : " ▼") : "");
      button.addEventListener("click", () => {
        if (state.sort === col.key) state.order = state.order === "asc" ? "desc" : "asc";
        else { state.sort = col.key; state.order = defaultOrder(col.key); }
        state.offset = 0;
        update();
      });
      th.appendChild(button);
      tr.appendChild(th);
    }
  }

  function cell(tr, text, cls, extra) {
    const td = document.createElement("td");
    td.textContent = text;
    if (cls) td.className = cls;
    if (extra) Object.assign(td.dataset, extra);
    tr.appendChild(td);
    return td;
  }

  function row(r) {
    const tr = document.createElement("tr");
    tr.dataset.latent = String(r.latent);
    const td = document.createElement("td");
    const a = document.createElement("a");
    a.href = "latents/" + encodeURIComponent(String(r.latent)) + ".html";
    a.className = "latent-link";
    a.textContent = String(r.latent);
    td.appendChild(a);
    tr.appendChild(td);
    cell(tr, r.explanation === null || r.explanation === undefined ? "—" : r.explanation,
      r.explanation === null || r.explanation === undefined ? "explanation none" : "explanation");
    for (const s of scorers) {
      const v = r.scores ? r.scores[s] : undefined;
      const ci = r.intervals ? r.intervals[s] : undefined;
      // output scores span orders of magnitude: below 0.001 in exponent notation, not "0.000"
      let text = v === undefined || v === null ? "—" : (v !== 0 && Math.abs(v) < 0.001 ? v.toExponential(2) : v.toFixed(3));
      // "0.740 [0.65, 0.82], n=100": the 95% interval, where the score row has one
      if (text !== "—" && ci && ci[0] !== null && ci[1] !== null) {
        text += " [" + ci[0].toFixed(2) + ", " + ci[1].toFixed(2) + "], n=" + ci[2];
      }
      cell(tr, text, "num", { scorer: s });
    }
    cell(tr, percent(r.frequency), "num", { key: "frequency" });
    cell(tr, fmt(r.max_activation), "num", { key: "max_activation" });
    cell(tr, fmt(r.n_firing), "num", { key: "n_firing" });
    cell(tr, r.status, "status", { key: "status" });
    return tr;
  }

  function show(result) {
    scorers = result.scorers;
    header();
    $("latent-rows").replaceChildren(...result.rows.map(row));
    const first = result.rows.length ? state.offset + 1 : 0;
    $("summary").textContent = result.total.toLocaleString("en-US") + " latents match" +
      (result.rows.length ? "; showing " + first + "–" + (state.offset + result.rows.length) : "") + ".";
    $("page").textContent = "page " + (Math.floor(state.offset / state.limit) + 1) + " of " +
      Math.max(1, Math.ceil(result.total / state.limit));
    $("prev").disabled = state.offset === 0;
    $("next").disabled = state.offset + state.limit >= result.total;
    $("summary").className = "";
    document.body.dataset.ready = "1";
  }

  function fail(message) {
    header();  // so that another column can still be picked
    $("latent-rows").replaceChildren();
    $("summary").textContent = message;
    $("summary").className = "error";
    document.body.dataset.ready = "error";
  }

  // ---- served: the API does the work ----
  let requestSeq = 0;

  function fetchPage() {
    const seq = ++requestSeq;
    document.body.dataset.ready = "0";
    fetch("api/latents?" + params().toString())
      .then((resp) => resp.json().then((body) => ({ ok: resp.ok, body })))
      .then(({ ok, body }) => {
        if (seq !== requestSeq) return;  // a newer request is on its way
        if (!ok) fail(body.error + (body.expected ? " Expected: " + body.expected : ""));
        else show(body);
      })
      .catch((err) => fail("Could not load the list: " + err));
  }

  // ---- static: the loaded rows, filtered and sorted here with the server's rules ----
  const data = { meta: null, rows: [], loaded: 0, cacheKey: null, cache: null };

  function value(r, key) {
    if (key.startsWith("score:")) {
      const v = r.scores ? r.scores[key.slice(6)] : undefined;
      return v === undefined ? null : v;
    }
    const v = r[key];
    return v === undefined ? null : v;
  }

  function selected() {
    const key = JSON.stringify([state.sort, state.order, state.q, state.status, state.explained]);
    if (data.cacheKey === key) return data.cache;
    const words = state.q.split(/\s+/).filter(Boolean).map((w) => w.toLowerCase());
    const rows = data.rows.filter((r) => {
      if (state.status && r.status !== state.status) return false;
      const text = r.explanation === null || r.explanation === undefined ? null : r.explanation.toLowerCase();
      if (state.explained && text === null) return false;
      return words.every((w) => text !== null && text.includes(w));
    });
    const sign = state.order === "desc" ? -1 : 1;
    rows.sort((a, b) => {
      const x = value(a, state.sort), y = value(b, state.sort);
      if (x === null || y === null) {
        if (x !== y) return x === null ? 1 : -1;  // missing values last, in either order
      } else if (x !== y) {
        return (x < y ? -1 : 1) * sign;
      }
      return a.latent - b.latent;
    });
    data.cacheKey = key;
    data.cache = rows;
    return rows;
  }

  function staticPage() {
    const rows = selected();
    show({ total: rows.length, rows: rows.slice(state.offset, state.offset + state.limit), scorers });
  }

  window.autointerpStatic = {
    index(meta) {
      data.meta = meta;
      scorers = meta.scorers;
      if (!meta.chunks.length) { staticPage(); return; }
      for (const src of meta.chunks) {
        const script = document.createElement("script");
        script.src = src;
        script.onerror = () => fail("Could not load " + src + ": is the site complete?");
        document.body.appendChild(script);
      }
    },
    chunk(rows) {
      for (const r of rows) data.rows.push(r);
      data.loaded += 1;
      if (data.loaded === data.meta.chunks.length) update();
    },
  };

  function update() {
    writeHash();
    if (mode === "static") {
      if (!data.meta || data.loaded < data.meta.chunks.length) return;
      const valid = columns().map((c) => c.key);
      if (!valid.includes(state.sort)) { state.sort = "latent"; state.order = "asc"; }
      staticPage();
    } else {
      fetchPage();
    }
  }

  let typing = null;
  $("q").addEventListener("input", () => {
    clearTimeout(typing);
    typing = setTimeout(() => { state.q = $("q").value; state.offset = 0; update(); }, 200);
  });
  $("controls").addEventListener("submit", (ev) => {
    ev.preventDefault();
    clearTimeout(typing);
    state.q = $("q").value; state.offset = 0; update();
  });
  $("status").addEventListener("change", () => { state.status = $("status").value; state.offset = 0; update(); });
  $("explained").addEventListener("change", () => { state.explained = $("explained").checked; state.offset = 0; update(); });
  $("limit").addEventListener("change", () => { state.limit = parseInt($("limit").value, 10); state.offset = 0; update(); });
  $("prev").addEventListener("click", () => { state.offset = Math.max(0, state.offset - state.limit); update(); });
  $("next").addEventListener("click", () => { state.offset += state.limit; update(); });

  readHash();
  if (mode !== "static") update();
})();
