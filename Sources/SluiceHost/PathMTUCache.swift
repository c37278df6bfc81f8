import SluiceCore
import SluicePackets

/// Path MTUs below the device's, learned per destination from ICMP "fragmentation needed"
/// (RFC 1191) and ICMPv6 "packet too big" (RFC 8201), kept ten minutes as the kernel keeps them
/// (`mtu_expires`): the host's packets to that destination leave in fragments that fit.
public struct PathMTUCache: Sendable {
    /// Destinations remembered; a new one takes the slot of another that hashes the same.
    static let slots = 64
    /// How long a learned MTU holds.
    static let lifetime: Duration = .seconds(600)

    struct Entry {
        var destination: IPAddress?
        var mtu = 0
        var expires = Instant.zero
    }

    var entries = Array(repeating: Entry(), count: slots)
    /// Whether no MTU was ever learned: nothing to look up on the way out.
    public private(set) var isEmpty = true

    /// An empty cache.
    public init() {}

    /// Remembers `mtu` for `destination` until ten minutes after `now`.
    public mutating func learn(_ destination: IPAddress, mtu: Int, now: Instant) {
        entries[destination.slot(among: Self.slots)] = Entry(destination: destination, mtu: mtu, expires: now + Self.lifetime)
        isEmpty = false
    }

    /// The MTU learned for `destination`, while it holds.
    public func mtu(for destination: IPAddress, now: Instant) -> Int? {
        let entry = entries[destination.slot(among: Self.slots)]
        guard entry.destination == destination, now < entry.expires else { return nil }
        return entry.mtu
    }
}
