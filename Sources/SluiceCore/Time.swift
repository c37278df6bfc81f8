#if canImport(Glibc)
import Glibc
#endif

/// A point on the monotonic clock, in nanoseconds since an unspecified start (boot on Linux).
///
/// Stages never read the time themselves: the caller passes `now` in, so tests drive them
/// with a ``ManualTimeSource`` and no sleeping.
public struct Instant: Comparable, Hashable, Sendable, CustomStringConvertible {
    /// Nanoseconds since the clock's start.
    public var nanoseconds: UInt64

    /// Creates an instant.
    @inlinable
    public init(nanoseconds: UInt64) { self.nanoseconds = nanoseconds }

    /// The clock's start.
    public static let zero = Instant(nanoseconds: 0)

    /// The instant `duration` later (negative durations go back, not below zero).
    @inlinable
    public static func + (lhs: Instant, rhs: Duration) -> Instant {
        let delta = rhs.nanosecondsClamped
        return delta >= 0
            ? Instant(nanoseconds: lhs.nanoseconds &+ UInt64(delta))
            : Instant(nanoseconds: lhs.nanoseconds - min(lhs.nanoseconds, UInt64(-delta)))
    }

    /// The time from `rhs` to `lhs`.
    @inlinable
    public static func - (lhs: Instant, rhs: Instant) -> Duration {
        .nanoseconds(Int64(bitPattern: lhs.nanoseconds &- rhs.nanoseconds))
    }

    @inlinable
    public static func < (lhs: Instant, rhs: Instant) -> Bool { lhs.nanoseconds < rhs.nanoseconds }

    public var description: String { "\(nanoseconds)ns" }
}

extension Duration {
    /// The duration in whole nanoseconds, clamped to `Int64`.
    @inlinable
    public var nanosecondsClamped: Int64 {
        let (seconds, attoseconds) = components
        let (scaled, overflow) = seconds.multipliedReportingOverflow(by: 1_000_000_000)
        if overflow { return seconds < 0 ? .min : .max }
        return scaled.addingReportingOverflow(attoseconds / 1_000_000_000).partialValue
    }
}

/// Where the time comes from: the real monotonic clock in ports and workers,
/// a ``ManualTimeSource`` in tests.
public protocol TimeSource {
    /// The current instant.
    func now() -> Instant
}

/// `CLOCK_MONOTONIC`, read through the vDSO (no syscall).
public struct MonotonicTimeSource: TimeSource, Sendable {
    /// Creates the clock.
    public init() {}

    @inlinable
    public func now() -> Instant {
        var ts = timespec()
        clock_gettime(CLOCK_MONOTONIC, &ts)
        return Instant(nanoseconds: UInt64(ts.tv_sec) &* 1_000_000_000 &+ UInt64(ts.tv_nsec))
    }
}

/// A clock that moves only when told: for driving stages and timers in tests.
public final class ManualTimeSource: TimeSource, @unchecked Sendable {
    private var current: Instant

    /// Creates a clock that reads `start` until advanced.
    public init(start: Instant = Instant(nanoseconds: 1_000_000_000)) { current = start }

    public func now() -> Instant { current }

    /// Moves the clock forward.
    public func advance(by duration: Duration) { current = current + duration }

    /// Sets the clock to `instant` (never backwards).
    public func advance(to instant: Instant) { current = max(current, instant) }
}
