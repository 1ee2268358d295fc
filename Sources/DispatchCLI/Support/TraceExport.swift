import ArgumentParser
import Foundation
import Logging
import OTel
import ServiceLifecycle

/// Traces over OTLP (CONTRACT §11) when the operator asks for them with the standard variables: an endpoint
/// (`OTEL_EXPORTER_OTLP_ENDPOINT` or `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`) and not `OTEL_SDK_DISABLED=true`; then
/// swift-otel is the process's tracer (the rest of `OTEL_*` as it reads them: protocol, headers, sampler, batch
/// delays, service name — default `agent-dispatch`). Logs and metrics stay this runner's own. Without an endpoint
/// nothing is started: every span is the no-op tracer's.
enum TraceExport {
    /// Whether `environment` asks for traces.
    static func enabled(_ environment: [String: String]) -> Bool {
        guard environment["OTEL_SDK_DISABLED"]?.lowercased() != "true" else { return false }
        return !(environment["OTEL_EXPORTER_OTLP_ENDPOINT"] ?? "").isEmpty || !(environment["OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"] ?? "").isEmpty
    }

    /// Runs `body` with traces exported when `environment` asks for them; what is still batched is sent before it
    /// returns (a `dispatch run` ends right after its one dispatch).
    static func around<T: Sendable>(
        _ environment: [String: String] = ProcessInfo.processInfo.environment,
        logger: Logger,
        _ body: () async throws -> T
    ) async throws -> T {
        guard enabled(environment) else { return try await body() }
        var configuration = OTel.Configuration.default
        configuration.serviceName = environment["OTEL_SERVICE_NAME"] ?? "agent-dispatch"
        configuration.logs.enabled = false
        configuration.metrics.enabled = false
        configuration.traces.enabled = true
        let observability: any Service
        do {
            observability = try OTel.bootstrap(configuration: configuration, environment: environment)
        } catch {
            throw ValidationError("cannot export traces as OTEL_* asks: \(error)")
        }
        let group = ServiceGroup(configuration: .init(services: [observability], gracefulShutdownSignals: [], logger: logger))
        let exporting = Task { try await group.run() }
        let value: T
        do {
            value = try await body()
        } catch {
            await group.triggerGracefulShutdown()
            _ = try? await exporting.value
            throw error
        }
        await group.triggerGracefulShutdown()
        _ = try? await exporting.value
        return value
    }
}
