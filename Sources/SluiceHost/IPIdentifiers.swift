import SluiceCore

/// The IP identifications of the host's own packets (IPv4 headers, IPv6 fragment headers),
/// after Linux's way (RFC 7739 section 5.1): a counter for each of 2048 buckets, the bucket and
/// an offset chosen by a keyed hash of the packet's addresses and protocol (Swift's per-process
/// random `Hasher` seed is the key). A destination sees only its bucket's counter, which says
/// nothing of the host's traffic to destinations of other buckets (one counter for all told a
/// peer how much went to every other), and cannot be guessed from another bucket's. Linux also
/// steps its counters by random amounts; these step by one.
public struct IPIdentifiers: Sendable {
    private var counters = [UInt32](repeating: 0, count: 2048)
    /// Where this instance's counters start (random): each worker of a host keeps its own, so
    /// two that fragment for one destination are unlikely to hand out the same identifications
    /// at once.
    private let start = UInt32.random(in: 0...UInt32.max)

    /// Identifiers with every counter at a random start.
    public init() {}

    /// The next identification for the packet whose IP header (IPv4 or IPv6, with its
    /// addresses in place) is at `network`.
    public mutating func next(forHeaderAt network: UnsafeRawPointer, isIPv6: Bool, protocolNumber: UInt8) -> UInt32 {
        let hash = Self.hash(forHeaderAt: network, isIPv6: isIPv6, protocolNumber: protocolNumber)
        let bucket = Self.bucket(of: hash)
        counters[bucket] &+= 1
        return hash &+ start &+ counters[bucket]
    }

    /// The keyed hash of the header's addresses and protocol.
    static func hash(forHeaderAt network: UnsafeRawPointer, isIPv6: Bool, protocolNumber: UInt8) -> UInt32 {
        var hasher = Hasher()
        hasher.combine(bytes: UnsafeRawBufferPointer(start: network + (isIPv6 ? 8 : 12), count: isIPv6 ? 32 : 8))
        hasher.combine(protocolNumber)
        return UInt32(truncatingIfNeeded: hasher.finalize())
    }

    /// The counter a hash picks.
    static func bucket(of hash: UInt32) -> Int { Int(hash >> 21) }
}
