/// The model-free canary scenarios of CONTRACT §1, as real `/bin/sh` processes with fixed scripts.
///
/// Only validated integers are put into the scripts; the task text never reaches the shell.
package struct CanaryAdapter: AgentAdapter {
    package init() {}
    package var tool: AgentTool { .canary }

    package func invocation(request: DispatchRequest, task: String, model: String?, program: String) -> AgentInvocation {
        let spec = request.effectiveCanary
        let script: String
        switch spec.scenario {
        case .sleepTimeout:
            script = """
                echo "sleep-timeout canary: sleeping \(spec.sleepSeconds)s"
                sleep \(spec.sleepSeconds) &
                wait $!
                echo "sleep-timeout canary: woke up after \(spec.sleepSeconds)s"
                """
        case .orphanStderr:
            // The orphan holds stderr for orphanDelaySeconds and records when it lets go — after the delay, or when
            // it is ended (TERM) — so the canary can prove the result did not wait for it.
            script = """
                (
                  trap 'echo "orphan-stderr canary: orphan let go of stderr at $(date +%s%3N) (ended)" >&2; exit 0' TERM
                  sleep \(spec.orphanDelaySeconds) &
                  wait $!
                  echo "orphan-stderr canary: orphan let go of stderr at $(date +%s%3N) (delay over)" >&2
                ) &
                echo "orphan-stderr canary: parent exiting with code \(spec.exitCode) while a child holds stderr" >&2
                exit \(spec.exitCode)
                """
        }
        return AgentInvocation(program: "/bin/sh", arguments: ["-c", script, "canary-\(spec.scenario.rawValue)"])
    }

    package func parse(stdout: String) -> ParsedAgentOutput {
        let lines = stdout.split(whereSeparator: \.isNewline)
        return ParsedAgentOutput(finalText: lines.last.map(String.init))
    }
}
