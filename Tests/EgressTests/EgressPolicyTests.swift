import DispatchCore
import DispatchTestSupport
import Egress
import Foundation
import Testing

@Suite struct EgressPolicyTests {
    @Test func rulesParseAndMatchByNameAndPort() throws {
        let list = try EgressAllowlist.parse("api.openai.com, *.github.com:443, 10.1.2.3, [::1]:8080", variable: "X")
        #expect(list.allows(host: "api.openai.com", port: 443))
        #expect(list.allows(host: "codeload.github.com", port: 443))
        #expect(!list.allows(host: "github.com", port: 443))
        #expect(!list.allows(host: "codeload.github.com", port: 80))
        #expect(!list.allows(host: "evilgithub.com", port: 443))
        #expect(list.allows(host: "::1", port: 8080))
        #expect(throws: EgressConfigurationError.self) { try EgressAllowlist.parse("ok.com, bad host", variable: "DISPATCH_EGRESS_ALLOW") }
        #expect(EgressRule("x.com:0") == nil)
        #expect(EgressRule("a.*.com") == nil)
        #expect(EgressRule("*")?.hosts == .any)
    }

    @Test func addressesAreJudgedOnWhatTheyAre() throws {
        for (text, restriction) in [
            ("127.0.0.1", "loopback"), ("169.254.169.254", "link-local"), ("10.0.0.1", "private"), ("172.20.1.1", "private"),
            ("192.168.1.1", "private"), ("100.64.0.1", "private"), ("224.0.0.1", "multicast"), ("0.0.0.0", "unspecified"),
            ("::1", "loopback"), ("fe80::1", "link-local"), ("fd00::1", "private"), ("ff02::1", "multicast"),
            ("::ffff:127.0.0.1", "loopback"), ("::ffff:169.254.169.254", "link-local"), ("64:ff9b::a9fe:a9fe", "link-local"),
            ("2002:7f00:1::", "loopback"),
        ] {
            #expect(IPAddress(text)?.restriction == restriction, "\(text)")
        }
        #expect(IPAddress("93.184.216.34")?.restriction == nil)
        #expect(IPAddress("2606:4700::1111")?.restriction == nil)
        #expect(IPAddress("0x7f.1") == nil)
        #expect(IPAddress("2130706433") == nil)
    }

    @Test func privateAllowancesLiftTheAddressCheckOnly() throws {
        let settings = try EgressSettings(environment: [
            "DISPATCH_EGRESS_ALLOW": "stub.test", "DISPATCH_EGRESS_ALLOW_PRIVATE": "127.0.0.1:4000,10.0.0.0/8",
        ])
        let policy = settings.policy(for: nil, repoHost: "git.example.com")
        let loopback = IPAddress("127.0.0.1")!
        #expect(policy.refusal(host: "stub.test", port: 4000) == nil)
        #expect(policy.refusal(host: "git.example.com", port: 443) == nil)
        #expect(policy.refusal(host: "other.test", port: 443) != nil)
        // An address the operator lets agents reach is allowed by name, on its port only.
        #expect(policy.refusal(host: "127.0.0.1", port: 4000) == nil)
        #expect(policy.refusal(host: "127.0.0.1", port: 4001) != nil)
        #expect(policy.refusal(address: loopback, port: 4000, own: []) == nil)
        #expect(policy.refusal(address: loopback, port: 22, own: []) == "resolves to 127.0.0.1 (loopback)")
        #expect(policy.refusal(address: IPAddress("10.9.8.7")!, port: 1, own: []) == nil)
        let own = IPAddress("93.184.216.34")!
        #expect(policy.refusal(address: own, port: 443, own: [own]) == "resolves to 93.184.216.34 (this machine)")
    }

    /// An allowance of all of loopback (as tests give one) never opens serve's own port, on any of this machine's
    /// addresses; another machine's address on that port is not the runner's.
    @Test func theRunnersOwnPortIsRefusedWhateverTheAllowances() throws {
        let settings = try EgressSettings(environment: ["DISPATCH_EGRESS_ALLOW": "*", "DISPATCH_EGRESS_ALLOW_PRIVATE": "127.0.0.0/8,10.0.0.0/8"])
        var policy = settings.policy(for: nil, repoHost: nil)
        policy.runnerPort = 8787
        let own = IPAddress("10.1.2.3")!
        #expect(policy.refusal(address: IPAddress("127.0.0.1")!, port: 8787, own: [own]) == "the runner's own port")
        #expect(policy.refusal(address: IPAddress("::ffff:127.0.0.1")!, port: 8787, own: [own]) == "the runner's own port")
        #expect(policy.refusal(address: own, port: 8787, own: [own]) == "the runner's own port")
        #expect(policy.refusal(address: IPAddress("127.0.0.1")!, port: 8788, own: [own]) == nil)
        #expect(policy.refusal(address: IPAddress("10.9.9.9")!, port: 8787, own: [own]) == nil)
    }

    /// The `origin` of the operator's checkout a sandbox is made from joins the run's policy: found from a directory
    /// inside it, through a `.git` file (a worktree) too.
    @Test func theOriginHostIsReadFromTheCheckoutsConfig() throws {
        let dir = TempDir("origin")
        let repo = dir.child("repo")
        try FileManager.default.createDirectory(atPath: "\(repo)/.git", withIntermediateDirectories: true)
        try FileManager.default.createDirectory(atPath: "\(repo)/sub/dir", withIntermediateDirectories: true)
        let config =
            "[core]\n\tbare = false\n[remote \"upstream\"]\n\turl = https://elsewhere.example/x\n[remote \"origin\"]\n\turl = git@GitHub.com:org/repo.git\n"
        try config.write(toFile: "\(repo)/.git/config", atomically: true, encoding: .utf8)
        #expect(EgressService.originHost(ofRepositoryAt: "\(repo)/sub/dir") == "github.com")
        let worktree = dir.child("worktree")
        try FileManager.default.createDirectory(atPath: "\(repo)/.git/worktrees/w", withIntermediateDirectories: true)
        try "../..\n".write(toFile: "\(repo)/.git/worktrees/w/commondir", atomically: true, encoding: .utf8)
        try FileManager.default.createDirectory(atPath: worktree, withIntermediateDirectories: true)
        try "gitdir: \(repo)/.git/worktrees/w\n".write(toFile: "\(worktree)/.git", atomically: true, encoding: .utf8)
        #expect(EgressService.originHost(ofRepositoryAt: worktree) == "github.com")
        #expect(EgressService.repositoryHost("https://user@git.example.org:8443/a.git") == "git.example.org")
        #expect(EgressService.repositoryHost("/srv/repo") == nil)
        #expect(EgressService.originHost(ofRepositoryAt: dir.child("nothing")) == nil)
    }

    @Test func aRequestMayOnlyNarrow() throws {
        let settings = try EgressSettings(environment: [
            "DISPATCH_EGRESS_ALLOW": "*.github.com,pypi.org", "DISPATCH_EGRESS_ALLOW_PRIVATE": "127.0.0.1:4000",
        ])
        #expect(settings.refusal(of: .allow([EgressRule("api.github.com:443")!, EgressRule("pypi.org")!])) == nil)
        #expect(settings.refusal(of: .allow([EgressRule("127.0.0.1:4000")!])) == nil)
        let refusal = settings.refusal(of: .allow([EgressRule("pypi.org")!, EgressRule("evil.com")!]))
        #expect(refusal?.field == "network")
        #expect(refusal?.message.contains("allow[1] \"evil.com\"") == true)
        #expect(settings.refusal(of: .allow([EgressRule("*")!])) != nil)
        let none = settings.policy(for: NetworkRequest.none, repoHost: "github.com")
        #expect(none.refusal(host: "api.github.com", port: 443) == "the request allows no network")
        let narrowed = settings.policy(for: .allow([EgressRule("pypi.org")!]), repoHost: "api.github.com")
        #expect(narrowed.refusal(host: "api.github.com", port: 443) != nil)
        #expect(narrowed.refusal(host: "pypi.org", port: 443) == nil)
    }

    @Test func theReportIsBoundedAndSaysWhatWasRefused() {
        var report = NetworkReport(policy: .operator)
        for index in 0..<60 {
            report.merge(NetworkReport(policy: .operator, denied: [.init(host: "h\(index).test", port: 443, count: 2, firstAt: "t", reason: "r")]))
        }
        report.merge(NetworkReport(policy: .operator, denied: [.init(host: "h0.test", port: 443, count: 1, firstAt: "t2", reason: "r")]))
        #expect(report.denied.count == NetworkReport.maxEntries)
        #expect(report.denied[0].count == 3)
        #expect(report.omitted?.denied == 20)
        #expect(report.deniedConnections == 121)
        #expect(report.denialSentence?.hasPrefix("(121 connections refused by the egress policy: h0.test:443, h1.test:443") == true)
    }
}
