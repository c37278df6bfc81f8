import SluiceCore
import SluicePackets

/// The kernel's bounds on ICMP errors a host sends (``ICMPErrorLimits``): a host-wide token
/// bucket of `icmp_msgs_per_sec` filling up to `icmp_msgs_burst`, and one per peer of one
/// error each `icmp_ratelimit` (`icmpv6 ratelimit`), bursts of six. (Kernels before 6.x gave an
/// IPv6 peer on a wider prefix a shorter interval; this one's does not: a peer on a /64 gets
/// one port unreachable each 100 ms here, measured.)
struct ICMPErrorLimiter {
    /// Errors a peer may have at once (`XRLIM_BURST_FACTOR`).
    static let peerBurstFactor: UInt64 = 6
    /// Peers remembered; a new one takes the slot of another that hashes the same (and gets a full burst).
    static let peerSlots = 256
    /// The host-wide bucket counts errors in billionths: a nanosecond adds `globalRate`, an error costs a billion.
    static let globalCost: UInt64 = 1_000_000_000

    struct Peer {
        var address: IPAddress?
        var credit: UInt64 = 0
        var last: UInt64 = 0
    }

    let globalRate: UInt64
    let globalBurst: UInt64
    let peerCostIPv4: UInt64
    let peerCostIPv6: UInt64
    var globalCredit: UInt64
    var globalLast: UInt64 = 0
    var peers = Array(repeating: Peer(), count: peerSlots)

    init(_ limits: ICMPErrorLimits = ICMPErrorLimits()) {
        globalRate = UInt64(max(limits.messagesPerSecond, 0))
        globalBurst = Self.saturated(UInt64(max(limits.burst, 0)).multipliedReportingOverflow(by: Self.globalCost))
        // With no rate the kernel sends none: its bucket starts empty and never fills.
        globalCredit = globalRate == 0 ? 0 : globalBurst
        peerCostIPv4 = UInt64(max(limits.peerIntervalIPv4.nanosecondsClamped, 0))
        peerCostIPv6 = UInt64(max(limits.peerIntervalIPv6.nanosecondsClamped, 0))
    }

    /// `result`, or the largest value where it overflowed.
    static func saturated(_ result: (partialValue: UInt64, overflow: Bool)) -> UInt64 {
        result.overflow ? .max : result.partialValue
    }

    /// The time between errors to `peer`.
    func interval(to peer: IPAddress) -> UInt64 {
        if case .v6 = peer { return peerCostIPv6 }
        return peerCostIPv4
    }

    /// Whether an error to `peer` may go now; takes its cost when it may.
    mutating func allow(to peer: IPAddress, now: Instant) -> Bool {
        let peerCost = interval(to: peer)
        let peerBurst = Self.saturated(Self.peerBurstFactor.multipliedReportingOverflow(by: peerCost))
        let time = now.nanoseconds
        // As the kernel's icmp_global_allow: at most a second's worth comes back at once.
        let refill = Self.saturated(min(time &- min(time, globalLast), 1_000_000_000).multipliedReportingOverflow(by: globalRate))
        let global = min(globalBurst, Self.saturated(globalCredit.addingReportingOverflow(refill)))
        globalLast = time
        globalCredit = global
        guard global >= Self.globalCost else { return false }
        let index = peer.slot(among: Self.peerSlots)
        if peers[index].address != peer {
            peers[index] = Peer(address: peer, credit: peerBurst, last: time)
        }
        let credit = min(peerBurst, Self.saturated(peers[index].credit.addingReportingOverflow(time &- min(time, peers[index].last))))
        peers[index].last = time
        guard credit >= peerCost else {
            peers[index].credit = credit
            return false
        }
        peers[index].credit = credit - peerCost
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
