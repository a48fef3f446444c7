// The operator console: a single page over the public API, with the key the user pastes in.
// The key lives in sessionStorage (this tab only) and leaves the page only in the Authorization
// header of calls to this origin. Every text that comes from the API is put in the page as text
// (textContent, setAttribute), never as markup, and control characters are shown escaped.
"use strict";

(function () {
  var KEY_STORE = "mdw.console.key";
  var TIMEFRAMES = ["1m", "5m", "15m", "30m", "1h", "4h", "1d", "1w"];
  var STATUS_LABELS = {
    completed: "completed",
    in_progress: "in progress",
    failed: "failed",
    pending: "pending",
  };
  var REFRESH_MS = 15000;
  // Days of bars asked for at a time, per timeframe: one window is a few hundred bars.
  var WINDOW_DAYS = { "1m": 2, "5m": 7, "15m": 14, "30m": 30, "1h": 60, "4h": 180, "1d": 365, "1w": 1825 };
  var PAGE_LIMIT = 2000;
  var FLAG_COLOR = "#d81b60";
  var GAP_COLOR = "#ff8f00";

  var state = { key: null, admin: false, timer: null, chart: null, viewToken: 0 };
  var view = document.getElementById("view");
  var notice = document.getElementById("notice");

  // --- Text and elements ------------------------------------------------------------------

  // C0/C1 controls and bidirectional overrides would hide or reorder what follows them.
  var UNPRINTABLE = /[\u0000-\u001f\u007f-\u009f\u200e\u200f\u202a-\u202e\u2066-\u2069]/g;

  function printable(value) {
    if (value === null || value === undefined) return "";
    return String(value).replace(UNPRINTABLE, function (c) {
      return "\\u" + ("0000" + c.charCodeAt(0).toString(16)).slice(-4);
    });
  }

  function el(tag, attrs, children) {
    var node = document.createElement(tag);
    Object.keys(attrs || {}).forEach(function (name) {
      var value = attrs[name];
      if (value === null || value === undefined || value === false) return;
      if (name === "text") node.textContent = printable(value);
      else if (name === "class") node.className = value;
      else if (name.indexOf("on") === 0) node.addEventListener(name.slice(2), value);
      else node.setAttribute(name, value === true ? "" : printable(value));
    });
    (children || []).forEach(function (child) {
      if (child === null || child === undefined || child === false) return;
      node.appendChild(typeof child === "object" ? child : document.createTextNode(printable(child)));
    });
    return node;
  }

  function clear(node) {
    while (node.firstChild) node.removeChild(node.firstChild);
    return node;
  }

  function when(iso) {
    if (!iso) return "—";
    var date = new Date(iso);
    if (isNaN(date.getTime())) return printable(iso);
    return date.toISOString().replace("T", " ").replace(/:\d\d\.\d+Z$|:\d\dZ$/, " UTC");
  }

  function percent(rate) {
    return rate === null || rate === undefined ? "—" : (rate * 100).toFixed(1) + "%";
  }

  function isoDay(date) {
    return date.toISOString().slice(0, 10);
  }

  function addDays(date, days) {
    return new Date(date.getTime() + days * 86400000);
  }

  // --- The API ----------------------------------------------------------------------------

  function ApiError(status, code, message, details) {
    this.status = status;
    this.code = code;
    this.message = message;
    this.details = details;
  }

  function describe(error) {
    if (error instanceof ApiError) {
      return error.status ? error.status + " " + error.code + ": " + error.message : error.message;
    }
    return "Unexpected error: " + (error && error.message ? error.message : String(error));
  }

  // Paths are relative to the page, so the console works under a stage prefix (/api/console).
  function api(method, path, options) {
    options = options || {};
    var url = path;
    if (options.query) {
      var query = new URLSearchParams();
      Object.keys(options.query).forEach(function (name) {
        var value = options.query[name];
        if (value !== null && value !== undefined && value !== "") query.append(name, value);
      });
      if (query.toString()) url += "?" + query.toString();
    }
    var headers = { Accept: "application/json", Authorization: "Bearer " + state.key };
    var init = { method: method, headers: headers, cache: "no-store", credentials: "omit" };
    if (options.body !== undefined) {
      headers["Content-Type"] = "application/json";
      init.body = JSON.stringify(options.body);
    }
    return fetch(url, init).then(
      function (response) {
        return response.text().then(function (text) {
          var body = null;
          try {
            body = text ? JSON.parse(text) : null;
          } catch (ignored) {
            body = null;
          }
          if (response.ok) return { status: response.status, body: body };
          var error = (body && body.error) || {};
          var message = error.message || (body && body.message) || "HTTP " + response.status;
          var failure = new ApiError(response.status, error.code || "http_" + response.status, message, error.details);
          if (response.status === 401 && !options.signingIn) signOut("The API refused the key: " + message);
          throw failure;
        });
      },
      function (error) {
        throw new ApiError(0, "network", "The API could not be reached (" + error.message + ").");
      }
    );
  }

  function errorInto(container, error) {
    if (error instanceof ApiError && error.status === 401) return; // back at the key prompt
    var line = el("p", { class: "error", role: "alert", text: describe(error) });
    container.appendChild(line);
    return line;
  }

  function showNotice(text) {
    notice.textContent = printable(text);
    notice.hidden = !text;
  }

  window.addEventListener("unhandledrejection", function (event) {
    if (event.reason instanceof ApiError && event.reason.status === 401) {
      event.preventDefault();
      return;
    }
    showNotice(describe(event.reason));
  });
  window.addEventListener("error", function (event) {
    showNotice("Unexpected error: " + event.message);
  });

  // --- Signing in -------------------------------------------------------------------------

  function signIn(key) {
    state.key = key;
    return api("GET", "api/v1/status", { signingIn: true })
      .then(function () {
        // An admin key reaches the admin routes; a read key is refused with 403.
        return api("GET", "api/v1/admin/symbols", { query: { active: "true" }, signingIn: true }).then(
          function () {
            return true;
          },
          function (error) {
            if (error.status === 403) return false;
            throw error;
          }
        );
      })
      .then(function (admin) {
        state.admin = admin;
        sessionStorage.setItem(KEY_STORE, key);
        showChrome();
        route();
      });
  }

  function signOut(message) {
    state.key = null;
    state.admin = false;
    sessionStorage.removeItem(KEY_STORE);
    showChrome();
    prompt(message);
  }

  function showChrome() {
    var signedIn = state.key !== null;
    document.getElementById("nav").hidden = !signedIn;
    document.getElementById("sign-out").hidden = !signedIn;
    document.querySelectorAll("[data-admin]").forEach(function (link) {
      link.hidden = !state.admin;
    });
    document.getElementById("key-kind").textContent = signedIn ? (state.admin ? "admin key" : "read key") : "";
    document.body.setAttribute("data-signed-in", signedIn ? (state.admin ? "admin" : "read") : "no");
  }

  function prompt(message) {
    leaveView();
    showNotice("");
    var input = el("input", {
      type: "password",
      id: "key-input",
      name: "key",
      autocomplete: "off",
      spellcheck: "false",
      placeholder: "mdw_…",
      required: true,
    });
    var error = el("p", { class: "error", role: "alert", id: "signin-error", text: message || "" });
    var button = el("button", { type: "submit", class: "primary", id: "signin-button", text: "Sign in" });
    var form = el("form", { class: "signin", id: "signin-form" }, [
      el("h1", { text: "Sign in with an API key" }),
      el("p", {
        class: "muted",
        text:
          "Paste a key from `mdw keys create` or the first admin key `make run` printed. It is kept " +
          "in this tab only (sessionStorage) and sent only in the Authorization header. A read key " +
          "shows the data views; an admin key also shows keys and symbols.",
      }),
      el("label", { for: "key-input", text: "API key" }),
      input,
      button,
      error,
    ]);
    form.addEventListener("submit", function (event) {
      event.preventDefault();
      button.disabled = true;
      error.textContent = "";
      signIn(input.value.trim()).catch(function (failure) {
        state.key = null;
        button.disabled = false;
        error.textContent = printable(
          failure.status === 401 ? "This key was refused: " + failure.message : describe(failure)
        );
      });
    });
    clear(view).appendChild(form);
    input.focus();
  }

  document.getElementById("sign-out").addEventListener("click", function () {
    signOut("Signed out.");
  });

  // --- Routing ----------------------------------------------------------------------------

  function leaveView() {
    state.viewToken += 1;
    if (state.timer !== null) clearInterval(state.timer);
    state.timer = null;
    if (state.chart !== null) state.chart.remove();
    state.chart = null;
  }

  function route() {
    if (state.key === null) return;
    leaveView();
    showNotice("");
    var token = state.viewToken;
    var parts = location.hash.replace(/^#\/?/, "").split("/").map(decodeURIComponent);
    var name = parts[0] || "overview";
    document.querySelectorAll("#nav a").forEach(function (link) {
      link.className = link.getAttribute("data-view") === name ? "current" : "";
    });
    clear(view);
    view.setAttribute("data-view", name);
    if ((name === "keys" || name === "symbols") && !state.admin) {
      view.appendChild(el("p", { class: "error", text: "This view needs an admin key." }));
    } else if (name === "symbol" && parts[1]) {
      symbolView(token, parts[1], parts[2] || "");
    } else if (name === "keys" && parts[1]) {
      keyView(token, parts[1]);
    } else if (name === "keys") {
      keysView(token);
    } else if (name === "symbols") {
      symbolsView(token);
    } else {
      overview(token);
    }
  }

  window.addEventListener("hashchange", route);

  function current(token) {
    return token === state.viewToken;
  }

  // --- Overview ---------------------------------------------------------------------------

  function overview(token) {
    var cards = el("section", { class: "cards", id: "overview-cards" });
    var grid = el("section", { id: "overview-grid-box" });
    var runs = el("section", { id: "overview-runs" });
    var updated = el("p", { class: "muted", id: "overview-updated" });
    var failure = el("div");
    view.append(
      el("h1", { text: "Overview" }), cards,
      el("h2", { text: "Backfill by symbol and timeframe" }), grid,
      el("h2", { text: "Recent backfill runs" }), runs,
      updated, failure
    );

    function load() {
      return Promise.all([api("GET", "api/v1/status"), api("GET", "api/v1/symbols")]).then(
        function (answers) {
          if (!current(token)) return;
          clear(failure);
          renderCards(cards, answers[0].body);
          renderGrid(grid, answers[1].body.symbols);
          renderRuns(runs, answers[0].body.recent_runs || []);
          updated.textContent =
            "Updated " + new Date().toLocaleTimeString() + "; refreshed every " + REFRESH_MS / 1000 + " s.";
        },
        function (error) {
          if (current(token)) errorInto(clear(failure), error);
        }
      );
    }

    load();
    state.timer = setInterval(load, REFRESH_MS);
  }

  function card(title, big, lines, id) {
    return el("div", { class: "card", id: id }, [
      el("h3", { text: title }),
      el("div", { class: "big", text: big }),
    ].concat(lines.map(function (line) {
      return el("div", { class: "muted", text: line });
    })));
  }

  function renderCards(container, status) {
    var counts = status.symbols.by_backfill_status || {};
    var countLines = Object.keys(counts).sort().map(function (name) {
      return (STATUS_LABELS[name] || name) + ": " + counts[name];
    });
    var stalest = status.stalest_symbol;
    var run = status.last_run;
    clear(container).append(
      card("Active symbols", String(status.symbols.total), countLines, "card-symbols"),
      card("Validation rate", percent(status.validation_rate), [
        status.validated_bars + " of " + status.bars + " bars validated",
      ], "card-validation"),
      card("Stalest symbol", stalest ? stalest.symbol : "—", stalest ? [
        STATUS_LABELS[stalest.backfill_status] || stalest.backfill_status,
        "last backfill " + when(stalest.last_backfill),
      ] : [], "card-stalest"),
      card("Last run", run ? run.symbol + " " + run.timeframe : "—", run ? [
        (STATUS_LABELS[run.status] || run.status) + ", " + run.bars_written + " bars, " +
          run.provider_requests + " provider requests",
        "started " + when(run.started_at),
        "finished " + when(run.finished_at),
      ].concat(run.error ? ["error: " + run.error] : []) : [], "card-last-run")
    );
  }

  function renderRuns(container, recent) {
    if (!recent.length) {
      clear(container).append(el("p", { class: "muted", id: "recent-runs", text: "No backfill has run yet." }));
      return;
    }
    var head = el("tr", {}, ["Symbol", "Timeframe", "Status", "Bars", "Provider requests", "Started", "Finished", "Error"].map(
      function (title) {
        return el("th", { text: title });
      }
    ));
    var rows = recent.map(function (run) {
      return el("tr", { "data-run": String(run.id), "data-status": run.status }, [
        el("td", { text: run.symbol }),
        el("td", { text: run.timeframe }),
        el("td", { class: "status-" + run.status, text: STATUS_LABELS[run.status] || run.status }),
        el("td", { text: String(run.bars_written) }),
        el("td", { text: String(run.provider_requests) }),
        el("td", { text: when(run.started_at) }),
        el("td", { text: when(run.finished_at) }),
        el("td", { text: run.error || "" }),
      ]);
    });
    clear(container).append(
      el("table", { class: "runs", id: "recent-runs" }, [el("thead", {}, [head]), el("tbody", {}, rows)])
    );
  }

  function renderGrid(container, symbols) {
    var used = TIMEFRAMES.filter(function (timeframe) {
      return symbols.some(function (s) {
        return s.timeframes.indexOf(timeframe) >= 0;
      });
    });
    var head = el("tr", {}, [el("th", { text: "Symbol" }), el("th", { text: "Class" })].concat(
      used.map(function (timeframe) {
        return el("th", { text: timeframe });
      })
    ));
    var rows = symbols.map(function (symbol) {
      var cells = used.map(function (timeframe) {
        if (symbol.timeframes.indexOf(timeframe) < 0) {
          return el("td", { class: "cell untracked", text: "—", title: "not tracked" });
        }
        var backfill = (symbol.backfill || {})[timeframe] || { status: "pending" };
        var label = STATUS_LABELS[backfill.status] || backfill.status;
        var detail = backfill.last_error
          ? backfill.last_error
          : backfill.last_backfill ? "last backfill " + when(backfill.last_backfill) : label;
        return el("td", {
          class: "cell status-" + backfill.status,
          "data-status": backfill.status,
          "data-symbol": symbol.symbol,
          "data-timeframe": timeframe,
          title: detail,
        }, [
          el("a", { href: "#/symbol/" + encodeURIComponent(symbol.symbol) + "/" + timeframe }, [
            label,
            backfill.status === "failed" && backfill.last_error
              ? el("small", { text: backfill.last_error.slice(0, 120) })
              : null,
          ]),
        ]);
      });
      return el("tr", {}, [
        el("th", {}, [el("a", { href: "#/symbol/" + encodeURIComponent(symbol.symbol), text: symbol.symbol })]),
        el("td", { text: symbol.asset_class }),
      ].concat(cells));
    });
    var legend = el("div", { class: "legend" }, Object.keys(STATUS_LABELS).map(function (name) {
      return el("span", { class: "status-" + name, text: STATUS_LABELS[name] });
    }));
    clear(container).append(
      legend,
      symbols.length
        ? el("table", { class: "grid", id: "overview-grid" }, [el("thead", {}, [head]), el("tbody", {}, rows)])
        : el("p", { class: "muted", id: "overview-grid", text: "No active symbols." })
    );
  }

  // --- Symbol page ------------------------------------------------------------------------

  function symbolView(token, symbol, timeframe) {
    var heading = el("h1", { text: symbol });
    var tabs = el("nav", { class: "tabs", id: "timeframe-tabs" });
    var stats = el("section", { class: "cards", id: "symbol-stats" });
    var status = el("div", { id: "chart-status" });
    var chartBox = el("div", { class: "chart", id: "chart" });
    var hover = el("div", { class: "hover mono", id: "chart-hover", text: "Point at a bar for its values and flags." });
    var attribution = el("p", { class: "muted attribution" }, [
      "Charts: TradingView Lightweight Charts™, Copyright © 2025 TradingView, Inc., ",
      el("a", { href: "https://www.tradingview.com/", rel: "noopener noreferrer", target: "_blank", text: "tradingview.com" }),
    ]);
    var flagged = el("section", { id: "flagged-box" });
    var gaps = el("section", { id: "gaps-box" });
    view.append(heading, tabs, stats, status, chartBox, attribution, hover, el("div", { class: "columns" }, [flagged, gaps]));

    api("GET", "api/v1/symbols/" + encodeURIComponent(symbol)).then(
      function (answer) {
        if (!current(token)) return;
        var detail = answer.body;
        heading.textContent = printable(detail.symbol + " (" + detail.asset_class + ")");
        var tracked = TIMEFRAMES.filter(function (tf) {
          return detail.timeframes.indexOf(tf) >= 0;
        });
        if (!timeframe) timeframe = tracked.indexOf("1d") >= 0 ? "1d" : tracked[0];
        tracked.forEach(function (tf) {
          tabs.appendChild(el("a", {
            href: "#/symbol/" + encodeURIComponent(detail.symbol) + "/" + tf,
            class: tf === timeframe ? "current" : "",
            text: tf,
          }));
        });
        renderStats(stats, detail, timeframe);
        renderGaps(gaps, detail, timeframe);
        if (tracked.indexOf(timeframe) < 0) {
          errorInto(status, new ApiError(0, "", timeframe + " is not tracked for " + detail.symbol + "."));
          return;
        }
        var timeframeStats = (detail.stats || {})[timeframe];
        if (!timeframeStats || !timeframeStats.record_count) {
          var backfill = (detail.backfill || {})[timeframe] || { status: "pending" };
          status.appendChild(el("p", {
            class: "muted",
            id: "no-bars",
            text: "No " + timeframe + " bars stored yet; its backfill is " + (STATUS_LABELS[backfill.status] || backfill.status) + ".",
          }));
          return;
        }
        drawChart(token, detail, timeframe, chartBox, status, hover, flagged);
      },
      function (error) {
        if (current(token)) errorInto(status, error);
      }
    );
  }

  function renderStats(container, detail, timeframe) {
    var stats = (detail.stats || {})[timeframe];
    var backfill = (detail.backfill || {})[timeframe] || { status: "pending" };
    var lines = [];
    if (backfill.last_backfill) lines.push("last backfill " + when(backfill.last_backfill));
    if (backfill.last_error) lines.push("error: " + backfill.last_error);
    container.append(card("Backfill " + timeframe, STATUS_LABELS[backfill.status] || backfill.status, lines, "stat-backfill"));
    if (!stats) return;
    container.append(
      card("Bars " + timeframe, String(stats.record_count), [
        "from " + when(stats.date_range.first),
        "to " + when(stats.date_range.last),
      ], "stat-bars"),
      card("Validation rate", percent(stats.validation_rate), [], "stat-validation"),
      card("Gaps detected", stats.gaps_detected === null ? "—" : String(stats.gaps_detected), [
        stats.gaps_detected === null ? "counted on daily bars" : "missing daily sessions",
      ], "stat-gaps")
    );
  }

  function renderGaps(container, detail, timeframe) {
    var daily = (detail.stats || {})["1d"];
    var missing = daily && daily.missing_sessions ? daily.missing_sessions : [];
    container.append(el("h2", { text: "Missing daily sessions (" + missing.length + ")" }));
    if (!missing.length) {
      container.append(el("p", { class: "muted", text: daily ? "None in the stored range." : "No daily bars tracked." }));
      return;
    }
    if (timeframe !== "1d") {
      container.append(el("p", { class: "muted", text: "Marked on the 1d chart." }));
    }
    container.append(el("table", { id: "gaps-table" }, [
      el("thead", {}, [el("tr", {}, [el("th", { text: "Session" })])]),
      el("tbody", {}, missing.map(function (day) {
        return el("tr", {}, [el("td", { class: "mono", text: day })]);
      })),
    ]));
  }

  function drawChart(token, detail, timeframe, box, status, hover, flaggedBox) {
    var charts = window.LightweightCharts;
    var intraday = timeframe !== "1d" && timeframe !== "1w";
    var chart = charts.createChart(box, {
      autoSize: true,
      // The logo injects an inline <style>, which the page's CSP refuses; the attribution the
      // library's licence asks for is the link under the chart instead.
      layout: { background: { color: "#ffffff" }, textColor: "#1d2733", attributionLogo: false },
      grid: { vertLines: { color: "#eef2f6" }, horzLines: { color: "#eef2f6" } },
      timeScale: { timeVisible: intraday, secondsVisible: false },
      rightPriceScale: { scaleMargins: { top: 0.06, bottom: 0.26 } },
    });
    state.chart = chart;
    var candles = chart.addSeries(charts.CandlestickSeries, {
      upColor: "#26a69a",
      downColor: "#ef5350",
      borderVisible: false,
      wickUpColor: "#26a69a",
      wickDownColor: "#ef5350",
    });
    var volume = chart.addSeries(charts.HistogramSeries, {
      priceFormat: { type: "volume" },
      priceScaleId: "volume",
      color: "#9fb3c8",
    });
    chart.priceScale("volume").applyOptions({ scaleMargins: { top: 0.8, bottom: 0 } });
    var markers = charts.createSeriesMarkers(candles, []);

    var stats = (detail.stats || {})[timeframe];
    var firstBar = stats && stats.date_range.first ? new Date(stats.date_range.first) : null;
    var lastBar = stats && stats.date_range.last ? new Date(stats.date_range.last) : new Date();
    var daily = (detail.stats || {})["1d"];
    var missing = timeframe === "1d" && daily && daily.missing_sessions ? daily.missing_sessions : [];
    var bars = []; // oldest first, as the API pages them
    var byTime = {};
    var loading = false;
    var exhausted = false;
    var nextEnd = new Date(Date.UTC(lastBar.getUTCFullYear(), lastBar.getUTCMonth(), lastBar.getUTCDate()));

    function seconds(iso) {
      return Math.floor(Date.parse(iso) / 1000);
    }

    // One window of days, every page of it, following next_cursor.
    function fetchWindow(start, end) {
      var collected = [];
      function page(cursor) {
        return api("GET", "api/v1/historical/" + encodeURIComponent(detail.symbol), {
          query: {
            timeframe: timeframe,
            start: isoDay(start),
            end: isoDay(end),
            validated_only: "false",
            limit: PAGE_LIMIT,
            cursor: cursor,
          },
        }).then(function (answer) {
          collected = collected.concat(answer.body.bars);
          return answer.body.next_cursor ? page(answer.body.next_cursor) : collected;
        });
      }
      return page(null);
    }

    function loadOlder() {
      if (loading || exhausted || !current(token)) return Promise.resolve();
      loading = true;
      status.textContent = "Loading bars…";
      var end = nextEnd;
      var start = addDays(end, -(WINDOW_DAYS[timeframe] - 1));
      if (firstBar && start <= firstBar) {
        start = new Date(Date.UTC(firstBar.getUTCFullYear(), firstBar.getUTCMonth(), firstBar.getUTCDate()));
        exhausted = true;
      }
      nextEnd = addDays(start, -1);
      return fetchWindow(start, end).then(
        function (older) {
          loading = false;
          if (!current(token)) return;
          var range = chart.timeScale().getVisibleLogicalRange();
          older = older.filter(function (bar) {
            return !byTime[seconds(bar.time)];
          });
          older.forEach(function (bar) {
            byTime[seconds(bar.time)] = bar;
          });
          bars = older.concat(bars);
          show();
          if (range !== null && older.length) {
            chart.timeScale().setVisibleLogicalRange({ from: range.from + older.length, to: range.to + older.length });
          }
          status.textContent = printable(
            bars.length + " bars loaded" + (exhausted ? ", back to the first stored bar." : "; scroll left for older ones.")
          );
          box.setAttribute("data-bars", String(bars.length));
          // Too few to fill the chart yet: fetch the window before.
          if (!exhausted && older.length < 30) return loadOlder();
        },
        function (error) {
          loading = false;
          if (!current(token)) return;
          clear(status);
          errorInto(status, error);
        }
      );
    }

    function show() {
      candles.setData(bars.map(function (bar) {
        return { time: seconds(bar.time), open: bar.open, high: bar.high, low: bar.low, close: bar.close };
      }));
      volume.setData(bars.map(function (bar) {
        return {
          time: seconds(bar.time),
          value: bar.volume,
          color: bar.close >= bar.open ? "rgba(38,166,154,0.45)" : "rgba(239,83,80,0.45)",
        };
      }));
      var marks = [];
      bars.forEach(function (bar) {
        if (bar.flags.length) {
          marks.push({ time: seconds(bar.time), position: "aboveBar", color: FLAG_COLOR, shape: "arrowDown", text: "flag" });
        }
      });
      // A missing session is marked on the first bar after it.
      var missingDays = missing.slice();
      bars.forEach(function (bar, index) {
        if (!index) return;
        var before = bars[index - 1].time.slice(0, 10);
        var day = bar.time.slice(0, 10);
        var inside = missingDays.filter(function (gap) {
          return gap > before && gap < day;
        });
        if (inside.length) {
          marks.push({ time: seconds(bar.time), position: "belowBar", color: GAP_COLOR, shape: "square", text: "gap " + inside.join(", ") });
        }
      });
      marks.sort(function (a, b) {
        return a.time - b.time;
      });
      markers.setMarkers(marks);
      box.setAttribute("data-flag-marks", String(marks.filter(function (m) { return m.color === FLAG_COLOR; }).length));
      box.setAttribute("data-gap-marks", String(marks.filter(function (m) { return m.color === GAP_COLOR; }).length));
      renderFlagged();
    }

    function describeBar(bar) {
      return (
        when(bar.time) + "  O " + bar.open + "  H " + bar.high + "  L " + bar.low + "  C " + bar.close +
        "  V " + bar.volume + (bar.validated ? "  validated" : "  not validated") +
        (bar.flags.length ? "  flags: " + bar.flags.join(", ") : "")
      );
    }

    function showBar(bar) {
      hover.textContent = printable(describeBar(bar));
      hover.className = "hover mono" + (bar.flags.length ? " error" : "");
    }

    chart.subscribeCrosshairMove(function (param) {
      if (!param || param.time === undefined) return;
      var bar = byTime[param.time];
      if (bar) showBar(bar);
    });

    function renderFlagged() {
      var flaggedBars = bars.filter(function (bar) {
        return bar.flags.length;
      });
      clear(flaggedBox).append(el("h2", { text: "Flagged bars loaded (" + flaggedBars.length + ")" }));
      if (!flaggedBars.length) {
        flaggedBox.append(el("p", { class: "muted", text: "None among the bars loaded." }));
        return;
      }
      flaggedBox.append(el("table", { id: "flagged-table" }, [
        el("thead", {}, [el("tr", {}, [el("th", { text: "Bar" }), el("th", { text: "Flags" }), el("th", { text: "" })])]),
        el("tbody", {}, flaggedBars.slice().reverse().map(function (bar) {
          return el("tr", { "data-time": bar.time }, [
            el("td", { class: "mono", text: when(bar.time) }),
            el("td", { text: bar.flags.join(", ") + (bar.validated ? "" : " (not validated)") }),
            el("td", {}, [el("button", {
              type: "button",
              text: "Show",
              onclick: function () {
                var time = seconds(bar.time);
                var index = bars.indexOf(bar);
                chart.timeScale().setVisibleLogicalRange({ from: index - 40, to: index + 20 });
                chart.setCrosshairPosition(bar.high, time, candles);
                showBar(bar);
                // Where the bar is once the chart has moved, for pointing at it (the browser tests
                // hover there).
                box.removeAttribute("data-focus-x");
                requestAnimationFrame(function () {
                  requestAnimationFrame(function () {
                    box.setAttribute("data-focus-x", String(chart.timeScale().timeToCoordinate(time)));
                  });
                });
              },
            })]),
          ]);
        })),
      ]));
    }

    chart.timeScale().subscribeVisibleLogicalRangeChange(function (range) {
      if (range !== null && range.from < 5) loadOlder();
    });

    loadOlder();
  }

  // --- Keys (admin) -----------------------------------------------------------------------

  var dialog = document.getElementById("dialog");
  var dialogForm = document.getElementById("dialog-form");

  // One dialog for confirmations, forms and the created key. `onConfirm` returns a promise; the
  // dialog stays open with the API's error if it fails.
  function openDialog(title, body, confirmLabel, onConfirm, options) {
    options = options || {};
    document.getElementById("dialog-title").textContent = printable(title);
    clear(document.getElementById("dialog-body")).append.apply(document.getElementById("dialog-body"), body);
    var error = document.getElementById("dialog-error");
    error.hidden = true;
    var confirm = document.getElementById("dialog-confirm");
    var cancel = document.getElementById("dialog-cancel");
    confirm.textContent = confirmLabel;
    confirm.className = options.danger ? "danger" : "primary";
    cancel.hidden = !!options.noCancel;
    confirm.disabled = false;
    dialogForm.onsubmit = function (event) {
      event.preventDefault();
      confirm.disabled = true;
      Promise.resolve(onConfirm()).then(
        function () {
          dialog.close();
        },
        function (failure) {
          confirm.disabled = false;
          if (failure instanceof ApiError && failure.status === 401) {
            dialog.close();
            return;
          }
          error.textContent = printable(describe(failure));
          error.hidden = false;
        }
      );
    };
    cancel.onclick = function () {
      dialog.close();
    };
    dialog.showModal();
  }

  function showSecret(title, created, after) {
    var input = el("input", { type: "text", readonly: true, id: "created-key", value: created.api_key, class: "mono" });
    var copied = el("span", { class: "muted", id: "copy-status" });
    var copy = el("button", {
      type: "button",
      id: "copy-key",
      text: "Copy",
      onclick: function () {
        input.select();
        var done = function () {
          copied.textContent = "Copied.";
        };
        if (navigator.clipboard && navigator.clipboard.writeText) {
          navigator.clipboard.writeText(input.value).then(done, function () {
            copied.textContent = "Select the key and copy it (the browser refused the clipboard).";
          });
        } else {
          copied.textContent = "Select the key and copy it.";
        }
      },
    });
    var lines = [
      el("p", { class: "warning", id: "created-key-warning", text: "Store this key now: it will not be shown again." }),
      el("div", { class: "secret" }, [input, copy]),
      copied,
      el("p", { class: "muted", text: created.name + " (" + created.key_prefix + "), scopes " + created.scopes.join(", ") }),
    ];
    if (created.previous_key_expires_at) {
      lines.push(el("p", { text: "The previous key (" + created.previous_key_prefix + ") keeps working until " + when(created.previous_key_expires_at) + "." }));
    }
    openDialog(title, lines, "Done", function () {
      input.value = "";
      after();
    }, { noCancel: true });
  }

  function keysView(token) {
    var list = el("section", { id: "keys-box" });
    var nameInput = el("input", { id: "new-key-name", required: true, maxlength: "100" });
    var readBox = el("input", { type: "checkbox", id: "new-key-read", checked: true });
    var adminBox = el("input", { type: "checkbox", id: "new-key-admin" });
    var expires = el("input", { type: "datetime-local", id: "new-key-expires" });
    var rate = el("input", { type: "number", id: "new-key-rate", min: "1", placeholder: "none" });
    var formError = el("div", { id: "create-key-error" });
    var form = el("form", { class: "inline", id: "create-key-form" }, [
      el("label", {}, ["Name", nameInput]),
      el("label", {}, ["read", readBox]),
      el("label", {}, ["admin", adminBox]),
      el("label", {}, ["Expires (UTC)", expires]),
      el("label", {}, ["Requests per minute", rate]),
      el("button", { type: "submit", class: "primary", id: "create-key", text: "Create key" }),
      formError,
    ]);
    form.addEventListener("submit", function (event) {
      event.preventDefault();
      clear(formError);
      var body = { name: nameInput.value, scopes: [] };
      if (readBox.checked) body.scopes.push("read");
      if (adminBox.checked) body.scopes.push("admin");
      if (expires.value) body.expires_at = expires.value + ":00Z";
      if (rate.value) body.rate_limit_per_minute = Number(rate.value);
      api("POST", "api/v1/admin/api-keys", { body: body }).then(
        function (answer) {
          form.reset();
          showSecret("Key created", answer.body, load);
          load();
        },
        function (error) {
          errorInto(formError, error);
        }
      );
    });
    view.append(el("h1", { text: "API keys" }), el("h2", { text: "Create a key" }), form, el("h2", { text: "Keys" }), list);

    function load() {
      return api("GET", "api/v1/admin/api-keys").then(
        function (answer) {
          if (current(token)) renderKeys(list, answer.body.items, load);
        },
        function (error) {
          if (current(token)) errorInto(clear(list), error);
        }
      );
    }
    load();
  }

  function keyActions(key, reload, area) {
    function act(promise) {
      return promise.then(reload, function (error) {
        errorInto(area, error);
      });
    }
    var buttons = [];
    if (key.active) {
      buttons.push(el("button", {
        type: "button", class: "danger", "data-action": "revoke", text: "Revoke",
        onclick: function () {
          act(api("PUT", "api/v1/admin/api-keys/" + key.id, { body: { active: false } }));
        },
      }));
    } else {
      buttons.push(el("button", {
        type: "button", "data-action": "restore", text: "Restore",
        onclick: function () {
          act(api("PUT", "api/v1/admin/api-keys/" + key.id, { body: { active: true } }));
        },
      }));
    }
    buttons.push(el("button", {
      type: "button", "data-action": "rotate", text: "Rotate",
      onclick: function () {
        var grace = el("input", { type: "number", id: "rotate-grace", min: "0", max: "2592000", value: "3600" });
        openDialog("Rotate " + key.name, [
          el("p", { text: "A new key replaces " + key.key_prefix + "…; the old one keeps working for the grace period." }),
          el("label", {}, ["Grace period (seconds) ", grace]),
        ], "Rotate", function () {
          return api("POST", "api/v1/admin/api-keys/" + key.id + "/rotate", { body: { grace_seconds: Number(grace.value || 0) } }).then(function (answer) {
            // The result goes in the same dialog, once this one has closed.
            setTimeout(function () {
              showSecret("Key rotated", answer.body, reload);
            }, 0);
            reload();
          });
        });
      },
    }));
    buttons.push(el("button", {
      type: "button", class: "danger", "data-action": "delete", text: "Delete",
      onclick: function () {
        openDialog("Delete " + key.name + "?", [
          el("p", { text: "The key " + key.key_prefix + "… stops working at once and cannot be restored. Its audit log is kept." }),
        ], "Delete", function () {
          return api("DELETE", "api/v1/admin/api-keys/" + key.id).then(reload);
        }, { danger: true });
      },
    }));
    return el("div", { class: "actions" }, buttons);
  }

  function renderKeys(container, keys, reload) {
    var area = el("div");
    clear(container).append(area, el("table", { id: "keys-table" }, [
      el("thead", {}, [el("tr", {}, ["Name", "Prefix", "Status", "Scopes", "Expires", "Last used", "Requests", ""].map(function (name) {
        return el("th", { text: name });
      }))]),
      el("tbody", {}, keys.map(function (key) {
        return el("tr", { "data-key-id": String(key.id), "data-key-name": key.name }, [
          el("td", {}, [el("a", { href: "#/keys/" + key.id, text: key.name })]),
          el("td", { class: "mono", text: key.key_prefix }),
          el("td", { class: "key-status", text: key.status + (key.previous_key_expires_at ? " (previous key until " + when(key.previous_key_expires_at) + ")" : "") }),
          el("td", { text: key.scopes.join(", ") }),
          el("td", { text: when(key.expires_at) }),
          el("td", { text: when(key.last_used_at) }),
          el("td", { class: "num", text: String(key.request_count) }),
          el("td", {}, [keyActions(key, reload, area)]),
        ]);
      })),
    ]));
  }

  function keyView(token, id) {
    var summary = el("section", { id: "key-summary" });
    var since = el("input", { type: "date", id: "audit-since" });
    var until = el("input", { type: "date", id: "audit-until" });
    var statusInput = el("input", { type: "number", id: "audit-status", min: "100", max: "599", placeholder: "any" });
    var filters = el("form", { class: "inline", id: "audit-filters" }, [
      el("label", {}, ["Since (UTC day)", since]),
      el("label", {}, ["Before (UTC day)", until]),
      el("label", {}, ["Status", statusInput]),
      el("button", { type: "submit", class: "primary", text: "Filter" }),
    ]);
    var log = el("section", { id: "audit-box" });
    view.append(el("p", {}, [el("a", { href: "#/keys", text: "← All keys" })]), summary, el("h2", { text: "Audit log" }), filters, log);

    function loadKey() {
      return api("GET", "api/v1/admin/api-keys/" + encodeURIComponent(id)).then(
        function (answer) {
          if (!current(token)) return;
          var key = answer.body;
          var area = el("div");
          clear(summary).append(
            el("h1", { id: "key-name", text: key.name }),
            el("div", { class: "cards" }, [
              card("Status", key.status, [key.active ? "active flag set" : "revoked"], "key-status"),
              card("Scopes", key.scopes.join(", "), [], "key-scopes"),
              card("Prefix", key.key_prefix, key.previous_key_prefix ? ["previous " + key.previous_key_prefix + " until " + when(key.previous_key_expires_at)] : [], "key-prefix"),
              card("Usage", String(key.request_count), ["last used " + when(key.last_used_at)], "key-usage"),
              card("Expires", when(key.expires_at), ["created " + when(key.created_at)], "key-expires"),
            ]),
            area,
            keyActions(key, loadKey, area)
          );
        },
        function (error) {
          if (current(token)) errorInto(clear(summary), error);
        }
      );
    }

    function loadAudit(cursor) {
      var query = {
        since: since.value ? since.value + "T00:00:00Z" : null,
        until: until.value ? until.value + "T00:00:00Z" : null,
        status: statusInput.value || null,
        limit: 50,
        cursor: cursor,
      };
      return api("GET", "api/v1/admin/api-keys/" + encodeURIComponent(id) + "/audit", { query: query }).then(
        function (answer) {
          if (!current(token)) return;
          renderAudit(log, answer.body, function () {
            loadAudit(answer.body.next_cursor);
          }, cursor !== null);
        },
        function (error) {
          if (current(token)) errorInto(clear(log), error);
        }
      );
    }

    filters.addEventListener("submit", function (event) {
      event.preventDefault();
      loadAudit(null);
    });
    loadKey();
    loadAudit(null);
  }

  function renderAudit(container, page, next, paged) {
    var columns = ["Time", "Event", "Method", "Path", "Status", "ms", "Source", "Reason"];
    clear(container).append(
      el("table", { id: "audit-table" }, [
        el("thead", {}, [el("tr", {}, columns.map(function (name) {
          return el("th", { text: name });
        }))]),
        el("tbody", {}, page.items.map(function (row) {
          return el("tr", { "data-audit-id": String(row.id) }, [
            el("td", { class: "mono", text: when(row.occurred_at) }),
            el("td", { text: row.event }),
            el("td", { text: row.method || "" }),
            el("td", { class: "mono audit-path", text: row.path || row.route || "" }),
            el("td", { class: "num", text: row.status_code === null ? "" : String(row.status_code) }),
            el("td", { class: "num", text: row.latency_ms === null ? "" : String(row.latency_ms) }),
            el("td", { class: "mono", text: row.source_ip || "" }),
            el("td", { text: (row.reason || "") + (row.attempts > 1 ? " ×" + row.attempts : "") }),
          ]);
        })),
      ]),
      el("div", { class: "pager" }, [
        el("span", { class: "muted", text: page.items.length + " rows" + (paged ? " (a later page)" : "") }),
        page.next_cursor ? el("button", { type: "button", id: "audit-next", text: "Older rows", onclick: next }) : null,
      ])
    );
    if (!page.items.length) container.prepend(el("p", { class: "muted", text: "No rows match." }));
  }

  // --- Symbols (admin) --------------------------------------------------------------------

  function symbolsView(token) {
    var list = el("section", { id: "symbols-box" });
    var result = el("section", { id: "symbol-result", "aria-live": "polite" });
    var symbolInput = el("input", { id: "new-symbol", required: true, maxlength: "24", placeholder: "AAPL, BTC-USD" });
    var classSelect = el("select", { id: "new-symbol-class" }, ["stock", "etf", "crypto"].map(function (name) {
      return el("option", { value: name, text: name });
    }));
    var timeframesInput = el("input", { id: "new-symbol-timeframes", placeholder: "default (e.g. 1d, 1h)" });
    var formError = el("div", { id: "add-symbol-error" });
    var form = el("form", { class: "inline", id: "add-symbol-form" }, [
      el("label", {}, ["Symbol", symbolInput]),
      el("label", {}, ["Asset class", classSelect]),
      el("label", {}, ["Timeframes", timeframesInput]),
      el("button", { type: "submit", class: "primary", id: "add-symbol", text: "Add symbol" }),
      formError,
    ]);
    form.addEventListener("submit", function (event) {
      event.preventDefault();
      clear(formError);
      var body = { symbol: symbolInput.value.trim(), asset_class: classSelect.value };
      var timeframes = timeframesInput.value.split(/[\s,]+/).filter(Boolean);
      if (timeframes.length) body.timeframes = timeframes;
      api("POST", "api/v1/admin/symbols", { body: body }).then(
        function (answer) {
          form.reset();
          clear(result).append(el("p", { class: "ok", id: "symbol-added", text: "Tracking " + answer.body.symbol + " (" + answer.body.timeframes.join(", ") + "); its first backfill is " + (STATUS_LABELS[answer.body.backfill_status] || answer.body.backfill_status) + "." }));
          load();
        },
        function (error) {
          errorInto(formError, error);
        }
      );
    });
    view.append(el("h1", { text: "Symbols" }), el("h2", { text: "Track a symbol" }), form, result, el("h2", { text: "Tracked symbols" }), list);

    function backfill(symbol, button) {
      button.disabled = true;
      clear(result).append(el("p", { class: "muted", text: "Backfilling " + symbol + "…" }));
      return api("POST", "api/v1/admin/symbols/" + encodeURIComponent(symbol) + "/backfill").then(
        function (answer) {
          button.disabled = false;
          if (!current(token)) return;
          renderBackfill(clear(result), answer.body);
          load();
        },
        function (error) {
          button.disabled = false;
          if (current(token)) errorInto(clear(result), error);
        }
      );
    }

    function setActive(symbol, active) {
      var call = active
        ? api("PUT", "api/v1/admin/symbols/" + encodeURIComponent(symbol), { body: { active: true } })
        : api("DELETE", "api/v1/admin/symbols/" + encodeURIComponent(symbol));
      return call.then(load, function (error) {
        errorInto(clear(result), error);
      });
    }

    function load() {
      return api("GET", "api/v1/admin/symbols").then(
        function (answer) {
          if (!current(token)) return;
          clear(list).append(el("table", { id: "symbols-table" }, [
            el("thead", {}, [el("tr", {}, ["Symbol", "Class", "Timeframes", "Active", "Backfill", "Last backfill", "Last error", ""].map(function (name) {
              return el("th", { text: name });
            }))]),
            el("tbody", {}, answer.body.symbols.map(function (symbol) {
              var backfillButton = el("button", { type: "button", "data-action": "backfill", text: "Backfill now", disabled: !symbol.active });
              backfillButton.addEventListener("click", function () {
                backfill(symbol.symbol, backfillButton);
              });
              return el("tr", { "data-symbol": symbol.symbol }, [
                el("td", {}, [el("a", { href: "#/symbol/" + encodeURIComponent(symbol.symbol), text: symbol.symbol })]),
                el("td", { text: symbol.asset_class }),
                el("td", { text: symbol.timeframes.join(", ") }),
                el("td", { class: "symbol-active", text: symbol.active ? "yes" : "no" }),
                el("td", { class: "symbol-status status-" + symbol.backfill_status, text: STATUS_LABELS[symbol.backfill_status] || symbol.backfill_status }),
                el("td", { text: when(symbol.last_backfill) }),
                el("td", { class: "error", text: symbol.last_error || "" }),
                el("td", {}, [el("div", { class: "actions" }, [
                  backfillButton,
                  symbol.active
                    ? el("button", { type: "button", class: "danger", "data-action": "deactivate", text: "Deactivate", onclick: function () { setActive(symbol.symbol, false); } })
                    : el("button", { type: "button", "data-action": "reactivate", text: "Reactivate", onclick: function () { setActive(symbol.symbol, true); } }),
                ])]),
              ]);
            })),
          ]));
        },
        function (error) {
          if (current(token)) errorInto(clear(list), error);
        }
      );
    }
    load();
  }

  function renderBackfill(container, outcome) {
    container.append(el("h2", { text: "Backfill of " + outcome.symbol }));
    if (outcome.queued && outcome.queued.length) {
      container.append(el("p", { id: "backfill-queued", text: "Queued for the backfill worker: " + outcome.queued.map(function (q) {
        return q.timeframe + " up to " + q.window;
      }).join(", ") + "." }));
    }
    if (outcome.results && outcome.results.length) {
      container.append(el("table", { id: "backfill-results" }, [
        el("thead", {}, [el("tr", {}, ["Timeframe", "Status", "Bars written", "Provider requests", "Error"].map(function (name) {
          return el("th", { text: name });
        }))]),
        el("tbody", {}, outcome.results.map(function (r) {
          return el("tr", { "data-timeframe": r.timeframe }, [
            el("td", { text: r.timeframe }),
            el("td", { class: "status-" + r.status, text: STATUS_LABELS[r.status] || r.status }),
            el("td", { class: "num", text: String(r.bars_written) }),
            el("td", { class: "num", text: String(r.provider_requests) }),
            el("td", { class: "error", text: r.error || "" }),
          ]);
        })),
      ]));
    }
  }

  // --- Start ------------------------------------------------------------------------------

  var saved = sessionStorage.getItem(KEY_STORE);
  showChrome();
  if (saved) {
    signIn(saved).catch(function (failure) {
      signOut(failure.status === 401 ? "The API refused the saved key: " + failure.message : describe(failure));
    });
  } else {
    prompt("");
  }
})();
