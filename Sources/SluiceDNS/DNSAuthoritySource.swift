import Synchronization

/// Zones that can be replaced while servers answer from them (a reload on SIGHUP, as Knot's and
/// NSD's): each `DNSResponder` made from it takes the newest before its next query, at the cost
/// of one atomic load a query, so the answering path takes no lock.
public final class DNSAuthoritySource: Sendable {
    let newest: Mutex<DNSAuthority>
    @usableFromInline let published = Atomic<Int>(0)

    /// A source serving `authority` until something newer is published.
    public init(_ authority: DNSAuthority) {
        newest = Mutex(authority)
    }

    /// How many times zones were published since: a responder that saw another number takes ``authority``.
    @inlinable
    public var generation: Int { published.load(ordering: .acquiring) }

    /// The newest zones.
    public var authority: DNSAuthority { newest.withLock { $0 } }

    /// Serves `authority` from the next query on, in every responder that follows this source.
    public func publish(_ authority: DNSAuthority) {
        newest.withLock { $0 = authority }
        published.add(1, ordering: .releasing)
    }
}
