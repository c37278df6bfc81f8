import SluiceCore

/// Holds a sender to a packet rate: before sending packet number `n` it waits until
/// `start + n / rate`. It spins rather than sleeps, because at the rates it is for (tens of
/// thousands of packets per second and up) a sleep's wakeup is longer than the gap.
public struct Pacer: Sendable {
    /// Packets per second; `nil` sends flat out.
    public let rate: Int?
    @usableFromInline let start: Instant
    @usableFromInline let clock = MonotonicTimeSource()

    /// A pacer from now on.
    public init(rate: Int?) {
        precondition(rate.map { $0 > 0 } ?? true, "a rate must be positive")
        self.rate = rate
        start = clock.now()
    }

    /// Waits until packet number `sent` is due (returns at once without a rate).
    @inlinable
    public func waitForTurn(of sent: UInt64) {
        guard let rate else { return }
        let due = dueTime(of: sent, rate: rate)
        while clock.now() < due {}
    }

    @usableFromInline
    func dueTime(of sent: UInt64, rate: Int) -> Instant {
        start + .nanoseconds(Int64(sent.multipliedFullWidth(by: 1_000_000_000).low / UInt64(rate)))
    }
}
