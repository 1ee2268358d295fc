import Foundation

/// ISO-8601 UTC timestamps with milliseconds and a `Z`, the only format results use.
package enum ISO8601 {
    /// Formats `date` as e.g. `2026-11-23T19:21:00.123Z`.
    package static func string(_ date: Date) -> String {
        date.formatted(
            .iso8601.year().month().day().dateSeparator(.dash).time(includingFractionalSeconds: true)
                .timeSeparator(.colon).timeZone(separator: .omitted)
        )
    }

    /// Parses a timestamp written by ``string(_:)`` (fractional seconds optional).
    package static func date(_ string: String) -> Date? {
        if let date = try? Date(string, strategy: .iso8601.year().month().day().time(includingFractionalSeconds: true)) {
            return date
        }
        return try? Date(string, strategy: .iso8601)
    }
}
