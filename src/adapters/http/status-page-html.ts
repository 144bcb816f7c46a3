/**
 * The status page's HTML: inline style and script (allowed by this response's nonce, see statusPagePolicy), no
 * build step, nothing loaded from elsewhere. The script polls status.json every second and writes every value
 * with textContent or as a number into an SVG attribute: nothing the server sends is ever parsed as markup.
 */

/** The nonce is base64 from randomBytes (no quote or angle bracket can occur in it). */
export function renderStatusPage(nonce: string): string {
  return `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="color-scheme" content="light dark">
<title>sequencer status</title>
<style nonce="${nonce}">${STYLE}</style>
</head>
<body>
${BODY}
<script nonce="${nonce}">${SCRIPT}</script>
</body>
</html>
`;
}

const STYLE = `
  :root { font: 14px/1.4 system-ui, sans-serif; --muted: #6b7280; --line: #d1d5db; }
  body { margin: 0 auto; padding: 16px 24px; max-width: 1100px; }
  header { display: flex; flex-wrap: wrap; align-items: center; gap: 12px; margin-bottom: 12px; }
  h1 { font-size: 18px; margin: 0 12px 0 0; }
  .badge { display: inline-block; padding: 3px 10px; border-radius: 4px; font-weight: 700; letter-spacing: .04em; color: #fff; background: #6b7280; }
  .badge.ok { background: #15803d; } .badge.stalled { background: #b91c1c; } .badge.unknown, .badge.api { background: #6b7280; }
  .badge.unreachable { background: #7c2d12; } .badge.leader { background: #1d4ed8; } .badge.standby { background: #b45309; }
  .muted { color: var(--muted); }
  .grid { display: grid; grid-template-columns: repeat(auto-fit, minmax(260px, 1fr)); gap: 12px; }
  section { border: 1px solid var(--line); border-radius: 6px; padding: 10px 14px; }
  h2 { font-size: 12px; text-transform: uppercase; letter-spacing: .06em; color: var(--muted); margin: 0 0 6px; }
  dl { display: grid; grid-template-columns: auto 1fr; gap: 2px 12px; margin: 0; }
  dt { color: var(--muted); } dd { margin: 0; font-variant-numeric: tabular-nums; font-weight: 600; text-align: right; }
  svg { width: 100%; height: 60px; display: block; margin-top: 6px; border-bottom: 1px solid var(--line); }
  polyline { fill: none; stroke-width: 1.5; vector-effect: non-scaling-stroke; }
  .line-in { stroke: #2563eb; } .line-out { stroke: #16a34a; } .line-accepted { stroke: #9333ea; } .line-lag { stroke: #dc2626; }
  .key-in { color: #2563eb; } .key-out { color: #16a34a; } .key-accepted { color: #9333ea; } .key-lag { color: #dc2626; }
  .wide { grid-column: 1 / -1; }
  #last-error { white-space: pre-wrap; word-break: break-word; font-family: ui-monospace, monospace; margin: 0; }
  table { border-collapse: collapse; width: 100%; } td { padding: 2px 12px 2px 0; vertical-align: top; }
  td:first-child { width: 10em; } td:nth-child(2) { width: 4em; }
  td.ok { color: #15803d; } td.fail { color: #b91c1c; font-weight: 700; }
`;

const BODY = `
<header>
  <h1>sequencer status</h1>
  <span id="state" class="badge unknown">…</span>
  <span id="role" class="badge unknown">…</span>
  <span id="reason" class="muted"></span>
  <span class="muted">updated <span id="updated">never</span></span>
</header>
<div class="grid">
  <section>
    <h2>Intake (SEQUENCE)</h2>
    <dl>
      <dt>lag (waiting)</dt><dd id="lag">–</dd>
      <dt>pending (not delivered)</dt><dd id="pending">–</dd>
      <dt>ack pending</dt><dd id="ack-pending">–</dd>
      <dt>stuck for</dt><dd id="stuck">–</dd>
    </dl>
    <svg id="spark-lag" viewBox="0 0 300 60" preserveAspectRatio="none" role="img" aria-label="intake lag"></svg>
    <div class="muted"><span class="key-lag">lag</span>, last <span class="history-seconds">–</span> s, peak <span id="lag-peak">–</span></div>
  </section>
  <section>
    <h2>Heads</h2>
    <dl>
      <dt>database</dt><dd id="db-head">–</dd>
      <dt>TRADING</dt><dd id="trading-head">–</dd>
      <dt>TRADING vs database</dt><dd id="trading-behind">–</dd>
    </dl>
  </section>
  <section>
    <h2>Rates (per second)</h2>
    <dl>
      <dt><span class="key-in">in</span>: stored on SEQUENCE</dt><dd id="rate-in">–</dd>
      <dt><span class="key-accepted">accepted</span> (202) by this API</dt><dd id="rate-accepted">–</dd>
      <dt><span class="key-out">out</span>: sequenced</dt><dd id="rate-out">–</dd>
    </dl>
    <svg id="spark-rates" viewBox="0 0 300 60" preserveAspectRatio="none" role="img" aria-label="in and out rates"></svg>
    <div class="muted">last <span class="history-seconds">–</span> s, peak <span id="rate-peak">–</span>/s</div>
  </section>
  <section>
    <h2>Redeliveries</h2>
    <dl>
      <dt>by this sequencer (total)</dt><dd id="redelivered">–</dd>
      <dt>per second</dt><dd id="redelivered-rate">–</dd>
      <dt>redelivered, unacked now</dt><dd id="redelivered-unacked">–</dd>
    </dl>
  </section>
  <section>
    <h2>Leadership</h2>
    <dl>
      <dt>this process</dt><dd id="lease">–</dd>
      <dt>writer</dt><dd id="writer">–</dd>
      <dt>term</dt><dd id="writer-term">–</dd>
      <dt>lease</dt><dd id="writer-live">–</dd>
      <dt>standbys</dt><dd id="standbys">–</dd>
    </dl>
  </section>
  <section class="wide">
    <h2>Last error</h2>
    <p id="last-error">–</p>
    <div class="muted" id="last-error-when"></div>
  </section>
  <section class="wide">
    <h2>Readiness checks</h2>
    <table><tbody id="checks"></tbody></table>
  </section>
</div>
`;

/**
 * Plain ES5-style script (no template literals, so this file's own template needs no escaping). Values go in with
 * textContent only; the sparklines take numbers computed here.
 */
const SCRIPT = `
"use strict";
(function () {
  var SVG = "http://www.w3.org/2000/svg";
  var lastOk = null;
  function el(id) { return document.getElementById(id); }
  function show(id, value) { el(id).textContent = value === null || value === undefined ? "–" : String(value); }
  function badge(id, label, kind) { var b = el(id); b.textContent = label; b.className = "badge " + kind; }
  function rate(v) { return v === null || v === undefined ? "–" : v.toFixed(1); }
  function time(iso) { return iso ? new Date(iso).toLocaleTimeString() : "–"; }

  function spark(id, series, seconds, until) {
    var svg = el(id);
    while (svg.firstChild) svg.removeChild(svg.firstChild);
    var span = seconds * 1000;
    function shown(p) { return p.v !== null && until - p.at <= span; }
    var peak = 0;
    series.forEach(function (s) { s.points.forEach(function (p) { if (shown(p) && p.v > peak) peak = p.v; }); });
    series.forEach(function (s) {
      var coords = [];
      s.points.forEach(function (p) {
        if (!shown(p)) return;
        var x = 300 - ((until - p.at) / span) * 300;
        var y = 58 - (peak > 0 ? (p.v / peak) * 54 : 0);
        coords.push(x.toFixed(1) + "," + y.toFixed(1));
      });
      if (coords.length === 0) return;
      var line = document.createElementNS(SVG, "polyline");
      line.setAttribute("class", s.cls);
      line.setAttribute("points", coords.join(" "));
      svg.appendChild(line);
    });
    return peak;
  }

  function render(s) {
    lastOk = s.at;
    badge("state", s.state.toUpperCase(), s.state);
    show("reason", s.reason);
    badge("role", s.process.role.toUpperCase(), s.process.role);
    show("updated", time(s.at));
    var intake = s.intake;
    show("lag", intake && intake.lag);
    show("pending", intake && intake.pending);
    show("ack-pending", intake && intake.ackPending);
    show("redelivered-unacked", intake && intake.redeliveredUnacked);
    show("stuck", s.stuckSeconds === null ? "–" : s.stuckSeconds.toFixed(0) + " s (limit " + s.stallAfterSeconds + " s)");
    show("db-head", s.heads.database);
    show("trading-head", s.heads.trading);
    var behind = s.heads.tradingBehind;
    show("trading-behind", behind === null ? null : behind === "0" ? "in sync" : "TRADING behind by " + behind);
    show("rate-in", rate(s.rates.intake));
    show("rate-accepted", s.rates.accepted === null && s.process.role !== "api" ? "no API here" : rate(s.rates.accepted));
    show("rate-out", rate(s.rates.sequenced));
    show("redelivered", s.redelivered === null ? "no sequencer here" : s.redelivered);
    show("redelivered-rate", rate(s.rates.redelivered));
    show("lease", s.process.lease === null ? "API only, runs no sequencer" : s.process.lease);
    show("writer", s.writer && s.writer.holder);
    show("writer-term", s.writer && s.writer.term);
    show("writer-live", s.writer ? (s.writer.live ? "live" : "expired") : null);
    show("standbys", s.writer && (s.writer.standbys.length > 0 ? s.writer.standbys.join(", ") : "none connected"));
    if (s.lastError) {
      show("last-error", s.lastError.message);
      show("last-error-when", (s.lastError.current ? "current, since " : "cleared; seen from ") + time(s.lastError.since) +
        (s.lastError.current ? "" : " to " + time(s.lastError.lastSeen)));
    } else {
      show("last-error", s.process.role === "api" ? "none seen (errors of a sequencer show on its own ops listener)" : "none seen");
      show("last-error-when", "");
    }
    var rows = el("checks");
    while (rows.firstChild) rows.removeChild(rows.firstChild);
    Object.keys(s.checks).sort().forEach(function (name) {
      var check = s.checks[name];
      var tr = document.createElement("tr");
      [name, check.ok ? "ok" : "FAIL", check.detail || ""].forEach(function (value, i) {
        var td = document.createElement("td");
        td.textContent = value;
        if (i === 1) td.className = check.ok ? "ok" : "fail";
        tr.appendChild(td);
      });
      rows.appendChild(tr);
    });
    var points = s.history.points;
    var until = points.length ? points[points.length - 1].at : Date.parse(s.at);
    // The time axis spans what there is (at least 30 s, at most the history): a page opened a moment ago is readable.
    var seconds = points.length ? Math.min(s.history.seconds, Math.max(30, Math.ceil((until - points[0].at) / 1000))) : s.history.seconds;
    function pick(key) { return points.map(function (p) { return { at: p.at, v: p[key] }; }); }
    Array.prototype.forEach.call(document.querySelectorAll(".history-seconds"), function (n) { n.textContent = String(seconds); });
    show("rate-peak", rate(spark("spark-rates", [
      { cls: "line-in", points: pick("intake") },
      { cls: "line-accepted", points: pick("accepted") },
      { cls: "line-out", points: pick("sequenced") }
    ], seconds, until)));
    show("lag-peak", spark("spark-lag", [{ cls: "line-lag", points: pick("lag") }], seconds, until));
  }

  function unreachable(error) {
    badge("state", "UNREACHABLE", "unreachable");
    show("reason", "no answer from this ops listener since " + (lastOk ? time(lastOk) : "the page loaded") + " (" + error.message + ")");
  }

  function poll() {
    var controller = new AbortController();
    var timer = setTimeout(function () { controller.abort(); }, 3000);
    fetch("status.json", { cache: "no-store", signal: controller.signal })
      .then(function (res) {
        if (!res.ok) throw new Error("HTTP " + res.status);
        return res.json();
      })
      .then(function (s) {
        // A fault of this script is not an unreachable listener: thrown outside the promise, it is a page error.
        try { render(s); } catch (e) { setTimeout(function () { throw e; }); }
      })
      .catch(unreachable)
      .then(function () { clearTimeout(timer); setTimeout(poll, 1000); });
  }
  poll();
})();
`;
