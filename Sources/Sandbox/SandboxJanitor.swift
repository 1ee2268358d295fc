import DispatchCore
import DispatchStore
import Foundation

/// Removes sandbox directories by selection or retention, and reconciles registry rows with the disk and with
/// their dispatches (a terminal dispatch never leaves its sandbox `running`).
package struct SandboxJanitor: Sendable {
    /// Which sandboxes a cleanup targets.
    package enum Selection: Sendable {
        case requestId(String)
        case sandboxId(String)
        case expired
        case allTerminal
    }

    /// What happened to one sandbox.
    package struct Action: Codable, Sendable, Equatable {
        package var sandboxId: String
        package var requestId: String
        package var path: String
        /// `removed`, `would-remove`, `skipped-active`, `reconciled`, `failed`.
        package var action: String
        package var detail: String
    }

    package let store: any DispatchStore
    /// The replica whose disk this janitor keeps: rows of other replicas (a shared store) are theirs to keep.
    package let replica: String
    /// Where host-mode runs keep their logs (`<state>/runs`), swept by the same retention as sandboxes; `nil`: not
    /// swept.
    package let runsDirectory: String?

    package init(store: any DispatchStore, replica: String = ReplicaName.current, runsDirectory: String? = nil) {
        self.store = store
        self.replica = replica
        self.runsDirectory = runsDirectory
    }

    /// Removes the selected sandboxes. Active (`running`) ones are skipped unless `force`; `dryRun` changes nothing.
    package func cleanup(_ selection: Selection, force: Bool, dryRun: Bool, now: Date = Date()) async throws -> [Action] {
        let records = try await reconcile(now: now).records
        let selected: [SandboxRecord] = records.filter { record in
            guard record.state != .removed else { return false }
            switch selection {
            case .requestId(let id): return record.requestId == id
            case .sandboxId(let id): return record.sandboxId == id
            // Warm checkouts are the pool's to keep and drop (one it dropped unrecorded is reconciled above).
            case .expired:
                return record.state != .running && record.state != .warm
                    && (record.cleanupAfter.flatMap(ISO8601.date).map { $0 <= now } ?? false)
            case .allTerminal: return record.state != .running && record.state != .warm
            }
        }
        var actions: [Action] = []
        for record in selected {
            if record.state == .running && !force {
                actions.append(action(record, "skipped-active", "sandbox is running; use --force to remove it"))
                continue
            }
            if dryRun {
                actions.append(action(record, "would-remove", "state \(record.state.rawValue)"))
                continue
            }
            actions.append(await remove(record, now: now))
        }
        return actions
    }

    /// The periodic sweep: reconcile rows, then remove expired sandboxes.
    package func sweep(now: Date = Date()) async throws -> [Action] {
        let reconciled = try await reconcile(now: now).actions
        return reconciled + (try await cleanup(.expired, force: false, dryRun: false, now: now)) + (try await sweepRunLogs(now: now))
    }

    /// Removes host-mode run directories (`<state>/runs/<requestId>`: logs, task file) once their request has been
    /// terminal for the sandbox retention of its status; a directory of an unknown request once it is that old. Runs
    /// that are not terminal are left alone.
    package func sweepRunLogs(now: Date = Date()) async throws -> [Action] {
        guard let runsDirectory else { return [] }
        var actions: [Action] = []
        for name in (try? FileManager.default.contentsOfDirectory(atPath: runsDirectory)) ?? [] {
            let path = "\(runsDirectory)/\(name)"
            let record = try await store.record(name)
            let ended: (at: Date, state: SandboxRecord.State)
            if let record {
                guard record.status.isTerminal, let at = record.result.completedAt.flatMap(ISO8601.date) else { continue }
                ended = (at, SandboxRecord.State(rawValue: record.status.rawValue) ?? .failed)
            } else {
                guard let modified = (try? FileManager.default.attributesOfItem(atPath: path))?[.modificationDate] as? Date else { continue }
                ended = (modified, .failed)
            }
            guard ended.at.addingTimeInterval(SandboxRegistry.retention(for: ended.state)) <= now else { continue }
            let row = Action(sandboxId: "", requestId: name, path: path, action: "removed", detail: "host run logs past retention")
            do {
                try FileManager.default.removeItem(atPath: path)
                actions.append(row)
            } catch {
                actions.append(Action(sandboxId: "", requestId: name, path: path, action: "failed", detail: "cannot remove \(path): \(error)"))
            }
        }
        return actions
    }

    /// Rows whose directory vanished become `removed`; `running` rows whose dispatch is terminal take its status.
    @discardableResult
    package func reconcile(now: Date = Date()) async throws -> (records: [SandboxRecord], actions: [Action]) {
        var records: [SandboxRecord] = []
        var actions: [Action] = []
        // A shared store holds every replica's rows: each keeps its own disk. The embedded store is one machine's.
        let shared = store.announcesCommits
        for var record in try await store.sandboxes() where !shared || record.replica == nil || record.replica == replica {
            if record.state != .removed, !FileManager.default.fileExists(atPath: record.path) {
                record.state = .removed
                record.updatedAt = ISO8601.string(now)
                try await store.saveSandbox(record)
                actions.append(action(record, "reconciled", "directory vanished; marked removed"))
            } else if record.state == .running, let dispatch = try await store.record(record.requestId), dispatch.status.isTerminal {
                let state = SandboxRecord.State(rawValue: dispatch.status.rawValue) ?? .failed
                record.state = state
                record.updatedAt = ISO8601.string(now)
                record.cleanupAfter = ISO8601.string(now.addingTimeInterval(SandboxRegistry.retention(for: state)))
                try await store.saveSandbox(record)
                actions.append(action(record, "reconciled", "dispatch is \(dispatch.status.rawValue); sandbox no longer running"))
            }
            records.append(record)
        }
        return (records, actions)
    }

    private func remove(_ record: SandboxRecord, now: Date) async -> Action {
        do {
            if FileManager.default.fileExists(atPath: record.path) {
                try FileManager.default.removeItem(atPath: record.path)
            }
            var removed = record
            removed.state = .removed
            removed.updatedAt = ISO8601.string(now)
            try await store.saveSandbox(removed)
            return action(record, "removed", "was \(record.state.rawValue)")
        } catch {
            return action(record, "failed", "cannot remove \(record.path): \(error)")
        }
    }

    private func action(_ record: SandboxRecord, _ action: String, _ detail: String) -> Action {
        Action(sandboxId: record.sandboxId, requestId: record.requestId, path: record.path, action: action, detail: detail)
    }
}
