#if canImport(Glibc)
import Glibc
#endif
import FuzzDriver
import SluicePackets

/// Addresses and endpoints as the command line and configuration files give them; what parses
/// must print as text that parses to the same value, and the address forms are glibc's
/// `inet_pton`'s exactly (the C string stops at a NUL, so text holding one is left out).
func fuzz(_ start: UnsafePointer<UInt8>?, _ count: Int) -> Int32 {
    let text = String(decoding: input(start, count), as: UTF8.self)
    if !text.utf8.contains(0) {
        var v4 = in_addr()
        let glibc4 = inet_pton(AF_INET, text, &v4) == 1 ? IPv4Address(rawValue: UInt32(bigEndian: v4.s_addr)) : nil
        precondition(IPv4Address(text) == glibc4, "\(text.debugDescription): IPv4 \(String(describing: IPv4Address(text))), inet_pton \(String(describing: glibc4))")
        var v6 = in6_addr()
        let glibc6 = inet_pton(AF_INET6, text, &v6) == 1 ? withUnsafeBytes(of: &v6) { IPv6Address(networkBytesAt: $0.baseAddress!) } : nil
        precondition(IPv6Address(text) == glibc6, "\(text.debugDescription): IPv6 \(String(describing: IPv6Address(text))), inet_pton \(String(describing: glibc6))")
    }
    if let address = IPAddress(text) { precondition(IPAddress("\(address)") == address, "\(address) does not read back") }
    if let endpoint = IPEndpoint(text) { precondition(IPEndpoint("\(endpoint)") == endpoint, "\(endpoint) does not read back") }
    if let mac = MACAddress(text) { precondition(MACAddress("\(mac)") == mac, "\(mac) does not read back") }
    return 0
}

runFuzzer(fuzz)
