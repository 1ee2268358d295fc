import Foundation
import Testing

@testable import Kube

/// The follow loop's policy, one observation at a time (no cluster, no clock).
@Suite struct JobFollowDecisionTests {
    static let grace = Duration.seconds(5)
    static let failed = KubeJob.Condition(type: "Failed", reason: "BackoffLimitExceeded")

    func decide(_ observation: FollowObservation) -> FollowAction {
        JobFollower.decide(observation, job: "dispatch-x", resultGrace: Self.grace)
    }

    @Test func theTokenComesFirst() {
        #expect(decide(.settledElsewhere) == .settle)
        #expect(decide(.letGo) == .letGo)
        #expect(decide(.cancelled(reason: "cancelled by request")) == .cancel(reason: "cancelled by request"))
    }

    @Test func aSpentBudgetIsExplainedByAConditionSeenEarlierOrCleanedUp() {
        #expect(decide(.budgetSpent(ended: Self.failed)) == .failAsEnded(Self.failed))
        #expect(decide(.budgetSpent(ended: nil)) == .cleanUpAfterBudget)
    }

    @Test func aMissingJobFailsSayingWhetherItWasEverSeen() {
        #expect(decide(.jobMissing(seenBefore: true)) == .fail("Job dispatch-x disappeared before it finished"))
        guard case .fail(let never) = decide(.jobMissing(seenBefore: false)) else {
            Issue.record("not a failure")
            return
        }
        #expect(never.contains("does not exist"))
    }

    @Test func aSuspendedJobIsResumed() {
        #expect(decide(.jobSuspended) == .resume)
    }

    @Test(arguments: [(Duration.zero, false), (.seconds(4), false), (.seconds(5), true), (.seconds(60), true)])
    func anEndedJobWithoutAResultGetsTheResultGrace(waited: Duration, gives: Bool) {
        #expect(decide(.jobEnded(Self.failed, hasReport: true, waited: waited)) == .takeReport, "a report is taken at once")
        #expect(decide(.jobEnded(Self.failed, hasReport: false, waited: waited)) == (gives ? .failAsEnded(Self.failed) : .wait))
    }

    @Test func aPodThatWillNeverRunIsDeletedAndFailed() {
        #expect(
            decide(.jobRunning(podFailure: "pod p of Job dispatch-x cannot start: ErrImagePull"))
                == .deleteAndFail(
                    "pod p of Job dispatch-x cannot start: ErrImagePull"
                )
        )
        #expect(decide(.jobRunning(podFailure: nil)) == .wait)
    }
}
