import AgentProcess
import DispatchTestSupport
import Foundation
import Testing

/// CONTRACT §10 through the real `dispatch`: an isolated agent's network is its own loopback, left only through the
/// egress proxy. Its "internet" here is site servers on the machine's loopback: one the operator lets agents reach
/// (`DISPATCH_EGRESS_ALLOW_PRIVATE`), one it does not — listening, so that a refusal is the policy's, not a closed port.
@Suite(.serialized, .enabled(if: Bubblewrap.locate() != nil, "bubblewrap is not installed (make deps installs it)"))
struct EgressCLITests {
    let dir = TempDir("egress")
    let allowed: SiteServer
    let other: SiteServer

    init() throws {
        let site = dir.child("site")
        allowed = try SiteServer("allowed", serving: site, in: dir)
        other = try SiteServer("other", serving: dir.child("other-site"), in: dir)
        try "hello from the site\n".write(toFile: "\(site)/hello.txt", atomically: true, encoding: .utf8)
        // A repository git clones over its dumb HTTP protocol: plain GETs, through the proxy like any download.
        let source = dir.child("source")
        try GitFixture.makeRepo(at: source, files: ["README.md": "cloned through the proxy\n"])
        _ = try CommandRunner.run("/usr/bin/git", ["clone", "-q", "--bare", source, "\(site)/repo.git"])
        _ = try CommandRunner.run("/usr/bin/git", ["-C", "\(site)/repo.git", "update-server-info"])
    }

    func environment(_ isolation: String = "bwrap", allow: String? = nil) -> [String: String] {
        var environment = [
            "DISPATCH_STATE_DIR": dir.child("state-\(isolation)"), "DISPATCH_CLAUDE_BIN": TestPaths.fake("claude"),
            "DISPATCH_ISOLATION": isolation, "DISPATCH_KILL_GRACE_MS": "500",
            "DISPATCH_EGRESS_ALLOW_PRIVATE": "127.0.0.1:\(allowed.port)",
        ]
        environment["DISPATCH_EGRESS_ALLOW"] = allow
        // Without isolation a root runner's agent is root, and Claude Code then needs IS_SANDBOX=1 passed through.
        if isolation == "none" { (environment["IS_SANDBOX"], environment["DISPATCH_AGENT_ENV"]) = ("1", "IS_SANDBOX") }
        return environment
    }

    /// `dispatch run` of a request with `fields` in a new checkout: the result (or nil) and the command's outcome.
    func dispatch(
        _ fields: [String: Any],
        isolation: String = "bwrap",
        allow: String? = nil
    ) throws -> (result: [String: Any]?, run: CommandResult) {
        let repo = dir.child("repo-\(UUID().uuidString.prefix(8))")
        try GitFixture.makeRepo(at: repo, files: ["a.txt": "alpha\n"])
        if geteuid() == 0, fields["executionMode"] as? String == "host" {
            // A root runner runs a host-mode agent as its work dir's owner.
            _ = try CommandRunner.run("/bin/chown", ["-R", "60996:60996", repo])
        }
        var body: [String: Any] = ["requestId": "egress-\(UUID().uuidString.prefix(12))", "tool": "claude", "cwd": repo, "timeout": 90]
        body["executionMode"] = "sandbox"
        body.merge(fields) { $1 }
        let request = dir.child("request-\(UUID().uuidString.prefix(8)).json")
        try JSONSerialization.data(withJSONObject: body).write(to: URL(fileURLWithPath: request))
        let run = try CommandRunner.run(
            TestPaths.dispatchBinary,
            ["run", "--json", "--request", request],
            environment: environment(isolation, allow: allow),
            cwd: repo
        )
        let result = try? JSONSerialization.jsonObject(with: Data(run.stdout.utf8)) as? [String: Any]
        return (result, run)
    }

    static func stderr(_ result: [String: Any]) -> String { (result["logs"] as? [String: Any])?["stderr"] as? String ?? "" }

    static func network(_ result: [String: Any]) -> [String: Any] { result["network"] as? [String: Any] ?? [:] }

    /// `host:port` → the reason of each denied destination.
    static func denied(_ result: [String: Any]) -> [String: String] {
        var denied: [String: String] = [:]
        for entry in network(result)["denied"] as? [[String: Any]] ?? [] {
            denied["\(entry["host"] ?? ""):\(entry["port"] ?? "")"] = entry["reason"] as? String
        }
        return denied
    }

    /// This machine's first non-loopback IPv4 address, if it has one.
    static func ownAddress() -> String? {
        let out = (try? CommandRunner.run("/bin/hostname", ["-I"]))?.stdout ?? ""
        return out.split(separator: " ").map(String.init).first { $0.contains(".") && !$0.hasPrefix("127.") }
    }

    @Test func aSandboxedAgentReachesWhatIsAllowedAndNothingElse() throws {
        let site = allowed.url
        let own = Self.ownAddress()
        let task =
            [
                "fake:fetch=\(site)/hello.txt", "fake:curl=\(site)/hello.txt", "fake:curl-tunnel=\(site)/hello.txt",
                "fake:clone=\(site)/repo.git", "fake:connect=127.0.0.1:\(allowed.port)", "fake:fetch=\(other.url)/",
                "fake:fetch=http://169.254.169.254/latest/meta-data/", "fake:fetch=http://localhost:\(other.port)/",
                // The host's daemons' sockets (a resolver would look names up, and send them out, for the agent).
                "fake:glob=/run/*",
            ] + (own.map { ["fake:fetch=http://\($0):\(other.port)/"] } ?? [])
        let (result, run) = try dispatch(["task": task.joined(separator: " ")], allow: "localhost" + (own.map { ",\($0)" } ?? ""))
        let done = try #require(result, "\(run.stderr)")
        #expect(done["status"] as? String == "completed", "\(done["error"] ?? "")")
        let stderr = Self.stderr(done)
        #expect(stderr.contains("fetch \(site)/hello.txt: 200 20"), "\(stderr)")
        #expect(stderr.contains("curl \(site)/hello.txt: 200"), "\(stderr)")
        #expect(stderr.contains("curl-tunnel \(site)/hello.txt: 200"), "\(stderr)")
        #expect(stderr.contains("clone \(site)/repo.git ok"), "\(stderr)")
        // Its loopback is its own: the machine's listener is not there.
        #expect(stderr.contains("connect 127.0.0.1:\(allowed.port) failed"), "\(stderr)")
        #expect(stderr.contains("fetch \(other.url)/: failed (HTTP Error 403"), "\(stderr)")
        #expect(stderr.contains("glob 0"), "the agent sees the host's /run: \(stderr)")
        let denied = Self.denied(done)
        #expect(denied["127.0.0.1:\(other.port)"] == "not in DISPATCH_EGRESS_ALLOW", "\(denied)")
        #expect(denied["169.254.169.254:80"] == "not in DISPATCH_EGRESS_ALLOW", "\(denied)")
        // Allowed by name, refused by what the name resolves to.
        #expect(denied["localhost:\(other.port)"] == "resolves to 127.0.0.1 (loopback)", "\(denied)")
        if let own { #expect(denied["\(own):\(other.port)"]?.hasPrefix("resolves to \(own)") == true, "\(denied)") }
        #expect(other.requests.isEmpty, "a refused destination was reached: \(other.requests)")
        let network = Self.network(done)
        #expect(network["policy"] as? String == "operator")
        let reached = try #require((network["allowed"] as? [[String: Any]])?.first { $0["port"] as? Int == allowed.port })
        #expect((reached["connections"] as? Int ?? 0) >= 4, "\(reached)")
        #expect((reached["bytesIn"] as? Int ?? 0) > 0 && (reached["bytesOut"] as? Int ?? 0) > 0, "\(reached)")
        // The forwarded requests reached the site with its own Host, in origin form.
        #expect(allowed.requests.contains("GET /hello.txt host=127.0.0.1:\(allowed.port)"), "\(allowed.requests)")
    }

    @Test func aHostModeAgentHasTheProxyToo() throws {
        let task = "fake:fetch=\(allowed.url)/hello.txt fake:connect=127.0.0.1:\(allowed.port) fake:fetch=\(other.url)/"
        let (result, run) = try dispatch(["task": task, "executionMode": "host"])
        let done = try #require(result, "\(run.stderr)")
        #expect(done["status"] as? String == "completed", "\(done["error"] ?? "")")
        let stderr = Self.stderr(done)
        #expect(stderr.contains("fetch \(allowed.url)/hello.txt: 200"), "\(stderr)")
        #expect(stderr.contains("connect 127.0.0.1:\(allowed.port) failed"), "\(stderr)")
        #expect(Self.denied(done)["127.0.0.1:\(other.port)"] != nil)
    }

    @Test func networkNoneReachesNothingAndAFailedRunSaysWhatWasRefused() throws {
        let (result, run) = try dispatch(["task": "fake:fetch=\(allowed.url)/hello.txt fake:exit=3", "network": "none"])
        let done = try #require(result, "\(run.stderr)")
        #expect(done["status"] as? String == "failed")
        #expect(Self.stderr(done).contains("fetch \(allowed.url)/hello.txt: failed (HTTP Error 403"), "\(Self.stderr(done))")
        #expect(Self.network(done)["policy"] as? String == "none")
        #expect(Self.denied(done)["127.0.0.1:\(allowed.port)"] == "the request allows no network")
        let error = done["error"] as? String ?? ""
        #expect(error.hasSuffix("(1 connection refused by the egress policy: 127.0.0.1:\(allowed.port))"), "\(error)")
        #expect(allowed.requests.isEmpty)
    }

    @Test func aRequestNarrowsTheOperatorsListAndCannotWidenIt() throws {
        let narrowed = try dispatch(
            ["task": "fake:fetch=\(allowed.url)/hello.txt fake:fetch=http://localhost:\(allowed.port)/", "network": ["allow": ["localhost"]]],
            allow: "localhost,api.openai.com"
        )
        let done = try #require(narrowed.result, "\(narrowed.run.stderr)")
        #expect(Self.network(done)["policy"] as? String == "request")
        // 127.0.0.1 is reachable for the operator, but the request left it out.
        #expect(Self.denied(done)["127.0.0.1:\(allowed.port)"] == "not in the request's network.allow", "\(Self.denied(done))")
        let id = "egress-widen-\(UUID().uuidString.prefix(8))"
        let widened = try dispatch(["requestId": id, "task": "fake:answer=x", "network": ["allow": ["example.org"]]])
        #expect(widened.run.exitCode == 2, "\(widened.run.stdout) \(widened.run.stderr)")
        #expect(widened.run.stderr.contains("network"), "\(widened.run.stderr)")
        #expect(!FileManager.default.fileExists(atPath: "\(dir.child("state-bwrap"))/inbox/\(id).json"), "a refused request left a result")
        let status = try CommandRunner.run(TestPaths.dispatchBinary, ["status", id], environment: environment())
        #expect(status.exitCode != 0, "a refused request was recorded: \(status.stdout)")
    }

    @Test func withoutIsolationNothingChangesAndNoRestrictionIsPromised() throws {
        let (result, run) = try dispatch(["task": "fake:connect=127.0.0.1:\(allowed.port)"], isolation: "none")
        let done = try #require(result, "\(run.stderr)")
        #expect(Self.stderr(done).contains("connect 127.0.0.1:\(allowed.port) ok"), "\(Self.stderr(done))")
        #expect(done["network"] == nil)
        let refused = try dispatch(["task": "fake:answer=x", "network": "none"], isolation: "none")
        #expect(refused.run.exitCode == 2)
        #expect(refused.run.stderr.contains("network") && refused.run.stderr.contains("no egress control"), "\(refused.run.stderr)")
    }

    /// Through `serve`: `GET /` says `proxy`, an agent cannot reach serve's own port (directly: its loopback is its
    /// own; through the proxy: refused), `dispatch canary escape --server` holds every network check, a refusal is
    /// counted in `/metrics`, and a request asking for more than the operator allows is 400 with nothing recorded.
    @Test func throughServeTheRunnersOwnPortIsOutOfReachAndRefusalsAreCounted() async throws {
        let state = dir.child("state-serve")
        let server = ServerProcess(stateDir: state, environment: environment().merging(["DISPATCH_STATE_DIR": state]) { $1 })
        try await server.start()
        defer { server.stop() }
        let info = try await server.send(.GET, "/")
        #expect(info.json?["egress"] as? String == "proxy", "\(info.text)")
        let repo = dir.child("serve-repo")
        try GitFixture.makeRepo(at: repo, files: ["a.txt": "alpha\n"])
        let task = "fake:connect=127.0.0.1:\(server.port) fake:fetch=http://127.0.0.1:\(server.port)/ fake:fetch=\(allowed.url)/hello.txt"
        let body: [String: Any] = ["requestId": "egress-serve-1", "tool": "claude", "task": task, "cwd": repo, "executionMode": "sandbox"]
        #expect(try await server.dispatch(body).status == 202)
        var done: [String: Any] = [:]
        for _ in 0..<300 {
            done = try await server.send(.GET, "/internal/agent-result/egress-serve-1").json ?? [:]
            if let status = done["status"] as? String, status != "running", status != "queued" { break }
            try await Task.sleep(for: .milliseconds(100))
        }
        #expect(done["status"] as? String == "completed", "\(done)")
        let stderr = try await server.send(.GET, "/internal/agent-logs/egress-serve-1?stream=stderr").text
        #expect(stderr.contains("connect 127.0.0.1:\(server.port) failed"), "\(stderr)")
        #expect(stderr.contains("fetch http://127.0.0.1:\(server.port)/: failed (HTTP Error 403"), "\(stderr)")
        #expect(stderr.contains("fetch \(allowed.url)/hello.txt: 200"), "\(stderr)")
        let metrics = try await server.send(.GET, "/metrics").text
        #expect(metrics.contains("dispatch_egress_denied_total{tool=\"claude\"} 1"), "\(metrics)")

        var widened = body
        (widened["requestId"], widened["network"]) = ("egress-serve-2", ["allow": ["example.org"]])
        let refused = try await server.dispatch(widened)
        #expect(refused.status == 400 && refused.text.contains("network"), "\(refused.text)")
        #expect(try await server.send(.GET, "/internal/agent-result/egress-serve-2").status == 404)

        let canary = try CommandRunner.run(
            TestPaths.dispatchBinary,
            ["canary", "escape", "--server", "http://127.0.0.1:\(server.port)"],
            environment: ["DISPATCH_STATE_DIR": state, "DISPATCH_TOKEN": server.token ?? ""]
        )
        let report = try #require(try JSONSerialization.jsonObject(with: Data(canary.stdout.utf8)) as? [String: Any], "\(canary.stderr)")
        let checks = report["checks"] as? [[String: Any]] ?? []
        for name in ["egress-allowed-reached", "egress-own-loopback", "egress-outside-refused", "egress-metadata-refused"] {
            #expect(checks.first { $0["name"] as? String == name }?["ok"] as? Bool == true, "\(name): \(checks)")
        }
        let runnerPort = checks.first { $0["name"] as? String == "egress-runner-port-refused" }
        #expect(runnerPort?["ok"] as? Bool == true && (runnerPort?["detail"] as? String)?.hasSuffix("failed/403") == true, "\(checks)")
        #expect(canary.exitCode == 0, "\(canary.stdout)")
    }

    /// A run handed off between two `serve`s keeps its way out: the agent's namespace holds the run's egress directory,
    /// where the next `serve` listens again, and the result counts what the agent did under both.
    @Test func aRunHandedOffKeepsItsWayOutAndItsReport() async throws {
        let state = dir.child("state-handoff")
        let release = dir.child("handoff-release")
        let environment = environment().merging(["DISPATCH_STATE_DIR": state]) { $1 }
        let first = ServerProcess(stateDir: state, environment: environment, extraArguments: ["--on-shutdown", "handoff"])
        try await first.start()
        let repo = dir.child("handoff-repo")
        try GitFixture.makeRepo(at: repo, files: ["a.txt": "alpha\n"])
        // Host mode: the release file is in the test's temp dir, which a sandbox's private /tmp would not show.
        if geteuid() == 0 { _ = try CommandRunner.run("/bin/chown", ["-R", "60996:60996", repo]) }
        let task =
            "fake:fetch=\(other.url)/ fake:fetch=\(allowed.url)/hello.txt fake:wait-for=\(release) fake:fetch=\(allowed.url)/hello.txt "
            + "fake:answer=handed-off"
        let body: [String: Any] = ["requestId": "egress-handoff", "tool": "claude", "task": task, "cwd": repo, "executionMode": "host"]
        #expect(try await first.dispatch(body).status == 202)
        #expect(await eventually(timeout: .seconds(30)) { self.allowed.requests.count == 1 }, "\(allowed.requests)")
        #expect(first.stop(SIGTERM)?.exitCode == 0)
        let second = ServerProcess(stateDir: state, environment: environment)
        try await second.start()
        defer { second.stop() }
        _ = FileManager.default.createFile(atPath: release, contents: Data())
        var done: [String: Any] = [:]
        for _ in 0..<600 {
            done = try await second.send(.GET, "/internal/agent-result/egress-handoff").json ?? [:]
            if let status = done["status"] as? String, status != "running", status != "queued" { break }
            try await Task.sleep(for: .milliseconds(100))
        }
        done = done["result"] as? [String: Any] ?? [:]
        #expect(done["status"] as? String == "completed", "\(done)")
        #expect(allowed.requests.count == 2, "the adopted agent reached the site again: \(allowed.requests)")
        let reached = (Self.network(done)["allowed"] as? [[String: Any]])?.first { $0["port"] as? Int == allowed.port }
        #expect(reached?["connections"] as? Int == 2, "both serves' connections counted: \(Self.network(done))")
        #expect(Self.denied(done)["127.0.0.1:\(other.port)"] != nil, "the refusal before the handoff is kept: \(Self.network(done))")
    }
}
