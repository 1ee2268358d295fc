import DispatchCore

/// What one pass of the Job follow loop saw, in the order it looks: the run's token, the budget, the Job.
enum FollowObservation: Sendable, Equatable {
    /// The run's terminal result was stored by another path (the Job's callback).
    case settledElsewhere
    /// A shutdown let go of the run: the Job goes on and the next runner re-attaches.
    case letGo
    /// The run was cancelled, with the reason.
    case cancelled(reason: String)
    /// The budget is spent; `ended` is a terminal condition seen earlier without a result.
    case budgetSpent(ended: KubeJob.Condition?)
    /// The Job is not there; `seenBefore` says whether this follow ever saw it.
    case jobMissing(seenBefore: Bool)
    /// The Job waits suspended and nobody resumed it (its creator died before it could).
    case jobSuspended
    /// The Job has a terminal condition; `hasReport` is whether its log holds a result block, `waited` how long the
    /// condition has been seen without one.
    case jobEnded(KubeJob.Condition, hasReport: Bool, waited: Duration)
    /// The Job runs; `podFailure` is why its pod never will, when that is known.
    case jobRunning(podFailure: String?)
}

/// What the follow loop does about an observation.
enum FollowAction: Sendable, Equatable {
    /// Return: the stored result stands.
    case settle
    /// Return the run as it is, still running.
    case letGo
    /// Keep the log, delete the Job, end `cancelled`.
    case cancel(reason: String)
    /// Keep the log already read and fail with what the condition says.
    case failAsEnded(KubeJob.Condition)
    /// Read the log and delete the Job within the API grace, then take its report or fail as timed out.
    case cleanUpAfterBudget
    /// Fail without touching the Job.
    case fail(String)
    /// Create the Job's Secret and resume it, then look again at once.
    case resume
    /// Keep the log and take its report.
    case takeReport
    /// Keep the log, delete the Job and fail.
    case deleteAndFail(String)
    /// Wait for the next wakeup (a watch event, the token, the poll interval).
    case wait
}

extension JobFollower {
    /// The whole policy of following a Job, without I/O: one observation in, one action out.
    static func decide(_ observation: FollowObservation, job: String, resultGrace: Duration) -> FollowAction {
        switch observation {
        case .settledElsewhere: .settle
        case .letGo: .letGo
        case .cancelled(let reason): .cancel(reason: reason)
        case .budgetSpent(let ended?): .failAsEnded(ended)
        case .budgetSpent(nil): .cleanUpAfterBudget
        case .jobMissing(seenBefore: true): .fail("Job \(job) disappeared before it finished")
        case .jobMissing(seenBefore: false):
            .fail("Job \(job) does not exist: it was deleted, or the runner that owned this request stopped before creating it")
        case .jobSuspended: .resume
        case .jobEnded(_, hasReport: true, _): .takeReport
        // The log (or the callback) can lag the condition: give them a moment before calling it.
        case .jobEnded(let condition, hasReport: false, let waited): waited >= resultGrace ? .failAsEnded(condition) : .wait
        case .jobRunning(podFailure: let failure?): .deleteAndFail(failure)
        case .jobRunning(podFailure: nil): .wait
        }
    }
}
