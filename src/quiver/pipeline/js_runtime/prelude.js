// Quiver JavaScript runtime prelude: the per-batch driver loop that runs inside V8.
//
// The host hands a batch over as columnar JSON (number columns and text lengths in an
// ArrayBuffer, see __quiver.alloc), this driver builds one row object per row, calls the
// user's function, and hands back columnar JSON with the kept rows (plain columns packed in
// an ArrayBuffer, see packParts), the rows sent to named routes, per-row errors and log lines. Nothing here is visible to user scripts
// except the `__quiver` global.
(function (global) {
  "use strict";

  var LEVELS = {
    trace: "debug", debug: "debug", verbose: "debug",
    info: "info", information: "info",
    warn: "warning", warning: "warning",
    error: "error", critical: "error", fatal: "error",
  };
  var MS_PER_DAY = 86400000;

  var opts = null;           // options given to init()
  var userFn = null;         // the user's process(context) or transform(row, ctx)
  var outFields = null;      // [{name, type, required, scale}] or null (inferred output)
  var outIndex = null;       // name -> true, for setField checks
  var routeNames = null;     // declared route names (object) or null (any name accepted)
  var logs = [];
  var logsDropped = 0;
  var ruleCache = Object.create(null);
  var scriptPattern = null;
  var timings = null;        // where the last batch's time went, see __quiver.timings
  var lastRun = null;        // what the last run() answered from, see __quiver.refuseDeep

  // ---------------------------------------------------------------- errors

  function UserError(message) {
    this.name = "Error";
    this.message = message;
    this.stack = new Error(message).stack;
  }
  UserError.prototype = Object.create(Error.prototype);

  function CoerceError(field, value, message) {
    this.field = field;
    this.value = value;
    this.message = message;
  }

  function whereOf(err) {
    var stack = err && typeof err.stack === "string" ? err.stack : "";
    var m = scriptPattern.exec(stack);
    return m ? opts.scriptName + ":" + m[1] + ":" + m[2] : "";
  }

  function messageOf(err) {
    if (err instanceof Error || err instanceof UserError) {
      return (err.name && err.name !== "Error" ? err.name + ": " : "") + err.message;
    }
    try {
      return "uncaught value thrown: " + (typeof err === "string" ? err : JSON.stringify(err));
    } catch (e) {
      return "uncaught value thrown: " + String(err);
    }
  }

  function escapeRegExp(text) {
    return text.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");
  }

  // ---------------------------------------------------------------- utilities

  function pad(n, width) {
    var s = String(n);
    while (s.length < width) s = "0" + s;
    return s;
  }

  function toDate(value, what) {
    var d;
    if (value instanceof Date) d = value;
    else if (typeof value === "number") d = new Date(value);
    else if (typeof value === "string") d = new Date(value.trim());
    else d = new Date(NaN);
    if (isNaN(d.getTime())) {
      throw new UserError(what + ": " + JSON.stringify(value) + " is not a valid date");
    }
    return d;
  }

  var MONTHS = ["January", "February", "March", "April", "May", "June", "July", "August",
    "September", "October", "November", "December"];
  var DAYS = ["Sunday", "Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday"];
  var FORMAT_TOKENS = /yyyy|yy|MMMM|MMM|MM|M|dddd|ddd|dd|d|HH|H|hh|h|mm|m|ss|s|fff|ff|f|tt|zzz|'[^']*'|"[^"]*"|\\.|./g;

  // .NET-style custom date format (yyyy-MM-dd HH:mm:ss.fff), evaluated in UTC.
  function formatDate(value, format) {
    var d = toDate(value, "formatDate");
    if (format === undefined || format === null || format === "o" || format === "O") {
      return d.toISOString();
    }
    if (typeof format !== "string") throw new UserError("formatDate: the format must be a string");
    var Y = d.getUTCFullYear(), Mo = d.getUTCMonth(), D = d.getUTCDate(), wd = d.getUTCDay();
    var H = d.getUTCHours(), Mi = d.getUTCMinutes(), S = d.getUTCSeconds(), ms = d.getUTCMilliseconds();
    return format.replace(FORMAT_TOKENS, function (t) {
      switch (t) {
        case "yyyy": return pad(Y, 4);
        case "yy": return pad(Y % 100, 2);
        case "MMMM": return MONTHS[Mo];
        case "MMM": return MONTHS[Mo].slice(0, 3);
        case "MM": return pad(Mo + 1, 2);
        case "M": return String(Mo + 1);
        case "dddd": return DAYS[wd];
        case "ddd": return DAYS[wd].slice(0, 3);
        case "dd": return pad(D, 2);
        case "d": return String(D);
        case "HH": return pad(H, 2);
        case "H": return String(H);
        case "hh": return pad(H % 12 === 0 ? 12 : H % 12, 2);
        case "h": return String(H % 12 === 0 ? 12 : H % 12);
        case "mm": return pad(Mi, 2);
        case "m": return String(Mi);
        case "ss": return pad(S, 2);
        case "s": return String(S);
        case "fff": return pad(ms, 3);
        case "ff": return pad(Math.floor(ms / 10), 2);
        case "f": return String(Math.floor(ms / 100));
        case "tt": return H < 12 ? "AM" : "PM";
        case "zzz": return "+00:00";
        default:
          if (t.length >= 2 && (t[0] === "'" || t[0] === '"')) return t.slice(1, -1);
          if (t.length === 2 && t[0] === "\\") return t[1];
          return t;
      }
    });
  }

  function newGuid() {
    var hex = "0123456789abcdef";
    var out = "";
    for (var i = 0; i < 36; i++) {
      if (i === 8 || i === 13 || i === 18 || i === 23) out += "-";
      else if (i === 14) out += "4";
      else if (i === 19) out += hex[(Math.random() * 4) | 8];
      else out += hex[(Math.random() * 16) | 0];
    }
    return out;
  }

  function log(a, b) {
    var message = a, level = b;
    if (typeof a === "string" && typeof b === "string" &&
        LEVELS[a.toLowerCase()] !== undefined && LEVELS[b.toLowerCase()] === undefined) {
      message = b;                  // FlowEngine scripts also call log(level, message)
      level = a;
    }
    var norm = LEVELS[String(level === undefined ? "info" : level).toLowerCase()] || "info";
    if (logs.length >= opts.maxLogs) {
      logsDropped++;
      return;
    }
    logs.push([norm, typeof message === "string" ? message : JSON.stringify(message)]);
  }

  // ---------------------------------------------------------------- typed output

  function isBlank(v) {
    return v === null || v === undefined || (typeof v === "string" && v.trim() === "");
  }

  function numberOf(field, v, type) {
    if (typeof v === "number") return v;
    if (typeof v === "string") {
      var s = v.trim();
      var n = Number(s);
      if (s !== "" && !isNaN(n)) return n;
    }
    if (typeof v === "boolean") return v ? 1 : 0;
    throw new CoerceError(field, v, "cannot convert " + JSON.stringify(v) + " to " + type);
  }

  var COERCE = {
    string: function (f, v) {
      if (v instanceof Date) return v.toISOString();
      if (typeof v === "object") return JSON.stringify(v);
      return String(v);
    },
    integer: function (f, v) {
      var n = numberOf(f, v, "integer");
      if (!Number.isInteger(n)) {
        throw new CoerceError(f, v, JSON.stringify(v) + " is not a whole number (integer)");
      }
      if (n < -2147483648 || n > 2147483647) {
        throw new CoerceError(f, v, JSON.stringify(v) + " is out of the 32-bit integer range; declare the field as long");
      }
      return n;
    },
    long: function (f, v) {
      var n = numberOf(f, v, "long");
      if (!Number.isInteger(n)) {
        throw new CoerceError(f, v, JSON.stringify(v) + " is not a whole number (long)");
      }
      if (!Number.isSafeInteger(n)) {
        throw new CoerceError(f, v, JSON.stringify(v) + " is beyond the exact integer range of JavaScript (2^53)");
      }
      return n;
    },
    double: function (f, v) {
      var n = numberOf(f, v, "double");
      if (!isFinite(n)) throw new CoerceError(f, v, String(n) + " is not a finite number");
      return n;
    },
    decimal: function (f, v) {
      if (typeof v === "string") {
        var s = v.trim();
        if (/^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$/.test(s)) return s;
        throw new CoerceError(f, v, "cannot convert " + JSON.stringify(v) + " to decimal");
      }
      var n = numberOf(f, v, "decimal");
      if (!isFinite(n)) throw new CoerceError(f, v, String(n) + " is not a finite number");
      return String(n);
    },
    boolean: function (f, v) {
      if (typeof v === "boolean") return v;
      if (v === 1 || v === 0) return v === 1;
      if (typeof v === "string") {
        var s = v.trim().toLowerCase();
        if (s === "true" || s === "1" || s === "yes" || s === "y") return true;
        if (s === "false" || s === "0" || s === "no" || s === "n") return false;
      }
      throw new CoerceError(f, v, "cannot convert " + JSON.stringify(v) + " to boolean");
    },
    datetime: function (f, v) {
      var d = v instanceof Date ? v : typeof v === "number" ? new Date(v)
        : typeof v === "string" ? new Date(v.trim()) : new Date(NaN);
      var t = d.getTime();
      if (isNaN(t)) throw new CoerceError(f, v, "cannot convert " + JSON.stringify(v) + " to datetime");
      return t;
    },
    date: function (f, v) {
      var t;
      if (typeof v === "string" && /^\s*\d{4}-\d{2}-\d{2}\s*$/.test(v)) t = Date.parse(v.trim() + "T00:00:00Z");
      else t = COERCE.datetime(f, v);
      if (isNaN(t)) throw new CoerceError(f, v, "cannot convert " + JSON.stringify(v) + " to date");
      return Math.floor(t / MS_PER_DAY);
    },
    time: function (f, v) {
      if (v instanceof Date) {
        return ((v.getUTCHours() * 60 + v.getUTCMinutes()) * 60 + v.getUTCSeconds()) * 1e6
          + v.getUTCMilliseconds() * 1000;
      }
      var m = typeof v === "string" && /^\s*(\d{1,2}):(\d{2})(?::(\d{2})(?:\.(\d{1,6}))?)?\s*$/.exec(v);
      if (!m || +m[1] > 23 || +m[2] > 59 || (m[3] !== undefined && +m[3] > 59)) {
        throw new CoerceError(f, v, "cannot convert " + JSON.stringify(v) + " to time (HH:mm[:ss[.ffffff]])");
      }
      var frac = m[4] === undefined ? 0 : Number((m[4] + "000000").slice(0, 6));
      return ((+m[1] * 60 + +m[2]) * 60 + (m[3] === undefined ? 0 : +m[3])) * 1e6 + frac;
    },
  };

  // ---------------------------------------------------------------- columnar output

  // Collects output rows column by column. With declared fields, values are converted to the
  // declared types; otherwise the columns are the union of the row keys in first-seen order.
  // Without declared fields, a column that still holds the input column's values row for row
  // (same[j]) keeps no values of its own: the host takes the input's, and the first value
  // that differs fills it in from the input (see unshare). Scripts mostly pass most columns
  // through: copying each of their values into an array of its own was a tenth of the loop.
  function Collector(fields, input) {
    this.fields = fields;
    this.input = input;
    this.n = 0;
    this.idx = [];
    this.identity = true;     // row k came from input row k, for every k so far
    this.prevKeys = null;     // the key list of the last row added (rows usually share it)
    this.prevMap = null;      // its column indexes
    this.prevMissing = null;  // the columns it did not set
    this.prevPut = null;      // its rowWriter
    this.same = [];
    this.from = [];
    this.names = [];
    this.cols = [];
    this.kinds = [];
    this.index = Object.create(null);
    if (fields) {
      for (var j = 0; j < fields.length; j++) {
        this.names.push(fields[j].name);
        this.cols.push([]);
        this.kinds.push(fields[j].type);
        var src = input.passable[fields[j].name];
        this.from.push(src === undefined ? -1 : src);
        this.same.push(src !== undefined);
      }
      this.tmp = new Array(fields.length);
    }
  }

  // Typed add: value(name) gives the value of each declared field.
  Collector.prototype.addTyped = function (get, line, at) {
    var fields = this.fields, tmp = this.tmp;
    for (var j = 0; j < fields.length; j++) {
      var f = fields[j];
      var v = get(f.name);
      if (v === undefined || v === null || (f.type !== "string" && isBlank(v))) {
        if (f.required) {
          throw new CoerceError(f.name, v === undefined ? null : v,
            "field '" + f.name + "' is required but has no value");
        }
        tmp[j] = null;
      } else {
        tmp[j] = COERCE[f.type](f.name, v);
      }
    }
    var same = this.same, from = this.from, inCols = this.input.cols;
    for (var k = 0; k < fields.length; k++) {
      this.cols[k].push(tmp[k]);
      if (same[k] && tmp[k] !== inCols[from[k]][at]) same[k] = false;
    }
    if (at !== this.n) this.identity = false;
    this.idx.push(at);
    this.n++;
  };

  function sameKeys(a, b) {
    for (var i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
    return true;
  }

  Collector.prototype.column = function (name) {
    var j = this.index[name];
    if (j === undefined) {
      j = this.names.length;
      this.index[name] = j;
      this.names.push(name);
      var col = new Array(this.n);
      for (var i = 0; i < this.n; i++) col[i] = null;
      this.cols.push(col);
      this.kinds.push(null);
      var src = this.input.passable[name];
      this.from.push(src === undefined ? -1 : src);
      this.same.push(src !== undefined && this.n === 0);
    }
    return j;
  };

  Collector.prototype.addObject = function (row, line, at) {
    if (row === null || typeof row !== "object" || Array.isArray(row)) {
      throw new UserError("a row must be an object, got " + (Array.isArray(row) ? "an array" : typeof row));
    }
    if (this.fields) {
      this.addTyped(function (name) { return row[name]; }, line, at);
      return;
    }
    var keys = Object.keys(row);
    var n = this.n;
    var map = this.prevMap, prev = this.prevKeys, missing = this.prevMissing, put = this.prevPut;
    if (prev === null || prev.length !== keys.length || !sameKeys(prev, keys)) {
      // names starting with U+001F are Quiver's internal columns (line numbers ...): a row
      // may not set them, as the python step refuses them too (looked at per set of keys)
      for (var r = 0; r < keys.length; r++) {
        if (keys[r].charCodeAt(0) === 31) {
          throw new UserError("returned the reserved key " + JSON.stringify(keys[r]) +
            " (names starting with U+001F are internal columns)");
        }
      }
      map = new Array(keys.length);
      var set = Object.create(null);
      for (var m = 0; m < keys.length; m++) {
        map[m] = this.column(keys[m]);
        set[map[m]] = true;
      }
      missing = [];
      for (var mc = 0; mc < this.names.length; mc++) if (set[mc] !== true) missing.push(mc);
      put = rowWriter(keys, map, this.from);
      this.prevKeys = keys;
      this.prevMap = map;
      this.prevMissing = missing;
      this.prevPut = put;
    }
    put(row, this, this.cols, this.same, this.input.cols, n, at);
    if (missing.length > 0) {
      var cols = this.cols, same = this.same, from = this.from, inCols = this.input.cols;
      for (var q = 0; q < missing.length; q++) {
        var c = missing[q];
        if (!same[c]) cols[c][n] = null;
        else if (inCols[from[c]][at] !== null) {
          this.unshare(c, n);
          cols[c][n] = null;
        }
      }
    }
    if (at !== n) this.identity = false;
    this.idx.push(at);
    this.n = n + 1;
  };

  // Column j, which held the input's values for its first n rows, now differs: it gets
  // values of its own, the input's for those rows.
  Collector.prototype.unshare = function (j, n) {
    this.same[j] = false;
    var src = this.input.cols[this.from[j]], idx = this.idx, col = new Array(n);
    for (var k = 0; k < n; k++) col[k] = src[idx[k]];
    this.cols[j] = col;
  };

  // A value that is not a number, string or boolean, as it is stored in an output column.
  Collector.prototype.plain = function (v, j) {
    if (v === undefined || typeof v === "function" || typeof v === "symbol") return null;
    if (v instanceof Date) {
      this.kinds[j] = "ts";
      v = v.getTime();
      return isNaN(v) ? null : v;
    }
    if (typeof v === "bigint") return v.toString();
    if (v !== null && typeof v === "object") this.objects = true;
    return v;
  };

  // Rows whose values cannot leave V8 — an object that refers to itself ("Converting circular
  // structure to JSON"), a BigInt inside an object, a string holding half of a surrogate pair
  // ("\uD800", which UTF-8 cannot write) — are taken out of every collector and rejected with
  // their line, like any other row error, instead of failing the whole batch. Only columns the
  // script changed are looked at; objects only when a row stored one.
  // a \uD800-\uDFFF escape in JSON text: one not preceded by an odd number of backslashes
  var LONE_SURROGATE_ESCAPE = /(?:^|[^\\])(?:\\\\)*\\u[dD][89a-fA-F]/;

  // Whether the object or array v nests more than `limit` levels deep (counting its own),
  // looking no deeper than that. An object inside itself is not deep but circular, which
  // JSON.stringify names (`within`: the objects v is inside).
  function deeperThan(v, limit, within) {
    if (limit <= 0) return true;
    within = within || [];
    within.push(v);
    var items = Array.isArray(v) ? v : Object.values(v);
    for (var k = 0; k < items.length; k++) {
      var x = items[k];
      if (x === null || typeof x !== "object" || x instanceof Date || within.indexOf(x) >= 0) continue;
      if (deeperThan(x, limit - 1, within)) return true;
    }
    within.pop();
    return false;
  }

  // maxDepth (optional): objects and arrays nesting deeper are unwritable too (see refuseDeep).
  function dropUnwritableRows(collectors, input, errors, maxDepth) {
    var bad = Object.create(null), count = 0;
    for (var p = 0; p < collectors.length; p++) {
      var c = collectors[p];
      for (var j = 0; j < c.cols.length; j++) {
        if (c.same[j] && c.n > 0) continue;     // the input's own values
        var col = c.cols[j], n = c.n;
        var strings = col.join("\n");          // "\n" keeps halves of values from pairing
        var broken = !strings.isWellFormed();
        if (!broken && c.objects !== true) continue;
        for (var k = 0; k < n; k++) {
          var v = col[k], why = null;
          if (typeof v === "string") {
            if (broken && !v.isWellFormed()) why = "holds a lone UTF-16 surrogate (half of a \\uD800-\\uDFFF pair), which UTF-8 cannot write";
          } else if (v !== null && typeof v === "object") {
            if (maxDepth !== undefined && !(v instanceof Date) && deeperThan(v, maxDepth)) {
              why = "nests objects and arrays more than " + maxDepth + " levels deep, as no value " +
                "may; flatten it, or hold the deep part as a JSON string";
            } else try {
              var text = JSON.stringify(v);
              // JSON.stringify writes a lone surrogate as a \udxxx escape, which the host refuses
              if (text !== undefined && (!text.isWellFormed() || LONE_SURROGATE_ESCAPE.test(text))) {
                why = "holds a lone UTF-16 surrogate, which UTF-8 cannot write";
              }
            } catch (e) {
              why = "cannot be written: " + messageOf(e).split("\n")[0];
            }
          }
          if (why !== null) {
            var at = c.idx[k];
            if (bad[at] === undefined) {
              bad[at] = ["output field '" + c.names[j] + "' " + why, c.names[j]];
              count++;
            }
          }
        }
      }
    }
    if (count === 0) return false;
    for (var q = 0; q < collectors.length; q++) collectors[q].dropRows(bad);
    var lines = input.lines;
    for (var key in bad) {
      var i = +key;
      errors.push({ i: i, line: lines === null ? null : lines[i], message: bad[key][0], where: "",
        kind: "script", field: bad[key][1], row: rowBuilder(input.names, input.kinds)(input.cols, i) });
    }
    errors.sort(function (a, b) { return a.i - b.i; });
    return true;
  }

  Collector.prototype.dropRows = function (bad) {
    var keep = [];
    for (var k = 0; k < this.n; k++) if (bad[this.idx[k]] === undefined) keep.push(k);
    if (keep.length === this.n) return;
    for (var c = 0; c < this.cols.length; c++) {
      if (this.same[c] && this.fields === null) continue;   // no values of its own
      var col = this.cols[c], kept = new Array(keep.length);
      for (var m = 0; m < keep.length; m++) kept[m] = col[keep[m]];
      this.cols[c] = kept;
    }
    var idx = new Array(keep.length);
    for (var r = 0; r < keep.length; r++) idx[r] = this.idx[keep[r]];
    this.idx = idx;
    this.n = keep.length;
    this.identity = false;
  };

  // Copies the values of a row with the keys `keys` into the output columns `map`: code made
  // for that key list, so each property read is a plain named load (rows of one batch
  // nearly always share their keys). Unchanged columns are tracked against the input.
  var writerCache = Object.create(null);

  function rowWriter(keys, map, from) {
    var key = JSON.stringify([keys, map, from]);
    var w = writerCache[key];
    if (w) return w;
    // `typeof v === "..."` each time, not once into a variable: the optimizing compiler turns
    // the former into a check of the value's kind, the latter into a call per value.
    var body = ["var v;"];
    for (var k = 0; k < keys.length; k++) {
      var j = map[k];
      body.push("v = row[" + JSON.stringify(keys[k]) + "];");
      body.push('if (typeof v !== "number" && typeof v !== "string" && typeof v !== "boolean") v = self.plain(v, ' + j + ");");
      if (from[j] >= 0) {
        // an input column: stored once it differs from the input (see Collector)
        body.push("if (!same[" + j + "]) cols[" + j + "][n] = v;");
        body.push("else if (v !== inCols[" + from[j] + "][at]) { self.unshare(" + j + ", n); cols[" + j + "][n] = v; }");
      } else {
        body.push("cols[" + j + "][n] = v;");
      }
    }
    w = new Function("row", "self", "cols", "same", "inCols", "n", "at", body.join("\n"));
    writerCache[key] = w;
    return w;
  }

  // Columns whose every value equals the input column at the row it came from are not sent
  // back: the host takes them from the input batch (`from`), by the source row indexes `idx`.
  Collector.prototype.result = function () {
    var cols = [], from = [];
    for (var c = 0; c < this.cols.length; c++) {
      if (this.same[c] && this.n > 0) {
        cols.push(null);
        from.push(this.from[c]);
      } else {
        cols.push(this.cols[c]);
        from.push(-1);
      }
    }
    var identity = this.identity && this.n === this.input.n;
    return { n: this.n, names: this.names, cols: cols, kinds: this.kinds,
      idx: identity ? null : this.idx, from: from };
  };

  // ---------------------------------------------------------------- packed output columns

  // Output columns of plain numbers, booleans or ASCII strings (nulls allowed) leave V8 in one
  // ArrayBuffer instead of JSON text: numbers as float64, booleans as bytes, strings as one
  // joined string plus int32 lengths, each with a byte mask of valid values when it has nulls.
  // The column's entry in the answer becomes {k, b, v[, d]}: kind ("f" numbers, "i" numbers
  // that are all safe integers, "b" booleans, "s" strings), byte offsets of the values and the
  // mask (-1: no nulls) and the joined text. The host rebuilds exactly what JSON would give.
  var PACKABLE_TYPES = { double: true, long: true, integer: true, boolean: true, string: true };
  var NON_ASCII = /[^\x00-\x7f]/;
  var packed = null;          // the packed output ArrayBuffer, reused while it is big enough
  var packedInfo = null;      // {n: bytes used, fresh: a new buffer (the host must fetch it)}
  var inbuf = null;           // this batch's number columns, see __quiver.alloc

  // {a: byte offset[, t: "i"]}: n int32 ("i") or float64 values the host wrote into inbuf.
  function hostNumbers(spec, n) {
    return spec.t === "i" ? new Int32Array(inbuf, spec.a, n) : new Float64Array(inbuf, spec.a, n);
  }

  function scanColumn(col, n) {
    var nums = 0, bools = 0, strs = 0, nulls = 0, ints = true, wide = false, finite = true;
    for (var i = 0; i < n; i++) {
      var v = col[i];
      if (typeof v === "number") {
        if (!Number.isInteger(v)) {
          ints = false;
          if (v !== v || v === Infinity || v === -Infinity) finite = false;
        } else if (v > 9007199254740991 || v < -9007199254740991) {
          wide = true;
        }
        nums++;
      } else if (typeof v === "string") strs++;
      else if (typeof v === "boolean") bools++;
      else if (v === null) nulls++;
      else return null;
    }
    var kind = nums === n - nulls ? (ints ? "i" : "f") : bools === n - nulls ? "b" : strs === n - nulls ? "s" : null;
    if (kind === null || nulls === n) return null;
    // integers past 2^53 go as JSON, which keeps their digits; but NaN and the infinities,
    // which JSON would make null, make the column float64, which holds them all
    if (wide && finite) return null;
    return { kind: kind, nulls: nulls };
  }

  function packParts(parts) {
    var plan = [], size = 0;
    for (var p = 0; p < parts.length; p++) {
      var part = parts[p], n = part.n;
      if (n === 0) continue;
      for (var c = 0; c < part.cols.length; c++) {
        var col = part.cols[c], kind = part.kinds[c];
        if (col === null || (kind !== null && PACKABLE_TYPES[kind] !== true)) continue;
        var scan = scanColumn(col, n);
        if (scan === null) continue;
        var text = null;
        if (scan.kind === "s") {
          text = col.join("");
          if (NON_ASCII.test(text)) continue;
        }
        var width = scan.kind === "b" ? 1 : scan.kind === "s" ? 4 : 8;
        size = (size + 7) & ~7;
        var at = size;
        size += width * n;
        var mask = -1;
        if (scan.nulls > 0) {
          mask = size;
          size += n;
        }
        plan.push({ part: part, c: c, kind: scan.kind, at: at, mask: mask, text: text });
      }
    }
    packedInfo = null;
    if (plan.length === 0) return;
    var used = (size + 7) & ~7, fresh = packed === null || packed.byteLength < used;
    if (fresh) packed = new ArrayBuffer(packed === null ? used : Math.max(used, 2 * packed.byteLength));
    var buf = packed;   // every byte a column uses is written below; the rest is never read
    for (var k = 0; k < plan.length; k++) {
      var e = plan[k], vals = e.part.cols[e.c], m = e.part.n, i;
      if (e.kind === "b") {
        var bytes = new Uint8Array(buf, e.at, m);
        for (i = 0; i < m; i++) bytes[i] = vals[i] === true ? 1 : 0;
      } else if (e.kind === "s") {
        var lens = new Int32Array(buf, e.at, m);
        for (i = 0; i < m; i++) lens[i] = vals[i] === null ? 0 : vals[i].length;
      } else {
        var nums = new Float64Array(buf, e.at, m);
        for (i = 0; i < m; i++) {
          var x = vals[i];
          nums[i] = x === null || x === 0 ? 0 : x;   // -0 is written as 0, as JSON would
        }
      }
      if (e.mask >= 0) {
        var valid = new Uint8Array(buf, e.mask, m);
        for (i = 0; i < m; i++) valid[i] = vals[i] === null ? 0 : 1;
      }
      var spec = { k: e.kind, b: e.at, v: e.mask };
      if (e.text !== null) spec.d = e.text;
      e.part.cols[e.c] = spec;
    }
    packedInfo = { n: used, fresh: fresh };
  }

  // ---------------------------------------------------------------- input rows

  var builderCache = Object.create(null);

  function rowBuilder(names, kinds) {
    var key = JSON.stringify([names, kinds]);
    var b = builderCache[key];
    if (b) return b;
    var parts = [];
    for (var j = 0; j < names.length; j++) {
      var v = "c[" + j + "][i]";
      if (kinds[j] === "ts") v = "(" + v + " == null ? null : new Date(" + v + "))";
      var k = names[j] === "__proto__" ? '["__proto__"]' : JSON.stringify(names[j]);
      parts.push(k + ": " + v);
    }
    b = new Function("c", "i", "return {" + parts.join(", ") + "};");
    builderCache[key] = b;
    return b;
  }


  // ---------------------------------------------------------------- process(context) rows

  // The row a process(context) script is handling, read by the context's functions. They
  // and the prototypes below are made once, so every row's context has the same shape.
  var pInput = null, pBuild = null, pCols = null, pAt = 0, pIndex = null, pKinds = null;
  var pSets = null, pRemoved = null, pSent = null, pCopies = null, pVErrors = null;
  var pMeta = null, pSchema = null;

  // The input row's values are read from the columns; an object of them is built only where
  // one is handed out (context.input.current(), routes, rejects).
  function inputValue(name) {
    var j = pIndex[name];
    if (j === undefined) return undefined;
    var v = pCols[j][pAt];
    return v !== null && pKinds[j] === "ts" ? new Date(v) : v;
  }

  function outputValue(name) {
    if (pRemoved !== null && pRemoved[name] === true) return null;
    if (pSets !== null && name in pSets) return pSets[name];
    return inputValue(name);
  }

  var INPUT_PART = {
    current: function () { return pBuild(pCols, pAt); },   // a copy, as FlowEngine's
    schema: function () {
      if (pSchema === null) {
        var fs = [];
        for (var j = 0; j < pInput.names.length; j++) {
          fs.push({ Name: pInput.names[j], Type: pInput.types[j], IsNullable: true, Index: j });
        }
        pSchema = JSON.stringify({ Fields: fs, FieldCount: fs.length });
      }
      return JSON.parse(pSchema);
    },
    getValue: function (name) { var v = inputValue(name); return v === undefined ? null : v; },
  };
  var OUTPUT_PART = {
    setField: function (name, value) {
      if (outIndex !== null && outIndex[name] !== true) {
        throw new UserError("Field '" + name + "' not found in output schema (declared: "
          + outFields.map(function (f) { return f.name; }).join(", ") + ")");
      }
      if (pSets === null) pSets = Object.create(null);
      pSets[name] = value;
      if (pRemoved !== null) delete pRemoved[name];
    },
    removeField: function (name) {
      if (pRemoved === null) pRemoved = Object.create(null);
      pRemoved[name] = true;
      if (pSets !== null) delete pSets[name];
    },
    addMetadata: function (key, value) {
      if (pMeta === null) pMeta = Object.create(null);
      pMeta[String(key)] = typeof value === "string" ? value : JSON.stringify(value);
    },
  };
  var VALIDATE_PART = {
    required: function (fields) {
      var list = Array.isArray(fields) ? fields : Array.prototype.slice.call(arguments);
      var ok = true;
      for (var k = 0; k < list.length; k++) {
        if (isBlank(inputValue(list[k]))) {
          ok = false;
          pVErrors.push("required field '" + list[k] + "' is missing");
        }
      }
      return ok;
    },
    businessRule: function (rule, message) {
      var ok;
      if (typeof rule === "boolean") ok = rule;
      else if (typeof rule === "function") ok = !!rule(pBuild(pCols, pAt));
      else if (typeof rule === "string") {
        var fn = ruleCache[rule];
        if (fn === undefined) {
          try {
            fn = new Function("__row", "with (__row) { return (" + rule + "\n); }");
          } catch (e) {
            throw new UserError("businessRule(" + JSON.stringify(rule) + "): " + messageOf(e));
          }
          ruleCache[rule] = fn;
        }
        try {
          ok = !!fn(pBuild(pCols, pAt));
        } catch (e) {
          throw new UserError("businessRule(" + JSON.stringify(rule) + "): " + messageOf(e));
        }
      } else {
        throw new UserError("businessRule expects an expression string, a boolean or a function");
      }
      if (!ok) pVErrors.push(message ? String(message) : "business rule failed: " + rule);
      return ok;
    },
    custom: function (fn, message) {
      if (typeof fn !== "function") throw new UserError("validate.custom expects a function");
      var r = fn(pBuild(pCols, pAt));
      if (typeof r === "string") {
        pVErrors.push(r);
        return false;
      }
      if (!r) pVErrors.push(message ? String(message) : "custom validation failed");
      return !!r;
    },
    errors: function () { return pVErrors.slice(); },
  };
  var ROUTE_PART = {
    send: function (name) { checkRoute(name); (pSent || (pSent = [])).push(String(name)); },
    sendCopy: function (name) { checkRoute(name); (pCopies || (pCopies = [])).push(String(name)); },
  };
  var UTILS_PART = {
    now: function () { return new Date(); }, newGuid: newGuid, log: log, formatDate: formatDate,
  };

  // FlowEngine gives each row a context of its own: a script that assigns to it or its parts
  // (context.output = null, context.seen = true, a replaced utils.now) changes its own row
  // only, whatever the batch boundaries. Each part is a new empty object over a shared
  // prototype, so a row's context costs a few small allocations of one shape.
  function InputPart() {}
  InputPart.prototype = INPUT_PART;
  function OutputPart() {}
  OutputPart.prototype = OUTPUT_PART;
  function ValidatePart() {}
  ValidatePart.prototype = VALIDATE_PART;
  function RoutePart() {}
  RoutePart.prototype = ROUTE_PART;
  function UtilsPart() {}
  UtilsPart.prototype = UTILS_PART;
  function RowContext() {
    this.input = new InputPart();
    this.output = new OutputPart();
    this.validate = new ValidatePart();
    this.route = new RoutePart();
    this.utils = new UtilsPart();
    this.variables = opts.variables;
    this.lookups = opts.lookups;
  }

  var indexCache = Object.create(null);

  function runProcessStyle(input, out, routes, errors) {
    var build = rowBuilder(input.names, input.kinds);
    var cols = input.cols, lines = input.lines, line = null, cur = null;
    var key = JSON.stringify(input.names);
    var index = indexCache[key];
    if (index === undefined) {
      index = Object.create(null);
      for (var c = 0; c < input.names.length; c++) index[input.names[c]] = c;
      indexCache[key] = index;
    }
    pInput = input;
    pBuild = build;
    pCols = cols;
    pIndex = index;
    pKinds = input.kinds;
    pSchema = null;

    for (var i = 0; i < input.n; i++) {
      pAt = i;
      line = lines === null ? null : lines[i];
      pSets = pRemoved = pSent = pCopies = pMeta = null;
      pVErrors = [];
      var rowErrorsBefore = errors.length;
      try {
        var r = userFn(new RowContext());
        if (r !== true && r !== false) {
          throw new UserError("process(context) must return true (keep the row) or false (skip it), got "
            + (r === undefined ? "undefined" : JSON.stringify(r)));
        }
        var sets = pSets, removed = pRemoved, sent = pSent, copies = pCopies, meta = pMeta;
        if (r && sent === null) {
          if (outFields !== null) out.addTyped(outputValue, line, i);
          else if (sets === null && removed === null) out.addObject(build(cols, i), line, i);
          else {
            var o = {};
            cur = build(cols, i);
            for (var k in cur) if (removed === null || removed[k] !== true) o[k] = cur[k];
            if (sets !== null) for (var sk in sets) o[sk] = sets[sk];
            out.addObject(o, line, i);
          }
          if (meta !== null) for (var mk in meta) out.meta[mk] = meta[mk];
        }
        var targets = sent === null ? copies : copies === null ? sent : sent.concat(copies);
        if (targets !== null) {
          cur = build(cols, i);
          for (var t = 0; t < targets.length; t++) routeCollector(routes, targets[t], input).addObject(cur, line, i);
        }
        if (!r && targets === null && pVErrors.length > 0) {
          errors.push({ i: i, line: line, message: pVErrors.join("; "), where: "", kind: "validation", row: build(cols, i) });
        }
      } catch (e) {
        errors.length = rowErrorsBefore;
        pushError(errors, e, i, line, build(cols, i));
      }
    }
  }

  function runTransformStyle(input, out, routes, errors) {
    var build = rowBuilder(input.names, input.kinds);
    var cols = input.cols, lines = input.lines;
    var line = null, cur = null, rejected = null, emitted = null;
    var ctx = {
      variables: opts.variables,
      lookups: opts.lookups,
      line: null,
      emit: function (route, row) {
        checkRoute(route);
        if (row !== undefined && (row === null || typeof row !== "object" || Array.isArray(row))) {
          throw new UserError("ctx.emit(route, row): the row must be an object");
        }
        (emitted || (emitted = [])).push([String(route), row === undefined ? build(cols, ctx.__i) : row]);
      },
      reject: function (reason) { rejected = reason === undefined ? "rejected by the script" : String(reason); },
      log: log,
      now: function () { return new Date(); },
      newGuid: newGuid,
      formatDate: formatDate,
      __i: 0,
    };
    Object.defineProperty(ctx, "__i", { enumerable: false, writable: true });

    for (var i = 0; i < input.n; i++) {
      cur = build(cols, i);
      line = lines === null ? null : lines[i];
      ctx.line = line;
      ctx.__i = i;
      rejected = emitted = null;
      var mark = out.n;
      try {
        var r = userFn(cur, ctx);
        if (rejected !== null) {
          errors.push({ i: i, line: line, message: rejected, where: "", kind: "rejected", row: build(cols, i) });
          continue;
        }
        if (r === undefined) {
          throw new UserError("transform(row, ctx) returned undefined: return the row, null to drop it, or an array of rows");
        }
        if (Array.isArray(r)) {
          for (var k = 0; k < r.length; k++) if (r[k] !== null && r[k] !== undefined) out.addObject(r[k], line, i);
        } else if (r !== null) {
          out.addObject(r, line, i);
        }
        if (emitted !== null) {
          for (var t = 0; t < emitted.length; t++) routeCollector(routes, emitted[t][0], input).addObject(emitted[t][1], line, i);
        }
      } catch (e) {
        out.truncate(mark);
        pushError(errors, e, i, line, build(cols, i));
      }
    }
  }

  Collector.prototype.truncate = function (n) {
    if (this.n === n) return;
    for (var c = 0; c < this.cols.length; c++) if (this.cols[c].length > n) this.cols[c].length = n;
    this.idx.length = n;
    this.n = n;
  };

  function checkRoute(name) {
    if (typeof name !== "string" || name === "") throw new UserError("a route name must be a non-empty string");
    if (routeNames !== null && routeNames[name] !== true) {
      throw new UserError("unknown route '" + name + "'; this step declares: " + Object.keys(routeNames).join(", "));
    }
  }

  function routeCollector(routes, name, input) {
    var c = routes[name];
    if (c === undefined) {
      c = new Collector(null, input);
      routes[name] = c;
    }
    return c;
  }

  function pushError(errors, e, i, line, row) {
    if (e instanceof CoerceError) {
      errors.push({ i: i, line: line, message: "output field '" + e.field + "': " + e.message, where: "",
        kind: "type", field: e.field, value: e.value instanceof Date ? e.value.toISOString() : e.value, row: row });
    } else {
      errors.push({ i: i, line: line, message: messageOf(e), where: whereOf(e), kind: "script", row: row });
    }
  }

  // console.* goes to the run log, like ctx.log.
  function consoleAt(level) {
    return function () {
      var parts = [];
      for (var i = 0; i < arguments.length; i++) {
        var a = arguments[i];
        parts.push(typeof a === "string" ? a : a instanceof Error ? messageOf(a) : JSON.stringify(a));
      }
      log(parts.join(" "), level);
    };
  }
  global.console = {
    log: consoleAt("info"), info: consoleAt("info"), debug: consoleAt("debug"),
    warn: consoleAt("warning"), error: consoleAt("error"),
  };

  // ---------------------------------------------------------------- host entry points

  // The answer to run(): the main output, the routes, errors and logs as JSON text, with
  // the plain columns packed (see packParts).
  function answer(out, routes, errors) {
    // messages hold what scripts wrote: half a surrogate pair becomes U+FFFD, as UTF-8 needs
    for (var q = 0; q < errors.length; q++) {
      var e = errors[q];
      e.message = String(e.message).toWellFormed();
      if (typeof e.value === "string") e.value = e.value.toWellFormed();
    }
    for (var g = 0; g < logs.length; g++) logs[g][1] = String(logs[g][1]).toWellFormed();
    var routeOut = {};
    for (var name in routes) routeOut[name] = routes[name].result();
    var result = out.result();
    var parts = [result];
    for (var rn in routeOut) parts.push(routeOut[rn]);
    packParts(parts);
    return JSON.stringify({ main: result, routes: routeOut, errors: errors, logs: logs, meta: out.meta,
      pk: packedInfo });
  }

  global.__quiver = {
    init: function (optionsJson) {
      opts = JSON.parse(optionsJson);
      scriptPattern = new RegExp(escapeRegExp(opts.scriptName) + ":(\\d+):(\\d+)");
      var hasProcess = typeof global.process === "function";
      var hasTransform = typeof global.transform === "function";
      var style = opts.style;
      if (style === "auto") {
        if (hasProcess && hasTransform) {
          return "the script defines both process(context) and transform(row, ctx); keep one, or set style";
        }
        style = hasTransform ? "transform" : hasProcess ? "process" : null;
      }
      if (style === null || (style === "process" && !hasProcess) || (style === "transform" && !hasTransform)) {
        return style === null
          ? "the script defines neither function process(context) nor function transform(row, ctx)"
          : "the script does not define function " + (style === "process" ? "process(context)" : "transform(row, ctx)");
      }
      opts.style = style;
      userFn = style === "process" ? global.process : global.transform;
      outFields = opts.outputFields;
      outIndex = null;
      if (outFields !== null) {
        outIndex = Object.create(null);
        for (var j = 0; j < outFields.length; j++) outIndex[outFields[j].name] = true;
      }
      routeNames = null;
      if (opts.routes !== null) {
        routeNames = Object.create(null);
        for (var r = 0; r < opts.routes.length; r++) routeNames[opts.routes[r]] = true;
      }
      return style;
    },

    // Milliseconds of the last run() in JSON.parse, cutting text slabs, the row loop and
    // JSON.stringify (benchmarks/js_bench.py prints them).
    timings: function () { return JSON.stringify(timings); },

    // The ArrayBuffer holding the packed output columns. run()'s answer says how many bytes
    // of it hold the last batch's ({n}), and whether it is a new buffer ({fresh}) that the
    // host must fetch with this call; otherwise the host reads the one it holds.
    packed: function () { return packed; },

    // A fresh ArrayBuffer of `size` bytes that the host fills with the number columns of the
    // next run() calls (int32 or float64, at the byte offsets the input JSON gives as {a:
    // offset}); the host keeps it and asks for a bigger one only when a batch needs more.
    alloc: function (size) { inbuf = new ArrayBuffer(size); return inbuf; },

    // inputJson: the batch (see codec.encode_input); the arguments after it: the text of
    // the slabs that name them ({s: k, o: start} is argument k + 1, from start).
    // The last run()'s answer again, without the rows holding an output value nested more
    // than maxDepth levels deep, now rejected with their line; null when there is none. For
    // the host, whose JSON reader takes fewer levels than JSON.stringify writes: such rows
    // are rare, so they are looked for only once the host could not read an answer.
    refuseDeep: function (maxDepth) {
      var last = lastRun;
      if (last === null) return null;
      var collectors = [last.out];
      for (var rname in last.routes) collectors.push(last.routes[rname]);
      if (!dropUnwritableRows(collectors, last.input, last.errors, maxDepth)) return null;
      return answer(last.out, last.routes, last.errors);
    },

    run: function (inputJson) {
      lastRun = null;
      var t0 = Date.now();
      var texts = Array.prototype.slice.call(arguments, 1);
      var input = JSON.parse(inputJson);
      var t1 = Date.now();
      var cols = input.cols;
      if (input.lines !== null && !Array.isArray(input.lines)) {
        input.lines = hostNumbers(input.lines, input.n);
      }
      for (var c = 0; c < cols.length; c++) {
        var slab = cols[c];
        if (slab !== null && !Array.isArray(slab) && slab.a !== undefined) {
          cols[c] = hostNumbers(slab, input.n);   // numbers the host wrote
        } else if (slab !== null && !Array.isArray(slab)) {   // {d or s: text, l: lengths}: cut it up
          var d = slab.d, l = slab.l, at = 0;
          if (slab.s !== undefined) {
            d = texts[slab.s];
            at = slab.o;
          }
          if (!Array.isArray(l)) l = hostNumbers(l, input.n);
          var n = l.length, values = new Array(n);
          for (var i = 0; i < n; i++) {
            values[i] = d.substring(at, at + l[i]);
            at += l[i];
          }
          cols[c] = values;
        }
      }
      var t2 = Date.now();
      logs = [];
      logsDropped = 0;
      var out = new Collector(outFields, input);
      out.meta = Object.create(null);
      var routes = Object.create(null);
      var errors = [];
      if (opts.style === "process") runProcessStyle(input, out, routes, errors);
      else runTransformStyle(input, out, routes, errors);
      if (logsDropped > 0) logs.push(["warning", logsDropped + " more log messages from this batch were dropped"]);
      var t3 = Date.now();
      var text = null, failure = null;
      try {
        text = answer(out, routes, errors);
      } catch (e) {
        failure = e;
      }
      // JSON.stringify escapes a lone surrogate as \udXXX (a pair it writes as it is), and
      // throws on a circular object: then the rows at fault are found and rejected alone.
      if (failure !== null || text.indexOf("\\ud") >= 0) {
        var collectors = [out];
        for (var rname in routes) collectors.push(routes[rname]);
        // (a value deep enough to exhaust the stack may do so alone too: depth is looked at first)
        var depth = failure !== null ? opts.maxDepth : undefined;
        if (dropUnwritableRows(collectors, input, errors, depth) || failure === null) {
          text = answer(out, routes, errors);
        } else {
          throw failure;
        }
      }
      timings = { parse: t1 - t0, cut: t2 - t1, loop: t3 - t2, stringify: Date.now() - t3 };
      // kept for refuseDeep only when an output column holds objects (only they nest)
      var nested = out.objects === true;
      for (var rn in routes) nested = nested || routes[rn].objects === true;
      lastRun = nested ? { out: out, routes: routes, input: input, errors: errors } : null;
      return text;
    },
  };
})(globalThis);
