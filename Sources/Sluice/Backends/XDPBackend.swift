#if canImport(Glibc)
import Glibc
#endif
import Logging
import SluiceCore
import SluicePackets
import SluiceSockets
import SluiceSystem
import SluiceUDP
import SluiceXDP
import Synchronization

/// Where an AF_XDP backend takes its frames from.
public struct XDPBackendConfiguration: Sendable {
    /// The interface.
    public var interface: String
    /// The receive queues to serve, one worker each.
    public var queues: [UInt32] = [0]
    /// Native (driver) or generic (skb) XDP; native falls back to generic when refused.
    public var attachMode: XDPAttachMode = .native
    /// Zero-copy, copy, or try zero-copy first.
    public var bindMode: XSKBindMode = .automatic
    /// Replace a foreign XDP program on the interface.
    public var force: Bool = false
    /// Frame size in the UMEM (2048 or 4096).
    public var frameSize: Int = 2048
    /// Verify IPv4 header and UDP checksums, as the kernel does for what it delivers; turn it off
    /// only for a NIC that validates them in hardware.
    public var verifiesChecksums: Bool = true

    /// Serve queue 0 of `interface`.
    public init(interface: String) { self.interface = interface }
}

/// AF_XDP sockets fed by Sluice's XDP program, one worker per receive queue, all sharing one
/// UMEM, and one more worker on a kernel UDP socket bound to the same address and port. Needs
/// CAP_NET_ADMIN, CAP_NET_RAW, CAP_BPF and CAP_PERFMON (and CAP_IPC_LOCK for a large UMEM).
///
/// The program passes what it does not steer (IP fragments, queues without a socket) to the
/// kernel; the kernel socket worker serves that with the same service, so nothing the kernel
/// would deliver to a socket on the listen address is lost (counted as "via kernel socket").
/// Setup attaches the program to the interface (or joins a sluice program already there) and
/// adds the listen address to its steering (that address and port only; a wildcard, its
/// families' addresses), owned by this process: its frames go only to this process's sockets,
/// so another server on the interface (another address or port, other queues) keeps its
/// traffic, and one that arrives on another server's queue reaches this one's kernel socket.
/// ``finish()`` leaves the interface as it was found.
public final class XDPBackend: UDPBackend {
    public static let name = "xdp"
    public static let summary = "AF_XDP behind Sluice's XDP program, one worker per queue; needs CAP_NET_ADMIN, CAP_NET_RAW, CAP_BPF and CAP_PERFMON (CAP_IPC_LOCK past RLIMIT_MEMLOCK)"
    public static var variants: [UDPBackendVariant] {
        XDPAttachMode.allCases.map { mode in
            UDPBackendVariant(name: "xdp-\(mode.rawValue)", backend: name) { configuration in
                configuration.xdp?.attachMode = mode
            }
        }
    }

    let configuration: UDPServerConfiguration
    let settings: XDPBackendConfiguration
    let program: XDPProgram
    let umem: XSKUmem
    let pools: [FramePool]
    /// What the workers' stages accept: the kernel's rules for a socket on the listen address,
    /// with the interface's addresses and MTU as they are now (``refreshAcceptance()``).
    private let liveAcceptance: LiveAcceptance
    /// When worker 0 next reads the interface's addresses and MTU again.
    private let nextRefresh = Atomic<UInt64>(0)
    /// The interface's name as last seen: it follows a rename (`ip link set … name`).
    private let currentName: Mutex<String>
    private let attachedHere: Bool
    /// The listen address this backend steers to its sockets: a listener its process owns.
    private let addedListener: IPEndpoint
    private let modes = Locked<[Bool]>([])
    private let socketStatistics = Locked(XSKStatistics())
    /// Each queue's XSK statistics: read live from the open socket, or as the socket left them.
    private let queueSockets = Locked<[UInt32: QueueSocket]>([:])
    private let finalVerdicts = Locked<XDPVerdicts?>(nil)
    /// The program's counters when this server started: a program it found attached (left by
    /// `xdp load`, another server or a killed one) counted before, and its report is of this run.
    private let startVerdicts: XDPVerdicts
    private let viaKernelSocket = Locked<UInt64>(0)

    public init(configuration: UDPServerConfiguration) throws(RuntimeError) {
        guard let settings = configuration.xdp else {
            throw RuntimeError("the xdp backend needs an interface (XDPBackendConfiguration)")
        }
        guard !settings.queues.isEmpty else { throw RuntimeError("the xdp backend needs at least one queue") }
        self.configuration = configuration
        self.settings = settings
        currentName = Mutex(settings.interface)
        let interface: NetworkInterface
        do throws(SystemCallError) {
            interface = try Self.interface(named: settings.interface)
            // A reply sent through an XSK on lo comes back in without the route a socket's
            // packet carries, and from this host's own address: IPv4 drops it as a martian.
            guard !interface.isLoopback else {
                throw SystemCallError(.port, operation: "serving \(settings.interface) over AF_XDP", errno: EOPNOTSUPP,
                                      hint: "\(settings.interface) is the loopback device: the replies would come back to the kernel "
                                          + "from this host's own address and be dropped as martians; use --backend socket or uring "
                                          + "for loopback traffic")
            }
            liveAcceptance = LiveAcceptance(Self.acceptance(for: configuration.listen, on: settings, interface: interface))
        } catch {
            throw RuntimeError(error)
        }
        // What the NIC spreads to a queue with no socket of this server reaches its kernel socket:
        // served, but past the kernel's stack, as Knot's XDP mode (which takes every queue) would not.
        if let count = NetworkInterface.receiveQueueCount(named: settings.interface) {
            let missing = settings.queues.filter { $0 >= count }
            guard missing.isEmpty else {
                throw RuntimeError("\(settings.interface) has \(count) receive queue(s) (0-\(count - 1), `ethtool -l \(settings.interface)`): "
                                   + "no queue \(missing.map(String.init).joined(separator: ",")); give --queues within them")
            }
            let unserved = (0..<UInt32(count)).filter { !settings.queues.contains($0) }
            if !unserved.isEmpty {
                let queues = unserved.map(String.init).joined(separator: ",")
                let message = "\(settings.interface) has \(count) receive queues and this server takes \(settings.queues.count): what arrives on "
                    + "queue(s) \(queues) goes through its kernel socket (--queues 0-\(min(count, 256) - 1) serves \(count > 256 ? "256 of " : "")them all)"
                configuration.logger.notice("\(message)")
            }
        }
        let listen = configuration.listen
        let vlanIDs = liveAcceptance.value.withLock { $0.vlanIDs }
        let joined: (program: XDPProgram, attachedHere: Bool)
        do throws(SystemCallError) {
            // The kernel socket this server will hold is the real test of the address: one a
            // running server holds (a wildcard over this address, say) is refused before a frame
            // of that server's is steered here.
            try Self.checkKernelSocketBinds(listen)
            // Under the lock, so a server starting at the same moment joins the program this one
            // attaches, and the last server leaving cannot detach it between the two steps.
            joined = try XDPProgram.withListenerLock { () throws(SystemCallError) -> (program: XDPProgram, attachedHere: Bool) in
                let found = try XDPProgram.attached(on: settings.interface)
                let program: XDPProgram
                if let found {
                    program = found
                    if found.mode != settings.attachMode {
                        let stays = "sluice's XDP program on \(settings.interface) runs in \(found.mode.rawValue) mode, which stays "
                            + "(not \(settings.attachMode.rawValue)); `sluice xdp unload` first to change it"
                        configuration.logger.notice("\(stays)")
                    }
                } else {
                    program = try XDPProgram.attach(to: settings.interface, mode: settings.attachMode, force: settings.force,
                                                    logger: configuration.logger)
                }
                do throws(SystemCallError) {
                    // Set before the listener, so no frame of another host or device is taken meanwhile.
                    try program.setLinkFilter(XDPLinkFilter(localMAC: interface.mac, vlanDeviceIDs: vlanIDs,
                                                            localAddresses: interface.addresses + Self.broadcasts(of: interface),
                                                            maximumFrame: settings.frameSize - Self.packetHeadroom))
                    // Also on a port in `ports` (`sluice xdp load --ports`): the listener keeps this
                    // server's frames from another server's socket on the queue.
                    try program.setListener(listen)
                } catch {
                    if found == nil { try? program.detach() }
                    throw error
                }
                return (program, found == nil)
            }
        } catch {
            throw RuntimeError(error)
        }
        program = joined.program
        attachedHere = joined.attachedHere
        addedListener = listen
        startVerdicts = (try? program.verdicts()) ?? XDPVerdicts()
        do throws(SystemCallError) {
            let framesPerQueue = max(configuration.framesPerWorker, Self.framesPerQueue)
            let pool = try FramePool(frameCount: framesPerQueue * settings.queues.count,
                                     frameSize: settings.frameSize, headroom: 256)
            // Every frame of a queue fits on its fill ring, so sent frames go back in order (see XDPPort.reclaim).
            let fillRingSize = UInt32(1) << (Int.bitWidth - (framesPerQueue - 1).leadingZeroBitCount)
            umem = try XSKUmem(pool: pool, fillRingSize: fillRingSize)
            pools = pool.partition(into: settings.queues.count)
        } catch {
            Self.leave(program, listener: addedListener, attachedHere: attachedHere, logger: configuration.logger)
            throw RuntimeError(error)
        }
    }

    /// What the kernel keeps in front of each received frame (XDP_PACKET_HEADROOM): a UMEM frame
    /// takes a frame this much shorter than itself.
    static let packetHeadroom = 256

    /// The fewest frames a queue's pool has: enough for its RX ring (2048) and as many again
    /// on the fill ring, so the kernel finds frames to receive into through a burst the worker
    /// has not taken yet. With the 512 of the other backends, 1.7 % of a 0.75 Mpps echo met an
    /// empty fill ring.
    static let framesPerQueue = 4096

    /// One per queue, and the kernel socket's.
    public var workerCount: Int { settings.queues.count + 1 }

    @_specialize(where Service == UDPEchoService)
    @_specialize(where Service == DNSService)
    @_specialize(where Service == SockperfService)
    @_specialize(where Service == UDPDiscardService)
    public func runWorker<Service: UDPService>(index: Int, listen: IPEndpoint, service: Service, state: WorkerState,
                                               bound: (IPEndpoint) -> Void) throws(SystemCallError) -> WorkerReport {
        if index == settings.queues.count {
            return try runKernelSocketWorker(listen: listen, service: service, state: state, bound: bound)
        }
        let queue = settings.queues[index]
        let pool = pools[index]
        var portConfiguration = XDPPortConfiguration(interface: settings.interface, queue: queue)
        portConfiguration.bindMode = settings.bindMode
        portConfiguration.logger = configuration.logger
        portConfiguration.programID = program.interfaceProgramID
        var port = try XDPPort(configuration: portConfiguration, umem: umem, pool: pool)
        try program.insertSocket(port.descriptor, queue: queue)
        modes.withLock { $0.append(port.isZeroCopy) }
        queueSockets.withLock { $0[queue] = .open(port.descriptor) }
        bound(listen)
        var (acceptance, seen) = liveAcceptance.current()
        let report = UDPWorkerLoop.serve(port: &port, pool: pool, service: service, state: state,
                                         batchCapacity: configuration.batchCapacity, acceptance: acceptance, acceptanceUpdate: {
            if index == 0 { refreshAcceptance() }
            guard liveAcceptance.changes.load(ordering: .acquiring) != seen else { return nil }
            (acceptance, seen) = liveAcceptance.current()
            return acceptance
        }, quiesce: { [program] in
            // At the stop the program redirects nothing more here (the kernel socket gets it);
            // what is in the RX ring by then is served and counted before the socket closes.
            try? program.removeSocket(queue: queue)
        })
        let statistics = port.statistics
        // Before the socket closes, so no reader asks the kernel about a descriptor reused since.
        queueSockets.withLock { $0[queue] = .closed(statistics) }
        record(statistics)
        // An interface that went away took the program and its map with it.
        if report.failure == nil { try program.removeSocket(queue: queue) } else { try? program.removeSocket(queue: queue) }
        return report
    }

    /// The kernel's rules for a socket bound to `listen`, with the interface's MAC and addresses
    /// as they are at start: a wildcard listen takes the interface's addresses of its families
    /// (`0.0.0.0` IPv4 only, `[::]` both) and its IPv4 broadcasts; another address only itself.
    static func acceptance(for listen: IPEndpoint, on settings: XDPBackendConfiguration,
                           interface: NetworkInterface) -> UDPAcceptance {
        var acceptance = UDPAcceptance()
        acceptance.verifiesChecksums = settings.verifiesChecksums
        acceptance.localMAC = interface.mac
        acceptance.appliesKernelRules = true
        acceptance.vlanIDs = vlanIDs(on: interface.name)
        switch listen.address {
        case .v4(.any):
            let v4 = interface.addresses.indices.filter { interface.addresses[$0].family == AF_INET }
            acceptance.localAddresses = v4.map { interface.addresses[$0] }
            acceptance.localPrefixLengths = v4.map { interface.prefixLengths[$0] }
            acceptance.broadcastAddresses = broadcasts(of: interface)
        case .v6(.any):
            acceptance.localAddresses = interface.addresses
            acceptance.localPrefixLengths = interface.prefixLengths
            acceptance.broadcastAddresses = broadcasts(of: interface)
        case let address:
            acceptance.localAddresses = [address]
            acceptance.localAddressesPresent = interface.addresses.contains(address)
        }
        acceptance.broadcastSources = broadcasts(of: interface)
        // Replies leave through the XSK unfragmented: one past the MTU would be lost on the wire.
        acceptance.maximumPacket = NetworkInterface.mtu(named: interface.name)
        return acceptance
    }

    /// Reads the interface's addresses, MAC, VLANs and MTU again, once a second (on worker 0's
    /// thread): when they changed, every worker's stage and the program's link filter follow, as
    /// the kernel's rules follow `ip addr` and `ip link set mtu` for a socket.
    func refreshAcceptance() {
        let now = MonotonicTimeSource().now().nanoseconds
        guard now >= nextRefresh.load(ordering: .relaxed) else { return }
        nextRefresh.store(now + 1_000_000_000, ordering: .relaxed)
        // Gone: the port fails on its own and says so. Renamed: the same interface, followed.
        guard let name = NetworkInterface.name(ofIndex: UInt32(program.interfaceIndex)),
              let interface = try? NetworkInterface.named(name) else { return }
        let previous = currentName.withLock { current in
            defer { current = name }
            return current
        }
        if previous != name { configuration.logger.notice("\(previous) is now named \(name): following it") }
        let fresh = Self.acceptance(for: configuration.listen, on: settings, interface: interface)
        guard liveAcceptance.update(fresh) else { return }
        let addresses = fresh.localAddressesPresent ? fresh.localAddresses.map(\.description).joined(separator: ", ")
            : "nothing (\(configuration.listen.address) is not on it: what comes for it is dropped, as the kernel drops it)"
        configuration.logger.notice("\(name) changed: taking \(addresses), replies up to \(fresh.maximumPacket.map(String.init) ?? "any") bytes")
        // New addresses are steered too; a deleted one goes back to the kernel.
        try? program.setLinkFilter(XDPLinkFilter(localMAC: interface.mac, vlanDeviceIDs: fresh.vlanIDs,
                                                 localAddresses: interface.addresses + Self.broadcasts(of: interface),
                                                 maximumFrame: settings.frameSize - Self.packetHeadroom))
    }

    /// `name` in the calling thread's namespace, as it is now.
    static func interface(named name: String) throws(SystemCallError) -> NetworkInterface {
        guard let interface = try NetworkInterface.named(name) else {
            throw SystemCallError(.xdp, operation: "finding interface \(name)", errno: ENODEV,
                                  hint: "no such interface in this network namespace (see `ip link`)")
        }
        return interface
    }

    /// The interface's IPv4 broadcast addresses and the limited broadcast, 255.255.255.255.
    static func broadcasts(of interface: NetworkInterface) -> [IPAddress] {
        interface.broadcastAddresses + [.v4(IPv4Address(rawValue: .max))]
    }

    /// The VLAN IDs with a device on `interface` (`/proc/net/vlan/config` of the calling
    /// thread's namespace: "NAME | VID | DEVICE" lines); none when the table is absent.
    static func vlanIDs(on interface: String) -> Set<UInt16> {
        guard let file = fopen("/proc/thread-self/net/vlan/config", "r") else { return [] }
        defer { fclose(file) }
        var ids: Set<UInt16> = []
        var line = [CChar](repeating: 0, count: 512)
        while fgets(&line, Int32(line.count), file) != nil {
            let fields = String(decoding: line.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
                .split(separator: "|").map { $0.filter { !$0.isWhitespace } }
            if fields.count == 3, String(fields[2]) == interface, let id = UInt16(fields[1]) { ids.insert(id) }
        }
        return ids
    }

    /// Serves what the program passes to the kernel (fragments, above all) from a kernel socket
    /// on the listen address.
    private func runKernelSocketWorker<Service: UDPService>(
        listen: IPEndpoint, service: Service, state: WorkerState, bound: (IPEndpoint) -> Void
    ) throws(SystemCallError) -> WorkerReport {
        var socket = UDPSocketConfiguration(listen: listen)
        socket.reusePort = false
        socket.logger = configuration.logger
        let pool = try configuration.datagramPool(frameSize: socket.frameSize(maximumDatagram: configuration.maximumDatagram))
        var port = try UDPSocketPort(configuration: socket, pool: pool, batchCapacity: configuration.batchCapacity)
        bound(listen)
        let report = UDPWorkerLoop.serve(port: &port, pool: pool, service: service, state: state,
                                         batchCapacity: configuration.batchCapacity)
        viaKernelSocket.withLock { $0 = report.port.receivedPackets }
        return report
    }

    /// Leaves the interface as it was found: takes back the listen address it added, and detaches
    /// the program once nothing is steered through it any more, whichever process attached it: a
    /// second server that joined the program keeps it, and the last one out removes it (unless
    /// `sluice xdp load` attached it: that stays until `sluice xdp unload`).
    public func finish() {
        let verdicts = try? program.verdicts()
        finalVerdicts.withLock { $0 = verdicts }
        Self.leave(program, listener: addedListener, attachedHere: attachedHere, logger: configuration.logger)
    }

    /// Takes `listener` back and detaches the program if nothing is steered through it any more,
    /// under the listener lock (see ``XDPProgram/withListenerLock(_:)``). A program that cannot be
    /// detached is said, with how to remove it: an interface gone from this namespace took the
    /// program with it if it was deleted, but kept it if it was moved to another namespace.
    private static func leave(_ program: XDPProgram, listener: IPEndpoint, attachedHere: Bool, logger: Logger) {
        XDPProgram.withListenerLock {
            try? program.setListener(listener, enabled: false)
            try? program.removeAbandonedListeners()
            let unused = ((try? program.ports)?.isEmpty ?? attachedHere) && ((try? program.listeners)?.isEmpty ?? true)
                && !((try? program.isKept) ?? false)
            guard unused else { return }
            let removal = "`ip link set dev \(program.interfaceName) \(program.mode.ipLinkKeyword) off` where the interface is now removes it"
            do throws(SystemCallError) {
                try program.detach()
                if NetworkInterface.name(ofIndex: UInt32(program.interfaceIndex)) == nil {
                    let gone = "\(program.interfaceName) left this network namespace: if it was moved, not deleted, its XDP program is still attached"
                    logger.warning("\(gone); \(removal)", metadata: ["program": "\(program.programID)"])
                }
            } catch {
                logger.warning("the XDP program stays attached to \(program.interfaceName): \(error); \(removal)",
                               metadata: ["program": "\(program.programID)"])
            }
        }
    }

    /// Binds and closes a UDP socket on `listen` as the kernel socket worker will (no
    /// `SO_REUSEPORT`), so an address another server holds fails here with EADDRINUSE.
    static func checkKernelSocketBinds(_ listen: IPEndpoint) throws(SystemCallError) {
        let family = listen.address.family
        let fd = socket(family, Int32(SOCK_DGRAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard fd >= 0 else { throw SystemCallError(.socket, operation: "socket(UDP)", errno: errno) }
        defer { close(fd) }
        try configureDatagramSocket(fd, family: family, listen: listen, reusePort: false, receiveOffload: false, socketBufferBytes: nil)
        _ = try systemCall(.socket, "bind(\(listen))") { SocketAddress.with(listen, family: family) { bind(fd, $0, $1) } }
    }

    /// "native XDP, copy", with "zero-copy" or "mixed zero-copy/copy" over the sockets opened.
    public var modeDescription: String {
        let all = modes.withLock { $0 }
        let sockets = all.allSatisfy { $0 } && !all.isEmpty ? "zero-copy" : all.contains(true) ? "mixed zero-copy/copy" : "copy"
        return "\(program.mode.rawValue) XDP, \(sockets)"
    }

    /// The sockets' kernel drop counters, summed over the sockets closed so far.
    public var statistics: XSKStatistics { socketStatistics.withLock { $0 } }

    /// As they are now: the open sockets' counters read from the kernel, the closed ones' as they
    /// were left.
    public var kernelDrops: [(cause: String, count: UInt64)]? {
        let sockets = queueStatistics().map(\.1)
        return [("xsk: no fill-ring frame", sockets.reduce(0) { $0 + $1.receiveDropped }),
                ("xsk: rx ring full", sockets.reduce(0) { $0 + $1.receiveRingFull })]
    }

    /// Each queue's socket statistics, now.
    private func queueStatistics() -> [(UInt32, XSKStatistics)] {
        queueSockets.withLock { sockets in
            sockets.map { queue, socket in
                switch socket {
                case .open(let descriptor): (queue, XSKStatistics(socket: descriptor) ?? XSKStatistics())
                case .closed(let statistics): (queue, statistics)
                }
            }
        }
    }

    /// The program's verdicts since this server started: as it left them, or as they are now.
    var runVerdicts: XDPVerdicts? {
        (finalVerdicts.withLock({ $0 }) ?? (try? program.verdicts())).map { $0.since(startVerdicts) }
    }

    public var summaryLines: [String] {
        var lines: [String] = []
        if let verdicts = runVerdicts {
            lines.append("  xdp program: \(verdicts)")
        }
        lines.append("  via kernel socket (fragments and whatever the program passes): "
                     + "\(viaKernelSocket.withLock { $0 }) datagrams")
        let socket = statistics
        lines.append("  xsk: rx_dropped \(socket.receiveDropped), rx_ring_full \(socket.receiveRingFull), "
                     + "fill_ring_empty \(socket.fillRingEmpty), rx_invalid \(socket.receiveInvalidDescriptors), "
                     + "tx_invalid \(socket.transmitInvalidDescriptors)")
        return lines
    }

    public func queue(ofWorker index: Int) -> Int? {
        index < settings.queues.count ? Int(settings.queues[index]) : nil
    }

    /// The program's verdicts on the interface, and each queue's XSK ring statistics: drops (no
    /// fill-ring frame, RX ring full, invalid descriptors) in `sluice_drops_total`, the rest as
    /// `sluice_xsk_*_total`.
    public func collectMetrics(into snapshot: inout MetricsSnapshot) {
        let interface = ("interface", settings.interface)
        if let verdicts = runVerdicts {
            for (verdict, count) in verdicts.fields {
                snapshot.counter("sluice_xdp_verdicts_total", count, [interface, ("verdict", verdict)])
            }
        }
        for (queue, statistics) in queueStatistics().sorted(by: { $0.0 < $1.0 }) {
            let labels = [("backend", Self.name), interface, ("queue", "\(queue)")]
            for (cause, count) in [("rx_dropped", statistics.receiveDropped), ("rx_ring_full", statistics.receiveRingFull),
                                   ("rx_invalid_descs", statistics.receiveInvalidDescriptors),
                                   ("tx_invalid_descs", statistics.transmitInvalidDescriptors)] {
                snapshot.counter("sluice_drops_total", count, labels + [("layer", "xsk"), ("cause", cause)])
            }
            snapshot.counter("sluice_xsk_fill_ring_empty_total", statistics.fillRingEmpty, labels)
            snapshot.counter("sluice_xsk_tx_ring_empty_total", statistics.transmitRingEmpty, labels)
        }
    }

    /// A queue's socket, for its statistics.
    private enum QueueSocket {
        case open(Int32)
        case closed(XSKStatistics)
    }

    private func record(_ socket: XSKStatistics) {
        socketStatistics.withLock {
            $0.receiveDropped += socket.receiveDropped
            $0.receiveInvalidDescriptors += socket.receiveInvalidDescriptors
            $0.transmitInvalidDescriptors += socket.transmitInvalidDescriptors
            $0.receiveRingFull += socket.receiveRingFull
            $0.fillRingEmpty += socket.fillRingEmpty
            $0.transmitRingEmpty += socket.transmitRingEmpty
        }
    }
}

/// A backend's acceptance that can change while workers run, and how many times it has: a
/// worker compares the count with the one it has (one relaxed load a tenth of a second) and
/// takes the new value under the lock only when they differ.
final class LiveAcceptance: Sendable {
    let value: Mutex<UDPAcceptance>
    let changes = Atomic<UInt64>(0)

    init(_ acceptance: UDPAcceptance) { value = Mutex(acceptance) }

    /// The acceptance and its change count.
    func current() -> (UDPAcceptance, UInt64) {
        value.withLock { ($0, changes.load(ordering: .acquiring)) }
    }

    /// Sets `acceptance`; false when it is what was there.
    func update(_ acceptance: UDPAcceptance) -> Bool {
        value.withLock { current in
            guard current != acceptance else { return false }
            current = acceptance
            changes.add(1, ordering: .releasing)
            return true
        }
    }
}
