import DispatchTestSupport
import Foundation
import Testing

/// The operator console (CONTRACT §9): the page and its headers, the patch route it reads, and the page itself in a
/// real headless Chromium (`canaries/console_browser.py`, Selenium).
@Suite(.serialized) struct ConsoleTests {
    let dir = TempDir("console")

    @Test func theConsoleIsOneSelfContainedPageThatNeedsNoTokenButShowsNoData() async throws {
        let server = ServerProcess(stateDir: dir.child("page"))
        try await server.start()
        defer { server.stop() }
        for path in ["/ui", "/ui/requests/some-id", "/ui/console.js", "/ui/console.css"] {
            let reply = try await server.send(.GET, path, token: .some(nil))
            #expect(reply.status == 200, "\(path): \(reply.text)")
            #expect(!reply.text.contains("http://") && !reply.text.contains("https://"), "\(path) references no other host")
        }
        let page = try await server.send(.GET, "/ui", token: .some(nil))
        #expect(page.text.contains("<script src=\"/ui/console.js\""))
        #expect(!page.text.contains("onclick") && !page.text.contains("<script>"), "no inline code")
        let script = try await server.send(.GET, "/ui/console.js", token: .some(nil))
        #expect(!script.text.contains("innerHTML") && !script.text.contains("insertAdjacentHTML") && !script.text.contains("eval("))
        let raw = try RawHTTP.exchange(port: server.port, "GET /ui HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
        let headers = raw.head.lowercased()
        #expect(headers.contains("content-type: text/html"), "\(raw.head)")
        #expect(headers.contains("content-security-policy: default-src 'none'; script-src 'self'"), "\(raw.head)")
        #expect(headers.contains("x-content-type-options: nosniff"))
        let rebound = try RawHTTP.send(port: server.port, "GET /ui HTTP/1.1\r\nHost: attacker.example\r\nConnection: close\r\n\r\n")
        #expect(rebound.status == 421, "the Host check holds for the page too")
        #expect(try await server.send(.GET, "/internal/agent-dispatches", token: .some(nil)).status == 401, "its data needs the token")
    }

    @Test func thePatchRouteStreamsASandboxPatchAndAnswers404Otherwise() async throws {
        let repo = dir.child("patch-repo")
        _ = try GitFixture.makeRepo(at: repo, files: ["README.md": "base\n"])
        let server = ServerProcess(stateDir: dir.child("patch"))
        try await server.start()
        defer { server.stop() }
        _ = try await server.dispatch([
            "requestId": "with-patch", "executionMode": "sandbox", "cwd": repo, "tool": "codex",
            "task": "fake:write=notes.txt:patched-line fake:answer=ok",
        ])
        _ = try await server.dispatch(["requestId": "host-run", "task": "fake:answer=ok", "tool": "codex"])
        for id in ["with-patch", "host-run"] { _ = try await server.send(.GET, "/internal/agent-await/\(id)?timeoutMs=30000") }
        let patch = try await server.send(.GET, "/internal/agent-patch/with-patch")
        #expect(patch.status == 200)
        #expect(patch.text.contains("diff --git a/notes.txt b/notes.txt") && patch.text.contains("+patched-line"), "\(patch.text)")
        #expect(try await server.send(.GET, "/internal/agent-patch/host-run").status == 404)
        // The console reads a log's tail, not the whole file.
        let whole = try await server.send(.GET, "/internal/agent-logs/host-run")
        let tail = try await server.send(.GET, "/internal/agent-logs/host-run?tail=10")
        #expect(whole.text.utf8.count > 10 && tail.text == String(decoding: Array(whole.text.utf8.suffix(10)), as: UTF8.self), "\(tail.text)")
        #expect(try await server.send(.GET, "/internal/agent-patch/unknown-id").status == 404)
        #expect(try await server.send(.GET, "/internal/agent-patch/with-patch", token: .some(nil)).status == 401)

        // A stored patch path that names another file (as a forged Job callback could) is not served: not one outside
        // the sandbox root, not a symlink inside it.
        let secret = dir.child("patch-secret")
        try "runner-secret".write(toFile: secret, atomically: true, encoding: .utf8)
        let link = "\(server.stateDir)/sandboxes/planted.patch"
        try FileManager.default.createSymbolicLink(atPath: link, withDestinationPath: secret)
        for planted in [secret, link] {
            try Self.setPatchPath(planted, of: "with-patch", stateDir: server.stateDir)
            let reply = try await server.send(.GET, "/internal/agent-patch/with-patch")
            #expect(reply.status == 404 && !reply.text.contains("runner-secret"), "\(planted): \(reply.text)")
        }
    }

    /// Rewrites a stored result's `artifacts.patchPath` behind the store's back (what a forged callback would record),
    /// and drops the inline patch the route would fall back to.
    static func setPatchPath(_ path: String, of id: String, stateDir: String) throws {
        let script = """
            import json, sqlite3, sys
            db = sqlite3.connect(sys.argv[1])
            row = db.execute("select resultJSON from dispatch where requestId = ?", (sys.argv[2],)).fetchone()
            result = json.loads(row[0]); result["artifacts"]["patchPath"] = sys.argv[3]; result["artifacts"].pop("patch", None)
            db.execute("update dispatch set resultJSON = ? where requestId = ?", (json.dumps(result), sys.argv[2])); db.commit()
            """
        let run = try CommandRunner.run("/usr/bin/env", ["python3", "-c", script, "\(stateDir)/dispatch.sqlite", id, path])
        #expect(run.exitCode == 0, "\(run.stderr)")
    }

    /// Whether Selenium and Chromium are here (`make test` installs both and requires them).
    static var browserAvailable: Bool {
        FileManager.default.isExecutableFile(atPath: "/usr/bin/chromium") && FileManager.default.isExecutableFile(atPath: "/usr/bin/chromedriver")
            && ((try? CommandRunner.run("/usr/bin/env", ["python3", "-c", "import selenium"]))?.exitCode == 0)
    }

    @Test func theConsoleWorksInARealBrowser() async throws {
        guard Self.browserAvailable else {
            #expect(ProcessInfo.processInfo.environment["DISPATCH_BROWSER_TESTS"] != "required", "chromium, chromedriver and selenium are required")
            return
        }
        let repo = dir.child("browser-repo")
        _ = try GitFixture.makeRepo(at: repo, files: ["README.md": "base\n"])
        // Two requests stay running while the others run.
        let server = ServerProcess(stateDir: dir.child("browser"), maxConcurrent: 4)
        try await server.start()
        defer { server.stop() }
        let release = dir.child("follow-release")
        try await Self.dispatchWhatTheBrowserReads(to: server, repo: repo, release: release)
        let screenshots = ProcessInfo.processInfo.environment["DISPATCH_CONSOLE_SCREENSHOTS"] ?? dir.child("screenshots")
        try FileManager.default.createDirectory(atPath: screenshots, withIntermediateDirectories: true)
        let run = try CommandRunner.run(
            "/usr/bin/env",
            [
                "python3", "\(TestPaths.packageRoot)/canaries/console_browser.py", "--url", "http://127.0.0.1:\(server.port)",
                "--token", server.token ?? "", "--completed", "ui-sandbox", "--running", "ui:running", "--sandbox", "ui-sandbox",
                "--xss", "ui-xss", "--answer", "the-sandbox-answer", "--log-line", "thread.started", "--changed-file", "changed.txt",
                "--new-content", "the-new-content", "--failed", "ui-failed", "--page-prefix", "ui-page-", "--oldest", "ui-page-10",
                "--stderr-line", "log-line-for-the-console", "--binary-file", "blob.bin", "--verification-command",
                "echo verification-says-ok", "--verification-output", "verification-says-ok", "--follow", "ui-follow",
                "--follow-release", release, "--follow-line", "the-followed-line", "--screenshots", screenshots, "--denied",
                "169.254.169.254", "--usage-request", "ui-usage", "--tokens", "1,234 (234 cached) in / 56 (7 reasoning) out", "--cost",
                "$0.0421",
            ]
        )
        #expect(run.exitCode == 0, "\(run.stdout)\n\(run.stderr)")
        let report = try #require(try JSONSerialization.jsonObject(with: Data(run.stdout.utf8)) as? [String: Any], "\(run.stderr)")
        let checks = report["checks"] as? [[String: Any]] ?? []
        #expect(checks.count >= 34, "\(checks)")
        for check in checks { #expect(check["ok"] as? Bool == true, "\(check)") }
    }

    /// The requests `console_browser.py` reads: more under one prefix than a page of the list holds (the oldest), a
    /// sandbox request changing a text and a binary file and running a verification command, one whose agent prints
    /// HTML, a failed one, one that hangs, and one that stays running until the file `release` exists.
    static func dispatchWhatTheBrowserReads(to server: ServerProcess, repo: String, release: String) async throws {
        for index in 10..<62 { _ = try await server.dispatch(["requestId": "ui-page-\(index)", "task": "fake:answer=ok", "tool": "codex"]) }
        _ = try await server.dispatch([
            "requestId": "ui-sandbox", "executionMode": "sandbox", "cwd": repo, "tool": "codex",
            "verificationCommands": ["echo verification-says-ok"],
            "task":
                "fake:stderr=log-line-for-the-console fake:write=changed.txt:the-new-content fake:binary=blob.bin "
                + "fake:write=hostile.html:<script>window.__pwned=true</script> fake:fetch=http://169.254.169.254/latest/meta-data/ "
                + "fake:answer=the-sandbox-answer",
        ])
        _ = try await server.dispatch([
            "requestId": "ui-xss", "tool": "codex",
            "task":
                "fake:stderr=<script>window.__pwned=true</script> fake:answer=<script>window.__pwned=true;document.title='pwned'</script><img/src=x/onerror=window.__pwned=true>",
        ])
        _ = try await server.dispatch(["requestId": "ui-failed", "task": "fake:exit=3", "tool": "codex"])
        _ = try await server.dispatch(["requestId": "ui-usage", "task": "fake:usage=1234,234,56,7,0.0421 fake:answer=counted", "tool": "claude"])
        // A `:` in the id: the browser sends it encoded (`ui%3Arunning`), the routes decode it.
        _ = try await server.dispatch(["requestId": "ui:running", "task": "fake:hang", "tool": "codex"])
        _ = try await server.dispatch([
            "requestId": "ui-follow", "tool": "codex",
            "task": "fake:stderr=follow-started fake:wait-for=\(release) fake:stderr=the-followed-line fake:sleep=5 fake:answer=followed",
        ])
        for id in ["ui-sandbox", "ui-xss", "ui-failed", "ui-usage"] { _ = try await server.send(.GET, "/internal/agent-await/\(id)?timeoutMs=30000") }
    }
}
