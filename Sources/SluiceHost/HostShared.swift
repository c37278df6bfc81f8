import SluiceCore
import SluicePackets
import Synchronization

/// What a host's workers share, as one kernel keeps it for the whole host: the ICMP error
/// limits (host-wide and per peer) and the path MTUs learned. Each worker of a multi-queue
/// device answers its own packets, but two workers must not send twice the errors one host
/// would, nor one of them go on past a path MTU the other learned. Errors and learned MTUs are
/// rare, so a lock guards them; a worker reads its own copy of the MTUs, taken again only when
/// their change count moves (one relaxed load a batch).
public final class HostShared: Sendable {
    let limiter: Mutex<ICMPErrorLimiter>
    let pathMTUs = Mutex(PathMTUCache())
    @usableFromInline let pathMTUChanges = Atomic<UInt64>(0)

    /// State for a host within `limits`.
    public init(_ limits: ICMPErrorLimits = ICMPErrorLimits()) {
        limiter = Mutex(ICMPErrorLimiter(limits))
    }

    /// Whether an error to `peer` may go now, for every worker together.
    func allowError(to peer: IPAddress, now: Instant) -> Bool {
        limiter.withLock { $0.allow(to: peer, now: now) }
    }

    /// Remembers a path MTU one worker learned, for all.
    func learn(_ destination: IPAddress, mtu: Int, now: Instant) {
        pathMTUs.withLock { $0.learn(destination, mtu: mtu, now: now) }
        pathMTUChanges.add(1, ordering: .releasing)
    }
}
