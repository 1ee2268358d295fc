import AsyncHTTPClient
import Foundation
import NIOCore

/// The body of a long-lived GET (a watch, a log follow), chunk by chunk. Pull-based: the request is made by the
/// first `next()` and each chunk is read when asked for, in the iterating task, so the stream lives exactly as
/// long as its reader and ends with the reader's cancellation; no task of its own feeds it.
package struct KubeBodyChunks: AsyncSequence, Sendable {
    package typealias Element = Data
    let client: KubeClient
    let path: String
    let timeout: Duration

    package func makeAsyncIterator() -> Iterator { Iterator(source: self) }

    package struct Iterator: AsyncIteratorProtocol {
        let source: KubeBodyChunks
        var body: HTTPClientResponse.Body.AsyncIterator?
        var ended = false

        package mutating func next() async throws -> Data? {
            guard !ended else { return nil }
            do {
                if body == nil { body = try await source.client.openStream(source.path, timeout: source.timeout).makeAsyncIterator() }
                guard let buffer = try await body?.next() else {
                    ended = true
                    return nil
                }
                return Data(buffer.readableBytesView)
            } catch let error as KubeError {
                ended = true
                throw error
            } catch {
                ended = true
                throw KubeError(status: 0, message: "stream \(source.path) broke: \(error)")
            }
        }
    }
}

/// A Job watch's events, one per complete line of the body (see ``KubeBodyChunks``); a last line without its
/// newline still counts.
package struct KubeWatchEvents: AsyncSequence, Sendable {
    package typealias Element = JobWatchEvent
    let chunks: KubeBodyChunks

    package func makeAsyncIterator() -> Iterator { Iterator(chunks: chunks.makeAsyncIterator()) }

    package struct Iterator: AsyncIteratorProtocol {
        var chunks: KubeBodyChunks.Iterator
        var pending = Data()
        var drained = false

        package mutating func next() async throws -> JobWatchEvent? {
            while true {
                if let newline = pending.firstIndex(of: UInt8(ascii: "\n")) {
                    let line = pending[pending.startIndex..<newline]
                    pending.removeSubrange(pending.startIndex...newline)
                    if !line.isEmpty, let event = try JobWatchEvent(line: Data(line)) { return event }
                    continue
                }
                guard !drained else { return nil }
                if let chunk = try await chunks.next() {
                    pending.append(chunk)
                } else {
                    drained = true
                    // The last line, if it had no newline.
                    if !pending.isEmpty { pending.append(UInt8(ascii: "\n")) }
                }
            }
        }
    }
}
