import ArgumentParser
import DispatchCore
import DispatchStore
import Foundation

/// The admin token, found as CONTRACT §3 orders it: `--token-file`, `DISPATCH_TOKEN_FILE`, `DISPATCH_TOKEN`,
/// else `<state>/token` (created 0600 with 32 random bytes as hex by `serve`, reused when present).
struct ServiceToken {
    /// The token itself.
    var value: String
    /// Where it came from, for the log line (`DISPATCH_TOKEN` or a file path; never the value).
    var source: String
    /// Whether this call created `<state>/token`.
    var created = false

    /// Shortest admin token `serve` accepts.
    static let minimumLength = 32

    /// Bytes of randomness in a generated token.
    static let generatedBytes = 32

    /// The file a state dir keeps its token in.
    static func stateTokenPath(_ stateDir: String) -> String { "\(stateDir)/token" }

    /// Resolves the token; with `createInState`, `<state>/token` is created when nothing else gives one.
    /// `useState` false skips `<state>/token` (a remote server that is not this machine's).
    static func resolve(
        tokenFile: String?,
        configuration: DispatchConfiguration,
        createInState: Bool,
        useState: Bool = true
    ) throws -> ServiceToken? {
        if let file = tokenFile ?? configuration.tokenFile {
            let flag = tokenFile != nil ? "--token-file" : "DISPATCH_TOKEN_FILE"
            return ServiceToken(value: try read(file, named: flag), source: file)
        }
        if let token = configuration.token { return ServiceToken(value: token, source: "DISPATCH_TOKEN") }
        guard useState else { return nil }
        let path = stateTokenPath(configuration.stateDir)
        if FileManager.default.fileExists(atPath: path) { return ServiceToken(value: try read(path, named: "the state token"), source: path) }
        guard createInState else { return nil }
        return ServiceToken(value: try create(path), source: path, created: true)
    }

    private static func read(_ path: String, named name: String) throws -> String {
        guard FileManager.default.fileExists(atPath: path) else { throw ValidationError("\(name) \(path) does not exist") }
        guard let text = try? String(contentsOfFile: path, encoding: .utf8) else { throw ValidationError("cannot read \(name) \(path)") }
        let token = text.trimmingCharacters(in: .whitespacesAndNewlines)
        guard !token.isEmpty else { throw ValidationError("\(name) \(path) is empty") }
        return token
    }

    /// Writes a fresh token to `path` (0600, atomically; a concurrent creator's token wins if it got there first).
    private static func create(_ path: String) throws -> String {
        var generator = SystemRandomNumberGenerator()
        let token = (0..<generatedBytes).map { _ in String(format: "%02x", UInt8.random(in: 0...255, using: &generator)) }.joined()
        do {
            try FileManager.default.createDirectory(
                atPath: (path as NSString).deletingLastPathComponent,
                withIntermediateDirectories: true,
                attributes: [.posixPermissions: 0o700]
            )
            try AtomicFile.write(Data("\(token)\n".utf8), to: path, replace: false)
        } catch let error as AtomicFile.Exists {
            _ = error
            return try read(path, named: "the state token")
        } catch {
            throw ValidationError("cannot create the token file \(path): \(error)")
        }
        return token
    }
}
