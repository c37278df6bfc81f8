import SluiceCore
import SluicePackets

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
/// Memory is fixed: answers share buckets when their keys collide, as in Knot.
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

    struct Bucket {
        var key: UInt64 = 0
        /// Tokens, in millionths of a response.
        var tokens: Int64 = 0
        var refilled = Instant.zero
        var limited: UInt64 = 0
    }

    var buckets: [Bucket]

    /// A limiter allowing `responsesPerSecond` per prefix and answer, slipping every `slip`-th.
    public init(responsesPerSecond: Int, slip: Int = 1, bucketCount: Int = 16384) {
        precondition(responsesPerSecond > 0 && slip >= 0 && bucketCount > 0 && bucketCount & (bucketCount - 1) == 0)
        self.responsesPerSecond = responsesPerSecond
        self.slip = slip
        self.bucketCount = bucketCount
        buckets = Array(repeating: Bucket(), count: bucketCount)
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

    /// Counts one answer with `key` at `now` and says whether it may go.
    public mutating func admit(_ key: UInt64, now: Instant) -> Verdict {
        let index = Int(truncatingIfNeeded: key ^ (key >> 29)) & (bucketCount - 1)
        let full = Int64(responsesPerSecond) * Self.burstSeconds * 1_000_000
        if buckets[index].refilled == .zero {
            buckets[index] = Bucket(key: key, tokens: full, refilled: now, limited: 0)
        } else if now > buckets[index].refilled {
            // Microseconds elapsed times responses per second: millionths of a response.
            let elapsed = Int64(clamping: (now - buckets[index].refilled).nanosecondsClamped / 1000)
            let (added, overflow) = elapsed.multipliedReportingOverflow(by: Int64(responsesPerSecond))
            let tokens = buckets[index].tokens
            buckets[index].tokens = overflow || added >= full - tokens ? full : tokens + added
            buckets[index].refilled = now
        }
        // Answers whose keys collide share the bucket (a newcomer does not refill it).
        buckets[index].key = key
        if buckets[index].tokens >= 1_000_000 {
            buckets[index].tokens -= 1_000_000
            return .send
        }
        buckets[index].limited &+= 1
        guard slip > 0, buckets[index].limited % UInt64(slip) == 0 else { return .drop }
        return .slip
    }
}
