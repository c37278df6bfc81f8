#if canImport(Glibc)
import Glibc
#endif
import SluiceCore
import SluicePackets
import SluiceSystem
import SluiceXDP

/// A UDP traffic generator that sends through an AF_XDP socket's TX ring: no socket layer, no
/// routing, one wakeup per batch. It needs no XDP program on its own interface. Frames are built
/// once per send with valid IP and UDP checksums, to a fixed peer MAC (the neighbour entry).
public enum XDPTrafficGenerator {
    /// What to send.
    public struct Configuration: Sendable {
        /// The sending interface (in the current network namespace).
        public var interface: String
        /// Its queue.
        public var queue: UInt32 = 0
        /// Source address and port.
        public var source: IPEndpoint
        /// Destination address and port.
        public var destination: IPEndpoint
        /// The next hop's MAC; `nil` looks it up in the neighbour table.
        public var destinationMAC: MACAddress?
        /// UDP payload bytes per datagram.
        public var payloadSize: Int = 18
        /// The payload of every datagram (a DNS query, say); `nil` for ``payloadSize`` bytes of filler.
        public var payload: [UInt8]?
        /// How long to send.
        public var duration: Duration = .seconds(3)
        /// Stop after this many datagrams.
        public var count: UInt64?

        /// Packets per second; `nil` sends flat out.
        public var rate: Int?
        /// Zero-copy first (`.automatic`, copy announced), or a mode asked for outright.
        public var bindMode: XSKBindMode = .automatic

        /// Sends from `source` to `destination` through `interface`.
        public init(interface: String, source: IPEndpoint, destination: IPEndpoint) {
            self.interface = interface
            self.source = source
            self.destination = destination
        }
    }

    /// The largest UDP payload one of the generator's 2048-byte frames holds.
    public static func largestPayload(ipv6: Bool) -> Int {
        frameSize - EthernetHeader.untaggedLength - (ipv6 ? IPv6Header.length : IPv4Header.minimumLength) - UDPHeader.headerLength
    }

    static let frameSize = 2048

    /// Sends until the duration or count is reached, or `shouldStop` (asked every 50 ms) says
    /// so, and reports datagrams the kernel completed.
    public static func run(_ configuration: Configuration, shouldStop: () -> Bool = { false }) throws -> UDPLoadReport {
        let ipv6 = configuration.destination.address.family == AF_INET6
        guard configuration.source.address.family == configuration.destination.address.family else {
            throw RuntimeError("the source \(configuration.source) and destination \(configuration.destination) are of different families")
        }
        let payload = configuration.payload ?? [UInt8](repeating: 0x5A, count: configuration.payloadSize)
        guard (0...largestPayload(ipv6: ipv6)).contains(payload.count) else {
            throw RuntimeError("a payload of \(payload.count) bytes does not fit one \(frameSize)-byte frame "
                               + "(at most \(largestPayload(ipv6: ipv6)))")
        }
        // The device drops a frame over its MTU without a word; the kernel's sockets fragment instead.
        if let mtu = NetworkInterface.mtu(named: configuration.interface) {
            let packet = payload.count + UDPHeader.headerLength + (ipv6 ? IPv6Header.length : IPv4Header.minimumLength)
            guard packet <= mtu else {
                throw RuntimeError("a payload of \(payload.count) bytes makes \(packet)-byte packets, over the MTU of "
                                   + "\(configuration.interface) (\(mtu)); AF_XDP sends no fragments: at most \(payload.count - packet + mtu)")
            }
        }
        let sourceMAC = try interfaceMAC(configuration.interface)
        guard let destinationMAC = try configuration.destinationMAC ?? neighbourMAC(configuration.destination.address,
                                                                                     interface: configuration.interface)
        else {
            throw RuntimeError("no neighbour entry for \(configuration.destination.address) on \(configuration.interface): "
                               + "ping it once or set the destination MAC")
        }
        let pool = try FramePool(frameCount: 4096, frameSize: frameSize, headroom: 0)
        let umem = try XSKUmem(pool: pool)
        var portConfiguration = XDPPortConfiguration(interface: configuration.interface, queue: configuration.queue)
        portConfiguration.bindMode = configuration.bindMode
        portConfiguration.reservedFrames = pool.frameCount  // TX only: nothing goes to the fill ring
        var port = try XDPPort(configuration: portConfiguration, umem: umem, pool: pool)
        // Copy-mode AF_XDP sends at most 32 frames per wakeup (the kernel's TX_BATCH_SIZE).
        var batch = PacketBatch(pool: pool, capacity: 32)
        let clock = MonotonicTimeSource()
        let cpuStart = threadCPUNanoseconds()
        let start = clock.now()
        let deadline = start + configuration.duration
        let pacer = Pacer(rate: configuration.rate)
        var queued: UInt64 = 0
        var stopCheck = StopCheck()
        while clock.now() < deadline, !stopCheck.stops(at: clock.now(), shouldStop) {
            if let count = configuration.count, queued >= count { break }
            pacer.waitForTurn(of: queued)
            _ = port.reclaim()
            let wanted = configuration.count.map { Int(min($0 - queued, 32)) } ?? 32
            while batch.count < wanted, let index = batch.appendNewFrame() {
                let length = payload.withUnsafeBytes {
                    UDPFrame.build(into: batch[index].frame, linkLayer: .ethernet, sourceMAC: sourceMAC,
                                   destinationMAC: destinationMAC, source: configuration.source,
                                   destination: configuration.destination, payload: $0)
                }
                batch[index].setData(offset: 0, length: length)
            }
            queued += UInt64(batch.count)
            try port.transmit(&batch)
        }
        // Let the last frames complete so the count is of frames the kernel sent.
        let settle = clock.now() + .milliseconds(100)
        while port.framesHeld > 0, clock.now() < settle { _ = port.reclaim() }
        var report = UDPLoadReport()
        report.openLoop = true
        report.payloadSize = payload.count
        report.sent = port.counters.transmittedPackets - UInt64(port.framesHeld)
        report.seconds = Double((clock.now() - start).nanosecondsClamped) / 1e9
        let cpuEnd = threadCPUNanoseconds()
        report.senderCPUNanoseconds = cpuEnd > cpuStart ? cpuEnd - cpuStart : 0
        return report
    }

    /// The interface's MAC, in the calling thread's network namespace.
    static func interfaceMAC(_ interface: String) throws -> MACAddress {
        guard let mac = try NetworkInterface.named(interface)?.mac else {
            throw RuntimeError("no interface \(interface) with a MAC address here: check the name with `ip link`")
        }
        return mac
    }

    /// The neighbour's MAC from the kernel's ARP table (IPv4) or `nil` when unknown or not yet
    /// resolved (an incomplete entry's MAC is all zeros); the table of the calling thread's
    /// namespace (`/proc/net` would show the main thread's).
    static func neighbourMAC(_ address: IPAddress, interface: String) throws -> MACAddress? {
        guard case .v4(let v4) = address else {
            throw RuntimeError("IPv6 next hops need the destination MAC set (no neighbour lookup for IPv6)")
        }
        guard let file = fopen("/proc/thread-self/net/arp", "r") else { return nil }
        defer { fclose(file) }
        var line = [CChar](repeating: 0, count: 512)
        while fgets(&line, Int32(line.count), file) != nil {
            let fields = String(decoding: line.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
                .split(separator: " ", omittingEmptySubsequences: true)
            // IP address, HW type, Flags, HW address, Mask, Device
            guard fields.count >= 6, IPv4Address(fields[0]) == v4,
                  fields[5].prefix(while: { !$0.isNewline }) == interface else { continue }
            // ATF_COM: the entry is complete, its hardware address known.
            guard let flags = Int(fields[2].dropFirst(2), radix: 16), flags & 0x2 != 0 else { return nil }
            return MACAddress(fields[3])
        }
        return nil
    }
}

/// The calling thread's CPU time (user and system), in nanoseconds.
public func threadCPUNanoseconds() -> UInt64 {
    var spec = timespec()
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &spec)
    return UInt64(spec.tv_sec) * 1_000_000_000 + UInt64(spec.tv_nsec)
}
