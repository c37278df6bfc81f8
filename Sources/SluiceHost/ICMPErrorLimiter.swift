import SluiceCore
import SluicePackets

/// The kernel's bounds on ICMP errors a host sends: at most `icmp_msgs_per_sec` (1000) a
/// second in bursts of `icmp_msgs_burst` (50) in all, and one a second (`icmp_ratelimit`,
/// bursts of six) to each peer, so a spoofed flood cannot turn the host into a reflector.
struct ICMPErrorLimiter {
    static let globalCost: UInt64 = 1_000_000
    static let globalBurst: UInt64 = 50 * globalCost
    static let peerCost: UInt64 = 1_000_000_000
    static let peerBurst: UInt64 = 6 * peerCost
    /// Peers remembered; a new one takes the slot of another that hashes the same (and gets a full burst).
    static let peerSlots = 256

    struct Peer {
        var address: IPAddress?
        var credit: UInt64 = 0
        var last: UInt64 = 0
    }

    var globalCredit = globalBurst
    var globalLast: UInt64 = 0
    var peers = Array(repeating: Peer(), count: peerSlots)

    /// Whether an error to `peer` may go now; takes its cost when it may.
    mutating func allow(to peer: IPAddress, now: Instant) -> Bool {
        let time = now.nanoseconds
        let global = min(Self.globalBurst, globalCredit &+ (time &- min(time, globalLast)))
        globalLast = time
        globalCredit = global
        guard global >= Self.globalCost else { return false }
        let index = peer.slot(among: Self.peerSlots)
        if peers[index].address != peer {
            peers[index] = Peer(address: peer, credit: Self.peerBurst, last: time)
        }
        let credit = min(Self.peerBurst, peers[index].credit &+ (time &- min(time, peers[index].last)))
        peers[index].last = time
        guard credit >= Self.peerCost else {
            peers[index].credit = credit
            return false
        }
        peers[index].credit = credit - Self.peerCost
        globalCredit = global - Self.globalCost
        return true
    }
}

extension IPAddress {
    /// Where the address goes in a table of `count` slots that keeps one address per slot.
    func slot(among count: Int) -> Int {
        let key: UInt64 = switch self {
        case .v4(let a): UInt64(a.rawValue)
        case .v6(let a): a.high ^ (a.low &* 0x9E37_79B9_7F4A_7C15)
        }
        return Int(truncatingIfNeeded: (key &* 0x9E37_79B9_7F4A_7C15) >> 56) % count
    }
}
