#if canImport(Glibc)
import Glibc
#endif
import CSluiceSystem

/// An AF_PACKET socket that sends whole Ethernet frames, byte for byte, out of one interface of
/// the calling thread's network namespace: frames no kernel socket could be made to send.
public final class PacketSocket {
    /// The descriptor.
    public let descriptor: Int32

    /// Opens a raw packet socket bound to `interface` (needs CAP_NET_RAW).
    public init(interface: String) throws {
        let index = if_nametoindex(interface)
        guard index != 0 else { throw ChildProcessError(message: "no interface \(interface): errno \(errno)") }
        // Protocol 0: send only, so the socket queues none of the interface's traffic.
        descriptor = socket(AF_PACKET, Int32(SOCK_RAW.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard descriptor >= 0 else { throw ChildProcessError(message: "socket(AF_PACKET): errno \(errno)") }
        var address = sluice_sockaddr_ll()
        address.sll_family = UInt16(AF_PACKET)
        address.sll_ifindex = Int32(index)
        let result = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                bind(descriptor, $0, socklen_t(MemoryLayout<sluice_sockaddr_ll>.size))
            }
        }
        guard result == 0 else {
            let code = errno
            close(descriptor)
            throw ChildProcessError(message: "bind AF_PACKET to \(interface): errno \(code)")
        }
    }

    deinit { close(descriptor) }

    /// Sends one frame as it is; true when the kernel took all of it.
    @discardableResult
    public func send(_ frame: [UInt8]) -> Bool {
        frame.withUnsafeBytes { Glibc.send(descriptor, $0.baseAddress, $0.count, 0) } == frame.count
    }
}
