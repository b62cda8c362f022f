/* The Claude page: an xterm.js terminal on {base_url}claude/terminal.
 *
 * Protocol: terminado's JSON messages (["stdin", s], ["set_size", rows, cols]) plus ["pause"] /
 * ["resume"] / ["ack", n] flow control, ["restart"], ["new_conversation"] (the "New
 * conversation" button: Claude is started again without --continue), and the server's ["setup", {...}],
 * ["exit", {...}], ["started", {...}], ["marker", event]. The page speaks the "claudehub.v2"
 * subprotocol: output arrives as binary frames of UTF-8, handed to xterm.js as they are.
 *
 * Flow control (the xterm.js guide's watermark scheme): every FC_CHUNK bytes written,
 * a write callback is attached; when more than FC_HIGH callbacks are outstanding (xterm has
 * not parsed that much yet) the page asks the server to stop reading the pty, and asks it to
 * resume once fewer than FC_LOW are left. So a flood (`yes`) stays a few hundred KB ahead of
 * the screen, and Ctrl-C reaches a prompt that is drawn right away. The same callbacks
 * acknowledge what was drawn (["ack", n]); the server then never has more than its send window
 * in flight, which bounds what socket buffers and proxies hold when a pause is sent.
 *
 * The terminal opens once its fonts are loaded (window.claudehub.ready resolves then).
 * Other scripts (panels.js) get window.claudehub = {config, term, send} and window events
 * "claudehub:marker", "claudehub:exit", "claudehub:started", "claudehub:connected".
 */
(function () {
  "use strict";

  var FC_CHUNK = 100000;
  var FC_HIGH = 4;
  var FC_LOW = 2;

  var config = JSON.parse(document.getElementById("claudehub-config").textContent);
  var statusEl = document.getElementById("status");
  var exitBanner = document.getElementById("exit-banner");
  var exitText = document.getElementById("exit-text");
  var endedBanner = document.getElementById("ended-banner");
  var hubHome = document.getElementById("hub-home");
  hubHome.href = (config.hubHost || "") + config.hubPrefix + "home";

  // The fonts of claude.css, in the order the browser tries them for each character: every
  // glyph Claude Code prints has one of them (tests/server_ext/test_glyphs.py).
  var FONT_FAMILY = '"ClaudeHub Mono", "ClaudeHub Symbols 2", "ClaudeHub Symbols", monospace';
  var FONT_SIZE = 14;
  var term = new Terminal({
    cursorBlink: true,
    scrollback: 5000,
    fontFamily: FONT_FAMILY,
    fontSize: FONT_SIZE,
    theme: { background: "#1e1e1e" },
  });
  var fit = new FitAddon.FitAddon();
  term.loadAddon(fit);

  // xterm.js measures its cell size when it opens: with a font still loading it would measure
  // the fallback's and misplace every character. Wait for the faces (the symbol faces load
  // only for characters in their unicode-range, so ask for one each), 5 s at most.
  function fontsReady() {
    if (!document.fonts || !document.fonts.load) return Promise.resolve();
    var px = FONT_SIZE + "px ";
    var loads = Promise.all([
      document.fonts.load(px + '"ClaudeHub Mono"', "W"),
      document.fonts.load("bold " + px + '"ClaudeHub Mono"', "W"),
      document.fonts.load(px + '"ClaudeHub Symbols 2"', "\u23f5"),
      document.fonts.load(px + '"ClaudeHub Symbols"', "\u23bf"),
    ]);
    var timeout = new Promise(function (resolve) { setTimeout(resolve, 5000); });
    return Promise.race([loads, timeout]).catch(function () { /* draw with what there is */ });
  }

  var ws = null;
  var ended = false;
  var ending = false; // the learner's own End session is under way
  var renewing = false; // "New conversation" sent, its "started" not yet seen
  var retries = 0;
  // flow-control state, reset for every connection
  var written = 0;
  var total = 0; // bytes of output handed to xterm.js since this connection opened
  var pending = 0;
  var paused = false;
  // flow-control counters, for diagnostics (window.claudehub.flow)
  var flow = { pauses: 0, resumes: 0, maxPending: 0, received: 0 };

  function setStatus(text, cls) {
    statusEl.textContent = text;
    statusEl.className = "status " + (cls || "");
  }

  function emit(name, detail) {
    window.dispatchEvent(new CustomEvent("claudehub:" + name, { detail: detail }));
  }

  function send(msg) {
    if (ws && ws.readyState === WebSocket.OPEN) {
      ws.send(JSON.stringify(msg));
    }
  }

  function sendSize() {
    send(["set_size", term.rows, term.cols, 0, 0]);
  }

  function output(data) {
    // data: a Uint8Array of UTF-8 (claudehub.v2), or text from a server without it
    written += data.length;
    total += data.length;
    flow.received += data.length;
    if (written < FC_CHUNK) {
      term.write(data);
      return;
    }
    written = 0;
    pending += 1;
    var socket = ws;
    var drawn = total;
    term.write(data, function () {
      if (socket !== ws) return; // a callback from before a reconnect
      // everything up to here is drawn: the server keeps at most its send window in flight
      send(["ack", drawn]);
      pending = Math.max(pending - 1, 0);
      if (paused && pending < FC_LOW) {
        paused = false;
        flow.resumes += 1;
        send(["resume"]);
      }
    });
    if (pending > flow.maxPending) flow.maxPending = pending;
    if (!paused && pending > FC_HIGH) {
      paused = true;
      flow.pauses += 1;
      send(["pause"]);
    }
  }

  function onMessage(ev) {
    if (typeof ev.data !== "string") {
      output(new Uint8Array(ev.data));
      return;
    }
    var msg = JSON.parse(ev.data);
    switch (msg[0]) {
      case "stdout":
        output(msg[1]);
        break;
      case "setup":
        renewing = false;
        newConversation.disabled = false;
        term.reset();
        exitBanner.hidden = msg[1].alive !== false;
        setStatus("connected", "ok");
        emit("connected", msg[1]);
        break;
      case "exit":
        var info = msg[1] || {};
        if (renewing) break; // the end of the old conversation, the new one starts next
        exitText.textContent = info.signal
          ? "Claude was stopped (signal " + info.signal + ")."
          : "Claude has exited" + (info.status ? " (status " + info.status + ")." : ".");
        exitBanner.hidden = false;
        setStatus("Claude exited", "bad");
        emit("exit", info);
        break;
      case "started":
        renewing = false;
        newConversation.disabled = false;
        term.reset();
        exitBanner.hidden = true;
        setStatus("connected", "ok");
        sendSize();
        term.focus();
        emit("started", msg[1]);
        break;
      case "marker":
        emit("marker", msg[1]);
        break;
    }
  }

  function connect() {
    var proto = location.protocol === "https:" ? "wss://" : "ws://";
    var socket = new WebSocket(proto + location.host + config.terminalUrl, ["claudehub.v2"]);
    socket.binaryType = "arraybuffer";
    ws = socket;
    written = 0;
    total = 0;
    pending = 0;
    paused = false;
    socket.onopen = function () {
      retries = 0;
      send(["ack", 0]); // this page acknowledges what it draws: ask for a send window
      fitNow();
      sendSize();
      term.focus();
    };
    socket.onmessage = onMessage;
    socket.onclose = function () {
      if (socket !== ws) return;
      ws = null;
      if (ended) return;
      retries += 1;
      setStatus("disconnected, reconnecting…", "bad");
      if (ending) {
        retryLater();
        return;
      }
      serverGone().then(function (gone) {
        if (ended) return;
        if (gone) {
          // someone else ended the session (an instructor, an admin, the idle culler): the
          // hub's page says who and when, in plain words
          ended = true;
          location.href = (config.hubHost || "") + config.hubPrefix + "claudehub/session-ended";
          return;
        }
        retryLater();
      });
    };
  }

  function retryLater() {
    if (retries > 3) {
      // refused again and again: the login expired or the server is gone; the page itself
      // then leads to the hub (login, or its "server not running" page). Unless the page's
      // own address answers nothing yet (CHP or the hub restarting, as during an upgrade: a
      // network error or a 5xx): a reload would then land on an error page that never comes
      // back by itself, so the page keeps trying every few seconds instead.
      answers().then(function (yes) {
        if (ended) return;
        if (yes) location.reload();
        else setTimeout(connect, 5000);
      });
      return;
    }
    setTimeout(connect, Math.min(1000 * Math.pow(2, retries - 1), 15000));
  }

  // Whether this page's address answers with anything but a server error.
  function answers() {
    return fetch(location.href, { credentials: "same-origin", cache: "no-store" }).then(
      function (resp) { return resp.status < 500; },
      function () { return false; }
    );
  }

  // Whether this page's server is gone: its own URL then answers through the hub, which says
  // "not running" with 424, or sends it to its start-up page while the stop is under way (a
  // server that only dropped the websocket answers 200 itself).
  function serverGone() {
    return fetch(location.href, { credentials: "same-origin", cache: "no-store" }).then(
      function (resp) {
        return resp.status === 424 || resp.url.indexOf(config.hubPrefix + "spawn-pending/") !== -1;
      },
      function () { return false; }
    );
  }

  term.onData(function (data) {
    send(["stdin", data]);
  });
  term.onResize(function () {
    sendSize();
  });

  var fitQueued = false;
  function fitNow() {
    try {
      fit.fit();
    } catch (e) {
      /* not laid out yet */
    }
  }
  function queueFit() {
    if (fitQueued) return;
    fitQueued = true;
    requestAnimationFrame(function () {
      fitQueued = false;
      fitNow();
    });
  }
  window.addEventListener("resize", queueFit);
  if (window.ResizeObserver) {
    new ResizeObserver(queueFit).observe(document.getElementById("terminal"));
  }

  document.getElementById("restart").addEventListener("click", function () {
    send(["restart"]);
  });

  document.getElementById("end-session").addEventListener("click", function () {
    if (!window.confirm("End your session? Claude and this server will stop.")) return;
    setStatus("ending the session…");
    ending = true; // the connection is about to close: this page says so itself
    fetch(config.apiUrl + "session", {
      method: "DELETE",
      headers: { "X-XSRFToken": config.xsrfToken },
      credentials: "same-origin",
    }).then(function (resp) {
      if (resp.ok) {
        ended = true;
        if (ws) ws.close();
        exitBanner.hidden = true;
        endedBanner.hidden = false;
        setStatus("session ended");
        emit("ended", {});
      } else {
        // the hub refused (or is unreachable): its home page has a stop button too
        ending = false;
        setStatus("could not end the session here; use the hub page", "bad");
        endedBanner.hidden = false;
      }
    }, function () {
      ending = false;
      setStatus("could not end the session here; use the hub page", "bad");
      endedBanner.hidden = false;
    });
  });

  var newConversation = document.getElementById("new-conversation");
  newConversation.addEventListener("click", function () {
    if (!ws) return;
    if (!window.confirm("Start a new conversation with Claude? The current one ends (it stays saved).")) return;
    // the server ends Claude (an "exit" comes first) and starts it on a fresh conversation;
    // its "started" resets the screen
    renewing = true;
    newConversation.disabled = true;
    setStatus("starting a new conversation…");
    send(["new_conversation"]);
  });

  window.claudehub = { config: config, term: term, send: send, flow: flow, ready: null };
  window.claudehub.ready = fontsReady().then(function () {
    term.open(document.getElementById("terminal"));
    fitNow();
    connect();
  });
})();
