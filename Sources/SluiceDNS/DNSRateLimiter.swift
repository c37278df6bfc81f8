import SluiceCore
import SluicePackets
import Synchronization

/// Response rate limiting as Knot's `rrl` module does it: answers over UDP are counted per
/// client prefix (IPv4 /24, IPv6 /56) and per answer as Knot classes them (the name asked, of
/// any type, apart for ANY, DNSSEC types and empty answers; the zone for NXDOMAIN and wildcard
/// answers, so a random-name flood is one answer; the response code for errors), each in a
/// token bucket refilled at ``responsesPerSecond`` and holding four seconds' worth
/// (``burstSeconds``), full when it starts, as Knot's. An answer over the limit
/// is *slipped*, sent as a bare truncated response (TC, no records) that sends a real client to
/// TCP, every ``slip``-th time, and dropped the rest of the time (slip 1, Knot's default: always
/// slipped; 0: always dropped). Over TCP nothing is limited: the source address is proven there.
///
/// Memory is fixed: answers share buckets when their keys collide, as in Knot. Copies share one
/// table, as Knot's workers share theirs: every worker of a server counts against the same
/// limit. A bucket is one atomic word (the time of its last refill and its tokens), updated with
/// compare-and-swap: no lock between workers.
public struct DNSRateLimiter: Sendable {
    /// Responses per second per client prefix and answer.
    public let responsesPerSecond: Int
    /// Every how many limited answers one is slipped (sent truncated) instead of dropped.
    public let slip: Int
    /// Buckets (a power of two).
    public let bucketCount: Int
    /// Seconds of responses a bucket holds (Knot's `RRL_CAPACITY`): a client idle that long may
    /// send a burst of that many seconds' worth.
    public static let burstSeconds: Int64 = 4
    /// Tokens per response: a millisecond at `responsesPerSecond` refills exactly that many.
    static let tokensPerResponse: UInt64 = 1000

    /// The buckets, shared by every copy. Each state word holds the millisecond of its last
    /// refill (high 32 bits, wrapping; 0: never used) and its tokens (low 32 bits: at most
    /// 1,000,000 responses a second × 4 s × 1000 fits).
    final class Table: Sendable {
        nonisolated(unsafe) let states: UnsafeMutablePointer<Atomic<UInt64>>
        nonisolated(unsafe) let limited: UnsafeMutablePointer<Atomic<UInt64>>
        let count: Int

        init(count: Int) {
            self.count = count
            states = .allocate(capacity: count)
            limited = .allocate(capacity: count)
            for index in 0..<count {
                (states + index).initialize(to: Atomic(0))
                (limited + index).initialize(to: Atomic(0))
            }
        }

        deinit {
            states.deinitialize(count: count)
            limited.deinitialize(count: count)
            states.deallocate()
            limited.deallocate()
        }
    }

    let table: Table

    /// A limiter allowing `responsesPerSecond` per prefix and answer, slipping every `slip`-th.
    public init(responsesPerSecond: Int, slip: Int = 1, bucketCount: Int = 16384) {
        precondition((1...1_000_000).contains(responsesPerSecond) && slip >= 0 && bucketCount > 0
                     && bucketCount & (bucketCount - 1) == 0)
        self.responsesPerSecond = responsesPerSecond
        self.slip = slip
        self.bucketCount = bucketCount
        table = Table(count: bucketCount)
    }

    /// What to do with one answer.
    public enum Verdict: Equatable, Sendable {
        /// Under the limit: send it.
        case send
        /// Over: send it truncated and empty.
        case slip
        /// Over: send nothing.
        case drop
    }

    /// The key of an answer from `client`: its prefix and `answer` (a hash of what it answers).
    @inlinable
    public static func key(client: IPAddress, answer: UInt64) -> UInt64 {
        let prefix: UInt64 = switch client {
        case .v4(let address): UInt64(address.rawValue & 0xFFFF_FF00)
        case .v6(let address): (address.high & 0xFFFF_FFFF_FFFF_FF00) ^ 0x6000_0000_0000_0000
        }
        return (prefix &* 0x9E37_79B9_7F4A_7C15) ^ answer
    }

    /// Counts one answer with `key` at `now` and says whether it may go; any thread, any copy.
    public func admit(_ key: UInt64, now: Instant) -> Verdict {
        let index = Int(truncatingIfNeeded: key ^ (key >> 29)) & (bucketCount - 1)
        let full = UInt64(responsesPerSecond) * UInt64(Self.burstSeconds) * Self.tokensPerResponse
        // 0 marks a bucket never used: the millisecond 0 (once in 49 days) counts as 1.
        let millisecond = max(1, UInt32(truncatingIfNeeded: now.nanoseconds / 1_000_000))
        let state = table.states + index
        var old = state.pointee.load(ordering: .relaxed)
        while true {
            var tokens = full
            var refilled = millisecond
            if old != 0 {
                let then = UInt32(truncatingIfNeeded: old >> 32)
                tokens = old & 0xFFFF_FFFF
                // Another worker may have refilled it at a later millisecond than this one read.
                let elapsed = Int32(bitPattern: millisecond &- then)
                if elapsed > 0 {
                    tokens = min(full, tokens + UInt64(elapsed) * UInt64(responsesPerSecond))
                } else {
                    refilled = then
                }
            }
            let admitted = tokens >= Self.tokensPerResponse
            if admitted { tokens -= Self.tokensPerResponse }
            let (exchanged, current) = state.pointee.compareExchange(
                expected: old, desired: UInt64(refilled) << 32 | tokens, ordering: .relaxed)
            if exchanged {
                if admitted { return .send }
                break
            }
            old = current
        }
        let limited = table.limited[index].wrappingAdd(1, ordering: .relaxed).newValue
        guard slip > 0, limited % UInt64(slip) == 0 else { return .drop }
        return .slip
    }
}
