import SluiceCore

/// The IP identifications of the host's own packets (IPv4 headers, IPv6 fragment headers),
/// picked as Linux picks them (RFC 7739 section 5.1): a counter for each of 2048 buckets, the
/// bucket and an offset chosen by a keyed hash of the packet's addresses and protocol (Swift's
/// per-process random `Hasher` seed is the key). One destination sees a counter of its own,
/// which says nothing of the host's traffic to others, as one counter for all did, and cannot
/// be guessed from another's.
public struct IPIdentifiers: Sendable {
    private var counters = [UInt32](repeating: 0, count: 2048)
    /// Where this instance's counters start (random): each worker of a host keeps its own, so
    /// two that fragment for one destination do not hand out the same identifications.
    private let start = UInt32.random(in: 0...UInt32.max)

    /// Identifiers with every counter at a random start.
    public init() {}

    /// The next identification for the packet whose IP header (IPv4 or IPv6, with its
    /// addresses in place) is at `network`.
    public mutating func next(forHeaderAt network: UnsafeRawPointer, isIPv6: Bool, protocolNumber: UInt8) -> UInt32 {
        var hasher = Hasher()
        hasher.combine(bytes: UnsafeRawBufferPointer(start: network + (isIPv6 ? 8 : 12), count: isIPv6 ? 32 : 8))
        hasher.combine(protocolNumber)
        let hash = UInt32(truncatingIfNeeded: hasher.finalize())
        let bucket = Int(hash >> 21)
        counters[bucket] &+= 1
        return hash &+ start &+ counters[bucket]
    }
}
