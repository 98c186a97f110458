// Renders one log line's text into DOM nodes: ANSI SGR colours and styles (bold, dim,
// italic, underline, strike, inverse, 8/16 colours, the 256-colour palette, truecolor)
// become spans; every other escape or control sequence is dropped; a carriage-return
// progress bar keeps only its last state. Text only ever goes in through text nodes,
// so output can never become markup.
(function () {
  "use strict";
  // CSI, OSC (BEL or ST terminated), DCS/PM/APC strings, two-byte escapes, a lone ESC,
  // C0 controls except tab, DEL, and CR (a segment break).
  var TOKEN = /\x1b\[([0-?]*)[ -\/]*([@-~])|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)?|\x1b[P^_X][^\x1b]*(?:\x1b\\)?|\x1b[@-Z\\\]-_]?|[\x00-\x08\x0a-\x0c\x0e-\x1f\x7f]|(\r)/g;
  var CUBE = [0, 95, 135, 175, 215, 255];

  function Style() {
    this.bold = this.dim = this.italic = this.underline = this.strike = this.inverse = false;
    this.fg = null; // 0-15: palette class; a string: "rgb(...)"
    this.bg = null;
  }

  function color256(n) {
    if (n < 16) return n;
    if (n < 232) {
      n -= 16;
      return "rgb(" + CUBE[Math.floor(n / 36)] + "," + CUBE[Math.floor(n / 6) % 6] + "," + CUBE[n % 6] + ")";
    }
    var g = 8 + (n - 232) * 10;
    return "rgb(" + g + "," + g + "," + g + ")";
  }

  function clamp(v) {
    v = parseInt(v, 10);
    return isNaN(v) ? 0 : Math.max(0, Math.min(255, v));
  }

  // Reads an extended colour (38/48) at params[i]; returns [colour or undefined, next index].
  function extended(params, i) {
    var mode = parseInt(params[i + 1], 10);
    if (mode === 5) return [color256(clamp(params[i + 2])), i + 3];
    if (mode === 2) {
      // 38;2;r;g;b, or the colon form 38:2:<colourspace>:r:g:b
      var j = params.length - (i + 2) >= 4 && params._colon ? i + 3 : i + 2;
      return ["rgb(" + clamp(params[j]) + "," + clamp(params[j + 1]) + "," + clamp(params[j + 2]) + ")", j + 3];
    }
    return [undefined, params.length];
  }

  function sgr(style, raw) {
    var params = raw === "" ? ["0"] : raw.split(/[;:]/);
    params._colon = raw.indexOf(":") >= 0;
    for (var i = 0; i < params.length; ) {
      var code = params[i] === "" ? 0 : parseInt(params[i], 10);
      if (code === 38 || code === 48) {
        var got = extended(params, i);
        if (got[0] !== undefined) style[code === 38 ? "fg" : "bg"] = got[0];
        i = got[1];
        continue;
      }
      i++;
      if (code === 0) Style.call(style);
      else if (code === 1) style.bold = true;
      else if (code === 2) style.dim = true;
      else if (code === 3) style.italic = true;
      else if (code === 4) style.underline = true;
      else if (code === 7) style.inverse = true;
      else if (code === 9) style.strike = true;
      else if (code === 22) style.bold = style.dim = false;
      else if (code === 23) style.italic = false;
      else if (code === 24) style.underline = false;
      else if (code === 27) style.inverse = false;
      else if (code === 29) style.strike = false;
      else if (code >= 30 && code <= 37) style.fg = code - 30;
      else if (code === 39) style.fg = null;
      else if (code >= 40 && code <= 47) style.bg = code - 40;
      else if (code === 49) style.bg = null;
      else if (code >= 90 && code <= 97) style.fg = code - 90 + 8;
      else if (code >= 100 && code <= 107) style.bg = code - 100 + 8;
    }
  }

  function plainStyle(s) {
    return !(s.bold || s.dim || s.italic || s.underline || s.strike || s.inverse) && s.fg === null && s.bg === null;
  }

  function node(style, text) {
    if (plainStyle(style)) return document.createTextNode(text);
    var span = document.createElement("span"), cls = [];
    var fg = style.inverse ? style.bg : style.fg, bg = style.inverse ? style.fg : style.bg;
    if (style.inverse && fg === null) fg = "inverse-fg";
    if (style.inverse && bg === null) bg = "inverse-bg";
    if (style.bold) cls.push("ansi-bold");
    if (style.dim) cls.push("ansi-dim");
    if (style.italic) cls.push("ansi-italic");
    if (style.underline) cls.push("ansi-underline");
    if (style.strike) cls.push("ansi-strike");
    if (typeof fg === "number") cls.push("ansi-fg-" + fg);
    else if (fg === "inverse-fg") cls.push("ansi-inverse-fg");
    else if (fg) span.style.color = fg;
    if (typeof bg === "number") cls.push("ansi-bg-" + bg);
    else if (bg === "inverse-bg") cls.push("ansi-inverse-bg");
    else if (bg) span.style.backgroundColor = bg;
    span.className = cls.join(" ");
    span.textContent = text;
    return span;
  }

  // Appends `text` rendered to `target`. Fast path for lines with no escape or control.
  function render(target, text) {
    if (!/[\x00-\x08\x0a-\x1f\x7f]/.test(text)) {
      target.textContent = text;
      return;
    }
    var style = new Style(), segment = [], visible = false, kept = null, last = 0, m;
    TOKEN.lastIndex = 0;
    function emit(upto) {
      if (upto > last) {
        segment.push(node(style, text.slice(last, upto)));
        visible = true;
      }
    }
    while ((m = TOKEN.exec(text)) !== null) {
      emit(m.index);
      last = TOKEN.lastIndex;
      if (m[2] === "m") sgr(style, m[1]);
      else if (m[3]) {
        // A carriage return starts the line over; keep the last segment that showed something.
        if (visible) kept = segment;
        segment = [];
        visible = false;
      }
    }
    emit(text.length);
    var out = visible || !kept ? segment : kept;
    target.textContent = "";
    for (var i = 0; i < out.length; i++) target.appendChild(out[i]);
  }

  window.ShipmateAnsi = { render: render };
})();
