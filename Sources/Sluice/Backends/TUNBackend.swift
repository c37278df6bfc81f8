#if canImport(Glibc)
import Glibc
#endif
import SluiceCore
import SluiceHost
import SluicePackets
import SluiceSystem
import SluiceTUN
import SluiceUDP

/// What the tun and tap backends make: the device, the kernel's side of it, and its queues.
public struct TUNBackendConfiguration: Sendable {
    /// The device's name, e.g. "sl0".
    public var name: String
    /// The kernel's addresses on the device (each with its prefix length): the service's listen
    /// address lies behind the device, in one of these prefixes, so the kernel routes it there.
    /// May be empty for a device that exists already (`sluice tun up`), which keeps its own.
    public var addresses: [(address: IPAddress, prefixLength: Int)] = []
    /// Queues, one worker each (`IFF_MULTI_QUEUE` above one).
    public var queues: Int = 1
    /// The device's MTU; `nil` keeps 1500.
    public var mtu: Int?
    /// Verify IPv4 header, UDP and ICMP checksums (the kernel completes them for what it
    /// routes into a device without offloads).
    public var verifiesChecksums = true
    /// The service's MAC on a TAP device; `nil` derives a locally administered one from the
    /// listen address.
    public var mac: MACAddress?
    /// Offloads to ask the device for (a virtio-net header on every packet): by default checksum
    /// and UDP segmentation, so the kernel hands over UDP super-packets and takes them back;
    /// `nil` for a device without the header.
    public var offloads: TUNOffloads? = .udp

    /// A device named `name`.
    public init(name: String) { self.name = name }
}

/// A TUN device: the kernel routes the service's address into it, and the workers read and
/// write bare IP packets, one queue each. In front of the UDP stage a host (`HostStage`)
/// answers pings, reassembles fragments and fragments replies past the MTU, with the kernel's
/// receive rules applied. Needs CAP_NET_ADMIN.
public class TUNBackend: UDPBackend, @unchecked Sendable {
    public class var name: String { "tun" }
    public class var summary: String {
        "a TUN device the kernel routes the listen address into; IP packets in user space; needs CAP_NET_ADMIN"
    }
    /// TUN or TAP.
    class var kind: TUNDeviceConfiguration.Kind { .tun }

    let configuration: UDPServerConfiguration
    let settings: TUNBackendConfiguration
    let device: TUNDevice
    let acceptance: UDPAcceptance
    let host: HostConfiguration

    public required init(configuration: UDPServerConfiguration) throws(RuntimeError) {
        let name = Self.name
        guard let settings = configuration.tun else {
            throw RuntimeError("the \(name) backend needs a device (TUNBackendConfiguration)")
        }
        guard configuration.listen.address != .v4(.any), configuration.listen.address != .v6(.any) else {
            throw RuntimeError("the \(name) backend serves one address behind the device: listen on it, not on a wildcard")
        }
        guard !settings.addresses.isEmpty || if_nametoindex(settings.name) != 0 else {
            throw RuntimeError("the \(name) backend makes \(settings.name) and needs the kernel's address on it "
                               + "(an address and prefix, e.g. 198.18.1.1/24, with the listen address behind it)")
        }
        var device = TUNDeviceConfiguration(name: settings.name, kind: Self.kind)
        device.queues = settings.queues
        device.addresses = settings.addresses
        device.mtu = settings.mtu
        device.offloads = settings.offloads
        do throws(SystemCallError) {
            self.device = try TUNDevice(configuration: device)
        } catch {
            throw RuntimeError(error)
        }
        let listen = configuration.listen.address
        try Self.requireRoute(to: listen, through: self.device.name, index: self.device.index)
        let mac = Self.kind == .tap ? settings.mac ?? Self.derivedMAC(for: listen) : nil
        var acceptance = UDPAcceptance()
        acceptance.verifiesChecksums = settings.verifiesChecksums
        acceptance.appliesKernelRules = true
        acceptance.localAddresses = [listen]
        acceptance.localMAC = mac
        // A service inside the kernel's subnet is a host on it: no datagram comes from the
        // subnet's broadcast, and none sent to it is for a socket bound to one address.
        acceptance.broadcastSources = settings.addresses.compactMap { prefix in
            guard case .v4(let address) = prefix.address, case .v4(let own) = listen, (0..<31).contains(prefix.prefixLength)
            else { return nil }
            let hostBits = UInt32.max >> UInt32(prefix.prefixLength)
            guard address.rawValue & ~hostBits == own.rawValue & ~hostBits else { return nil }
            return .v4(IPv4Address(rawValue: address.rawValue | hostBits))
        }
        self.acceptance = acceptance
        // Over TAP an IPv6 host has its link-local address too (RFC 4291 2.1), from its MAC.
        let linkLocal: [IPAddress] = if let mac, case .v6 = listen { [.v6(Self.linkLocalAddress(for: mac))] } else { [] }
        var host = HostConfiguration(addresses: [listen] + linkLocal, mac: mac, mtu: self.device.mtu)
        host.verifiesChecksums = settings.verifiesChecksums
        host.udpPort = configuration.listen.port
        Self.readKernelSettings(into: &host)
        if settings.queues > 1 { host.shared = HostShared(host.icmpErrors) }
        let deviceName = self.device.name
        host.currentMTU = { NetworkInterface.mtu(named: deviceName) }
        self.host = host
        self.configuration = configuration
        self.settings = settings
    }

    /// The ICMP error limits and reassembly times the kernel applies in the device's namespace,
    /// so the host answers as a kernel host there would; defaults where one cannot be read.
    static func readKernelSettings(into host: inout HostConfiguration) {
        if let rate = KernelSetting.integer("net.ipv4.icmp_msgs_per_sec") { host.icmpErrors.messagesPerSecond = rate }
        if let burst = KernelSetting.integer("net.ipv4.icmp_msgs_burst") { host.icmpErrors.burst = burst }
        if let interval = KernelSetting.integer("net.ipv4.icmp_ratelimit") { host.icmpErrors.peerIntervalIPv4 = .milliseconds(interval) }
        if let interval = KernelSetting.integer("net.ipv6.icmp.ratelimit") { host.icmpErrors.peerIntervalIPv6 = .milliseconds(interval) }
        if let time = KernelSetting.integer("net.ipv4.ipfrag_time"), time > 0 { host.reassembly.timeoutIPv4 = .seconds(time) }
        if let time = KernelSetting.integer("net.ipv6.ip6frag_time"), time > 0 { host.reassembly.timeoutIPv6 = .seconds(time) }
    }

    /// Fails unless the kernel routes `address` into the device: anything sent to it would go
    /// elsewhere, and the service would wait for nothing. A device that is a bridge's port is
    /// reached through the bridge, from the bridged link as from this host: no route is needed.
    static func requireRoute(to address: IPAddress, through device: String, index: Int32) throws(RuntimeError) {
        let route: Int32?
        do throws(SystemCallError) {
            var netlink = try RouteNetlink()
            if try netlink.link(index: index).masterIndex != nil { return }
            route = try netlink.routeInterface(to: address)
        } catch {
            throw RuntimeError(error)
        }
        guard let route else {
            throw RuntimeError("no route to \(address): listen on an address in a prefix of \(device), or route one to it")
        }
        guard route != index else { return }
        let other = NetworkInterface.name(ofIndex: UInt32(route)) ?? "interface \(route)"
        throw RuntimeError("the kernel routes \(address) to \(other), not into \(device): nothing sent to it would reach "
                           + "the service; listen on an address in a prefix of \(device), or route one to it")
    }

    /// A locally administered unicast MAC (02:73:…) from `address`: an IPv4 address's four
    /// bytes, an IPv6 address's FNV-1a hash (its last bytes alone, `::2` in every prefix, would
    /// give two servers on one link the same MAC).
    static func derivedMAC(for address: IPAddress) -> MACAddress {
        let low: UInt32 = switch address {
        case .v4(let a): a.rawValue
        case .v6(let a):
            (0..<16).reduce(UInt32(0x811C_9DC5)) { hash, index in
                let byte = UInt8(truncatingIfNeeded: (index < 8 ? a.high >> (56 - 8 * index) : a.low >> (120 - 8 * index)))
                return (hash ^ UInt32(byte)) &* 0x0100_0193
            }
        }
        return MACAddress(rawValue: 0x0273_0000_0000 | UInt64(low))
    }

    /// The link-local address of `mac`: fe80:: and its modified EUI-64 (RFC 4291 appendix A).
    static func linkLocalAddress(for mac: MACAddress) -> IPv6Address {
        let bits = mac.rawValue ^ 0x0200_0000_0000
        let identifier = (bits >> 24) << 40 | 0xFF_FE00_0000 | bits & 0xFF_FFFF
        return IPv6Address(high: 0xFE80 << 48, low: identifier)
    }

    public var workerCount: Int { settings.queues }

    /// Worker `index` reads the device's queue `index`.
    public func queue(ofWorker index: Int) -> Int? { index }

    public var modeDescription: String {
        // The MTU now: `ip link set … mtu` may have changed it while the server ran.
        "\(Self.kind == .tun ? "TUN" : "TAP"), MTU \(NetworkInterface.mtu(named: device.name) ?? device.mtu), "
            + (device.virtioHeaderLength > 0 ? "offloads \(device.offloads)" : "no virtio-net header")
    }

    public var summaryLines: [String] {
        ["  device: \(device.name), \(settings.queues) queue(s)" + (host.mac.map { ", the service at \($0)" } ?? "")]
    }

    /// Frames per worker: each frame holds a whole reassembled datagram, so fewer of them.
    static let framesPerWorker = 768

    @_specialize(where Service == UDPEchoService)
    @_specialize(where Service == DNSService)
    @_specialize(where Service == SockperfService)
    @_specialize(where Service == UDPDiscardService)
    public func runWorker<Service: UDPService>(index: Int, listen: IPEndpoint, service: Service, state: WorkerState,
                                               bound: (IPEndpoint) -> Void) throws(SystemCallError) -> WorkerReport {
        let headroom = 64
        let frameSize = (Reassembler.minimumFrameSize(headroom: headroom) + 63) / 64 * 64
        let pool = try FramePool(frameCount: min(configuration.framesPerWorker, Self.framesPerWorker),
                                 frameSize: frameSize, headroom: headroom)
        var port = TUNPort(device: device, queue: index, pool: pool)
        bound(listen)
        return UDPWorkerLoop.serve(port: &port, pool: pool, service: service, state: state,
                                   batchCapacity: configuration.batchCapacity, acceptance: acceptance, host: host)
    }

    public func finish() {}
}

/// A TAP device: as ``TUNBackend``, but the workers read and write Ethernet frames, and the
/// host in front of the service answers ARP and IPv6 neighbour solicitations for the listen
/// address at its own MAC, so the kernel reaches it as a neighbour on the link.
public final class TAPBackend: TUNBackend, @unchecked Sendable {
    public override class var name: String { "tap" }
    public override class var summary: String {
        "a TAP device the kernel reaches the listen address over (ARP and neighbour discovery answered); Ethernet frames in user space; needs CAP_NET_ADMIN"
    }
    override class var kind: TUNDeviceConfiguration.Kind { .tap }
}
