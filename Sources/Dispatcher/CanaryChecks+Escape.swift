import AgentProcess
import DispatchCore
import Foundation

extension CanaryChecks {
    /// Request for the containment proof, in host mode in `cwd`.
    package static func escapeRequest(requestId: String, cwd: String) -> DispatchRequest {
        DispatchRequest(
            requestId: requestId,
            task: "escape canary",
            tool: .canary,
            canary: CanarySpec(scenario: .escape),
            timeout: 60,
            cwd: cwd
        )
    }

    /// Checks an escape result: completed, the agent found neither the token nor anything in the state dir, and
    /// neither grandchild (one deaf to SIGTERM, neither carrying a marker) is alive 5 s after the dispatch ended.
    /// Without isolation the last three fail: that is the point.
    package static func escape(_ result: DispatchResult?, requestId: String) async -> [CanaryReport.Check] {
        guard let result else { return [.init(name: "result", ok: false, detail: "no result")] }
        let report = result.result ?? ""
        let entries = report.range(of: "state dir entries ").map { report[$0.upperBound...].prefix { $0.isNumber } }.flatMap { Int($0) }
        let sleeps = CanaryAdapter.escapeSleeps(requestId: requestId)
        let survivors = await sleepers([sleeps.plain, sleeps.deaf], grace: .seconds(5))
        let checks: [CanaryReport.Check] = [
            .init(name: "status-completed", ok: result.status == .completed, detail: "status \(result.status.rawValue) \(result.error ?? "")"),
            .init(
                name: "token-not-readable",
                // The token file may not exist (a token from the environment); the runner's secret always does.
                ok: (report.contains("token unreadable") || report.contains("token none")) && report.contains("runner secret unreadable"),
                detail: report.isEmpty ? "the agent reported nothing" : report
            ),
            .init(name: "state-dir-not-visible", ok: entries == 0, detail: entries.map { "the agent saw \($0) entries in the state dir" } ?? report),
            .init(
                name: "sysctl-not-writable",
                ok: report.contains("sysctl refused"),
                detail: report.contains("sysctl refused") ? "writing kernel.pid_max was refused" : "the agent could write kernel.pid_max: \(report)"
            ),
            uidCheck(report),
            ipcCheck(report),
        ]
        let escapees = CanaryReport.Check(
            name: "no-surviving-escapee",
            ok: survivors.isEmpty,
            detail: survivors.isEmpty
                ? "no `sleep \(sleeps.plain)` or `sleep \(sleeps.deaf)` alive 5 s after the dispatch" : "survivors: \(survivors)"
        )
        return checks + egressChecks(report, network: result.network) + [escapees]
    }

    /// The escape canary's network checks.
    static let egressCheckNames = [
        "egress-allowed-reached", "egress-own-loopback", "egress-outside-refused", "egress-metadata-refused", "egress-runner-port-refused",
    ]

    /// What the agent reached on the network (CONTRACT §10), from the words of its probes: its own listener on the
    /// runner's loopback through the proxy but not directly (its loopback is its own), and neither a host outside the
    /// allowlist, the metadata address nor `serve`'s port. Without the egress proxy (isolation off) they all fail.
    static func egressChecks(_ report: String, network: NetworkReport?) -> [CanaryReport.Check] {
        guard let range = report.range(of: "; net "), !report[range.upperBound...].hasPrefix("none") else {
            let detail = "no egress proxy: the agent has the runner's network"
            return egressCheckNames.map { CanaryReport.Check(name: $0, ok: false, detail: detail) }
        }
        let words = report[range.upperBound...].split(separator: ";").reduce(into: [String: String]()) { words, part in
            let pair = part.trimmingCharacters(in: .whitespaces).split(separator: " ", maxSplits: 1).map(String.init)
            if pair.count == 2 { words[pair[0]] = pair[1] }
        }
        func word(_ name: String) -> String { words[name] ?? "nothing" }
        let denied = Set((network?.denied ?? []).map { "\($0.host):\($0.port)" })
        let runner = word("runner")
        return [
            .init(
                name: "egress-allowed-reached",
                ok: word("allowed") == "200-greeting",
                detail: "its own listener through the proxy: \(word("allowed"))"
            ),
            .init(name: "egress-own-loopback", ok: word("own-loopback") == "failed", detail: "its listener directly: \(word("own-loopback"))"),
            .init(
                name: "egress-outside-refused",
                ok: word("outside") == "403" && denied.contains("egress-canary.invalid:443"),
                detail: "egress-canary.invalid:443 through the proxy: \(word("outside"))"
            ),
            .init(
                name: "egress-metadata-refused",
                ok: word("metadata") == "403" && denied.contains("169.254.169.254:80"),
                detail: "169.254.169.254:80 through the proxy: \(word("metadata"))"
            ),
            .init(
                name: "egress-runner-port-refused",
                ok: runner == "unserved" || runner == "failed/403",
                detail: runner == "unserved" ? "no serve port in this process" : "serve's port directly/through the proxy: \(runner)"
            ),
        ]
    }

    /// A root runner's agent must not run as root (CONTRACT §7): the uid it reported is not 0.
    static func uidCheck(_ report: String) -> CanaryReport.Check {
        guard let range = report.range(of: "; uid "), let uid = UInt32(report[range.upperBound...].prefix { $0.isNumber }) else {
            return .init(name: "agent-not-root", ok: false, detail: "the agent reported no uid: \(report)")
        }
        return .init(name: "agent-not-root", ok: uid != 0, detail: uid == 0 ? "the agent ran as root (uid 0)" : "the agent ran as uid \(uid)")
    }

    /// The agent's SysV segment must be gone with it: its key is not in this machine's (the runner's) IPC namespace.
    /// A segment found is removed, so the canary leaves nothing behind either way.
    static func ipcCheck(_ report: String) -> CanaryReport.Check {
        guard let range = report.range(of: "shm key ") else { return .init(name: "no-ipc-survivor", ok: false, detail: report) }
        let key = String(report[range.upperBound...].prefix { !$0.isWhitespace && $0 != ";" })
        guard key.hasPrefix("0x"), let value = UInt32(key.dropFirst(2), radix: 16) else {
            return .init(name: "no-ipc-survivor", ok: false, detail: "the agent made no SysV segment to check (\(key))")
        }
        let keyValue = key_t(bitPattern: value)
        let id = shmget(keyValue, 0, 0)
        guard id >= 0 else { return .init(name: "no-ipc-survivor", ok: true, detail: "the agent's segment \(key) is gone") }
        _ = shmctl(id, IPC_RMID, nil)
        return .init(name: "no-ipc-survivor", ok: false, detail: "the agent's SysV segment \(key) outlived it (removed now)")
    }

    /// Processes whose command line is `sleep <one of arguments>`, once `grace` has passed (or none are left).
    static func sleepers(_ arguments: [String], grace: Duration) async -> [pid_t] {
        func scan() -> [pid_t] {
            let entries = (try? FileManager.default.contentsOfDirectory(atPath: "/proc")) ?? []
            return entries.compactMap { entry -> pid_t? in
                guard let pid = pid_t(entry), let raw = FileManager.default.contents(atPath: "/proc/\(entry)/cmdline") else { return nil }
                let argv = raw.split(separator: 0).map { String(decoding: $0, as: UTF8.self) }
                return argv.count == 2 && argv[0].hasSuffix("sleep") && arguments.contains(argv[1]) ? pid : nil
            }
        }
        let clock = ContinuousClock()
        let end = clock.now + grace
        var found = scan()
        while !found.isEmpty, clock.now < end {
            _ = await ProcessRuntime.shared.exits(of: found, within: end - clock.now)
            found = scan()
        }
        return found
    }
}
