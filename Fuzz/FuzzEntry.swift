// libFuzzer entry point over the two parsers of untrusted bytes: the dispatch request validator
// (`POST /internal/agent-dispatch`, `dispatch run --request`) and the callback decoder
// (`POST /internal/agent-result`). Built by `make fuzz` together with DispatchCore's sources.
import Foundation

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzOneInput(_ start: UnsafePointer<UInt8>, _ count: Int) -> CInt {
    let data = Data(bytes: start, count: count)
    switch data.first.map({ $0 % 3 }) ?? 0 {
    case 0:
        if let request = try? RequestValidator.validate(json: data.dropFirst()) {
            // Whatever validates must satisfy the contract's promises.
            precondition(!request.requestId.isEmpty && request.requestId.utf8.count <= 128)
            precondition(!request.task.isEmpty && request.task.utf8.count <= RequestValidator.maxTaskBytes)
            precondition(request.fallbackModels.count <= HostileValueRules.maxFallbackModels)
            for value in [request.model, request.agent].compactMap({ $0 }) + request.fallbackModels {
                precondition(HostileValueRules.argumentProblem(value) == nil)
            }
            precondition(!request.task.utf8.contains(0))
            if let base = request.baseSha { precondition(HostileValueRules.revisionProblem(base) == nil) }
            if let url = request.repoUrl { precondition(!HostileValueRules.urlHasCredentials(url)) }
            _ = request.modelAttempts
            _ = try? JSONEncoder().encode(request)
        }
    case 1:
        if let report = try? SandboxExecutionResult.decodeCallback(data.dropFirst()) {
            var result = DispatchResult(request: DispatchRequest(requestId: report.requestId, task: "t", tool: .codex), status: .running)
            result.take(report)
            precondition(result.requestId == report.requestId)
            _ = try? JSONEncoder().encode(result)
        }
    default:
        let text = String(decoding: data.dropFirst(), as: UTF8.self)
        _ = HostileValueRules.revisionProblem(text)
        _ = HostileValueRules.urlHasCredentials(text)
        _ = LoopbackAddress.isLoopbackHostHeader(text)
        _ = LoopbackAddress.host(ofURL: text)
    }
    return 0
}
