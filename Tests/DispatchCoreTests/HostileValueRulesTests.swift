import DispatchCore
import DispatchTestSupport
import Foundation
import Testing

@Suite struct HostileValueRulesTests {
    @Test func everyHostileRowIsRejectedNamingItsField() {
        for row in HostileFields.table {
            var body: [String: Any] = ["requestId": "r-1", "task": "t", "tool": "codex"]
            for (key, value) in row.fields { body[key] = value }
            let json = try! JSONSerialization.data(withJSONObject: body)
            do {
                _ = try RequestValidator.validate(json: json)
                Issue.record("\(row.name) was accepted")
            } catch {
                #expect(error.field == row.field, "\(row.name): \(error)")
                #expect(!error.description.contains("S3cret"), "\(row.name): the secret is not repeated")
            }
        }
    }

    @Test(arguments: [
        "abcd", "0123456789abcdef0123456789abcdef01234567", String(repeating: "a", count: 64), "HEAD", "HEAD~3", "HEAD^2", "HEAD~", "main",
        "refs/heads/feature/x-1", "v1.2.3", "release/2026.12", "origin/main~10000", "@x",
    ])
    func revisionsGitWouldTakeAreAccepted(value: String) {
        #expect(HostileValueRules.revisionProblem(value) == nil, "\(value)")
    }

    @Test(arguments: [
        "", "@", "HEAD@{1}", ":/msg", "HEAD^{/msg}", "HEAD:path", "a..b", "/x", "x/", "x.", "x//y", ".hidden", "a/.b", "x.lock", "a b",
        "a\\b", "a*", "a?", "a[", "HEAD~1~2", "HEAD~x", "HEAD~10001", "HEAD^{commit}", "-x", "~1",
    ])
    func revisionsWithOtherFormsAreRefused(value: String) {
        #expect(HostileValueRules.revisionProblem(value) != nil, "\(value)")
    }

    @Test func credentialsInURLsAreFound() {
        for url in [
            "https://bot:S3cret@git.example/r.git", "https://TOKEN@git.example/r.git", "http://a:b@h/x", "ssh://git:pw@h/r",
            "bot:S3cret@git.example:org/r.git",
        ] {
            #expect(HostileValueRules.urlHasCredentials(url), "\(url)")
        }
        for url in ["https://git.example/r.git", "ssh://git@h/r.git", "git@github.com:o/r.git", "/srv/repo", "https://h/p@q"] {
            #expect(!HostileValueRules.urlHasCredentials(url), "\(url)")
        }
    }

    @Test func loopbackIsDecidedOnTheParsedAddress() {
        for host in ["127.0.0.1", "127.8.9.10", "localhost", "app.localhost", "::1", "[::1]", "0:0:0:0:0:0:0:1"] {
            #expect(LoopbackAddress.isLoopback(host), "\(host)")
        }
        for host in ["127.evil.example", "127.0.0.1.nip.io", "0.0.0.0", "10.0.0.1", "::", "::2", "localhost.evil", "128.0.0.1", "127.1"] {
            #expect(!LoopbackAddress.isLoopback(host), "\(host)")
        }
        #expect(LoopbackAddress.isCertainlyLocal("127.0.0.1") && LoopbackAddress.isCertainlyLocal("::1"))
        #expect(!LoopbackAddress.isCertainlyLocal("app.localhost"), "a resolver may send *.localhost to DNS: no token goes there")
        #expect(LoopbackAddress.host(ofURL: "http://127.0.0.1:3111/x") == "127.0.0.1")
        #expect(LoopbackAddress.host(ofURL: "http://[::1]:3111") == "::1")
        #expect(LoopbackAddress.host(ofURL: "http://user@127.0.0.1/") == nil)
    }

    @Test func callbacksWithoutOptionalPartsAreAccepted() throws {
        for body in [
            #"{"requestId":"a","state":"completed","output":"x"}"#,
            #"{"requestId":"a","state":"completed","artifacts":{}}"#,
            #"{"requestId":"a","state":"failed","artifacts":{"patch":"p"},"error":"e","backend":"k8s"}"#,
        ] {
            let report = try SandboxExecutionResult.decodeCallback(Data(body.utf8))
            #expect(report.requestId == "a")
            #expect(report.artifacts.map(\.touchedFiles.isEmpty) ?? true)
        }
        #expect(throws: RequestValidationError.self) {
            try SandboxExecutionResult.decodeCallback(Data(#"{"requestId":"../x","state":"completed"}"#.utf8))
        }
        do {
            _ = try SandboxExecutionResult.decodeCallback(Data(#"{"requestId":"a"}"#.utf8))
        } catch {
            #expect(error.field == "state")
        }
    }
}
