// Benchmarks for the local sandbox backend (`make bench`). Prints figures and ratios measured in one run.
import AgentProcess
import DispatchCore
import Foundation
import Logging
import Sandbox

func sh(_ command: String, in directory: String) -> Double {
    let process = Process()
    process.executableURL = URL(fileURLWithPath: "/bin/sh")
    process.arguments = ["-c", command]
    process.currentDirectoryURL = URL(fileURLWithPath: directory)
    process.standardOutput = FileHandle.nullDevice
    process.environment = ProcessInfo.processInfo.environment.merging([
        "GIT_AUTHOR_NAME": "bench", "GIT_AUTHOR_EMAIL": "bench@example.invalid", "GIT_COMMITTER_NAME": "bench",
        "GIT_COMMITTER_EMAIL": "bench@example.invalid",
    ]) { $1 }
    let start = Date()
    try! process.run()
    process.waitUntilExit()
    guard process.terminationStatus == 0 else { fatalError("failed: \(command) in \(directory)") }
    return Date().timeIntervalSince(start)
}

func timed(_ body: () throws -> Void) rethrows -> Double {
    let start = Date()
    try body()
    return Date().timeIntervalSince(start)
}

func median(_ values: [Double]) -> Double { values.sorted()[values.count / 2] }
func ms(_ seconds: Double) -> String { String(format: "%.0f ms", seconds * 1000) }

let arguments = CommandLine.arguments
let files = arguments.count > 1 ? Int(arguments[1])! : 10_000
let fileBytes = arguments.count > 2 ? Int(arguments[2])! : 10_000
let changed = arguments.count > 3 ? Int(arguments[3])! : 1_000
/// `packed` (one pack, as real repositories mostly are) or `loose` (every object its own file, as after `git add`).
let layout = arguments.count > 4 ? arguments[4] : "packed"
let runs = 5
let work = NSTemporaryDirectory() + "dispatch-bench-\(UUID().uuidString.prefix(8))"
let host = "\(work)/host"
defer { try? FileManager.default.removeItem(atPath: work) }

print("generating a repo of \(files) files × \(fileBytes) bytes (\(files * fileBytes / 1_000_000) MB), \(layout) objects …")
try FileManager.default.createDirectory(atPath: host, withIntermediateDirectories: true)
var generator = SystemRandomNumberGenerator()
let pool = (0..<(fileBytes * 4)).map { _ in UInt8(97 + Int(generator.next() % 26)) }
for index in 0..<files {
    let directory = "\(host)/d\(index % 100)"
    if index < 100 { try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true) }
    let offset = Int(generator.next() % UInt64(fileBytes * 3))
    var bytes = Data("file \(index)\n".utf8)
    bytes.append(contentsOf: pool[offset..<(offset + fileBytes)])
    try bytes.write(to: URL(fileURLWithPath: "\(directory)/f\(index).txt"))
}
// Auto-gc off so nothing runs in the background while timing.
let pack = layout == "loose" ? "" : " && git gc -q"
_ = sh("git init -q -b main && git config gc.auto 0 && git add -A && git commit -q -m base\(pack) && git rev-parse HEAD > ../base", in: host)
let base = try String(contentsOfFile: "\(work)/base", encoding: .utf8).trimmingCharacters(in: .whitespacesAndNewlines)

var ours: [Double] = []
var worktree: [Double] = []
var clone: [Double] = []
var sandboxes: [LocalSandbox] = []
let materializer = SandboxMaterializer(root: "\(work)/sandboxes")
// File creation cost in the kernel dominates all three, and depends on what ran just before: rotate the
// order every run and discard a warm-up round.
for run in 0...runs {
    let request = DispatchRequest(requestId: "bench-\(run)", task: "t", tool: .codex, cwd: host, baseSha: base)
    var sandbox: LocalSandbox?
    var times = [0.0, 0.0, 0.0]
    let steps: [() throws -> Void] = [
        { times[0] = try timed { sandbox = try materializer.materialize(request, defaultCwd: host) } },
        { times[1] = sh("git worktree add -q --detach \(work)/wt\(run) \(base)", in: host) },
        {
            times[2] = sh(
                "git clone -q --shared --no-checkout \(host) \(work)/cl\(run) && cd \(work)/cl\(run) && git checkout -q --detach \(base)",
                in: work
            )
        },
    ]
    for offset in 0..<3 { try steps[(run + offset) % 3]() }
    guard run > 0 else { continue }
    ours.append(times[0])
    worktree.append(times[1])
    clone.append(times[2])
    sandboxes.append(sandbox!)
}
let faster = min(median(worktree), median(clone))
print(
    "materialize at baseSha (median of \(runs)): ours \(ms(median(ours))), git worktree add \(ms(median(worktree))), "
        + "git clone --shared + checkout \(ms(median(clone))) -> ratio \(String(format: "%.2f", median(ours) / faster))x the faster baseline (target <= 1.0x)"
)

// A root runner's sandboxed agent runs as a leased uid that owns its checkout: the lease and the chown, against the
// checkout they follow.
if geteuid() == 0 {
    let leases = AgentUidLeases(range: 60_900...60_949, directory: "\(work)/uid-leases")
    var leasing: [Double] = []
    for sandbox in sandboxes {
        leasing.append(
            try timed {
                let lease = try leases.lease(for: sandbox.sandboxId)
                try lease.user.own(sandbox.repoPath)
                lease.release()
            }
        )
    }
    print(
        "agent uid lease + chown of the checkout (median of \(runs)): \(ms(median(leasing))) vs our checkout \(ms(median(ours))) -> ratio "
            + "\(String(format: "%.2f", median(leasing) / median(ours)))x (added to every sandbox dispatch of a root runner)"
    )
}

// The warm pool: a claim (rename into the sandbox, the sandbox's branch in place of the entry's) against the
// checkout it takes off the critical path.
// The pool refills in its own `run()`, as under `serve`.
try await withThrowingDiscardingTaskGroup { group in
    let warm = WarmPool(size: runs, sandboxRoot: "\(work)/warm-root", registry: nil, logger: Logger(label: "bench"))
    group.addTask { await warm.run() }
    let first = try materializer.plan(DispatchRequest(requestId: "warm-0", task: "t", tool: .codex, cwd: host, baseSha: base), defaultCwd: host)
    warm.wanted(sourceRepo: first.sourceRepo, baseSha: first.baseSha)
    let filling = Date()
    while warm.readyCount(sourceRepo: first.sourceRepo, baseSha: first.baseSha) < runs, Date().timeIntervalSince(filling) < 300 {
        await ProcessRuntime.shared.sleep(for: .milliseconds(10))
    }
    var claims: [Double] = []
    for run in 1...runs {
        let planned = try materializer.plan(
            DispatchRequest(requestId: "warm-\(run)", task: "t", tool: .codex, cwd: host, baseSha: base),
            defaultCwd: host
        )
        try FileManager.default.createDirectory(atPath: (planned.path as NSString).deletingLastPathComponent, withIntermediateDirectories: true)
        var claimed = false
        claims.append(timed { claimed = warm.claim(into: planned) != nil })
        guard claimed else { fatalError("warm claim \(run) found no ready checkout") }
        // As the sandbox backend does after each claim: the commit is still the wanted one, so the pool refills.
        warm.wanted(sourceRepo: planned.sourceRepo, baseSha: planned.baseSha)
        // The pool refills behind each claim: wait, so the next claim is not timed against a checkout in progress.
        while warm.readyCount(sourceRepo: first.sourceRepo, baseSha: first.baseSha) < runs, Date().timeIntervalSince(filling) < 300 {
            await ProcessRuntime.shared.sleep(for: .milliseconds(10))
        }
    }
    print(
        "warm pool claim (median of \(runs)): \(String(format: "%.2f ms", median(claims) * 1000)) vs our checkout \(ms(median(ours))) -> ratio "
            + "\(String(format: "%.3f", median(claims) / median(ours)))x (target p50 <= 5 ms)"
    )
    group.cancelAll()
}

var export: [Double] = []
var gitDiff: [Double] = []
for (run, sandbox) in sandboxes.enumerated() {
    for index in 0..<changed {
        let path = "\(sandbox.repoPath)/d\(index % 100)/f\(index).txt"
        let handle = try FileHandle(forWritingTo: URL(fileURLWithPath: path))
        try handle.seekToEnd()
        try handle.write(contentsOf: Data("changed in run \(run)\n".utf8))
        try handle.close()
    }
    export.append(try timed { _ = try ArtifactExporter().export(sandbox) })
    gitDiff.append(sh("git add -A && git diff --cached --binary \(base) > /dev/null", in: sandbox.repoPath))
}
print(
    "patch export of \(changed) changed files (median of \(runs)): ours \(ms(median(export))), "
        + "git add -A && git diff --cached --binary \(ms(median(gitDiff))) -> ratio \(String(format: "%.2f", median(export) / median(gitDiff)))x (target <= 1.5x)"
)
