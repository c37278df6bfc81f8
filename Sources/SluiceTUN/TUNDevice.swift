#if canImport(Glibc)
import Glibc
#endif
import CSluiceSystem
import SluiceCore
import SluicePackets
import SluiceSystem

/// How to create (or attach to) a TUN or TAP device.
public struct TUNDeviceConfiguration: Sendable {
    /// TUN carries bare IP packets; TAP carries Ethernet frames.
    public enum Kind: String, Sendable, CaseIterable {
        /// `IFF_TUN`: IPv4 and IPv6 packets, no link layer.
        case tun
        /// `IFF_TAP`: Ethernet frames.
        case tap
    }

    /// The device's name; empty lets the kernel pick (`tun0`, `tap0`, …).
    public var name: String
    /// TUN or TAP.
    public var kind: Kind
    /// Queues, one descriptor each (`IFF_MULTI_QUEUE` when more than one).
    public var queues: Int = 1
    /// Keep the device after the last descriptor closes (`TUNSETPERSIST`).
    public var persistent = false
    /// The user allowed to attach to a persistent device (`TUNSETOWNER`).
    public var owner: uid_t?
    /// The group allowed to attach to a persistent device (`TUNSETGROUP`).
    public var group: gid_t?
    /// The kernel's side of the device: its address and prefix length, added through rtnetlink.
    public var addresses: [(address: IPAddress, prefixLength: Int)] = []
    /// The device's MTU; `nil` keeps the kernel's (1500).
    public var mtu: Int?
    /// Offloads to ask for: `nil` makes the device without a virtio-net header (`IFF_VNET_HDR`),
    /// so every packet is whole and its checksums complete. With a set, each packet carries the
    /// header, and the kernel may hand over super-packets and partial checksums of the kinds the
    /// set names (those the kernel has: USO needs Linux 6.2; ``TUNDevice/offloads`` says what it took).
    public var offloads: TUNOffloads?

    /// A device named `name` (empty: the kernel picks) of `kind`.
    public init(name: String, kind: Kind) {
        self.name = name
        self.kind = kind
    }
}

/// A TUN or TAP device and its queue descriptors (non-blocking, close-on-exec), made with
/// `IFF_NO_PI`: each read is one packet (TUN) or frame (TAP), each write sends one.
///
/// The device is up with its addresses once `init` returns. A device that is not persistent
/// goes away when the last of its descriptors closes (when this instance is released).
public final class TUNDevice: @unchecked Sendable {
    /// The device's name (the kernel's pick when none was asked for).
    public let name: String
    /// The device's index in its network namespace.
    public let index: Int32
    /// TUN or TAP.
    public let kind: TUNDeviceConfiguration.Kind
    /// One descriptor per queue.
    public let queueDescriptors: [Int32]
    /// The device's MTU.
    public let mtu: Int
    /// The bytes of virtio-net header in front of every packet: 0, or ``VirtioNetHeader/length``.
    public let virtioHeaderLength: Int
    /// The offloads the kernel agreed to (empty without a virtio-net header).
    public let offloads: TUNOffloads
    /// What closing undoes (the claim, addresses added, the state of a device found), done the
    /// same way for a start that fails and for a close.
    private let teardown: Teardown

    /// Creates the device, or attaches to the persistent one of that name, in the calling
    /// thread's network namespace; adds its addresses and sets it up.
    ///
    /// - Throws: `SystemCallError` naming the step that failed (`/dev/net/tun` missing,
    ///   `EPERM` without CAP_NET_ADMIN, `EBUSY` for a device another process holds).
    public init(configuration: TUNDeviceConfiguration) throws(SystemCallError) {
        guard configuration.name.utf8.count < Int(IFNAMSIZ) else {
            throw SystemCallError(.tun, operation: "creating \(configuration.kind.rawValue) device \(configuration.name)",
                                  errno: EINVAL, hint: "interface names are at most \(IFNAMSIZ - 1) bytes")
        }
        guard (1...256).contains(configuration.queues) else {
            throw SystemCallError(.tun, operation: "creating \(configuration.kind.rawValue) device \(configuration.name)",
                                  errno: EINVAL, hint: "a device has 1 to 256 queues")
        }
        var flags = Int32(IFF_NO_PI) | (configuration.kind == .tun ? Int32(IFF_TUN) : Int32(IFF_TAP))
        var offloads = TUNOffloads()
        var name = configuration.name
        let teardown = Teardown(kind: configuration.kind, netlink: try RouteNetlink())
        teardown.claim = name.isEmpty ? -1 : try Self.claim(name, kind: configuration.kind)
        let existingIndex = name.isEmpty ? 0 : Int32(bitPattern: if_nametoindex(name))
        let existed = existingIndex != 0
        let link: LinkState? = existed ? try? teardown.netlink.link(index: existingIndex) : nil
        // A multi-queue device (`ip tuntap add … multi_queue`) takes one queue as well as several.
        if configuration.queues > 1 || link?.tun?.multiQueue == true { flags |= Int32(IFF_MULTI_QUEUE) }
        if configuration.offloads != nil { flags |= Int32(IFF_VNET_HDR) }
        // What `sluice tun up` sets on a device it finds is meant to stay; a service's is not.
        let restored = configuration.persistent ? nil : link
        if restored?.tun?.persistent == true { teardown.restorer = Glibc.open("/dev/net/tun", O_RDWR | O_CLOEXEC) }
        do throws(SystemCallError) {
            for _ in 0..<configuration.queues {
                let (descriptor, given) = try Self.open(name: name, flags: flags, kind: configuration.kind)
                teardown.descriptors.append(descriptor)
                name = given
            }
            teardown.name = name
            teardown.index = Int32(bitPattern: if_nametoindex(name))
            let first = teardown.descriptors[0]
            if let restored {
                var size: Int32 = 0
                let known = sluice_ioctl_pointer(first, sluice_TUNGETVNETHDRSZ, &size) == 0
                teardown.found = (restored, known ? size : nil)
            }
            if configuration.persistent {
                try Self.control(first, sluice_TUNSETPERSIST, 1, "TUNSETPERSIST on \(name)")
                // A device this call makes persistent and then fails to set up is removed again,
                // not left half configured for the next start to find.
                teardown.madePersistent = !existed
            }
            if let owner = configuration.owner {
                try Self.control(first, sluice_TUNSETOWNER, UInt(owner), "TUNSETOWNER \(owner) on \(name)")
            }
            if let group = configuration.group {
                try Self.control(first, sluice_TUNSETGROUP, UInt(group), "TUNSETGROUP \(group) on \(name)")
            }
            if let wanted = configuration.offloads {
                var length = Int32(VirtioNetHeader.length)
                guard sluice_ioctl_pointer(first, sluice_TUNSETVNETHDRSZ, &length) == 0 else {
                    throw SystemCallError(.tun, operation: "TUNSETVNETHDRSZ \(length) on \(name)", errno: Glibc.errno)
                }
                teardown.clearsOffloads = true
                offloads = try Self.setOffloads(first, wanted, name: name)
            } else {
                // A persistent device keeps the offloads its last user set; without a virtio-net
                // header they would hand over partial checksums and super-packets.
                try Self.control(first, sluice_TUNSETOFFLOAD, 0, "TUNSETOFFLOAD none on \(name)")
            }
            guard teardown.index != 0 else {
                throw SystemCallError(.tun, operation: "finding device \(name)", errno: Glibc.errno)
            }
            for (address, prefixLength) in configuration.addresses {
                do {
                    try teardown.netlink.addAddress(address, prefixLength: prefixLength, interfaceIndex: teardown.index)
                    if existed && !configuration.persistent { teardown.added.append((address, prefixLength)) }
                } catch where error.code == EEXIST {
                    // A persistent device attached again keeps its addresses.
                }
            }
            try teardown.netlink.setLink(index: teardown.index, up: true, mtu: configuration.mtu)
        } catch {
            teardown.run(failedStart: true)
            throw error
        }
        self.teardown = teardown
        self.index = teardown.index
        self.name = name
        self.kind = configuration.kind
        self.queueDescriptors = teardown.descriptors
        self.mtu = NetworkInterface.mtu(named: name) ?? configuration.mtu ?? 1500
        self.virtioHeaderLength = configuration.offloads == nil ? 0 : VirtioNetHeader.length
        self.offloads = offloads
    }

    /// Asks for `wanted` (every segmentation offload needs the checksum one); a kernel that does
    /// not know USO (before 6.2) refuses the whole set with EINVAL, so it is asked again without.
    static func setOffloads(_ descriptor: Int32, _ wanted: TUNOffloads, name: String) throws(SystemCallError) -> TUNOffloads {
        var offloads = wanted.contains(.checksum) ? wanted : []
        while true {
            if sluice_ioctl_value(descriptor, sluice_TUNSETOFFLOAD, UInt(offloads.rawValue)) == 0 { return offloads }
            let code = Glibc.errno
            let withoutUSO = offloads.subtracting([.udpSegmentation4, .udpSegmentation6])
            guard code == EINVAL, withoutUSO != offloads else {
                throw SystemCallError(.tun, operation: "TUNSETOFFLOAD \(offloads) on \(name)", errno: code)
            }
            offloads = withoutUSO
        }
    }

    deinit { teardown.run(failedStart: false) }

    /// What closing a device undoes, in one place for a start that fails and for a close. Its
    /// rtnetlink socket and `restorer` were opened where the device is: a close on a thread of
    /// another network namespace still acts on this device's.
    private final class Teardown {
        let kind: TUNDeviceConfiguration.Kind
        var netlink: RouteNetlink
        var name = ""
        var index: Int32 = 0
        /// One descriptor per queue.
        var descriptors: [Int32] = []
        /// A socket bound to an abstract name for the device, so another sluice process cannot
        /// attach queues of its own to it (a multi-queue device takes any number, and the kernel
        /// would spread this one's flows over them); -1 when the kernel named the device.
        var claim: Int32 = -1
        /// Offloads were asked for: a persistent device outlives this process, and the next user
        /// finds it without them, as a fresh one.
        var clearsOffloads = false
        var madePersistent = false
        /// Addresses given to a device that was there before (`sluice tun up`, `ip tuntap add`).
        var added: [(address: IPAddress, prefixLength: Int)] = []
        /// A device that was there before: how it was (up or down, MTU, flags, virtio-net header
        /// size), so closing leaves it so; attaching set its flags and bringing it up its state.
        var found: (link: LinkState, virtioHeaderSize: Int32?)?
        /// `/dev/net/tun` opened at the start, for giving a device found its flags back at the
        /// end (a process that has become another user may not open it then); -1 when not needed.
        var restorer: Int32 = -1

        init(kind: TUNDeviceConfiguration.Kind, netlink: consuming RouteNetlink) {
            self.kind = kind
            self.netlink = netlink
        }

        /// Undoes what was done, closing every descriptor; `failedStart`: the device was being
        /// set up (one this start made persistent is removed again).
        func run(failedStart: Bool) {
            if let first = descriptors.first {
                if clearsOffloads { _ = sluice_ioctl_value(first, sluice_TUNSETOFFLOAD, 0) }
                if failedStart && madePersistent { _ = sluice_ioctl_value(first, sluice_TUNSETPERSIST, 0) }
            }
            if index != 0 {
                for (address, prefixLength) in added {
                    try? netlink.removeAddress(address, prefixLength: prefixLength, interfaceIndex: index)
                }
            }
            if let (link, virtioHeaderSize) = found, let first = descriptors.first {
                if var size = virtioHeaderSize { _ = sluice_ioctl_pointer(first, sluice_TUNSETVNETHDRSZ, &size) }
                if index != 0 { try? netlink.setLink(index: index, up: link.isUp, mtu: link.mtu > 0 ? link.mtu : nil) }
            }
            descriptors.forEach { _ = close($0) }
            descriptors = []
            restoreFlags()
            if restorer >= 0 { close(restorer) }
            if claim >= 0 { close(claim) }
        }

        /// Gives a persistent device that was there before its own flags back, once the queue
        /// descriptors (which attaching set theirs with) are closed: the restorer is attached
        /// with them, and closing it lets the device go again. Not when the device is gone
        /// (TUNSETIFF by its name would make another, or take one of that name made since).
        private func restoreFlags() {
            guard let tun = found?.link.tun, tun.persistent, restorer >= 0, index != 0,
                  (try? netlink.link(index: index))?.tun != nil else { return }
            var flags = kind == .tun ? Int32(IFF_TUN) : Int32(IFF_TAP)
            if !tun.packetInformation { flags |= Int32(IFF_NO_PI) }
            if tun.virtioNetHeader { flags |= Int32(IFF_VNET_HDR) }
            if tun.multiQueue { flags |= Int32(IFF_MULTI_QUEUE) }
            var request = NetworkInterface.request(named: name)
            request.ifr_ifru.ifru_flags = Int16(truncatingIfNeeded: flags)
            _ = sluice_ioctl_pointer(restorer, sluice_TUNSETIFF, &request)
        }
    }

    /// Binds a socket to the abstract name `sluice-tun/NAME` (abstract names belong to the
    /// network namespace, as device names do, and go away with the process).
    static func claim(_ name: String, kind: TUNDeviceConfiguration.Kind) throws(SystemCallError) -> Int32 {
        do {
            return try AbstractSocketName.claim("sluice-tun/\(name)")
        } catch {
            let inUse = error.code == EADDRINUSE
            throw SystemCallError(.tun, operation: "attaching to \(kind.rawValue) device \(name)", errno: inUse ? EBUSY : error.code,
                                  hint: inUse ? "another sluice process serves \(name) in this network namespace" : nil)
        }
    }

    /// Opens `/dev/net/tun` and binds it to `name` with `flags`; returns the descriptor and the
    /// name the kernel gave.
    static func open(name: String, flags: Int32, kind: TUNDeviceConfiguration.Kind) throws(SystemCallError) -> (Int32, String) {
        let descriptor = Glibc.open("/dev/net/tun", O_RDWR | O_CLOEXEC | O_NONBLOCK)
        guard descriptor >= 0 else {
            let code = Glibc.errno
            throw SystemCallError(.tun, operation: "open(/dev/net/tun)", errno: code,
                                  hint: code == ENOENT ? "this kernel or container has no /dev/net/tun (modprobe tun, or mknod it)"
                                      : code == EACCES ? "/dev/net/tun is not open to this user: run as root, or give the user /dev/net/tun "
                                        + "(mode 0666, as most distributions leave it) and a device made for it (sluice tun up --owner); "
                                        + "a service can use --backend socket instead" : nil)
        }
        var request = NetworkInterface.request(named: name)
        request.ifr_ifru.ifru_flags = Int16(truncatingIfNeeded: flags)
        guard sluice_ioctl_pointer(descriptor, sluice_TUNSETIFF, &request) == 0 else {
            let code = Glibc.errno
            Glibc.close(descriptor)
            let hint: String? = switch code {
            case EPERM: Capability.requirement([.netAdmin], for: "creating a \(kind.rawValue) device") + " (or ownership of a persistent one)"
            case EBUSY: "\(name) exists with other flags (TUN or TAP, single or multi-queue) or is in use"
            case EINVAL: TUNDevice.isValidName(name)
                ? "\(name) exists as another kind of device (TUN or TAP, single or multi-queue): match its kind and queue count (--workers)"
                : "'\(name)' is no interface name: 1 to 15 bytes, none of them '/', ':' or white space, and not '.' or '..'"
            default: nil
            }
            throw SystemCallError(.tun, operation: "TUNSETIFF \(name.isEmpty ? "(any name)" : name) as \(kind.rawValue)",
                                  errno: code, hint: hint)
        }
        let given = withUnsafeBytes(of: request.ifr_ifrn.ifrn_name) { bytes in
            String(decoding: bytes.prefix { $0 != 0 }, as: UTF8.self)
        }
        return (descriptor, given)
    }

    static func control(_ descriptor: Int32, _ request: UInt, _ value: UInt, _ operation: String) throws(SystemCallError) {
        guard sluice_ioctl_value(descriptor, request, value) == 0 else {
            throw SystemCallError(.tun, operation: operation, errno: Glibc.errno)
        }
    }
}

extension TUNDevice {
    /// Whether the kernel takes `name` for an interface (`dev_valid_name`): 1 to 15 bytes, no
    /// `/`, `:` or white space (its `isspace`, byte 0xA0 included), and not `.` or `..`. A `%d`
    /// in it asks the kernel for a number.
    public static func isValidName(_ name: String) -> Bool {
        (1...15).contains(name.utf8.count) && name != "." && name != ".."
            && !name.utf8.contains { $0 == UInt8(ascii: "/") || $0 == UInt8(ascii: ":") || [9, 10, 11, 12, 13, 32, 0xA0].contains($0) }
    }

    /// Whether the interface `name` of the calling thread's namespace is a TUN or TAP device: its
    /// driver, as `ethtool -i` names it (`SIOCETHTOOL`, `ETHTOOL_GDRVINFO`), is "tun".
    public static func isTUNOrTAP(named name: String) -> Bool {
        let probe = socket(AF_INET, Int32(SOCK_DGRAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard probe >= 0 else { return false }
        defer { close(probe) }
        // struct ethtool_drvinfo: the command, then the driver's name in 32 bytes; 196 in all.
        var information = [UInt8](repeating: 0, count: 196)
        var request = NetworkInterface.request(named: name)
        return information.withUnsafeMutableBytes { buffer in
            buffer.storeBytes(of: UInt32(3), as: UInt32.self)   // ETHTOOL_GDRVINFO
            request.ifr_ifru.ifru_data = buffer.baseAddress!.assumingMemoryBound(to: CChar.self)
            guard sluice_ioctl_pointer(probe, 0x8946, &request) == 0 else { return false }   // SIOCETHTOOL
            return buffer[4..<36].prefix { $0 != 0 }.elementsEqual("tun".utf8)
        }
    }
}
