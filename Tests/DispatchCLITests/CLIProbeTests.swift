import AgentProcess
import DispatchTestSupport
import Foundation
import Testing

/// CONTRACT §1: what a CLI accepts is learned from the binary itself, once per binary; a CLI that cannot take the
/// command line fails its dispatch before it is spawned, saying why; `dispatch doctor` lists each CLI.
@Suite(.serialized) struct CLIProbeTests {
    let dir = TempDir("cli-probe")
    var state: String { dir.child("state") }

    /// A codex whose help says `help`, counting each help run in `<dir>/help-runs`, running the fake otherwise.
    func wrappedCodex(help: String) throws -> String {
        let path = dir.child("codex-\(UUID().uuidString.prefix(6))")
        let script = """
            #!/bin/sh
            if [ "$1 $2" = "exec --help" ]; then echo run >> \(dir.path)/help-runs; printf '%s\\n' '\(help)'; exit 0; fi
            if [ "$1" = "--version" ]; then echo 'codex-cli 0.98.0'; exit 0; fi
            echo spawned >> \(dir.path)/spawned
            exec \(TestPaths.fake("codex")) "$@"
            """
        try Data(script.utf8).write(to: URL(fileURLWithPath: path))
        chmod(path, 0o755)
        return path
    }

    func run(_ codex: String, task: String = "fake:answer=probed", extra: [String: String] = [:]) throws -> [String: Any] {
        let outcome = try CommandRunner.run(
            TestPaths.dispatchBinary,
            ["run", "--tool", "codex", "--json", "--task", task],
            environment: ["DISPATCH_STATE_DIR": state, "DISPATCH_CODEX_BIN": codex].merging(extra) { $1 },
            cwd: dir.path
        )
        return try #require(try JSONSerialization.jsonObject(with: Data(outcome.stdout.utf8)) as? [String: Any], "\(outcome.stderr)")
    }

    @Test func aCLIThatLacksAnOptionOfItsCommandLineFailsBeforeItIsSpawned() throws {
        // An older codex: `--full-auto` and `--sandbox`, no bypass flag (what this runner's isolation needs).
        let codex = try wrappedCodex(help: "  --json  -s, --sandbox <MODE>  --full-auto  --skip-git-repo-check")
        for isolation in ["bwrap", "none"] {
            let result = try run(codex, extra: ["DISPATCH_ISOLATION": isolation])
            if isolation == "bwrap" {
                #expect(result["status"] as? String == "failed")
                let error = try #require(result["error"] as? String)
                #expect(error.contains("does not accept --dangerously-bypass-approvals-and-sandbox"), "\(error)")
                #expect(error.contains("codex-cli 0.98.0"), "the sentence names the version: \(error)")
                #expect(!FileManager.default.fileExists(atPath: dir.child("spawned")), "nothing was spawned")
            } else {
                // Without isolation it needs `--sandbox`, which it has: it runs (and is never given --full-auto).
                #expect(result["status"] as? String == "completed", "\(result)")
            }
        }
    }

    @Test func eachBinaryIsProbedOnceUntilItChanges() throws {
        let codex = try wrappedCodex(
            help: "  --json  -s, --sandbox <MODE>  --dangerously-bypass-approvals-and-sandbox  --skip-git-repo-check  -m, --model"
        )
        for _ in 0..<3 { #expect(try run(codex)["status"] as? String == "completed") }
        #expect(LogFile.read(dir.child("help-runs")).split(separator: "\n").count == 1, "probed once for three runs")
        // The same path with new content (an update in place) is probed again.
        let updated = try String(contentsOfFile: codex, encoding: .utf8) + "\n# updated\n"
        try Data(updated.utf8).write(to: URL(fileURLWithPath: codex))
        #expect(try run(codex)["status"] as? String == "completed")
        #expect(LogFile.read(dir.child("help-runs")).split(separator: "\n").count == 2, "probed again after the binary changed")
        let cache = try String(contentsOfFile: "\(state)/cli-probes.json", encoding: .utf8)
        #expect(cache.contains("codex-cli 0.98.0"))
        var info = stat()
        #expect(stat("\(state)/cli-probes.json", &info) == 0 && info.st_mode & 0o077 == 0, "the cache is private")
    }

    @Test func doctorListsEachCLIWithItsVersionOptionsAndWhetherItIsUsable() throws {
        let outcome = try CommandRunner.run(
            TestPaths.dispatchBinary,
            ["doctor"],
            environment: [
                "DISPATCH_STATE_DIR": state, "DISPATCH_CODEX_BIN": TestPaths.fake("codex"), "DISPATCH_CLAUDE_BIN": TestPaths.fake("claude"),
                "DISPATCH_PI_BIN": dir.child("no-such-pi"),
            ]
        )
        let report = try #require(try JSONSerialization.jsonObject(with: Data(outcome.stdout.utf8)) as? [String: Any], "\(outcome.stderr)")
        let clis = try #require(report["clis"] as? [[String: Any]])
        var byTool: [String: [String: Any]] = [:]
        for cli in clis { byTool[cli["tool"] as? String ?? ""] = cli }
        #expect(byTool["codex"]?["version"] as? String == "codex-cli 0.147.0")
        #expect(byTool["codex"]?["usable"] as? Bool == true)
        let codexOptions = byTool["codex"]?["options"] as? [String] ?? []
        #expect(!codexOptions.contains("--full-auto"))
        #expect(codexOptions.contains("--dangerously-bypass-approvals-and-sandbox") || codexOptions.contains("--sandbox"), "\(codexOptions)")
        #expect(byTool["claude"]?["version"] as? String == "2.1.332 (Claude Code)")
        #expect(byTool["pi"]?["usable"] as? Bool == false)
        #expect((byTool["pi"]?["problem"] as? String)?.contains("DISPATCH_PI_BIN") == true)
        #expect(["leased", "runner", "root-unsafe"].contains(report["agentUser"] as? String ?? ""), "\(report)")
    }

    @Test func helpTextsYieldTheirOptions() {
        let help = "  -s, --sandbox <SANDBOX_MODE>  [possible: read-only]\n  --json. Print\n  --model=<M>, -m\n  use --skip-git-repo-check."
        let options = CLIProbe.options(in: help)
        #expect(options == ["-s", "--sandbox", "--json", "--model", "-m", "--skip-git-repo-check"])
    }
}
