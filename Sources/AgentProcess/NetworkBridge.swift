import Foundation

/// An isolated process's only way out of its own network namespace (CONTRACT §10): `dispatch-monitor --bridge`,
/// started first inside the namespace, listens on `127.0.0.1:<port>` there and relays every connection to the run's
/// socket of the egress proxy, in `directory` — bound read-only into the namespace, so that a runner adopting the run
/// listens again where the bridge connects.
package struct NetworkBridge: Sendable, Equatable {
    /// `dispatch-monitor`.
    package var program: String
    /// The port on the namespace's loopback.
    package var port: Int
    /// The run's egress directory, holding ``socketName``.
    package var directory: String

    /// The proxy's socket in ``directory``.
    package static let socketName = "proxy.sock"

    /// The port agents are given (the usual one of HTTP proxies): the namespace is the agent's alone.
    package static let defaultPort = 3128

    package init(program: String, directory: String, port: Int = NetworkBridge.defaultPort) {
        self.program = program
        self.directory = directory
        self.port = port
    }

    /// The proxy's socket.
    package var socketPath: String { "\(directory)/\(Self.socketName)" }

    /// The argv in front of the agent's (inside bwrap, before the user switch).
    package var arguments: [String] {
        [program, "--bridge", "--port", "\(port)", "--socket", socketPath, "--"]
    }

    /// The proxy as the agent's environment names it, upper and lower case (curl reads only `http_proxy` in lower
    /// case); nothing on loopback is exempt, so `NO_PROXY` is emptied (the namespace's loopback holds only the bridge).
    package var environment: [String: String] {
        let url = "http://127.0.0.1:\(port)"
        var environment: [String: String] = [:]
        for name in ["HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY"] {
            environment[name] = url
            environment[name.lowercased()] = url
        }
        environment["NO_PROXY"] = ""
        environment["no_proxy"] = ""
        return environment
    }
}
