import AgentProcess
import DispatchTestSupport
import Foundation
import Testing

/// `dispatch-monitor --bridge` in a real network namespace (bwrap `--unshare-net`): the agent's loopback is its own,
/// the bridge's port on it reaches the unix socket outside — all of a large stream both ways, half-close passed on —
/// no other address is reachable, and the bridge exits as the agent did.
@Suite(.serialized) struct NetworkBridgeTests {
    let temp = TempDir()

    @Test(.enabled(if: Bubblewrap.locate() != nil)) func theAgentsOnlyWayOutIsTheBridgeToItsSocket() throws {
        let monitor = URL(fileURLWithPath: TestPaths.dispatchBinary).deletingLastPathComponent().appendingPathComponent("dispatch-monitor").path
        let socketPath = temp.child("proxy.sock")
        let script = """
            import os, socket, subprocess, sys, threading
            server = socket.socket(socket.AF_UNIX); server.bind(sys.argv[1]); os.chmod(sys.argv[1], 0o666); server.listen(16)
            host = socket.socket(); host.bind(("127.0.0.1", 0)); host.listen(1)
            def serve():
                while True:
                    c, _ = server.accept()
                    def echo(c=c):
                        while True:
                            d = c.recv(65536)
                            if not d: break
                            c.sendall(d.upper())
                        c.close()
                    threading.Thread(target=echo, daemon=True).start()
            threading.Thread(target=serve, daemon=True).start()
            agent = '''
            import socket, sys
            c = socket.create_connection(("127.0.0.1", 3128)); c.sendall(b"hello" * 400000); c.shutdown(socket.SHUT_WR)
            got = b""
            while True:
                d = c.recv(65536)
                if not d: break
                got += d
            print("relayed", len(got), got[:5].decode())
            try:
                socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=2); print("host loopback REACHED")
            except OSError as e: print("host loopback refused")
            sys.exit(7)
            '''
            bwrap, monitor = sys.argv[2], sys.argv[3]
            run = subprocess.run([bwrap, "--unshare-net", "--unshare-pid", "--die-with-parent", "--ro-bind", "/", "/", "--dev", "/dev",
                                  "--proc", "/proc", "--", monitor, "--bridge", "--port", "3128", "--socket", sys.argv[1], "--",
                                  sys.executable, "-c", agent, str(host.getsockname()[1])], capture_output=True, text=True, timeout=60)
            print(run.stdout.strip()); print("exit", run.returncode); print(run.stderr.strip())
            """
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        process.arguments = ["python3", "-c", script, socketPath, try #require(Bubblewrap.locate()), monitor]
        let pipe = Pipe()
        process.standardOutput = pipe
        try process.run()
        let output = String(decoding: pipe.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        process.waitUntilExit()
        #expect(output.contains("relayed 2000000 HELLO"), "\(output)")
        #expect(output.contains("host loopback refused"), "\(output)")
        #expect(output.contains("exit 7"), "\(output)")
    }
}
