// The dashboard's small script: refresh the numbers in place, and show a
// month's history when its cell is clicked. Text is always set with
// textContent, never innerHTML (error messages come from external APIs).
(function () {
  "use strict";
  const cfg = window.BACKFILL;
  let selected = null;

  function el(tag, text) {
    const node = document.createElement(tag);
    if (text !== undefined && text !== null) node.textContent = String(text);
    return node;
  }
  function label(c) {
    return String(c.year).padStart(4, "0") + "-" + String(c.month).padStart(2, "0");
  }
  function setText(id, value) {
    const node = document.getElementById(id);
    if (node) node.textContent = String(value);
  }

  function applyData(data) {
    const s = data.stats;
    const badge = document.getElementById("state");
    badge.textContent = s.paused ? "paused" : "running";
    badge.className = "badge " + (s.paused ? "paused" : "running");
    setText("updated", data.generated_at.substring(11, 19));
    setText("t-total", s.total_months);
    // every status is in by_status (backfill.constants.MONTH_STATUSES, in order)
    Object.keys(s.by_status).forEach(function (st) { setText("t-" + st, s.by_status[st]); });
    setText("t-resolved", s.progress.total_isbns_resolved);
    setText("t-generated", s.progress.total_books_generated);
    setText("t-rate", s.progress.overall_resolution_rate.toFixed(1));
    Object.keys(s.quota_today).forEach(function (p) {
      const q = s.quota_today[p];
      const row = document.querySelector('.bar-row[data-provider="' + p + '"]');
      if (!row) return;
      const fill = row.querySelector(".fill");
      fill.style.width = (q.limit ? (100 * q.used) / q.limit : 100) + "%";
      fill.className = "fill" + (q.exhausted ? " exhausted" : "");
      row.querySelector(".nums").textContent = q.used + " / " + q.limit + " used, " + q.remaining + " left";
    });
    let missing = false;
    data.grid.forEach(function (c) {
      const cell = document.querySelector('td.cell[data-month="' + label(c) + '"]');
      if (!cell) { missing = true; return; }
      cell.className = "cell st-" + c.status + (label(c) === selected ? " selected" : "");
      cell.dataset.status = c.status;
      cell.title = label(c) + ": " + c.status + " · " + c.isbns_resolved + " resolved / " +
        c.books_generated + " generated (" + c.resolution_rate.toFixed(1) + "%)";
      let n = cell.querySelector(".n");
      if (!n) { n = cell.appendChild(el("span")); n.className = "n"; }
      n.textContent = c.books_generated ? c.isbns_resolved : "";
    });
    if (missing) window.location.reload(); // new years were seeded: re-render the grid
    if (selected) showMonth(selected, false);
  }

  function refresh() {
    fetch(cfg.dataUrl, {credentials: "same-origin"})
      .then(function (r) { return r.ok ? r.json() : Promise.reject(r.status); })
      .then(applyData)
      .catch(function () { /* keep the last view; try again next tick */ });
  }

  function showMonth(month, scroll) {
    fetch(cfg.monthUrl.replace("MONTH", month), {credentials: "same-origin"})
      .then(function (r) { return r.json(); })
      .then(function (d) {
        const box = document.getElementById("detail");
        box.hidden = false;
        if (d.error) { setText("detail-title", month); setText("detail-error", d.error.message); return; }
        const m = d.month;
        setText("detail-title", m.label + " — " + m.status);
        const dl = document.getElementById("detail-fields");
        dl.replaceChildren();
        [["books generated", m.books_generated], ["isbns resolved", m.isbns_resolved],
         ["resolution rate", m.resolution_rate.toFixed(1) + "%"], ["attempts", m.attempts],
         ["retries used", m.retry_count], ["prompt variant", m.prompt_variant],
         ["API calls (gemini / xai / isbndb)", m.gemini_calls + " / " + m.xai_calls + " / " + m.isbndb_calls],
         ["started", m.started_at || "—"], ["completed", m.completed_at || "—"],
         ["job", m.job_id || "—"]].forEach(function (pair) {
          dl.appendChild(el("dt", pair[0])); dl.appendChild(el("dd", pair[1]));
        });
        setText("detail-error", d.last_error ? "last error: " + d.last_error : "");
        const body = document.getElementById("detail-attempts");
        body.replaceChildren();
        d.attempts.forEach(function (a) {
          const tr = el("tr");
          [a.attempt, a.started_at, a.finished_at || "—", a.outcome,
           a.gemini_calls + "/" + a.xai_calls + "/" + a.isbndb_calls,
           a.books_generated, a.isbns_resolved, a.error || ""].forEach(function (v) { tr.appendChild(el("td", v)); });
          body.appendChild(tr);
        });
        showCandidates(d.candidates || []);
        if (scroll) box.scrollIntoView({behavior: "smooth", block: "nearest"});
      });
  }

  // A month's generated books; the row's class carries the fate (book-unresolved
  // is highlighted by the stylesheet).
  function showCandidates(books) {
    const body = document.getElementById("detail-candidates");
    body.replaceChildren();
    const counts = {};
    books.forEach(function (b) {
      counts[b.status] = (counts[b.status] || 0) + 1;
      const tr = el("tr");
      tr.className = "book-" + b.status;
      tr.dataset.status = b.status;
      [b.title, b.authors.join(", "), b.status, b.isbn13 || "—", b.resolver || "—",
       b.generators.join(", ")].forEach(function (v) { tr.appendChild(el("td", v)); });
      body.appendChild(tr);
    });
    const parts = Object.keys(counts).sort().map(function (k) { return counts[k] + " " + k; });
    setText("detail-books-summary", books.length ? "(" + parts.join(", ") + ")" : "(none generated yet)");
  }

  const grid = document.getElementById("grid");
  if (grid) {
    grid.addEventListener("click", function (ev) {
      const cell = ev.target.closest("td.cell");
      if (!cell || cell.dataset.status === "none") return;
      document.querySelectorAll("td.cell.selected").forEach(function (c) { c.classList.remove("selected"); });
      cell.classList.add("selected");
      selected = cell.dataset.month;
      showMonth(selected, true);
    });
  }
  setInterval(refresh, cfg.refreshSeconds * 1000);
})();
