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
        case .escape:
            script = Self.escapeScript(requestId: request.requestId)
        }
        return AgentInvocation(program: "/bin/sh", arguments: ["-c", script, "canary-\(spec.scenario.rawValue)"])
    }

    /// The `sleep` arguments of the escape canary's two grandchildren: unique per request, digits only, so the
    /// checks can find them by command line (they carry no environment, so no marker).
    package static func escapeSleeps(requestId: String) -> (plain: String, deaf: String) {
        var hash: UInt32 = 2_166_136_261
        for byte in requestId.utf8 { hash = (hash ^ UInt32(byte)) &* 16_777_619 }
        let tag = hash % 1_000_000
        return ("86400.\(tag)", "86401.\(tag)")
    }

    /// Two double-forked, `setsid`, environment-cleared grandchildren (one deaf to SIGTERM), then what the agent can
    /// read of the runner (the token file and the state dir named by `DISPATCH_CANARY_*`, set by the runner: what it
    /// sees there besides the path to its own home, bound back), whether
    /// it can write a sysctl (the current `kernel.pid_max` back), its uid, the key of a SysV segment it leaves, and
    /// (under the egress proxy, CONTRACT §10) what it reaches: its canary listener on the runner's loopback directly
    /// and through the proxy, a host outside the allowlist, the metadata address and `serve`'s own port — each a word
    /// from `dispatch-monitor --probe` (`connected`/`failed`, or the proxy's status).
    static func escapeScript(requestId: String) -> String {
        let sleeps = escapeSleeps(requestId: requestId)
        return """
            (setsid sh -c 'exec env -i /bin/sleep \(sleeps.plain)' </dev/null >/dev/null 2>&1 &)
            (setsid sh -c 'trap "" TERM; exec env -i /bin/sleep \(sleeps.deaf)' </dev/null >/dev/null 2>&1 &)
            if [ -z "$DISPATCH_CANARY_TOKEN_FILE" ]; then token=none
            elif [ -s "$DISPATCH_CANARY_TOKEN_FILE" ]; then token=readable
            else token=unreadable; fi
            if [ -z "$DISPATCH_CANARY_SECRET_FILE" ]; then secret=none
            elif [ -s "$DISPATCH_CANARY_SECRET_FILE" ]; then secret=readable
            else secret=unreadable; fi
            own=/; case "$HOME" in "$DISPATCH_CANARY_STATE_DIR"/*) rel=${HOME#"$DISPATCH_CANARY_STATE_DIR"/}; own=${rel%%/*};; esac
            entries=$(ls -A "$DISPATCH_CANARY_STATE_DIR" 2>/dev/null | grep -vxF "$own" | grep -cvxF egress)
            runs=$(ls -A "$DISPATCH_CANARY_STATE_DIR/runs" 2>/dev/null | wc -l)
            [ "$runs" -gt 1 ] && entries=$((entries + runs - 1))
            ways=$(ls -A "$DISPATCH_CANARY_STATE_DIR/egress" 2>/dev/null | wc -l)
            [ "$ways" -gt 1 ] && entries=$((entries + ways - 1))
            p=$DISPATCH_CANARY_PROBE; via="--via $DISPATCH_CANARY_PROXY_PORT"
            if [ -n "$p" ] && [ -x "$p" ]; then
              own_loopback=$("$p" --probe 127.0.0.1 "$DISPATCH_CANARY_LISTENER")
              allowed=$("$p" --probe 127.0.0.1 "$DISPATCH_CANARY_LISTENER" $via)
              outside=$("$p" --probe egress-canary.invalid 443 $via)
              metadata=$("$p" --probe 169.254.169.254 80 $via)
              if [ -n "$DISPATCH_CANARY_RUNNER_PORT" ]; then
                runner="$("$p" --probe 127.0.0.1 "$DISPATCH_CANARY_RUNNER_PORT")/$("$p" --probe 127.0.0.1 "$DISPATCH_CANARY_RUNNER_PORT" $via)"
              else runner=unserved; fi
              net="own-loopback $own_loopback; allowed $allowed; outside $outside; metadata $metadata; runner $runner"
            else net="none"; fi
            v=$(cat /proc/sys/kernel/pid_max 2>/dev/null)
            if [ -n "$v" ] && (echo "$v" > /proc/sys/kernel/pid_max) 2>/dev/null; then sysctl=writable; else sysctl=refused; fi
            shm=$(ipcmk -M 4096 -p 0600 2>/dev/null | awk '{print $NF}')
            key=$(ipcs -m 2>/dev/null | awk -v id="$shm" '$2 == id {print $1}')
            echo "escape canary: token $token; runner secret $secret; sysctl $sysctl; uid $(id -u); shm key ${key:-none}; state dir entries $entries; net $net"
            """
    }

    package func parse(stdout: String) -> ParsedAgentOutput {
        let lines = stdout.split(whereSeparator: \.isNewline)
        return ParsedAgentOutput(finalText: lines.last.map(String.init))
    }
}
