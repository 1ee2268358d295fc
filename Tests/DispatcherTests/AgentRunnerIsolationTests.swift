import AgentProcess
import DispatchCore
import Foundation
import Testing

@testable import Execution

/// What an isolated agent's view hides, built from the runner's configuration.
@Suite struct AgentRunnerIsolationTests {
    @Test func hiddenPathsAreAbsoluteResolvedAndNotNested() throws {
        var configuration = DispatchConfiguration(environment: [:])
        configuration.stateDir = "relative-state"
        configuration.tokenFile = "relative-state/token"
        configuration.kubeconfig = "/etc/a-kubeconfig:/etc/another"
        configuration.secretFiles = ["/etc/kube/client.key"]
        let runner = AgentRunner(configuration: configuration, environment: [:], isolation: (.bwrap, "/usr/bin/bwrap"))
        let view = try #require(runner.hostIsolation(workDir: "/srv/work", readOnlyWorkDir: true)?.view)
        let state = FileManager.default.currentDirectoryPath + "/relative-state"
        #expect(view.hiddenDirectories.contains(AgentRunner.realPath(state)), "a relative state dir is hidden where the runner means it")
        #expect(!view.hiddenDirectories.contains { $0.hasSuffix("relative-state/inbox") || $0.hasSuffix("relative-state/sandboxes") })
        #expect(!view.hiddenFiles.contains { $0.hasSuffix("relative-state/token") }, "hidden with its directory")
        #expect(view.hiddenFiles.contains("/etc/a-kubeconfig") && view.hiddenFiles.contains("/etc/another"))
        #expect(view.hiddenFiles.contains("/etc/kube/client.key"), "the files a kubeconfig names")
        #expect(view.hiddenDirectories.contains("/run/user") && view.hiddenFiles.contains("/run/docker.sock"))
        #expect(view.readOnly == ["/srv/work"] && !view.readOnlyRoot)
        #expect(AgentRunner(configuration: configuration, environment: [:]).hostIsolation(workDir: "/", readOnlyWorkDir: false) == nil)
    }

    @Test func theDatabasePasswordFileIsHiddenLikeTheToken() throws {
        let configuration = DispatchConfiguration(environment: ["DISPATCH_DATABASE_PASSWORD_FILE": "/etc/agent-dispatch/pg-password"])
        let runner = AgentRunner(configuration: configuration, environment: [:], isolation: (.bwrap, "/usr/bin/bwrap"))
        let view = try #require(runner.hostIsolation(workDir: "/srv/work", readOnlyWorkDir: false)?.view)
        #expect(view.hiddenFiles.contains("/etc/agent-dispatch/pg-password"))
    }

    @Test func aSandboxedAgentGetsItsCheckoutBackAfterTheRootIsHidden() throws {
        var configuration = DispatchConfiguration(environment: [:])
        configuration.stateDir = "/srv/state"
        configuration.agentWritablePaths = ["/srv/cache"]
        let runner = AgentRunner(configuration: configuration, environment: ["HOME": "/home/agent"], isolation: (.bwrap, "/usr/bin/bwrap"))
        let view = try #require(
            runner.sandboxIsolation(
                checkout: "/srv/state/sandboxes/s1/repo",
                sandboxEnvFile: "/srv/state/sandboxes/s1/.sandbox.env",
                hostCheckout: "/srv/host",
                executable: nil,
                readOnlyCheckout: false,
                home: "/srv/state/sandboxes/s1/home"
            )?.view
        )
        #expect(view.readOnlyRoot && view.privateTmp)
        #expect(view.boundBack == ["/srv/state/sandboxes/s1/repo", "/srv/state/sandboxes/s1/home"])
        #expect(view.readOnly == ["/srv/state/sandboxes/s1/.sandbox.env"])
        // The operator's home is not the agent's: every run's transcripts would meet there (its own home is bound back).
        #expect(view.visible == ["/srv/host"] && view.writable == ["/srv/cache"], "\(view.writable)")
    }

    /// An agent program installed inside a `DISPATCH_AGENT_RW_PATHS` entry (Claude Code in `~/.claude/local` updates
    /// itself there) stays writable: its places are not bound read-only on top (the most specific path wins).
    @Test func anAgentProgramInsideAWritablePathStaysWritable() throws {
        let home = NSTemporaryDirectory() + "runner-home-\(UUID().uuidString)"
        try FileManager.default.createDirectory(atPath: "\(home)/.claude/local", withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: home) }
        var configuration = DispatchConfiguration(environment: [:])
        configuration.agentWritablePaths = ["\(home)/.claude"]
        let runner = AgentRunner(configuration: configuration, environment: ["HOME": home], isolation: (.bwrap, "/usr/bin/bwrap"))
        let view = try #require(
            runner.sandboxIsolation(
                checkout: "/srv/state/sandboxes/s1/repo",
                sandboxEnvFile: "/srv/state/sandboxes/s1/.sandbox.env",
                hostCheckout: "/srv/host",
                executable: "\(home)/.claude/local/claude",
                readOnlyCheckout: false
            )?.view
        )
        let real = URL(fileURLWithPath: home).resolvingSymlinksInPath().path
        #expect(view.writable.contains("\(real)/.claude") && !view.visible.contains { $0.hasPrefix("\(real)/.claude") }, "\(view.visible)")
    }
}
