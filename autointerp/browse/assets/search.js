// Search by meaning on the served list page: asks /api/search and lists the hits, best first, each
// linking to its latent page. Explanations are untrusted text: built with createElement/textContent.
(function () {
  "use strict";

  const $ = (id) => document.getElementById(id);
  const form = $("meaning");
  if (!form) return;
  let seq = 0;

  function fmt(x) {
    return x === null || x === undefined ? "—" : x.toFixed(3);
  }

  function hit(h) {
    const li = document.createElement("li");
    li.dataset.latent = String(h.latent);
    const a = document.createElement("a");
    a.href = "latents/" + encodeURIComponent(String(h.latent)) + ".html";
    a.className = "latent-link";
    a.textContent = "latent " + h.latent;
    li.appendChild(a);
    li.appendChild(document.createTextNode(": " + h.explanation));
    const meta = document.createElement("span");
    meta.className = "similarity";
    meta.textContent = "similarity " + fmt(h.similarity) + ", detection " + fmt(h.score);
    li.appendChild(meta);
    return li;
  }

  function done(state, note, hits) {
    $("meaning-note").textContent = note;
    $("meaning-note").className = state === "error" ? "error" : "muted";
    $("meaning-hits").replaceChildren(...hits.map(hit));
    form.dataset.ready = state;
  }

  form.addEventListener("submit", (event) => {
    event.preventDefault();  // the page's policy forbids form submission anyway
    const q = $("meaning-q").value;
    const mine = ++seq;
    form.dataset.ready = "0";
    $("meaning-note").textContent = "Searching…";
    fetch("api/search?" + new URLSearchParams({ q, k: "20" }).toString())
      .then((resp) => resp.json().then((body) => ({ ok: resp.ok, body })))
      .then(({ ok, body }) => {
        if (mine !== seq) return;
        if (!ok) return done("error", body.error + (body.fix ? " " + body.fix : ""), []);
        const note = body.hits.length + " closest of " + body.searched.toLocaleString("en-US") +
          " explanations." + (body.note ? " " + body.note : "");
        done("1", note, body.hits);
      })
      .catch((err) => done("error", "Search failed: " + err, []));
  });
})();
