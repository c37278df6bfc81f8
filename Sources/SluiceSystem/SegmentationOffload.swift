import Logging
import SluicePackets

/// Whether a datagram port sends with UDP GSO now: on when configured, paused after the kernel
/// refuses a GSO send (EIO or EINVAL: a route or device that cannot segment), then tried again;
/// and how large its segments may be.
/// Each refusal doubles the pause, so a path that never takes GSO costs one failed send per long
/// pause, and one refusal does not turn GSO off for good.
public struct SegmentationOffload: Sendable {
    /// Whether the next send may coalesce datagrams.
    @inlinable public var isEnabled: Bool { enabled }
    @usableFromInline var enabled: Bool
    /// GSO sends the kernel refused so far.
    public private(set) var refusals: UInt64 = 0
    @usableFromInline let configured: Bool
    @usableFromInline var sendsUntilRetry = 0
    @usableFromInline var pause = 1024

    @usableFromInline static let longestPause = 1 << 20

    /// The largest segment a GSO send may use: as configured, lowered when the kernel finds one
    /// past the path's MTU (EMSGSIZE), so runs of larger datagrams go out one by one.
    @inlinable public var largestSegment: Int { segmentLimit }
    @usableFromInline var segmentLimit: Int

    /// GSO as configured, segments of at most `largestSegment` bytes.
    public init(configured: Bool, largestSegment: Int = 1452) {
        self.configured = configured
        enabled = configured
        segmentLimit = largestSegment
    }

    /// Notes a GSO send refused for segments of `segment` bytes (EMSGSIZE: past the path's MTU):
    /// later runs keep below that size. Returns true when the limit came down, the news worth logging.
    public mutating func segmentTooLarge(_ segment: Int) -> Bool {
        guard segment - 1 < segmentLimit else { return false }
        segmentLimit = segment - 1
        return true
    }

    /// Counts `count` datagrams sent; ends a pause once that many have gone out singly.
    @inlinable
    public mutating func noteSends(_ count: Int) {
        guard configured, !enabled else { return }
        sendsUntilRetry -= count
        if sendsUntilRetry <= 0 { enabled = true }
    }

    /// Notes a refused GSO send and pauses GSO. Returns true for the first refusal, the one
    /// worth logging.
    public mutating func refused() -> Bool {
        refusals += 1
        enabled = false
        sendsUntilRetry = pause
        pause = min(pause * 2, Self.longestPause)
        return refusals == 1
    }
}

extension SegmentationOffload {
    /// ``refused()``, the first refusal logged through `logger` for the port on `listen`.
    public mutating func refused(_ error: Int32, logger: Logger, listen: IPEndpoint) {
        if refused() {
            logger.warning("UDP GSO refused by the kernel; sending datagrams one by one for a while",
                           metadata: ["errno": "\(error)", "listen": "\(listen)"])
        }
    }

    /// ``segmentTooLarge(_:)``, each lower limit logged through `logger` for the port on `listen`.
    public mutating func segmentTooLarge(_ segment: Int, logger: Logger, listen: IPEndpoint) {
        if segmentTooLarge(segment) {
            logger.notice("UDP GSO segments of \(segment) bytes are past the path's MTU; larger replies go one by one",
                          metadata: ["listen": "\(listen)"])
        }
    }
}
