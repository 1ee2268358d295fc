import AgentProcess
import DispatchCore
import Egress
import Foundation

extension AgentRunner {
    /// Opens the run's way out through the egress proxy (CONTRACT §10) when this runner controls egress (isolation on);
    /// `nil` when it does not. Failing to open it fails the run: an isolated agent is never given the host's network.
    @inline(never)
    /// `repository`: the operator's checkout a sandbox is made from, whose `origin` host the run may reach.
    package func openEgress(_ context: BackendContext, repository: String? = nil) async -> Result<EgressAttachment?, DispatchFailure> {
        guard let egress else { return .success(nil) }
        let request = context.request
        let repoHost = EgressService.repositoryHost(request.repoUrl) ?? repository.flatMap(EgressService.originHost(ofRepositoryAt:))
        do {
            return .success(
                try await egress.open(
                    requestId: request.requestId,
                    tool: request.tool.rawValue,
                    network: request.network,
                    repoHost: repoHost,
                    canary: request.tool == .canary && request.effectiveCanary.scenario == .escape,
                    logger: context.logger
                )
            )
        } catch {
            return .failure(.message("cannot open the run's egress proxy: \(error)"))
        }
    }

    /// A request's `network` this runner cannot honour: outside the operator's list, or asked of a runner without
    /// egress control (isolation off), which would otherwise give the agent the whole network silently.
    package func networkRefusal(_ request: DispatchRequest) -> RequestValidationError? {
        guard let network = request.network else { return nil }
        guard let egress else {
            return RequestValidationError(
                field: "network",
                message: "this runner has no egress control (DISPATCH_ISOLATION=\(isolation.mode.rawValue)): it cannot restrict the agent's network"
            )
        }
        return egress.settings.refusal(of: network)
    }
}

extension EgressAttachment {
    /// Closes the run's proxy and records what its agent did on the network in `result`; a failed result's error says
    /// how many connections the policy refused (they may be why it failed).
    package func finish(_ result: inout DispatchResult) async {
        let report = await close()
        result.network = report
        if result.status == .failed, let sentence = report.denialSentence {
            result.error = [result.error, sentence].compactMap { $0 }.joined(separator: " ")
        }
    }
}
