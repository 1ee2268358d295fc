import AgentProcess
import DispatchTestSupport
import Dispatcher
import Execution
import Foundation
import NIOHTTP1
import Testing

/// The service as an attacker meets it: no way in without the token, nothing from a web page or a rebound DNS
/// name, no forged callbacks, nothing readable by others on disk.
@Suite(.serialized) struct SecurityTests {
    let dir = TempDir("security")

    func raw(_ server: ServerProcess, _ method: String, _ path: String, host: String?, headers: [String] = [], body: String = "") throws -> Int {
        var lines = ["\(method) \(path) HTTP/1.1"]
        if let host { lines.append("Host: \(host)") }
        lines += headers + ["Content-Length: \(body.utf8.count)", "Connection: close", "", body]
        return try RawHTTP.send(port: server.port, lines.joined(separator: "\r\n")).status
    }

    @Test func aTokenlessServeCreatesAPrivateTokenAndAdmitsOnlyItsHolders() async throws {
        let state = dir.child("tokenless")
        let server = ServerProcess(stateDir: state, token: nil)
        try await server.start()
        defer { server.stop() }
        let tokenFile = "\(state)/token"
        var info = stat()
        #expect(stat(tokenFile, &info) == 0)
        #expect(info.st_mode & 0o777 == 0o600, "token file mode \(String(info.st_mode & 0o777, radix: 8))")
        let token = try String(contentsOfFile: tokenFile, encoding: .utf8).trimmingCharacters(in: .whitespacesAndNewlines)
        #expect(token.count >= 64 && token.allSatisfy(\.isHexDigit), "at least 32 random bytes as hex")

        let body = try JSONSerialization.data(withJSONObject: ["requestId": "tl-1", "task": "fake:answer=ok", "tool": "codex"])
        #expect(try await server.send(.POST, "/internal/agent-dispatch", body: body, token: .some(nil)).status == 401)
        let plain = try raw(
            server,
            "POST",
            "/internal/agent-dispatch",
            host: "127.0.0.1:\(server.port)",
            headers: ["Authorization: Bearer \(token)", "Content-Type: text/plain"],
            body: String(decoding: body, as: UTF8.self)
        )
        #expect(plain == 415, "a text/plain POST (a web page's simple request) is refused")
        #expect(try await server.send(.GET, "/internal/agent-result/tl-1", token: token).status == 404, "nothing was recorded")
        #expect(try await server.send(.POST, "/internal/agent-dispatch", body: body, token: token).status == 202)

        // The operator CLI finds <state>/token by itself for a server on this machine.
        let status = try CommandRunner.run(
            TestPaths.dispatchBinary,
            ["await", "tl-1", "--json", "--server", "http://127.0.0.1:\(server.port)"],
            environment: ["DISPATCH_STATE_DIR": state]
        )
        #expect(status.exitCode == 0, "\(status.stderr)")
        #expect(status.stdout.contains("\"status\":\"completed\""))

        // A restart reuses the token.
        server.stop()
        try await server.start()
        #expect(try String(contentsOfFile: tokenFile, encoding: .utf8).trimmingCharacters(in: .whitespacesAndNewlines) == token)
        #expect(try await server.send(.GET, "/internal/agent-result/tl-1", token: token).status == 200)
    }

    @Test func aMissingTokenFileIsAUsageError() throws {
        let run = try CommandRunner.run(
            TestPaths.dispatchBinary,
            ["serve", "--port", "0", "--state-dir", dir.child("nofile"), "--token-file", dir.child("absent")]
        )
        #expect(run.exitCode == 2)
        #expect(run.stderr.contains("does not exist"), "\(run.stderr)")
    }

    @Test func aGuessableTokenIsRefused() throws {
        for token in ["short", "REPLACE_ME_WITH_64_HEX_CHARS_0123456789abcdef"] {
            let run = try CommandRunner.run(
                TestPaths.dispatchBinary,
                ["serve", "--port", "0", "--state-dir", dir.child("weak")],
                environment: ["DISPATCH_TOKEN": token]
            )
            #expect(run.exitCode == 2, "\(token): \(run.stderr)")
            #expect(run.stderr.contains("too weak") && !run.stderr.contains(token), "\(run.stderr)")
        }
    }

    /// CONTRACT §3's Host table, row by row, on every kind of route.
    @Test func aLoopbackListenerAnswersOnlyToItsOwnNames() async throws {
        let server = ServerProcess(stateDir: dir.child("hosts"), extraArguments: ["--allowed-host", "proxy.internal"])
        try await server.start()
        defer { server.stop() }
        let port = server.port
        let accepted = [
            "localhost", "localhost:\(port)", "LOCALHOST", "app.localhost", "a.b.localhost:1", "127.0.0.1", "127.0.0.1:\(port)", "127.1.2.3",
            "127.255.255.254:80", "[::1]", "[::1]:\(port)", "proxy.internal", "proxy.internal:8443",
        ]
        let refused = [
            "attacker.example", "attacker.example:\(port)", "127.evil.example", "127.0.0.1.nip.io", "localhost.evil.example", "evil-localhost",
            "128.0.0.1", "0.0.0.0", "127.0.0.1:", "127.0.0.1:99999999", "127.1", "[::2]", "[::1", "::1", "user@localhost", "",
            "proxy.internal.evil",
        ]
        for host in accepted {
            #expect(try raw(server, "GET", "/healthz", host: host) == 200, "Host \(host) must be served")
        }
        for host in refused {
            for path in ["/healthz", "/metrics", "/", "/internal/agent-dispatches"] {
                #expect(try raw(server, "GET", path, host: host) == 421, "Host \"\(host)\" on \(path) must get 421")
            }
        }
        #expect(try raw(server, "GET", "/healthz", host: nil) == 421, "a missing Host gets 421 too")
        let body = #"{"requestId":"rebound","task":"fake:answer=x","tool":"codex"}"#
        let rebound = try raw(
            server,
            "POST",
            "/internal/agent-dispatch",
            host: "attacker.example",
            headers: ["Authorization: Bearer test-token-0123456789abcdef0123456789abcdef", "Content-Type: application/json"],
            body: body
        )
        #expect(rebound == 421)
        #expect(try await server.send(.GET, "/internal/agent-result/rebound").status == 404, "nothing was recorded")
    }

    @Test func callbacksAreOnlyForTheirOwnK8sRequest() async throws {
        let server = ServerProcess(stateDir: dir.child("callbacks"))
        try await server.start()
        defer { server.stop() }
        let tokens = CallbackTokens(adminToken: "test-token-0123456789abcdef0123456789abcdef")
        _ = try await server.dispatch(["requestId": "host-run", "task": "fake:sleep=2 fake:answer=the-agents-own-answer", "tool": "codex"])
        let forged = try JSONSerialization.data(withJSONObject: [
            "requestId": "host-run", "state": "completed", "output": "forged", "backend": "k8s",
        ])
        let own = try await server.send(.POST, "/internal/agent-result", body: forged, token: tokens.token(for: "host-run"))
        #expect(own.status == 409, "a host-mode request takes no callback: \(own.text)")
        let admin = try await server.send(.POST, "/internal/agent-result", body: forged)
        #expect(admin.status == 409, "not even with the admin token: \(admin.text)")
        let other = try await server.send(.POST, "/internal/agent-result", body: forged, token: tokens.token(for: "another-request"))
        #expect(other.status == 401, "another request's callback token opens nothing")
        #expect(try await server.send(.POST, "/internal/agent-result", body: forged, token: .some(nil)).status == 401)
        #expect(try await server.send(.POST, "/internal/agent-result", body: Data("{".utf8), token: "cb1-00").status == 401)
        let callbackToken = tokens.token(for: "host-run")
        #expect(try await server.send(.GET, "/internal/agent-result/host-run", token: callbackToken).status == 401, "callback tokens read nothing")
        #expect(try await server.send(.POST, "/internal/agent-cancel/host-run", token: callbackToken).status == 401, "nor cancel")

        let result = try #require(try await server.send(.GET, "/internal/agent-await/host-run?timeoutMs=30000").json?["result"] as? [String: Any])
        #expect(result["status"] as? String == "completed")
        #expect(result["result"] as? String == "the-agents-own-answer", "the request ended with its agent's own result")
    }

    @Test func hostileFieldsAre400NamingTheFieldAndLeaveNothing() async throws {
        let server = ServerProcess(stateDir: dir.child("hostile"))
        try await server.start()
        defer { server.stop() }
        for (index, row) in HostileFields.table.enumerated() {
            var body: [String: Any] = ["requestId": "hostile-\(index)", "task": "fake:answer=x", "tool": "codex"]
            for (key, value) in row.fields { body[key] = value }
            let reply = try await server.dispatch(body)
            #expect(reply.status == 400, "\(row.name): \(reply.text)")
            #expect(reply.json?["field"] as? String == row.field, "\(row.name): \(reply.text)")
            let id = body["requestId"] as? String ?? ""
            if id.count <= 128, id.allSatisfy({ $0.isASCII && ($0.isLetter || $0.isNumber || $0 == "-") }) {
                #expect(try await server.send(.GET, "/internal/agent-result/\(id)").status == 404, "\(row.name): nothing recorded")
            }
            #expect(!reply.text.contains("S3cret"), "\(row.name): the secret is not echoed")
        }
    }

    /// A `cwd` inside the runner's own parts would bind them into the agent's view (a `read-only` work dir is bound on
    /// top of what hides them): 400 naming `cwd`, in either mode, through a symlink too, and nothing recorded.
    @Test func aWorkDirInsideTheRunnersHiddenPartsIsRefused() async throws {
        let state = dir.child("hidden-cwd")
        let server = ServerProcess(stateDir: state)
        try await server.start()
        defer { server.stop() }
        let link = dir.child("link-to-inbox")
        try? FileManager.default.createSymbolicLink(atPath: link, withDestinationPath: "\(state)/inbox")
        let cases: [(cwd: String, mode: String)] = [("\(state)/inbox", "host"), ("\(state)/inbox", "sandbox"), (state, "host"), (link, "host")]
        for (index, row) in cases.enumerated() {
            let id = "hidden-cwd-\(index)"
            let reply = try await server.dispatch([
                "requestId": id, "task": "fake:answer=x", "tool": "codex", "cwd": row.cwd, "executionMode": row.mode, "sandbox": "read-only",
            ])
            #expect(reply.status == 400 && reply.json?["field"] as? String == "cwd", "\(row): \(reply.text)")
            #expect(reply.text.contains("which agents must not see"), "\(reply.text)")
            #expect(try await server.send(.GET, "/internal/agent-result/\(id)").status == 404, "\(row): nothing recorded")
        }
        let run = try CommandRunner.run(
            TestPaths.dispatchBinary,
            [
                "run", "--tool", "codex", "--task", "fake:answer=x", "--cwd", dir.child("hidden-cwd-run/inbox"), "--state-dir",
                dir.child("hidden-cwd-run"),
            ],
            environment: ["DISPATCH_CODEX_BIN": TestPaths.fake("codex")]
        )
        #expect(run.exitCode == 2 && run.stderr.contains("invalid cwd"), "\(run.exitCode) \(run.stderr)")
    }

    @Test func nothingTheServiceWritesIsReadableByOthers() async throws {
        let state = dir.child("private")
        // A state dir left behind by an older version, readable by everyone.
        try FileManager.default.createDirectory(atPath: "\(state)/runs/old", withIntermediateDirectories: true)
        try Data("old".utf8).write(to: URL(fileURLWithPath: "\(state)/runs/old/attempt-1.stdout.log"))
        chmod(state, 0o755)
        chmod("\(state)/runs", 0o755)
        chmod("\(state)/runs/old/attempt-1.stdout.log", 0o644)
        let repo = dir.child("private-repo")
        _ = try GitFixture.makeRepo(at: repo, files: ["a.txt": "alpha\n"])
        let server = ServerProcess(stateDir: state)
        try await server.start()
        defer { server.stop() }
        _ = try await server.dispatch(["requestId": "p-host", "task": "fake:answer=x", "tool": "codex"])
        _ = try await server.dispatch([
            "requestId": "p-sandbox", "task": "fake:write=new.txt:x fake:answer=y", "tool": "codex", "executionMode": "sandbox", "cwd": repo,
        ])
        for id in ["p-host", "p-sandbox"] {
            let reply = try await server.send(.GET, "/internal/agent-await/\(id)?timeoutMs=30000")
            #expect((reply.json?["status"] as? String) == "completed", "\(reply.text)")
        }
        let loose = PermissionScan.looseEntries(under: state)
        #expect(loose.isEmpty, "group/other bits on: \(loose.prefix(10))")
        #expect(FileManager.default.fileExists(atPath: "\(state)/dispatch.sqlite"))
    }
}

/// Walks a state dir (not into sandbox checkouts) for entries with group or other permission bits.
enum PermissionScan {
    static func looseEntries(under root: String) -> [String] {
        var loose: [String] = []
        var pending = [root]
        while let directory = pending.popLast() {
            var info = stat()
            guard lstat(directory, &info) == 0 else { continue }
            if info.st_mode & 0o077 != 0 { loose.append("\(directory) \(String(info.st_mode & 0o777, radix: 8))") }
            let names = (try? FileManager.default.contentsOfDirectory(atPath: directory)) ?? []
            let isSandbox = names.contains("sandbox.json")
            for name in names {
                let path = "\(directory)/\(name)"
                guard lstat(path, &info) == 0 else { continue }
                if info.st_mode & S_IFMT == S_IFDIR {
                    if !(isSandbox && name == "repo") { pending.append(path) }
                } else if info.st_mode & S_IFMT == S_IFREG, info.st_mode & 0o077 != 0 {
                    loose.append("\(path) \(String(info.st_mode & 0o777, radix: 8))")
                }
            }
        }
        return loose
    }
}
