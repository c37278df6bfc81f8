#if canImport(Glibc)
import Glibc
#endif
import CSluiceSystem
import SluiceCore
import SluicePackets

/// What ``RouteNetlink/link(index:)`` reads of a link.
public struct LinkState: Sendable, Equatable {
    /// Whether it is administratively up (`IFF_UP`).
    public var isUp = false
    /// Its MTU.
    public var mtu = 0
    /// The device it is a port of (a bridge, a bond), if any.
    public var masterIndex: Int32?
    /// A TUN or TAP device's flags; `nil` for any other kind of link.
    public var tun: TUNLinkFlags?

    /// A link that is down, a port of nothing, no TUN or TAP device.
    public init() {}
}

/// A TUN or TAP device's flags as the kernel reports them (`IFLA_TUN_*`).
public struct TUNLinkFlags: Sendable, Equatable {
    /// Packets carry `struct tun_pi` (no `IFF_NO_PI`).
    public var packetInformation = false
    /// Packets carry a virtio-net header (`IFF_VNET_HDR`).
    public var virtioNetHeader = false
    /// The device takes several queues (`IFF_MULTI_QUEUE`).
    public var multiQueue = false
    /// The device outlives its last user (`TUNSETPERSIST`).
    public var persistent = false

    /// A single-queue device with none of the flags.
    public init() {}
}

/// An rtnetlink socket of the calling thread's network namespace: sets links up or down, their
/// MTU, adds or removes addresses, each request acknowledged by the kernel, and looks up routes
/// (what `ip link`, `ip addr` and `ip route get` do, without running them).
///
/// ```swift
/// var netlink = try RouteNetlink()
/// try netlink.addAddress(.v4(IPv4Address(198, 18, 1, 1)), prefixLength: 24, interfaceIndex: index)
/// try netlink.setLink(index: index, up: true, mtu: 1500)
/// ```
public struct RouteNetlink: ~Copyable {
    private let descriptor: Int32
    private var sequence: UInt32 = 0

    /// Opens the socket (`NETLINK_ROUTE`).
    public init() throws(SystemCallError) {
        descriptor = try systemCall(.netlink, "socket(AF_NETLINK, NETLINK_ROUTE)") {
            socket(AF_NETLINK, Int32(SOCK_RAW.rawValue) | Int32(SOCK_CLOEXEC.rawValue), NETLINK_ROUTE)
        }
    }

    deinit { close(descriptor) }

    /// Sets the link up or down and its MTU (`RTM_NEWLINK` on an existing link); `nil` leaves it.
    public mutating func setLink(index: Int32, up: Bool? = nil, mtu: Int? = nil) throws(SystemCallError) {
        var message = Message(type: UInt16(RTM_NEWLINK), flags: 0)
        var info = ifinfomsg()
        info.ifi_family = UInt8(AF_UNSPEC)
        info.ifi_index = index
        if let up {
            info.ifi_change = UInt32(IFF_UP)
            info.ifi_flags = up ? UInt32(IFF_UP) : 0
        }
        message.append(info)
        if let mtu { message.appendAttribute(type: UInt16(IFLA_MTU), UInt32(clamping: mtu)) }
        let operation = "setting link \(index)\(up.map { $0 ? " up" : " down" } ?? "")\(mtu.map { " mtu \($0)" } ?? "")"
        try request(&message, operation: operation)
    }

    /// Adds `address/prefixLength` to the interface (`RTM_NEWADDR`); IPv6 without duplicate
    /// address detection, so it is usable at once. An address already there is an error (`EEXIST`).
    public mutating func addAddress(_ address: IPAddress, prefixLength: Int, interfaceIndex: Int32) throws(SystemCallError) {
        var message = Message(type: UInt16(RTM_NEWADDR), flags: Int32(NLM_F_CREATE | NLM_F_EXCL))
        try writeAddress(&message, address, prefixLength: prefixLength, interfaceIndex: interfaceIndex)
        try request(&message, operation: "adding \(address)/\(prefixLength) to interface \(interfaceIndex)")
    }

    /// Removes `address/prefixLength` from the interface (`RTM_DELADDR`).
    public mutating func removeAddress(_ address: IPAddress, prefixLength: Int, interfaceIndex: Int32) throws(SystemCallError) {
        var message = Message(type: UInt16(RTM_DELADDR), flags: 0)
        try writeAddress(&message, address, prefixLength: prefixLength, interfaceIndex: interfaceIndex)
        try request(&message, operation: "removing \(address)/\(prefixLength) from interface \(interfaceIndex)")
    }

    /// Deletes the link (`RTM_DELLINK`), as `ip link del` does.
    public mutating func deleteLink(index: Int32) throws(SystemCallError) {
        var message = Message(type: UInt16(RTM_DELLINK), flags: 0)
        var info = ifinfomsg()
        info.ifi_family = UInt8(AF_UNSPEC)
        info.ifi_index = index
        message.append(info)
        try request(&message, operation: "deleting link \(index)")
    }

    private func writeAddress(_ message: inout Message, _ address: IPAddress, prefixLength: Int,
                         interfaceIndex: Int32) throws(SystemCallError) {
        let bits = address.family == AF_INET ? 32 : 128
        guard (0...bits).contains(prefixLength) else {
            throw SystemCallError(.netlink, operation: "address \(address)/\(prefixLength)", errno: EINVAL,
                                  hint: "the prefix length is 0 to \(bits)")
        }
        var header = ifaddrmsg()
        header.ifa_family = UInt8(address.family)
        header.ifa_prefixlen = UInt8(prefixLength)
        header.ifa_flags = address.family == AF_INET6 ? UInt8(IFA_F_NODAD) : 0
        header.ifa_scope = UInt8(RT_SCOPE_UNIVERSE.rawValue)
        header.ifa_index = UInt32(interfaceIndex)
        message.append(header)
        let bytes = Self.networkBytes(of: address)
        message.appendAttribute(type: UInt16(IFA_LOCAL), bytes: bytes)
        message.appendAttribute(type: UInt16(IFA_ADDRESS), bytes: bytes)
    }

    /// The index of the interface the kernel routes `address` out of (`RTM_GETROUTE`, as `ip route
    /// get`); `nil` when no route reaches it.
    public mutating func routeInterface(to address: IPAddress) throws(SystemCallError) -> Int32? {
        var message = Message(type: UInt16(RTM_GETROUTE), flags: 0)
        var route = rtmsg()
        route.rtm_family = UInt8(address.family)
        route.rtm_dst_len = address.family == AF_INET ? 32 : 128
        message.append(route)
        message.appendAttribute(type: UInt16(RTA_DST.rawValue), bytes: Self.networkBytes(of: address))
        var interface: Int32?
        do throws(SystemCallError) {
            try request(&message, operation: "looking up the route to \(address)") { type, payload in
                guard type == UInt16(RTM_NEWROUTE) else { return }
                Self.forEachAttribute(in: payload, from: (MemoryLayout<rtmsg>.size + 3) & ~3) { type, value in
                    if type == UInt16(RTA_OIF.rawValue), value.count >= 4 { interface = value.loadUnaligned(as: Int32.self) }
                }
            }
        } catch where [ENETUNREACH, EHOSTUNREACH].contains(error.code) {
            return nil
        }
        return interface
    }

    /// What the kernel says of a link (`RTM_GETLINK`, as `ip -d link show`): up or down, its MTU,
    /// the device it is a port of, and a TUN or TAP device's flags.
    public mutating func link(index: Int32) throws(SystemCallError) -> LinkState {
        var message = Message(type: UInt16(RTM_GETLINK), flags: 0)
        var info = ifinfomsg()
        info.ifi_family = UInt8(AF_UNSPEC)
        info.ifi_index = index
        message.append(info)
        var state = LinkState()
        try request(&message, operation: "reading link \(index)") { type, payload in
            guard type == UInt16(RTM_NEWLINK), payload.count >= MemoryLayout<ifinfomsg>.size else { return }
            state.isUp = payload.loadUnaligned(as: ifinfomsg.self).ifi_flags & UInt32(IFF_UP) != 0
            Self.forEachAttribute(in: payload, from: (MemoryLayout<ifinfomsg>.size + 3) & ~3) { type, value in
                if type == UInt16(IFLA_MASTER), value.count >= 4 {
                    state.masterIndex = value.loadUnaligned(as: Int32.self)
                } else if type == UInt16(IFLA_MTU), value.count >= 4 {
                    state.mtu = Int(value.loadUnaligned(as: UInt32.self))
                } else if type == UInt16(IFLA_LINKINFO) {
                    var kind = ""
                    var flags = TUNLinkFlags()
                    Self.forEachAttribute(in: value, from: 0) { type, value in
                        if type == UInt16(IFLA_INFO_KIND) {
                            kind = String(decoding: value.prefix { $0 != 0 }, as: UTF8.self)
                        } else if type == UInt16(IFLA_INFO_DATA) {
                            Self.forEachAttribute(in: value, from: 0) { type, value in
                                guard let on = value.first.map({ $0 != 0 }) else { return }
                                switch Int(type) {
                                case IFLA_TUN_PI: flags.packetInformation = on
                                case IFLA_TUN_VNET_HDR: flags.virtioNetHeader = on
                                case IFLA_TUN_MULTI_QUEUE: flags.multiQueue = on
                                case IFLA_TUN_PERSIST: flags.persistent = on
                                default: break
                                }
                            }
                        }
                    }
                    if kind == "tun" { state.tun = flags }
                }
            }
        }
        return state
    }

    /// Calls `body` with the type (nesting bit cleared) and value of each attribute in `bytes` from `offset`.
    private static func forEachAttribute(in bytes: UnsafeRawBufferPointer, from offset: Int,
                                         _ body: (UInt16, UnsafeRawBufferPointer) -> Void) {
        var offset = offset
        while offset + MemoryLayout<rtattr>.size <= bytes.count {
            let attribute = bytes.loadUnaligned(fromByteOffset: offset, as: rtattr.self)
            let length = Int(attribute.rta_len)
            guard length >= MemoryLayout<rtattr>.size, offset + length <= bytes.count else { return }
            body(attribute.rta_type & 0x3FFF, UnsafeRawBufferPointer(rebasing: bytes[(offset + MemoryLayout<rtattr>.size)..<(offset + length)]))
            offset += (length + 3) & ~3
        }
    }

    /// The address's bytes in network order.
    private static func networkBytes(of address: IPAddress) -> [UInt8] {
        var bytes = [UInt8](repeating: 0, count: address.family == AF_INET ? 4 : 16)
        bytes.withUnsafeMutableBytes { buffer in
            switch address {
            case .v4(let a): a.store(networkBytesAt: buffer.baseAddress!)
            case .v6(let a): a.store(networkBytesAt: buffer.baseAddress!)
            }
        }
        return bytes
    }

    /// Sends `message` with an acknowledgement asked for, and waits for it, handing every other
    /// answer to the request (its type and what follows its header) to `answer`.
    private mutating func request(_ message: inout Message, operation: String,
                                  answer: (UInt16, UnsafeRawBufferPointer) -> Void = { _, _ in }) throws(SystemCallError) {
        sequence &+= 1
        message.finish(sequence: sequence)
        var kernel = sockaddr_nl()
        kernel.nl_family = sa_family_t(AF_NETLINK)
        let sent = message.bytes.withUnsafeBytes { bytes in
            withUnsafePointer(to: &kernel) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                    sendto(descriptor, bytes.baseAddress, bytes.count, 0, $0, socklen_t(MemoryLayout<sockaddr_nl>.size))
                }
            }
        }
        guard sent == message.bytes.count else {
            throw SystemCallError(.netlink, operation: operation, errno: Glibc.errno)
        }
        var reply = [UInt8](repeating: 0, count: 8192)
        while true {
            let count = reply.withUnsafeMutableBytes { recv(descriptor, $0.baseAddress, $0.count, 0) }
            if count < 0 {
                if Glibc.errno == EINTR { continue }
                throw SystemCallError(.netlink, operation: "\(operation): reading the acknowledgement", errno: Glibc.errno)
            }
            var offset = 0
            while offset + MemoryLayout<nlmsghdr>.size <= count {
                let header = reply.withUnsafeBytes { $0.loadUnaligned(fromByteOffset: offset, as: nlmsghdr.self) }
                let length = Int(header.nlmsg_len)
                guard length >= MemoryLayout<nlmsghdr>.size, offset + length <= count else { break }
                if header.nlmsg_seq == sequence, header.nlmsg_type == UInt16(NLMSG_ERROR) {
                    let code = reply.withUnsafeBytes {
                        $0.loadUnaligned(fromByteOffset: offset + MemoryLayout<nlmsghdr>.size, as: Int32.self)
                    }
                    guard code == 0 else {
                        throw SystemCallError(.netlink, operation: operation, errno: -code,
                                              hint: -code == EPERM ? Capability.requirement([.netAdmin], for: "changing links, addresses and routes") : nil)
                    }
                    return
                }
                if header.nlmsg_seq == sequence {
                    reply.withUnsafeBytes {
                        answer(header.nlmsg_type, UnsafeRawBufferPointer(rebasing: $0[(offset + MemoryLayout<nlmsghdr>.size)..<(offset + length)]))
                    }
                }
                offset += (length + 3) & ~3
            }
        }
    }

    /// One request being written: header, fixed part, attributes, each 4-byte aligned.
    struct Message {
        var bytes: [UInt8]

        init(type: UInt16, flags: Int32) {
            var header = nlmsghdr()
            header.nlmsg_type = type
            header.nlmsg_flags = UInt16(Int32(NLM_F_REQUEST | NLM_F_ACK) | flags)
            bytes = withUnsafeBytes(of: header) { Array($0) }
        }

        mutating func append<T>(_ value: T) {
            withUnsafeBytes(of: value) { bytes.append(contentsOf: $0) }
            pad()
        }

        mutating func appendAttribute(type: UInt16, bytes payload: [UInt8]) {
            var attribute = rtattr()
            attribute.rta_len = UInt16(MemoryLayout<rtattr>.size + payload.count)
            attribute.rta_type = type
            withUnsafeBytes(of: attribute) { bytes.append(contentsOf: $0) }
            bytes.append(contentsOf: payload)
            pad()
        }

        mutating func appendAttribute(type: UInt16, _ value: UInt32) {
            appendAttribute(type: type, bytes: withUnsafeBytes(of: value) { Array($0) })
        }

        mutating func pad() {
            while bytes.count % 4 != 0 { bytes.append(0) }
        }

        mutating func finish(sequence: UInt32) {
            let length = UInt32(bytes.count)
            bytes.withUnsafeMutableBytes {
                $0.storeBytes(of: length, toByteOffset: MemoryLayout<nlmsghdr>.offset(of: \.nlmsg_len)!, as: UInt32.self)
                $0.storeBytes(of: sequence, toByteOffset: MemoryLayout<nlmsghdr>.offset(of: \.nlmsg_seq)!, as: UInt32.self)
            }
        }
    }
}
