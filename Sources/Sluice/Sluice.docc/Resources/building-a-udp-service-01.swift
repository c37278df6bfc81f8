import Sluice

/// Answers every datagram with its own payload: the frame goes back the way it came.
struct Shouter: UDPService {
    mutating func handle(_ datagram: inout UDPDatagram, now: Instant) -> UDPAction {
        .reply
    }
}
