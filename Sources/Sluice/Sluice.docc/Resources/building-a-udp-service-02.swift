import Sluice

/// Answers every datagram with its payload in upper case, rewritten in place in its frame.
struct Shouter: UDPService {
    mutating func handle(_ datagram: inout UDPDatagram, now: Instant) -> UDPAction {
        for index in datagram.payload.indices where (97...122).contains(datagram.payload[index]) {
            datagram.payload[index] -= 32               // a view of the frame's bytes: the reply is written here
        }
        return .reply
    }
}
