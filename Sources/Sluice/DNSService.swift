import SluiceCore
import SluiceDNS
import SluiceUDP

/// An authoritative DNS server as a UDP service, so it runs on every backend: each query is
/// answered in its own frame from the zones of a `DNSAuthority` (`DNSResponder`).
///
/// ```swift
/// let zone = try DNSZone(origin: DNSName("example.test.")!, text: zoneFileText)
/// let authority = DNSAuthority(zones: [zone])
/// let server = try UDPServer(configuration: configuration) { _ in DNSService(authority: authority) }
/// ```
public struct DNSService: UDPService {
    /// The responder, with its counters.
    public var responder: DNSResponder

    /// A server for `authority`'s zones, limiting responses with `rateLimiter` when given, and
    /// naming itself with `identity` to clients that ask (NSID, CHAOS TXT).
    public init(authority: DNSAuthority, rateLimiter: DNSRateLimiter? = nil, identity: DNSServerIdentity = DNSServerIdentity()) {
        responder = DNSResponder(authority: authority)
        responder.rateLimiter = rateLimiter
        responder.identity = identity
    }

    /// A server for the zones `source` has, taking the newest it publishes (a reload) before
    /// the next query.
    public init(source: DNSAuthoritySource, rateLimiter: DNSRateLimiter? = nil, identity: DNSServerIdentity = DNSServerIdentity()) {
        responder = DNSResponder(source: source)
        responder.rateLimiter = rateLimiter
        responder.identity = identity
    }

    @inlinable
    public mutating func handle(_ datagram: inout UDPDatagram, now: Instant) -> UDPAction {
        guard let length = responder.respond(datagram.payloadStart, length: datagram.payloadLength,
                                             capacity: datagram.payloadCapacity, client: datagram.source.address, now: now)
        else { return .drop }
        datagram.payloadLength = length
        return .reply
    }

    public var counterFields: [(String, UInt64)] { responder.counters.fields }
}
