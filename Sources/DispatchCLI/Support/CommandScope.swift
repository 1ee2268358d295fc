/// Work that lives exactly as long as the command that needs it (the PostgreSQL store's connection pool): children
/// of one task group around the command's `run()`, cancelled and awaited when the command returns or throws. A
/// command reaches its scope through ``current`` (a task-local, so any task of the command can start work in it).
final class CommandScope: Sendable {
    @TaskLocal static var current: CommandScope?

    private let work: AsyncStream<@Sendable () async -> Void>.Continuation

    private init(work: AsyncStream<@Sendable () async -> Void>.Continuation) {
        self.work = work
    }

    /// Runs `operation` as a child of the command's scope; it is cancelled when the command ends.
    func start(_ operation: @escaping @Sendable () async -> Void) {
        work.yield(operation)
    }

    /// Runs `body` in a new scope: what it starts runs beside it and ends with it.
    static func run<T>(_ body: () async throws -> T) async throws -> T {
        let (started, work) = AsyncStream.makeStream(of: (@Sendable () async -> Void).self)
        let scope = CommandScope(work: work)
        return try await withThrowingDiscardingTaskGroup(returning: T.self) { group in
            group.addTask {
                await withDiscardingTaskGroup { children in
                    for await operation in started { children.addTask(operation: operation) }
                }
            }
            defer {
                work.finish()
                group.cancelAll()
            }
            return try await $current.withValue(scope) { try await body() }
        }
    }
}
