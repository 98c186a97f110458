// The deployment page's log renderer. It owns the page's event stream (one
// EventSource; see docs/decisions.md for why not htmx's SSE extension): `lines`
// events carry a JSON array per server batch, and all DOM work for them happens once
// per animation frame. "At the bottom" comes from scroll events, never from measuring
// layout per line; old lines are trimmed in bulk so at most `max_lines` stay
// rendered while following; "Load earlier", #L anchors and search fetch the rest.
(function () {
  "use strict";
  var stateEl = document.getElementById("log-state");
  var log = document.getElementById("log");
  if (!stateEl || !log) return;
  var state = JSON.parse(stateEl.textContent);
  var MAX = state.max_lines;
  var HARD_MAX = MAX * 4; // while the user reads history, trim only beyond this
  var PER_FRAME = 2000;
  // A batch of at most this many lines goes in without waiting for a frame (receive()).
  var TRICKLE = 20;
  var VIEW_CHARS = 10000;

  var firstN = state.first; // number of the first rendered line
  var nextN = state.first; // number the next appended line gets
  var firstId = null;
  var lastId = state.last_id;
  var rendered = 0;
  var pending = [];
  var scheduled = false;
  var follow = true;
  var source = null;
  var ended = !state.live;
  var retry = 1000;
  var stages = state.stages || {};
  var stageStart = {};

  var followBtn = document.getElementById("log-follow");
  var earlierBtn = document.getElementById("load-earlier");
  var timesBox = document.getElementById("log-times");
  var refresh = document.getElementById("summary-refresh");

  // --- building lines ---------------------------------------------------------------
  var proto = document.createElement("div");
  proto.className = "line";
  proto.innerHTML = '<a class="ln"></a><span class="ts"></span><span class="tx"></span>';

  function pad(v, n) {
    v = String(v);
    while (v.length < n) v = "0" + v;
    return v;
  }

  function clock(ms) {
    var d = new Date(ms);
    return pad(d.getHours(), 2) + ":" + pad(d.getMinutes(), 2) + ":" + pad(d.getSeconds(), 2) + "." + pad(d.getMilliseconds(), 3);
  }

  function lineEl(p) {
    var el = proto.cloneNode(true), a = el.firstChild, ts = a.nextSibling, tx = ts.nextSibling;
    el.id = "L" + p.n;
    el.setAttribute("data-id", p.id);
    a.href = "#L" + p.n;
    a.setAttribute("data-n", p.n);
    a.setAttribute("aria-label", "Line " + p.n);
    if (p.ts) ts.setAttribute("data-t", clock(p.ts));
    var text = p.text, full = p.full || text.length;
    if (text.length > VIEW_CHARS) text = text.slice(0, VIEW_CHARS);
    window.ShipmateAnsi.render(tx, text);
    if (full > text.length) {
      var cut = document.createElement("span");
      cut.className = "cut";
      cut.setAttribute("data-note", "line truncated in view, " + full.toLocaleString("en") + " chars");
      el.appendChild(cut);
    }
    return el;
  }

  function stageLabel(name) {
    var info = stages[name] || {};
    var text = info.duration != null ? info.duration.toFixed(1) + " s" : "";
    return text;
  }

  function sectionEl(stage) {
    var sec = document.createElement("details");
    sec.className = "log-stage";
    sec.open = true;
    sec.setAttribute("data-stage", stage);
    var sum = document.createElement("summary"), name = document.createElement("span"), dur = document.createElement("span");
    name.className = "stage-label";
    name.textContent = stage || "log";
    dur.className = "stage-dur";
    dur.textContent = stageLabel(stage);
    sum.appendChild(name);
    sum.appendChild(dur);
    var info = stages[stage];
    if (info) sec.setAttribute("data-status", info.status);
    var box = document.createElement("div");
    box.className = "lines";
    sec.appendChild(sum);
    sec.appendChild(box);
    return sec;
  }

  // Groups consecutive lines of one stage into sections; returns [fragment-of-sections].
  function build(lines, into) {
    var frag = document.createDocumentFragment(), sec = into, box = into && into.lastElementChild, run = null;
    for (var i = 0; i < lines.length; i++) {
      var p = lines[i];
      if (!sec || sec.getAttribute("data-stage") !== p.stage) {
        if (run) box.appendChild(run);
        sec = sectionEl(p.stage);
        box = sec.lastElementChild;
        frag.appendChild(sec);
        run = null;
      }
      if (!run) run = document.createDocumentFragment();
      run.appendChild(lineEl(p));
    }
    if (run) box.appendChild(run);
    return frag;
  }

  function updateFirst() {
    var first = log.querySelector(".line");
    if (first) {
      firstN = +first.id.slice(1);
      firstId = first.getAttribute("data-id");
    } else {
      firstN = nextN;
    }
    if (earlierBtn) earlierBtn.hidden = !(firstN > 1 && firstId);
  }

  function trim(k) {
    while (k > 0) {
      var sec = log.firstElementChild;
      if (!sec) break;
      var box = sec.lastElementChild, c = box.childElementCount;
      if (c <= k) {
        log.removeChild(sec);
        rendered -= c;
        k -= c;
        continue;
      }
      var range = document.createRange();
      range.setStartBefore(box.firstElementChild);
      range.setEndAfter(box.children[k - 1]);
      range.deleteContents();
      rendered -= k;
      k = 0;
    }
    updateFirst();
  }

  function scrollToEnd() {
    // A write only: scrollTop clamps, so no layout is read here.
    log.scrollTop = 1e9;
  }

  // --- the frame loop -------------------------------------------------------------------
  function schedule() {
    if (scheduled) return;
    scheduled = true;
    requestAnimationFrame(flush);
    // A background tab gets no animation frames; a timer still drains the queue.
    setTimeout(flush, 500);
  }

  function flush(trickle) {
    if (!scheduled) return;
    scheduled = false;
    if (!pending.length) return;
    var batch;
    if (follow && pending.length > MAX) {
      // Lines that would be trimmed at once are never built; "Load earlier" has them.
      pending = pending.slice(pending.length - MAX);
    }
    if (pending.length > PER_FRAME) {
      batch = pending.slice(0, PER_FRAME);
      pending = pending.slice(PER_FRAME);
      schedule();
    } else {
      batch = pending;
      pending = [];
    }
    var wasEmpty = rendered === 0;
    log.appendChild(build(batch, log.lastElementChild));
    rendered += batch.length;
    var trimmed = follow && rendered > MAX;
    if (trimmed) trim(rendered - MAX);
    else if (rendered > HARD_MAX) trim(rendered - HARD_MAX);
    else if (wasEmpty || pending.length === 0) updateFirst();
    // In a frame (or after trimming, which moves what is in view) scroll now; a trickle
    // scrolls in the next frame, so its task does not wait for a layout.
    if (follow) {
      if (trickle === true && !trimmed) scrollSoon();
      else scrollToEnd();
    }
  }

  // Scrolling reads layout (the browser clamps scrollTop); doing it in the next frame
  // keeps the layout out of the task that appends lines, and does it once per frame.
  var scrollPending = false;
  function scrollSoon() {
    if (scrollPending) return;
    scrollPending = true;
    requestAnimationFrame(function () {
      scrollPending = false;
      if (follow) scrollToEnd();
    });
  }

  function idLess(a, b) {
    var x = a.split("-"), y = b.split("-");
    return +x[0] < +y[0] || (+x[0] === +y[0] && +x[1] < +y[1]);
  }

  function receive(lines) {
    var start = 0;
    // An exact resume never repeats, but a reconnect must not be trusted blindly either.
    while (start < lines.length && !idLess(lastId, lines[start].id)) start++;
    for (var i = start; i < lines.length; i++) {
      lines[i].n = nextN++;
      pending.push(lines[i]);
    }
    if (start < lines.length) lastId = lines[lines.length - 1].id;
    // A trickle goes into the page at once; a burst waits for the next frame, so that
    // the DOM work stays one batch per frame however fast lines come.
    if (!scheduled && pending.length <= TRICKLE) {
      scheduled = true;
      flush(true);
    } else {
      schedule();
    }
  }

  // --- follow -----------------------------------------------------------------------------
  function setFollow(on) {
    follow = on;
    if (followBtn) {
      followBtn.setAttribute("aria-pressed", on ? "true" : "false");
      followBtn.textContent = on ? "Following" : "Follow";
    }
    log.classList.toggle("following", on);
  }

  // One read per scroll event, not per line. Lines appended below (and our own scroll to
  // them in the next frame) move the bottom away without the user doing anything, so
  // only a move up stops following; reaching the bottom starts it again.
  var lastTop = 0;
  log.addEventListener(
    "scroll",
    function () {
      var top = log.scrollTop;
      var atBottom = log.scrollHeight - top - log.clientHeight < 8;
      if (atBottom) {
        if (!follow) setFollow(true);
      } else if (top < lastTop - 1 && follow) {
        setFollow(false);
      }
      lastTop = top;
    },
    { passive: true }
  );

  // --- the event stream ---------------------------------------------------------------
  function stageEvent(e) {
    var s = JSON.parse(e.data), ms = e.lastEventId ? +e.lastEventId.split("-")[0] : Date.now();
    var tpl = document.createElement("template");
    tpl.innerHTML = s.html; // server-rendered and escaped (templatetags/shipmate.py)
    var li = tpl.content.firstElementChild, old = li && document.getElementById(li.id);
    if (old) old.replaceWith(li);
    var info = (stages[s.name] = stages[s.name] || { status: s.status, duration: null });
    info.status = s.status;
    // The timeline (js/timeline.js) moves its bars at the server's time of the event.
    document.dispatchEvent(new CustomEvent("shipmate-stage", { detail: { name: s.name, status: s.status, ms: e.lastEventId ? ms : null } }));
    if (s.status === "running") stageStart[s.name] = ms;
    else if (stageStart[s.name] && s.status !== "pending") info.duration = (ms - stageStart[s.name]) / 1000;
    var secs = log.querySelectorAll("details.log-stage");
    for (var i = 0; i < secs.length; i++) {
      if (secs[i].getAttribute("data-stage") !== s.name) continue;
      secs[i].setAttribute("data-status", s.status);
      secs[i].querySelector(".stage-dur").textContent = stageLabel(s.name);
    }
  }

  function trigger(name) {
    if (refresh && window.htmx) window.htmx.trigger(refresh, name);
  }

  function connect() {
    var url = log.closest(".deployment").getAttribute("data-sse-connect");
    if (!url || ended) return;
    source = new EventSource(url + "?after=" + encodeURIComponent(lastId));
    source.addEventListener("lines", function (e) {
      receive(JSON.parse(e.data));
    });
    source.addEventListener("stage", function (e) {
      if (e.lastEventId) lastId = idLess(lastId, e.lastEventId) ? e.lastEventId : lastId;
      stageEvent(e);
    });
    source.addEventListener("status", function (e) {
      if (e.lastEventId && idLess(lastId, e.lastEventId)) lastId = e.lastEventId;
      // "Deployment #N queued." is out of date once the run moves on.
      if (JSON.parse(e.data).status !== "queued") document.querySelectorAll(".messages [data-transient]").forEach(function (m) { m.remove(); });
      trigger("shipmate-status");
    });
    source.addEventListener("end", function () {
      ended = true;
      source.close();
      trigger("shipmate-end");
    });
    source.addEventListener("open", function () {
      retry = 1000;
    });
    source.onerror = function () {
      // The browser retries by itself (with Last-Event-ID) unless it gave up.
      if (source.readyState === EventSource.CLOSED && !ended) {
        setTimeout(connect, retry);
        retry = Math.min(retry * 2, 30000);
      }
    };
  }

  // --- history: load earlier, anchors --------------------------------------------------
  var loading = null;

  function loadEarlier(count) {
    if (loading) return loading;
    if (!firstId || firstN <= 1) return Promise.resolve(0);
    setFollow(false);
    if (earlierBtn) earlierBtn.disabled = true;
    var url = state.earlier_url + "?format=json&before=" + encodeURIComponent(firstId) + (count ? "&count=" + count : "");
    loading = fetch(url, { credentials: "same-origin", headers: { Accept: "application/json" } })
      .then(function (r) {
        if (!r.ok) throw new Error("HTTP " + r.status);
        return r.json();
      })
      .then(function (data) {
        var lines = data.lines;
        if (!lines.length) {
          firstN = 1;
          if (earlierBtn) earlierBtn.hidden = true;
          return 0;
        }
        var n = firstN - lines.length;
        for (var i = 0; i < lines.length; i++) lines[i].n = Math.max(1, n + i);
        var head = log.firstElementChild;
        // The page's last section may continue in the first rendered one.
        var frag = build(lines, null);
        if (head && frag.lastElementChild && frag.lastElementChild.getAttribute("data-stage") === head.getAttribute("data-stage")) {
          var tailBox = frag.lastElementChild.lastElementChild, headBox = head.lastElementChild, moved = document.createDocumentFragment();
          while (tailBox.firstChild) moved.appendChild(tailBox.firstChild);
          headBox.insertBefore(moved, headBox.firstChild);
          frag.removeChild(frag.lastElementChild);
        }
        log.insertBefore(frag, head);
        rendered += lines.length;
        updateFirst();
        if (lines.length && n <= 1) {
          firstN = 1;
          if (earlierBtn) earlierBtn.hidden = true;
        }
        return lines.length;
      })
      .finally(function () {
        loading = null;
        if (earlierBtn) earlierBtn.disabled = false;
      });
    return loading;
  }

  function highlight(el, cls) {
    var old = log.querySelectorAll("." + cls);
    for (var i = 0; i < old.length; i++) old[i].classList.remove(cls);
    el.classList.add(cls);
  }

  // Scrolls to line n, fetching earlier lines first if it is not rendered yet.
  function goTo(n, cls) {
    cls = cls || "target";
    if (scheduled) flush();
    if (n < firstN && firstId) {
      var want = Math.min(firstN - n + 50, state.fetch_limit);
      return loadEarlier(want).then(function (got) {
        if (got && n >= firstN) return goTo(n, cls);
        return null;
      });
    }
    var el = document.getElementById("L" + n);
    if (!el) return Promise.resolve(null);
    var sec = el.closest("details");
    if (sec) sec.open = true;
    setFollow(false);
    highlight(el, cls);
    el.scrollIntoView({ block: "center" });
    return Promise.resolve(el);
  }

  function fromHash() {
    var m = /^#L(\d+)$/.exec(location.hash);
    if (m) goTo(+m[1]);
  }

  // --- search ---------------------------------------------------------------------------
  var matches = [], current = -1;
  var statusEl = document.getElementById("log-search-status");

  function showMatch(i) {
    if (!matches.length) return;
    current = (i + matches.length) % matches.length;
    statusEl.textContent = current + 1 + " of " + matches.length + (search.more ? "+" : "") + " (line " + matches[current].n + ")";
    goTo(matches[current].n, "match");
  }

  function search(q) {
    matches = [];
    current = -1;
    if (!q) {
      statusEl.textContent = "";
      return;
    }
    statusEl.textContent = "Searching…";
    fetch(state.search_url + "?q=" + encodeURIComponent(q), { credentials: "same-origin" })
      .then(function (r) {
        return r.json();
      })
      .then(function (data) {
        matches = data.matches;
        search.more = data.more;
        if (!matches.length) statusEl.textContent = "No match";
        else showMatch(0);
      })
      .catch(function () {
        statusEl.textContent = "Search failed";
      });
  }

  // --- wiring -----------------------------------------------------------------------------
  var form = document.getElementById("log-search");
  if (form) {
    form.hidden = false;
    form.addEventListener("submit", function (e) {
      e.preventDefault();
      search(document.getElementById("log-query").value.trim());
    });
    document.getElementById("log-next").addEventListener("click", function () {
      showMatch(current + 1);
    });
    document.getElementById("log-prev").addEventListener("click", function () {
      showMatch(current - 1);
    });
  }
  if (followBtn) {
    followBtn.hidden = false;
    followBtn.addEventListener("click", function () {
      setFollow(true);
      if (scheduled) flush();
      scrollToEnd();
    });
  }
  if (timesBox) {
    timesBox.closest("label").hidden = false;
    timesBox.addEventListener("change", function () {
      log.classList.toggle("show-times", timesBox.checked);
    });
  }
  if (earlierBtn) {
    earlierBtn.addEventListener("click", function () {
      loadEarlier();
    });
  }
  window.addEventListener("hashchange", fromHash);

  // The page's own tail, rendered before first paint.
  for (var i = 0; i < state.lines.length; i++) state.lines[i].n = nextN++;
  log.appendChild(build(state.lines, null));
  rendered = state.lines.length;
  updateFirst();
  if (state.first > 1 && earlierBtn) earlierBtn.hidden = false;
  setFollow(true);
  scrollToEnd();
  fromHash();
  connect();

  // For tests and benchmarks: what the renderer holds.
  window.ShipmateLog = {
    rendered: function () {
      return rendered;
    },
    pending: function () {
      return pending.length;
    },
    following: function () {
      return follow;
    },
    goTo: goTo,
    loadEarlier: loadEarlier,
  };
})();
