import FuzzDriver
import SluicePackets

/// Addresses and endpoints as the command line and configuration files give them; what parses
/// must print as text that parses to the same value.
func fuzz(_ start: UnsafePointer<UInt8>?, _ count: Int) -> Int32 {
    let text = String(decoding: input(start, count), as: UTF8.self)
    if let address = IPAddress(text) { precondition(IPAddress("\(address)") == address, "\(address) does not read back") }
    if let endpoint = IPEndpoint(text) { precondition(IPEndpoint("\(endpoint)") == endpoint, "\(endpoint) does not read back") }
    if let mac = MACAddress(text) { precondition(MACAddress("\(mac)") == mac, "\(mac) does not read back") }
    return 0
}

runFuzzer(fuzz)
