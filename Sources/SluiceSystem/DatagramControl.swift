#if canImport(Glibc)
import Glibc
#endif
import CSluiceSystem
import SluiceCore
import SluicePackets

/// The control messages of a datagram port: sent with each `sendmsg`, the source address
/// (`IP_PKTINFO`/`IPV6_PKTINFO`, so a reply leaves from the address its request came to) and
/// the GSO segment size; received, the local address and the GRO segment size. Shared by the
/// socket and io_uring ports.
public enum DatagramControl {
    /// Bytes of control space one message needs.
    public static let capacity = 64

    /// Writes the source-address and segment-size (0: none) control messages for `header` into
    /// `buffer` (``capacity`` bytes); returns their length. A source equal to `boundAddress`, the
    /// address the socket is bound to, needs no `IP_PKTINFO`: the kernel sends from it anyway.
    @inlinable
    public static func write(at buffer: UnsafeMutableRawPointer, header: DatagramHeader, segmentSize: Int,
                             boundAddress: IPAddress) -> Int {
        buffer.initializeMemory(as: UInt8.self, repeating: 0, count: capacity)
        var used = 0
        func append(level: Int32, type: Int32, length: Int, _ fill: (UnsafeMutableRawPointer) -> Void) {
            let c = (buffer + used).assumingMemoryBound(to: cmsghdr.self)
            c.pointee.cmsg_len = sluice_cmsg_len(length)
            c.pointee.cmsg_level = level
            c.pointee.cmsg_type = type
            fill(UnsafeMutableRawPointer(sluice_cmsg_data(c)!))
            used += sluice_cmsg_space(length)
        }
        switch header.local.address {
        case boundAddress:
            break
        case .v4(let a) where a != .any:
            // ifindex 0 lets routing pick the interface; ipi_spec_dst is the source.
            append(level: Int32(IPPROTO_IP), type: Int32(IP_PKTINFO), length: MemoryLayout<sluice_in_pktinfo>.size) {
                a.store(networkBytesAt: $0 + MemoryLayout<sluice_in_pktinfo>.offset(of: \.ipi_spec_dst)!)
            }
        case .v6(let a) where a != .any:
            append(level: Int32(IPPROTO_IPV6), type: Int32(IPV6_PKTINFO), length: MemoryLayout<sluice_in6_pktinfo>.size) {
                a.store(networkBytesAt: $0 + MemoryLayout<sluice_in6_pktinfo>.offset(of: \.ipi6_addr)!)
                $0.storeBytes(of: a.isLinkLocal ? header.interfaceIndex : 0,
                              toByteOffset: MemoryLayout<sluice_in6_pktinfo>.offset(of: \.ipi6_ifindex)!, as: UInt32.self)
            }
        default:
            break
        }
        if segmentSize > 0 {
            append(level: Int32(IPPROTO_UDP), type: sluice_UDP_SEGMENT, length: 2) {
                $0.storeBytes(of: UInt16(segmentSize), as: UInt16.self)
            }
        }
        return used
    }

    /// Reads one received control message into `header`: `IP_PKTINFO`/`IPV6_PKTINFO` give the
    /// local address the datagram came to (with `port`) and its interface. Returns the `UDP_GRO`
    /// segment size when that is what it carries, 0 otherwise.
    /// `available` is the number of control bytes from `message` to the end of the buffer. A
    /// message shorter than what its level and type say it carries (a truncated control buffer,
    /// `MSG_CTRUNC`), or one claiming more than the buffer holds, is passed over.
    @inlinable
    public static func read(_ message: UnsafePointer<cmsghdr>, available: Int, into header: DatagramHeader,
                            port: UInt16) -> Int {
        let data = UnsafeRawPointer(sluice_cmsg_data(UnsafeMutablePointer(mutating: message))!)
        func holds(_ size: Int) -> Bool {
            sluice_cmsg_len(size) <= min(Int(message.pointee.cmsg_len), available)
        }
        switch (message.pointee.cmsg_level, message.pointee.cmsg_type) {
        case (Int32(IPPROTO_IP), Int32(IP_PKTINFO)) where holds(MemoryLayout<sluice_in_pktinfo>.size):
            // ipi_spec_dst, not ipi_addr (the header's destination): the local address the
            // kernel would answer from, which for a broadcast request is the interface's own.
            header.interfaceIndex = data.loadUnaligned(
                fromByteOffset: MemoryLayout<sluice_in_pktinfo>.offset(of: \.ipi_ifindex)!, as: UInt32.self)
            let source = data + MemoryLayout<sluice_in_pktinfo>.offset(of: \.ipi_spec_dst)!
            header.local = IPEndpoint(address: .v4(IPv4Address(networkBytesAt: source)), port: port)
        case (Int32(IPPROTO_IPV6), Int32(IPV6_PKTINFO)) where holds(MemoryLayout<sluice_in6_pktinfo>.size):
            // An IPv4 datagram on a dual-stack socket: its IP_PKTINFO's ipi_spec_dst, when it came
            // first, is the address to answer from (this one may be a subnet's broadcast).
            let destination = data + MemoryLayout<sluice_in6_pktinfo>.offset(of: \.ipi6_addr)!
            let address = IPAddress.v6(IPv6Address(networkBytesAt: destination)).unmapped
            if case .v4 = address, case .v4 = header.local.address, header.interfaceIndex != 0 { break }
            header.interfaceIndex = data.loadUnaligned(
                fromByteOffset: MemoryLayout<sluice_in6_pktinfo>.offset(of: \.ipi6_ifindex)!, as: UInt32.self)
            // A reply never leaves from a multicast or broadcast address: let routing choose.
            header.local = IPEndpoint(address: address.isMulticastOrBroadcast ? address.unspecified : address, port: port)
        case (Int32(IPPROTO_UDP), sluice_UDP_GRO) where holds(MemoryLayout<Int32>.size):
            return max(0, Int(data.loadUnaligned(as: Int32.self)))
        default:
            break
        }
        return 0
    }

    /// Reads every control message of a received `message` (``read(_:available:into:port:)`` each) into
    /// `header`, after setting its local endpoint to `local` and its interface to none; returns
    /// the `UDP_GRO` segment size, 0 if none.
    @inlinable
    public static func readAll(_ message: UnsafeMutablePointer<msghdr>, into header: DatagramHeader, local: IPEndpoint) -> Int {
        var segmentSize = 0
        header.interfaceIndex = 0
        header.local = local
        guard let control = UnsafeRawPointer(message.pointee.msg_control) else { return 0 }
        let end = control + message.pointee.msg_controllen
        var cmsg = sluice_cmsg_firsthdr(message)
        while let c = cmsg {
            let size = read(c, available: UnsafeRawPointer(c).distance(to: end), into: header, port: local.port)
            if size > 0 { segmentSize = size }
            cmsg = sluice_cmsg_nxthdr(message, c)
        }
        return segmentSize
    }

    /// Rewrites the peer a service wrote as plain IPv4 into IPv4-mapped form for an IPv6 socket,
    /// and a mapped one back to plain IPv4 for an IPv4 socket.
    @inlinable
    public static func matchFamily(_ header: DatagramHeader, socketFamily: Int32) {
        if header.peerIsIPv6 != (socketFamily == AF_INET6) {
            let peer = header.peer
            DatagramHeader.store(peer, sockaddrAt: header.base + DatagramHeader.peerOffset, mapIPv4: socketFamily == AF_INET6)
        }
    }
}
