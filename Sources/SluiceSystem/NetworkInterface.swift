#if canImport(Glibc)
import Glibc
#endif
import CSluiceSystem
import SluiceCore
import SluicePackets

/// What `getifaddrs` says of one interface in the calling thread's network namespace.
public struct NetworkInterface: Sendable, Equatable {
    /// The name.
    public var name: String
    /// Its link-layer (MAC) address, if it has one.
    public var mac: MACAddress?
    /// Its IPv4 and IPv6 addresses.
    public var addresses: [IPAddress] = []
    /// The prefix length of each of ``addresses``' subnets, in the same order.
    public var prefixLengths: [Int] = []
    /// Its IPv4 subnets' broadcast addresses.
    public var broadcastAddresses: [IPAddress] = []
    /// Whether it is a loopback device (`IFF_LOOPBACK`): `lo`.
    public var isLoopback = false

    /// The interface named `name`, or `nil` when there is none here.
    public static func named(_ name: String) throws(SystemCallError) -> NetworkInterface? {
        var list: UnsafeMutablePointer<ifaddrs>?
        _ = try systemCall(.socket, "getifaddrs") { getifaddrs(&list) }
        defer { freeifaddrs(list) }
        var found: NetworkInterface?
        var entry = list
        while let current = entry {
            defer { entry = current.pointee.ifa_next }
            guard String(cString: current.pointee.ifa_name) == name else { continue }
            var interface = found ?? NetworkInterface(name: name)
            if current.pointee.ifa_flags & UInt32(IFF_LOOPBACK) != 0 { interface.isLoopback = true }
            if let address = current.pointee.ifa_addr {
                switch Int32(address.pointee.sa_family) {
                case AF_PACKET:
                    let link = UnsafeRawPointer(address).assumingMemoryBound(to: sluice_sockaddr_ll.self)
                    if link.pointee.sll_halen == 6 {
                        interface.mac = MACAddress(networkBytesAt: UnsafeRawPointer(address)
                            + MemoryLayout<sluice_sockaddr_ll>.offset(of: \.sll_addr)!)
                    }
                case AF_INET, AF_INET6:
                    let own = SocketAddress.endpoint(from: UnsafeRawPointer(address)).address
                    interface.addresses.append(own)
                    let netmask = current.pointee.ifa_netmask.map { SocketAddress.endpoint(from: UnsafeRawPointer($0)).address }
                    let prefixLength = switch netmask {
                    case .v4(let mask)?: mask.rawValue.nonzeroBitCount
                    case .v6(let mask)?: mask.high.nonzeroBitCount + mask.low.nonzeroBitCount
                    case nil: own.family == AF_INET ? 32 : 128
                    }
                    interface.prefixLengths.append(prefixLength)
                    let flags = current.pointee.ifa_flags
                    // An address added without a broadcast (`ip address add X/24`) comes from glibc
                    // with the address itself in its place, and one with a peer (`peer B`) with
                    // the peer's: neither is a broadcast, which lies in the address's own subnet.
                    if address.pointee.sa_family == sa_family_t(AF_INET), flags & UInt32(IFF_BROADCAST) != 0,
                       let broadcast = current.pointee.ifa_ifu.ifu_broadaddr, let mask = current.pointee.ifa_netmask,
                       case .v4(let local) = own,
                       case .v4(let subnetBroadcast) = SocketAddress.endpoint(from: UnsafeRawPointer(broadcast)).address,
                       case .v4(let netmask) = SocketAddress.endpoint(from: UnsafeRawPointer(mask)).address,
                       subnetBroadcast != local, subnetBroadcast.rawValue & netmask.rawValue == local.rawValue & netmask.rawValue {
                        interface.broadcastAddresses.append(.v4(subnetBroadcast))
                    }
                    // The kernel also routes the subnet's all-ones address as broadcast (for a
                    // prefix under /31) when the address was added without one.
                    if address.pointee.sa_family == sa_family_t(AF_INET), let mask = current.pointee.ifa_netmask,
                       case .v4(let local) = SocketAddress.endpoint(from: UnsafeRawPointer(address)).address,
                       case .v4(let netmask) = SocketAddress.endpoint(from: UnsafeRawPointer(mask)).address,
                       netmask.rawValue.nonzeroBitCount < 31 {
                        let subnet = IPAddress.v4(IPv4Address(rawValue: local.rawValue | ~netmask.rawValue))
                        if !interface.broadcastAddresses.contains(subnet) { interface.broadcastAddresses.append(subnet) }
                    }
                default:
                    break
                }
            }
            found = interface
        }
        // Nor is another of the interface's own addresses.
        if let own = found?.addresses { found?.broadcastAddresses.removeAll { own.contains($0) } }
        return found
    }

    /// An interface with nothing known yet.
    public init(name: String) { self.name = name }

    /// The name the interface with index `index` has in the calling thread's namespace now (an
    /// interface keeps its index when renamed); `nil` when there is none.
    public static func name(ofIndex index: UInt32) -> String? {
        var buffer = [CChar](repeating: 0, count: Int(IF_NAMESIZE))
        return buffer.withUnsafeMutableBufferPointer { bytes in
            if_indextoname(index, bytes.baseAddress!).map { String(cString: $0) }
        }
    }

    /// The receive queues the interface `name` has in use, as `ethtool -l` shows them; `nil` when
    /// its driver does not say.
    public static func receiveQueueCount(named name: String) -> Int? {
        let count = sluice_receive_queue_count(name)
        return count > 0 ? Int(count) : nil
    }

    /// The MTU of the interface `name` in the calling thread's namespace (`SIOCGIFMTU`); `nil`
    /// when there is no such interface.
    public static func mtu(named name: String) -> Int? {
        let probe = socket(AF_INET, Int32(SOCK_DGRAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard probe >= 0 else { return nil }
        defer { close(probe) }
        var request = Self.request(named: name)
        guard sluice_ioctl_pointer(probe, UInt(SIOCGIFMTU), &request) == 0 else { return nil }
        return Int(request.ifr_ifru.ifru_mtu)
    }

    /// An `ifreq` naming `name` (cut to `IFNAMSIZ - 1` bytes), everything else zero, for the
    /// interface `ioctl`s.
    public static func request(named name: String) -> ifreq {
        var request = ifreq()
        withUnsafeMutableBytes(of: &request.ifr_ifrn.ifrn_name) { bytes in
            for (i, byte) in name.utf8.prefix(Int(IFNAMSIZ) - 1).enumerated() { bytes[i] = byte }
        }
        return request
    }
}
