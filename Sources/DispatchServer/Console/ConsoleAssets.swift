/// The console's page, style and script, compiled into the binary: nothing to install, nothing from another host.
///
/// Every value that comes from a request or an agent is put into the page as text (`textContent`, text nodes), never
/// as HTML; the Content-Security-Policy (``ConsoleRoutes/contentSecurityPolicy``) would refuse inline code anyway.
enum ConsoleAssets {
    static let html = #"""
        <!doctype html>
        <html lang="en">
        <head>
        <meta charset="utf-8">
        <meta name="viewport" content="width=device-width, initial-scale=1">
        <meta name="referrer" content="no-referrer">
        <title>agent-dispatch console</title>
        <link rel="stylesheet" href="/ui/console.css">
        <script src="/ui/console.js" defer></script>
        </head>
        <body>
        <header>
          <a class="brand" href="/ui">agent-dispatch</a>
          <span id="summary" class="summary"></span>
          <button id="forget" type="button" hidden>Forget token</button>
        </header>
        <main id="main"><p class="muted">Loading…</p></main>
        <noscript><p>The console needs JavaScript.</p></noscript>
        </body>
        </html>
        """#

    static let style = #"""
        :root { color-scheme: light dark; --bg: #ffffff; --fg: #1d1f23; --muted: #5f6672; --line: #d9dce1; --panel: #f5f6f8;
          --accent: #2456c7; --ok: #17803d; --bad: #b42318; --warn: #a05a00; --run: #2456c7; --add: #e6f4ea; --del: #fdecea;
          --addfg: #14532d; --delfg: #7f1d1d; }
        @media (prefers-color-scheme: dark) {
          :root { --bg: #15171b; --fg: #e6e8eb; --muted: #9aa1ad; --line: #30343b; --panel: #1d2026; --accent: #7aa2ff;
            --ok: #4ade80; --bad: #f87171; --warn: #fbbf24; --run: #7aa2ff; --add: #12301c; --del: #3a1717; --addfg: #bbf7d0;
            --delfg: #fecaca; }
        }
        * { box-sizing: border-box; }
        body { margin: 0; font: 14px/1.45 system-ui, -apple-system, "Segoe UI", sans-serif; background: var(--bg); color: var(--fg); }
        header { display: flex; gap: 1rem; align-items: center; padding: .6rem 1rem; border-bottom: 1px solid var(--line); flex-wrap: wrap; }
        .brand { font-weight: 700; color: var(--fg); text-decoration: none; }
        .summary { color: var(--muted); flex: 1; }
        main { padding: 1rem; max-width: 1200px; }
        a { color: var(--accent); }
        :focus-visible { outline: 2px solid var(--accent); outline-offset: 2px; }
        button, select, input { font: inherit; color: inherit; background: var(--panel); border: 1px solid var(--line);
          border-radius: 4px; padding: .3rem .6rem; }
        button:not(:disabled) { cursor: pointer; }
        button:disabled { opacity: .5; }
        button.danger:not(:disabled) { border-color: var(--bad); color: var(--bad); }
        .controls { display: flex; gap: .6rem; align-items: center; flex-wrap: wrap; margin-bottom: .8rem; }
        table { border-collapse: collapse; width: 100%; }
        th, td { text-align: left; padding: .35rem .5rem; border-bottom: 1px solid var(--line); vertical-align: top; }
        th { color: var(--muted); font-weight: 600; }
        td.id { font-family: ui-monospace, SFMono-Regular, Menlo, monospace; word-break: break-all; }
        .status { font-weight: 600; }
        .status-completed { color: var(--ok); } .status-failed { color: var(--bad); } .status-cancelled { color: var(--warn); }
        .status-running { color: var(--run); } .status-queued { color: var(--muted); }
        .muted { color: var(--muted); }
        .error { color: var(--bad); }
        section { margin: 1.2rem 0; }
        h1 { font-size: 1.25rem; word-break: break-all; } h2 { font-size: 1.05rem; margin: 0 0 .4rem; }
        dl { display: grid; grid-template-columns: max-content 1fr; gap: .2rem 1rem; margin: 0; }
        dt { color: var(--muted); } dd { margin: 0; word-break: break-all; }
        pre { background: var(--panel); border: 1px solid var(--line); border-radius: 4px; padding: .6rem; overflow: auto;
          max-height: 32rem; margin: .3rem 0; white-space: pre-wrap; word-break: break-all;
          font: 12.5px/1.4 ui-monospace, SFMono-Regular, Menlo, monospace; }
        .diff { white-space: pre; padding: 0; }
        .diff span { display: block; padding: 0 .6rem; }
        .diff .file { font-weight: 700; background: var(--line); margin-top: .4rem; }
        .diff .meta { color: var(--muted); } .diff .hunk { color: var(--accent); }
        .diff .add { background: var(--add); color: var(--addfg); } .diff .del { background: var(--del); color: var(--delfg); }
        .diff .binary { font-style: italic; }
        .tabs { display: flex; gap: .4rem; align-items: center; }
        .tabs button[aria-pressed="true"] { border-color: var(--accent); color: var(--accent); }
        form.token { display: flex; gap: .6rem; align-items: center; flex-wrap: wrap; max-width: 40rem; }
        form.token input { flex: 1; min-width: 16rem; }
        """#

    static let script = #"""
        "use strict";
        // agent-dispatch operator console. Every value from a request or an agent goes into the page as text.
        (() => {
          const TOKEN_KEY = "agent-dispatch-token";
          const TERMINAL = ["completed", "failed", "cancelled"];
          const main = document.getElementById("main");
          let timer = null;
          let logAbort = null;
          // Each view belongs to one generation: a fetch answered after the operator moved on draws nothing.
          let generation = 0;
          const current = (mine) => mine === generation;

          // The token: from `#token=…` once (then the fragment leaves the address bar), else sessionStorage.
          function readToken() {
            if (location.hash.startsWith("#token=")) {
              const raw = location.hash.slice("#token=".length);
              history.replaceState(null, "", location.pathname + location.search);
              let token = "";
              try { token = decodeURIComponent(raw).trim(); } catch (error) { token = ""; }
              if (token) sessionStorage.setItem(TOKEN_KEY, token);
            }
            return sessionStorage.getItem(TOKEN_KEY);
          }

          function el(tag, attributes, ...children) {
            const node = document.createElement(tag);
            for (const [name, value] of Object.entries(attributes || {})) {
              if (value === null || value === undefined || value === false) continue;
              if (name === "class") node.className = value; else node.setAttribute(name, value === true ? "" : String(value));
            }
            for (const child of children) {
              if (child === null || child === undefined) continue;
              node.append(child instanceof Node ? child : document.createTextNode(String(child)));
            }
            return node;
          }

          function clear(node) { while (node.firstChild) node.removeChild(node.firstChild); }
          function stop() {
            generation += 1;
            if (timer) clearTimeout(timer);
            timer = null;
            if (logAbort) logAbort.abort();
            logAbort = null;
          }

          // A passing failure (the server restarting) is shown above the view, which keeps refreshing.
          function notice(message) {
            let banner = document.getElementById("notice");
            if (!message) { if (banner) banner.remove(); return; }
            if (!banner) { banner = el("p", { id: "notice", class: "error", role: "status" }); main.prepend(banner); }
            banner.textContent = message;
          }

          class Unauthorized extends Error {}

          async function api(path, options) {
            const token = sessionStorage.getItem(TOKEN_KEY);
            if (!token) throw new Unauthorized();
            const init = Object.assign({ cache: "no-store" }, options || {});
            init.headers = Object.assign({ Authorization: "Bearer " + token }, init.headers || {});
            const response = await fetch(path, init);
            if (response.status === 401) {
              sessionStorage.removeItem(TOKEN_KEY);
              throw new Unauthorized("the token was refused");
            }
            return response;
          }

          async function json(path, options) {
            const response = await api(path, options);
            const body = await response.json().catch(() => ({}));
            if (!response.ok) throw new Error(body.error || ("HTTP " + response.status));
            return body;
          }

          function prompt(message) {
            stop();
            clear(main);
            document.getElementById("forget").hidden = true;
            document.getElementById("summary").textContent = "";
            const input = el("input", { type: "password", id: "token", autocomplete: "off", "aria-label": "Service token",
              placeholder: "service token" });
            const form = el("form", { class: "token" }, input, el("button", { type: "submit" }, "Use token"));
            form.addEventListener("submit", (event) => {
              event.preventDefault();
              if (!input.value.trim()) return;
              sessionStorage.setItem(TOKEN_KEY, input.value.trim());
              route();
            });
            main.append(el("h1", {}, "Sign in"), el("p", {}, message ||
              "The console shows nothing without the service token (serve logs where it is)."), form);
            input.focus();
          }

          function failed(error) {
            if (error instanceof Unauthorized) return prompt(error.message || null);
            if (error && error.name === "AbortError") return;
            clear(main);
            main.append(el("p", { class: "error" }, "Cannot load: " + (error && error.message ? error.message : error)));
          }

          function age(stamp) {
            if (!stamp) return "";
            const seconds = Math.max(0, Math.round((Date.now() - Date.parse(stamp)) / 1000));
            if (seconds < 90) return seconds + "s";
            if (seconds < 5400) return Math.round(seconds / 60) + "m";
            if (seconds < 129600) return Math.round(seconds / 3600) + "h";
            return Math.round(seconds / 86400) + "d";
          }

          function duration(item) {
            if (typeof item.durationMs === "number") return (item.durationMs / 1000).toFixed(1) + "s";
            if (item.status === "running" && item.startedAt) return age(item.startedAt) + " so far";
            return "";
          }

          function statusBadge(status) { return el("span", { class: "status status-" + status }, status); }

          async function summary() {
            try {
              const info = await json("/");
              const parts = [info.version + " (" + String(info.gitSha || "").slice(0, 12) + ")", "isolation " + info.isolation,
                "store " + info.store, "running " + info.running, "queued " + info.queued];
              document.getElementById("summary").textContent = parts.join(" · ");
            } catch (error) { /* the list shows the error */ }
          }

          // The list: filters live in the query string, so a reload (or the refresh) keeps them.
          async function list(mine) {
            const query = new URLSearchParams(location.search);
            const status = query.get("status") || "";
            const prefix = query.get("prefix") || "";
            const before = query.get("before") || "";
            const apply = (changes) => {
              const next = new URLSearchParams(location.search);
              for (const [key, value] of Object.entries(changes)) { if (value) next.set(key, value); else next.delete(key); }
              history.pushState(null, "", "/ui" + (next.toString() ? "?" + next : ""));
              route();
            };
            const params = new URLSearchParams({ limit: "50" });
            if (status) params.set("status", status);
            if (prefix) params.set("prefix", prefix);
            if (before) params.set("before", before);
            const page = await json("/internal/agent-dispatches?" + params);
            if (!current(mine)) return;
            const focused = document.activeElement;
            const focusRow = focused && focused.closest ? focused.closest("tr[data-request-id]") : null;
            const focusKey = focusRow ? "tr[data-request-id=\"" + CSS.escape(focusRow.dataset.requestId) + "\"] a"
              : (focused && focused.id && focused !== document.body ? "#" + CSS.escape(focused.id) : null);
            const rows = page.items.map((item) => el("tr", { "data-request-id": item.requestId },
              el("td", { class: "id" }, el("a", { href: "/ui/requests/" + encodeURIComponent(item.requestId) }, item.requestId)),
              el("td", {}, statusBadge(item.status)),
              el("td", {}, item.tool),
              el("td", {}, item.executionMode + (item.sandboxBackend ? " / " + item.sandboxBackend : "")),
              el("td", {}, item.model || ""),
              el("td", {}, age(item.startedAt || item.updatedAt)),
              el("td", {}, duration(item)),
              el("td", { class: "usage" }, tokens(item.usage)),
              el("td", { class: "cost" }, cost(item.usage))));
            const paging = el("div", { class: "controls" });
            if (before) paging.append(el("button", { type: "button", id: "newest" }, "Newest"));
            if (page.next) paging.append(el("button", { type: "button", id: "older" }, "Older"));
            // The filter controls are made once per filter and left alone by the refresh (an open status menu, a
            // search being typed, focus); only the rows and paging below them are redrawn.
            let controls = main.querySelector(".controls[data-query]");
            let body = document.getElementById("list-body");
            if (!controls || controls.dataset.query !== location.search || !body) {
              const select = el("select", { id: "status", "aria-label": "Status" },
                ...["", "queued", "running", "completed", "failed", "cancelled"].map((value) =>
                  el("option", { value, selected: value === status }, value || "all statuses")));
              const search = el("input", { id: "prefix", type: "search", value: prefix, placeholder: "requestId prefix",
                "aria-label": "requestId prefix" });
              clear(main);
              controls = el("div", { class: "controls", "data-query": location.search }, select, search,
                el("span", { class: "muted" }, "refreshes every 3 s"));
              body = el("div", { id: "list-body" });
              main.append(controls, body);
              select.addEventListener("change", () => apply({ status: select.value, before: "" }));
              search.addEventListener("keydown", (event) => { if (event.key === "Enter") apply({ prefix: search.value.trim(), before: "" }); });
            }
            clear(body);
            body.append(rows.length ? el("table", {}, el("thead", {}, el("tr", {}, ...["requestId", "status", "tool", "mode", "model",
              "age", "duration", "tokens", "cost"].map((name) => el("th", {}, name)))), el("tbody", {}, ...rows))
              : el("p", { class: "muted" }, "No dispatches."), paging);
            const older = document.getElementById("older");
            if (older) older.addEventListener("click", () => apply({ before: page.next }));
            const newest = document.getElementById("newest");
            if (newest) newest.addEventListener("click", () => apply({ before: "" }));
            // Keep the operator's place across the redraw.
            const again = focusKey && document.querySelector(focusKey);
            if (again) again.focus();
            timer = setTimeout(() => refreshList(mine), 3000);
          }

          async function refreshList(mine) {
            try {
              await summary();
              await list(mine);
            } catch (error) {
              if (!current(mine)) return;
              if (error instanceof Unauthorized) return failed(error);
              notice("Refresh failed (" + error.message + "); retrying.");
              timer = setTimeout(() => refreshList(mine), 3000);
            }
          }

          function definition(pairs) {
            const list = el("dl");
            for (const [name, value] of pairs) {
              if (value === null || value === undefined || value === "") continue;
              list.append(el("dt", {}, name), el("dd", {}, typeof value === "object" ? JSON.stringify(value) : String(value)));
            }
            return list;
          }

          function diffView(text, truncated) {
            const view = el("pre", { class: "diff", id: "diff" });
            // A file's header runs from `diff --git` to its first `@@`: only there are `---`/`+++` headers.
            let inHeader = false;
            for (const line of text.split("\n")) {
              let kind = "";
              if (line.startsWith("diff --git ")) { kind = "file"; inHeader = true; }
              else if (line.startsWith("@@")) { kind = "hunk"; inHeader = false; }
              else if (inHeader) kind = line.startsWith("Binary files ") || line.startsWith("GIT binary patch") ? "binary" : "meta";
              else if (line.startsWith("+")) kind = "add";
              else if (line.startsWith("-")) kind = "del";
              view.append(el("span", { class: kind }, line === "" ? " " : line));
            }
            if (truncated) view.append(el("span", { class: "meta" }, "… (the rest of the patch is not shown)"));
            return view;
          }

          // The log: streamed from the logs route (with follow while the run goes on), keeping only the tail.
          function logView(id, running) {
            const output = el("pre", { id: "log" }, "");
            const buttons = ["stdout", "stderr"].map((stream) => el("button", { type: "button", "data-stream": stream,
              "aria-pressed": stream === "stdout" ? "true" : "false" }, stream));
            const show = async (stream) => {
              if (logAbort) logAbort.abort();
              logAbort = new AbortController();
              for (const button of buttons) button.setAttribute("aria-pressed", button.dataset.stream === stream ? "true" : "false");
              output.textContent = "";
              try {
                const response = await api("/internal/agent-logs/" + encodeURIComponent(id) + "?stream=" + stream + "&tail=131072"
                  + (running ? "&follow=1" : ""), { signal: logAbort.signal });
                if (!response.ok) { output.textContent = "(no log: HTTP " + response.status + ")"; return; }
                const reader = response.body.getReader();
                const decoder = new TextDecoder();
                let text = "";
                for (;;) {
                  const { done, value } = await reader.read();
                  if (done) break;
                  text = (text + decoder.decode(value, { stream: true })).slice(-131072);
                  output.textContent = text;
                  output.scrollTop = output.scrollHeight;
                }
                if (!text) output.textContent = "(empty)";
              } catch (error) {
                if (error instanceof Unauthorized) failed(error);
                else if (error.name !== "AbortError") output.textContent += "\n(the log stream broke: " + error.message + ")";
              }
            };
            for (const button of buttons) button.addEventListener("click", () => show(button.dataset.stream));
            show("stdout");
            return el("section", {}, el("div", { class: "tabs" }, el("h2", {}, "Log"), ...buttons), output);
          }

          async function patchView(id, artifacts) {
            const section = el("section", { id: "artifacts" }, el("h2", {}, "Changes"));
            const touched = artifacts.touchedFiles || [];
            section.append(el("p", { class: "muted" }, touched.length ? touched.length + " touched file(s): " : "No touched files."),
              el("ul", { id: "touched" }, ...touched.map((file) => el("li", {}, file))));
            if ((artifacts.omittedFromPatch || []).length) {
              section.append(el("p", { class: "muted" }, "Left out of the patch: " + artifacts.omittedFromPatch.map((file) =>
                typeof file === "object" ? file.path + " (" + file.bytes + " bytes" + (file.reason ? ", " + file.reason : "") + ")"
                  : String(file)).join(", ")));
            }
            const response = await api("/internal/agent-patch/" + encodeURIComponent(id));
            if (response.ok) {
              // At most 2 MiB is drawn: read that much, then let the rest go.
              const limit = 2 * 1024 * 1024;
              const reader = response.body.getReader();
              const decoder = new TextDecoder();
              let text = "";
              let truncated = false;
              for (;;) {
                const { done, value } = await reader.read();
                if (done) break;
                text += decoder.decode(value, { stream: true });
                if (text.length > limit) { truncated = true; text = text.slice(0, limit); reader.cancel(); break; }
              }
              section.append(diffView(text, truncated));
            } else {
              section.append(el("p", { class: "muted" }, "No patch."));
            }
            return section;
          }

          async function detail(id, mine) {
            const body = await json("/internal/agent-result/" + encodeURIComponent(id));
            if (!current(mine)) return;
            const result = body.result || {};
            const running = !TERMINAL.includes(result.status);
            const cancel = el("button", { type: "button", id: "cancel", class: "danger", disabled: !running }, "Cancel");
            cancel.addEventListener("click", async () => {
              if (!window.confirm("Cancel " + id + "? The agent is stopped and the request ends cancelled.")) return;
              cancel.disabled = true;
              try {
                const response = await api("/internal/agent-cancel/" + encodeURIComponent(id), { method: "POST" });
                // 409: it ended first; either way the page shows what it came to.
                if (!response.ok && response.status !== 409) notice("Cancel failed: HTTP " + response.status);
              } catch (error) { if (error instanceof Unauthorized) return failed(error); notice("Cancel failed: " + error.message); }
              route();
            });
            const sections = [
              el("p", {}, el("a", { href: "/ui" }, "← all dispatches")),
              el("h1", {}, id),
              el("div", { class: "controls" }, statusBadge(result.status), cancel),
              el("section", {}, el("h2", {}, result.status === "completed" ? "Answer" : "Outcome"),
                el("pre", { id: "outcome", class: result.error ? "error" : "" }, result.error || result.result || (running ? "(running)" : "(none)"))),
              el("section", {}, el("h2", {}, "Request"), definition([["tool", result.tool], ["mode", result.executionMode],
                ["backend", result.sandboxBackend], ["model", result.model], ["agent", result.agent], ["workflow", result.workflowId],
                ["story", result.storyId], ["session", result.sessionId], ["started", result.startedAt], ["completed", result.completedAt],
                ["duration", typeof result.durationMs === "number" ? result.durationMs + " ms" : ""],
                ["tokens", tokens(result.usage)], ["cost", cost(result.usage)]]),
                el("pre", { id: "task" }, result.task || "")),
            ];
            if ((result.attempts || []).length) {
              sections.push(el("section", {}, el("h2", {}, "Attempts"), el("table", {}, el("thead", {}, el("tr", {},
                ...["model", "started", "duration", "exit", "signal", "timed out", "tokens", "cost", "error"].map((name) => el("th", {}, name)))),
                el("tbody", {}, ...result.attempts.map((attempt) => el("tr", {}, el("td", {}, attempt.model || "default"),
                  el("td", {}, attempt.startedAt), el("td", {}, attempt.durationMs + " ms"), el("td", {}, attempt.exitCode ?? ""),
                  el("td", {}, attempt.signal ?? ""), el("td", {}, attempt.timedOut ? "yes" : ""), el("td", { class: "usage" }, tokens(attempt.usage)),
                  el("td", { class: "cost" }, cost(attempt.usage)), el("td", {}, attempt.error || "")))))));
            }
            if (result.network) sections.push(networkView(result.network));
            if (result.logs) sections.push(logView(id, running));
            const artifacts = result.artifacts;
            if (artifacts) sections.push(await patchView(id, artifacts));
            if (!current(mine)) return;
            if (artifacts && artifacts.verification) {
              const verification = artifacts.verification;
              sections.push(el("section", {}, el("h2", {}, "Verification " + (verification.success ? "passed" : "failed")),
                el("ul", {}, ...verification.commands.map((command) => el("li", {}, el("code", {}, command)))),
                el("pre", { id: "verification" }, verification.output || "")));
            }
            const place = result.localSandbox || result.job || null;
            if (place) sections.push(el("section", {}, el("h2", {}, result.localSandbox ? "Sandbox" : "Kubernetes Job"),
              definition(Object.entries(place))));
            clear(main);
            main.append(...sections);
            if (running) timer = setTimeout(() => refreshDetail(id, result.status, mine), 2000);
          }

          // Tokens as "in (cached) / out (reasoning)", each figure the CLI did not report left out (CONTRACT §11).
          function tokens(usage) {
            if (!usage) return "";
            const figure = (value) => (typeof value === "number" ? value.toLocaleString("en-US") : "?");
            if (usage.inputTokens == null && usage.outputTokens == null) return "";
            return figure(usage.inputTokens) + (typeof usage.cachedInputTokens === "number" ? " (" + figure(usage.cachedInputTokens) + " cached)" : "")
              + " in / " + figure(usage.outputTokens) + (typeof usage.reasoningTokens === "number" ? " (" + figure(usage.reasoningTokens) + " reasoning)" : "")
              + " out";
          }

          function cost(usage) {
            return usage && typeof usage.costUsd === "number" ? "$" + usage.costUsd.toFixed(4) : "";
          }

          // What the agent did on the network (CONTRACT §10): the policy, every refused destination, every reached one.
          function networkView(network) {
            const table = (names, rows) => el("table", {}, el("thead", {}, el("tr", {}, ...names.map((name) => el("th", {}, name)))),
              el("tbody", {}, ...rows.map((row) => el("tr", {}, ...row.map((cell) => el("td", {}, String(cell ?? "")))))));
            const denied = network.denied || [];
            const allowed = network.allowed || [];
            const omitted = network.omitted;
            return el("section", { id: "network" }, el("h2", {}, "Network"),
              definition([["policy", network.policy], ["refused", denied.reduce((sum, entry) => sum + entry.count, 0) + (omitted ? omitted.denied : 0)]]),
              denied.length ? table(["refused", "port", "count", "first", "reason"],
                denied.map((entry) => [entry.host, entry.port, entry.count, entry.firstAt, entry.reason])) : el("p", {}, "nothing refused"),
              allowed.length ? table(["reached", "port", "connections", "bytes out", "bytes in"],
                allowed.map((entry) => [entry.host, entry.port, entry.connections, entry.bytesOut, entry.bytesIn])) : el("p", {}, "nothing reached"));
          }

          // While it runs: a new status (queued → running → terminal) redraws the whole view; otherwise only waits.
          async function refreshDetail(id, shown, mine) {
            try {
              const body = await json("/internal/agent-result/" + encodeURIComponent(id));
              if (!current(mine)) return;
              if ((body.result || {}).status !== shown) return route();
              notice(null);
              timer = setTimeout(() => refreshDetail(id, shown, mine), 2000);
            } catch (error) {
              if (!current(mine)) return;
              if (error instanceof Unauthorized) return failed(error);
              notice("Refresh failed (" + error.message + "); retrying.");
              timer = setTimeout(() => refreshDetail(id, shown, mine), 2000);
            }
          }

          async function route() {
            stop();
            const mine = generation;
            if (!readToken()) return prompt();
            document.getElementById("forget").hidden = false;
            try {
              await summary();
              const match = location.pathname.match(/^\/ui\/requests\/(.+)$/);
              let id = null;
              if (match) { try { id = decodeURIComponent(match[1]); } catch (error) { id = match[1]; } }
              if (id !== null) await detail(id, mine); else await list(mine);
            } catch (error) { if (current(mine)) failed(error); }
          }

          document.getElementById("forget").addEventListener("click", () => { sessionStorage.removeItem(TOKEN_KEY); prompt(); });
          window.addEventListener("popstate", route);
          window.addEventListener("hashchange", () => { if (location.hash.startsWith("#token=")) route(); });
          route();
        })();
        """#
}
