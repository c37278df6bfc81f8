import SluiceCore
import SluicePackets

/// A host behind a TUN or TAP device, in front of a service stage: it answers ARP, neighbour
/// solicitations and pings itself (``HostResponder``), reassembles fragments before the
/// service sees them, and cuts the service's replies that are longer than the MTU into
/// fragments (``Fragmenter``). Everything else goes to the service stage as it came.
///
/// ```swift
/// let host = HostConfiguration(addresses: [.v4(IPv4Address(198, 18, 1, 2))], mtu: 1500)
/// var stage = HostStage(UDPStage(service: UDPEchoService(), format: .ip), configuration: host,
///                       format: .ip, pool: pool)
/// ```
///
/// Output may be more packets than input (a reply in fragments): what does not fit in the
/// output batch waits in the stage, which then asks to run again at once (``pollTimeout()``).
public struct HostStage<Service: Stage & ~Copyable>: Stage, ~Copyable {
    /// The stage the host passes its traffic to (a `UDPStage`, say).
    public var service: Service
    /// The host's own part: responders, reassembly and its counters.
    public var responder: HostResponder
    @usableFromInline var fragmenter: Fragmenter
    @usableFromInline let currentMTU: (@Sendable () -> Int?)?
    @usableFromInline var nextMTUCheck = Instant.zero
    @usableFromInline var toService: PacketBatch
    @usableFromInline var fromService: PacketBatch
    @usableFromInline var waiting: PacketBatch
    @usableFromInline var lastNow = Instant.zero

    /// Packets that may wait for room in the output: a 64 KiB reply in fragments, and then some.
    public static var waitingCapacity: Int { 512 }

    /// Puts the host of `configuration` in front of `service`, over packets of `format` (`FrameFormat/ip`
    /// from TUN, `FrameFormat/ethernet` from TAP) whose frames come from `pool`, in batches of `capacity`.
    /// The pool's frames must hold a whole reassembled datagram (``Reassembler/minimumFrameSize(headroom:)``).
    public init(_ service: consuming Service, configuration: HostConfiguration, format: FrameFormat, pool: FramePool,
                capacity: Int = PacketBatch.defaultCapacity) {
        precondition(format != .datagram, "the host stage reads IP packets or Ethernet frames")
        self.service = service
        responder = HostResponder(configuration: configuration, linkLayer: format == .ethernet ? .ethernet : .ip, pool: pool)
        fragmenter = Fragmenter(mtu: configuration.mtu)
        currentMTU = configuration.currentMTU
        toService = PacketBatch(pool: pool, capacity: capacity)
        fromService = PacketBatch(pool: pool, capacity: capacity)
        waiting = PacketBatch(pool: pool, capacity: Self.waitingCapacity)
    }

    /// Takes the device's MTU as it is now (IPv4 needs 68 bytes at least).
    @usableFromInline
    mutating func followMTU(now: Instant) {
        nextMTUCheck = now + .seconds(1)
        guard let mtu = currentMTU?(), mtu >= 68, mtu != fragmenter.mtu else { return }
        fragmenter.mtu = mtu
        responder.mtu = mtu
    }

    /// The MTU replies are cut to now.
    public var mtu: Int { fragmenter.mtu }

    /// What the host has counted, reassembly included.
    public var counters: HostCounters {
        var counters = responder.counters
        counters.reassembly = responder.reassembler.counters
        return counters
    }

    /// Frames the stage holds between calls: datagrams being reassembled, output waiting for room.
    public var framesHeld: Int {
        responder.reassembler.activeDatagrams + waiting.count + toService.count + fromService.count + service.framesHeld
    }

    @inlinable
    public mutating func handle(_ input: inout PacketBatch, output: inout PacketBatch, now: Instant) {
        lastNow = now
        if currentMTU != nil && now >= nextMTUCheck { followMTU(now: now) }
        responder.takeSharedPathMTUs()
        waiting.moveFront(to: &output)
        input.takeAll { packet in
            var packet = packet
            switch responder.admit(&packet, now: now) {
            case .service:
                if toService.isFull { runService(now: now, output: &output) }
                toService.append(packet)
            case .answer:
                send(packet, output: &output)
            case .consumed:
                output.pool.release(packet)
            }
        }
        runService(now: now, output: &output)
    }

    @inlinable
    public func pollTimeout() -> Instant? {
        if !waiting.isEmpty { return lastNow }
        switch (service.pollTimeout(), responder.reassembler.nextDeadline) {
        case let (a?, b?): return min(a, b)
        case let (a?, nil): return a
        case let (nil, b): return b
        }
    }

    @inlinable
    public mutating func handleTimeout(now: Instant, output: inout PacketBatch) {
        lastNow = now
        waiting.moveFront(to: &output)
        responder.expireReassembly(now: now, into: &fromService)
        fromService.takeAll {
            Self.send($0, output: &output, fragmenter: &fragmenter, waiting: &waiting, responder: &responder, now: now)
        }
        if let due = service.pollTimeout(), due <= now {
            service.handleTimeout(now: now, output: &fromService)
            fromService.takeAll {
                Self.send($0, output: &output, fragmenter: &fragmenter, waiting: &waiting, responder: &responder, now: now)
            }
        }
    }

    @inlinable
    mutating func runService(now: Instant, output: inout PacketBatch) {
        guard !toService.isEmpty else { return }
        service.handle(&toService, output: &fromService, now: now)
        fromService.takeAll {
            Self.send($0, output: &output, fragmenter: &fragmenter, waiting: &waiting, responder: &responder, now: now)
        }
    }

    /// Sends `packet` on, in fragments if it is longer than the MTU, behind whatever waits.
    @inlinable
    mutating func send(_ packet: consuming Packet, output: inout PacketBatch) {
        Self.send(packet, output: &output, fragmenter: &fragmenter, waiting: &waiting, responder: &responder, now: lastNow)
    }

    /// ``send(_:output:)`` on the parts of the stage it changes, so the service's output batch
    /// can be drained into it.
    @inlinable
    static func send(_ packet: consuming Packet, output: inout PacketBatch, fragmenter: inout Fragmenter,
                     waiting: inout PacketBatch, responder: inout HostResponder, now: Instant) {
        let networkOffset = responder.networkOffset(of: packet)
        var mtu = fragmenter.mtu
        // A path MTU learned from ICMP is never below 552 bytes: shorter packets need no look-up.
        if !responder.pathMTUs.isEmpty, packet.length - networkOffset > 552, packet.length >= networkOffset + 40,
           let learned = responder.pathMTUs.mtu(for: HostResponder.destination(of: packet.dataStart + networkOffset), now: now) {
            mtu = min(mtu, learned)
        }
        if packet.length - networkOffset <= mtu {
            if waiting.isEmpty && !output.isFull {
                output.append(packet)
            } else if !waiting.isFull {
                waiting.append(packet)
            } else {
                output.pool.release(packet)
                responder.counters.droppedOutput &+= 1
            }
            return
        }
        let fragments = fragmenter.fragment(packet, networkOffset: networkOffset, mtu: mtu, into: &waiting)
        if fragments == 0 {
            responder.counters.droppedOutput &+= 1
        } else {
            responder.counters.fragmentedReplies &+= 1
            responder.counters.fragmentsSent &+= UInt64(fragments)
        }
        waiting.moveFront(to: &output)
    }
}
