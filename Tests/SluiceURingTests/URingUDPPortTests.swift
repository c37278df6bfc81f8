#if canImport(Glibc)
import Glibc
#endif
import CSluiceSystem
import CSluiceURing
import SluiceCore
import SluicePackets
import SluiceSystem
import SluiceTestSupport
import SluiceUDP
import Testing
@testable import SluiceURing

/// An io_uring UDP port with its pool and a batch, ready to use.
struct URingHarness: ~Copyable {
    let pool: FramePool
    var port: URingUDPPort
    var batch: PacketBatch

    init(listen: String, mode: URingMode = .plain, gso: Bool = false, bufferRingEntries: UInt32 = 128,
         frames: Int = 512, zeroCopyThreshold: Int = 0, maximumDatagram: Int = 65507) throws {
        var configuration = URingUDPConfiguration(listen: IPEndpoint(listen)!)
        configuration.reusePort = false
        configuration.segmentationOffload = gso
        configuration.mode = mode
        configuration.bufferRingEntries = bufferRingEntries
        configuration.zeroCopyThreshold = zeroCopyThreshold
        configuration.receiveTimeout = .milliseconds(50)
        let pool = try FramePool(frameCount: frames, frameSize: configuration.frameSize(maximumDatagram: maximumDatagram),
                                 headroom: DatagramHeader.minimumHeadroom)
        port = try URingUDPPort(configuration: configuration, pool: pool)
        self.pool = pool
        batch = PacketBatch(pool: pool)
    }

    /// Echoes everything that arrives until `count` datagrams have come or 3 s pass; returns how many came.
    mutating func echo(_ count: Int) throws -> Int {
        let clock = ContinuousClock()
        let deadline = clock.now + .seconds(3)
        var received = 0
        while received < count, clock.now < deadline {
            received += try port.receive(into: &batch)
            if !batch.isEmpty { try port.transmit(&batch) }
        }
        return received
    }

    var balanced: Bool { pool.tally(held: batch.count + port.framesHeld).isBalanced }
}

/// Payload sizes 0...65507: edges and a random mix, mostly small.
func payloadSizes(seed: UInt64, count: Int) -> [Int] {
    var random = TestBytes(seed: seed)
    var sizes = [0, 1, 2, 63, 64, 65, 1231, 1232, 1452, 1472, 1473, 1500, 2048, 4095, 4096, 9000, 16384, 32768,
                 65000, 65506, 65507]
    while sizes.count < count {
        let r = random.next() % 100
        sizes.append(r < 70 ? Int(random.next() % 1473) : r < 95 ? Int(random.next() % 9001) : Int(random.next() % 65508))
    }
    return sizes
}

@Suite(.serialized) struct URingUDPPortTests {
    static let cases: [(String, URingMode, Bool)] = allModes.flatMap { mode in
        ["127.0.0.1:0", "[::1]:0"].flatMap { listen in [false, true].map { (listen, mode, $0) } }
    }

    /// Thousands of datagrams of every size through the port and back, every byte checked, in
    /// windows; with GSO the client sends equal-size runs as GSO bursts and the port replies in GSO runs.
    @Test(arguments: cases)
    func echoesThousandsOfDatagramsOfEverySize(listen: String, mode: URingMode, gso: Bool) throws {
        var h = try URingHarness(listen: listen, mode: mode, gso: gso)
        let server = h.port.localEndpoint
        let client = KernelUDPSocket(bind: IPEndpoint(address: server.address, port: 0))
        var random = TestBytes(seed: gso ? 21 : 20)
        var windows: [[[UInt8]]] = []
        var sizes = payloadSizes(seed: 5, count: 2000)
        if gso { sizes += (0..<1000).map { [64, 500, 1200, 1452][$0 / 250] } }
        var index = 0
        while index < sizes.count {
            let end = min(index + 32, sizes.count)
            windows.append(sizes[index..<end].map { random.bytes($0) })
            index = end
        }
        var total = 0
        for window in windows {
            let equal = window.allSatisfy { $0.count == window[0].count } && window[0].count > 0
            if gso && equal {
                #expect(client.send(window.flatMap { $0 }, to: server, segmentSize: window[0].count) > 0)
            } else {
                for p in window { client.send(p, to: server) }
            }
            let got = try h.echo(window.count)
            #expect(got == window.count)
            var replies: [[UInt8]] = []
            while replies.count < window.count, let reply = client.receive() {
                #expect(reply.from == server)
                replies.append(reply.bytes)
            }
            #expect(replies == window, "window at \(total): \(replies.count) of \(window.count) came back")
            if replies.count < window.count { break }
            total += window.count
        }
        #expect(total == sizes.count)
        _ = h.port.reclaim()
        let counters = h.port.counters
        #expect(counters.receivedPackets == UInt64(sizes.count))
        #expect(counters.transmittedPackets == UInt64(sizes.count))
        #expect(counters.droppedNoFrame == 0 && counters.droppedTruncated == 0 && counters.droppedTransmit == 0, "\(counters)")
        if gso { #expect(counters.segmentedPackets > 0) }
        #expect(counters.receiveCalls + counters.transmitCalls < UInt64(sizes.count), "batched io_uring_enter calls")
        check(h.balanced)
        let operations = h.port.ring.describe().split(separator: ":").last!.split(separator: " ").map(String.init)
        #expect(operations.contains("RECVMSG"))
        // Lone datagrams without control data go as SEND with an address where the kernel takes
        // one; GSO runs need their segment size in a cmsg, so SENDMSG.
        #expect(operations.contains("SEND") == KernelRelease.current.isAtLeast(6, 1), "\(operations)")
        if gso { #expect(operations.contains("SENDMSG"), "\(operations)") }
    }

    /// A reply the kernel refuses however it is sent (to port 0: EINVAL from udp_sendmsg) is
    /// dropped and counted; SEND with an address stays on, and the next reply goes with it.
    @Test func aReplyToPortZeroIsDroppedAndSendWithAnAddressStays() throws {
        var h = try URingHarness(listen: "127.0.0.1:0")
        guard h.port.sendsWithAddress else {
            print("skip: this kernel's SEND takes no address (before 6.1); SENDMSG is tested everywhere else")
            return
        }
        let server = h.port.localEndpoint
        let client = KernelUDPSocket(bind: IPEndpoint(address: server.address, port: 0))
        client.send([1, 2, 3], to: server)
        let clock = ContinuousClock()
        let deadline = clock.now + .seconds(3)
        while h.batch.isEmpty, clock.now < deadline { _ = try h.port.receive(into: &h.batch) }
        try #require(h.batch.count == 1)
        DatagramHeader(frameStart: h.batch[0].frameStart).peer = IPEndpoint(address: server.address, port: 0)
        try h.port.transmit(&h.batch)
        while h.port.framesHeld > h.port.buffers.providedCount, clock.now < deadline { _ = h.port.reclaim() }
        let dropped = h.port.counters.droppedTransmit
        let stillWithAddress = h.port.sendsWithAddress
        #expect(dropped == 1)
        #expect(stillWithAddress)
        client.send([4, 5], to: server)
        #expect(try h.echo(1) == 1)
        #expect(client.receive()?.bytes == [4, 5])
        let description = h.port.ring.describe()
        #expect(!description.contains("SENDMSG"), "\(description)")
        check(h.balanced)
    }

    /// Where the kernel takes no address with SEND (before 6.1), the port goes back to SENDMSG
    /// for every datagram, and replies still arrive.
    @Test func withoutSendWithAnAddressRepliesGoAsSendmsg() throws {
        var h = try URingHarness(listen: "127.0.0.1:0")
        h.port.stopSendingWithAddress()
        let withAddress = h.port.sendsWithAddress
        #expect(!withAddress)
        let server = h.port.localEndpoint
        let client = KernelUDPSocket(bind: IPEndpoint(address: server.address, port: 0))
        client.send([4, 5], to: server)
        #expect(try h.echo(1) == 1)
        #expect(client.receive()?.bytes == [4, 5])
        let description = h.port.ring.describe()
        #expect(description.contains("SENDMSG"), "\(description)")
        check(h.balanced)
    }

    @Test func kernelReleasesParse() {
        #expect(KernelRelease("6.1.0-18-amd64").version == (6, 1))
        #expect(KernelRelease("6.18.44-fc-v1098").isAtLeast(6, 1))
        #expect(KernelRelease("5.15.0").isAtLeast(6, 1) == false)
        #expect(KernelRelease("6.0.12").isAtLeast(6, 1) == false)
        #expect(KernelRelease("7.0").isAtLeast(6, 1))
        #expect(KernelRelease("garbage").version == (0, 0))
    }

    @Test func dualStackSeesIPv4PeersAsIPv4AndAnswersFromTheAddressTheyCameTo() throws {
        var h = try URingHarness(listen: "[::]:0")
        let port = h.port.localEndpoint.port
        let client4 = KernelUDPSocket(bind: IPEndpoint("127.0.0.1:0")!)
        let client6 = KernelUDPSocket(bind: IPEndpoint("[::1]:0")!)
        client4.send([4], to: IPEndpoint(address: .v4(.loopback), port: port))
        client6.send([6], to: IPEndpoint(address: .v6(.loopback), port: port))
        let clock = ContinuousClock()
        let deadline = clock.now + .seconds(2)
        while h.batch.count < 2, clock.now < deadline { _ = try h.port.receive(into: &h.batch) }
        check(h.batch.count == 2)
        var seen: [(IPEndpoint, IPEndpoint)] = []
        for i in 0..<h.batch.count {
            let header = DatagramHeader(frameStart: h.batch[i].frameStart)
            seen.append((header.peer, header.local))
        }
        #expect(seen.contains { $0.0 == client4.localEndpoint && $0.1 == IPEndpoint(address: .v4(.loopback), port: port) })
        #expect(seen.contains { $0.0 == client6.localEndpoint && $0.1 == IPEndpoint(address: .v6(.loopback), port: port) })
        try h.port.transmit(&h.batch)
        #expect(client4.receive()?.bytes == [4])
        #expect(client6.receive()?.bytes == [6])
    }

    @Test(arguments: [1, 1000])
    func zeroCopySendsHoldTheirFramesUntilNotified(threshold: Int) throws {
        var h = try URingHarness(listen: "127.0.0.1:0", zeroCopyThreshold: threshold)
        let server = h.port.localEndpoint
        let client = KernelUDPSocket(bind: IPEndpoint("127.0.0.1:0")!)
        var random = TestBytes(seed: 3)
        let payloads = (0..<200).map { random.bytes([10, 999, 1000, 1472, 9000, 65507][$0 % 6]) }
        for p in payloads { client.send(p, to: server) }
        #expect(try h.echo(payloads.count) == payloads.count)
        // Deterministic however fast the kernel notifies: only the port's own calls take
        // completions, and none has run since the echo's last transmit.
        check(h.port.sends.framesInFlight > 0, "the last echoes' frames are held until their completions are taken")
        for p in payloads { #expect(client.receive()?.bytes == p) }
        let clock = ContinuousClock()
        let deadline = clock.now + .seconds(2)
        while h.port.framesHeld > h.port.buffers.providedCount, clock.now < deadline { _ = try h.port.receive(into: &h.batch) }
        check(h.balanced)
        #expect(h.port.ring.describe().contains("SENDMSG_ZC"))
    }

    @Test(arguments: allModes)
    func aTinyBufferRingRunsDryCountsItAndRecovers(mode: URingMode) throws {
        var h = try URingHarness(listen: "127.0.0.1:0", mode: mode, bufferRingEntries: 8, frames: 64,
                                 maximumDatagram: 2048)
        let server = h.port.localEndpoint
        let client = KernelUDPSocket(bind: IPEndpoint("127.0.0.1:0")!)
        _ = try h.port.receive(into: &h.batch)  // arm the receive
        let sent = 3000
        for i in 0..<sent { client.send([UInt8(i & 0xFF), UInt8(i >> 8)], to: server) }
        var received = 0
        var empty = 0
        while empty < 5 {
            let got = try h.port.receive(into: &h.batch)
            received += got
            empty = got == 0 ? empty + 1 : 0
            h.batch.releaseAll()
        }
        let counters = h.port.counters
        #expect(counters.receiveBufferStalls > 0, "the 8-frame ring ran dry under the burst")
        #expect(received == sent, "the socket buffer kept what the ring could not take")
        // Service resumes: a fresh exchange echoes.
        client.send([42], to: server)
        #expect(try h.echo(1) == 1)
        #expect(client.receive()?.bytes == [42])
        check(h.balanced)
    }

    @Test(arguments: allModes)
    func shutdownWithReceivesAndSendsInFlightReturnsEveryFrame(mode: URingMode) throws {
        let pool: FramePool
        do {
            var h = try URingHarness(listen: "127.0.0.1:0", mode: mode, zeroCopyThreshold: 1)
            pool = h.pool
            let server = h.port.localEndpoint
            let client = KernelUDPSocket(bind: IPEndpoint("127.0.0.1:0")!)
            for i in 0..<100 { client.send([UInt8](repeating: UInt8(i), count: 100 + i), to: server) }
            let clock = ContinuousClock()
            let deadline = clock.now + .seconds(2)
            while h.batch.count < 64, clock.now < deadline { _ = try h.port.receive(into: &h.batch) }
            try h.port.transmit(&h.batch)  // sends in flight, more datagrams waiting, the receive armed
            for i in 0..<50 { client.send([UInt8(i)], to: server) }
            check(h.port.sends.framesInFlight > 0, "sends in flight")
        }
        let tally = pool.tally(held: 0)
        #expect(tally.isBalanced, "\(tally)")
    }

    @Test func bufferRingProvidesConsumesAndReturnsFrames() throws {
        let ring = try URing(entries: 16)
        let pool = try FramePool(frameCount: 16, frameSize: 2048, headroom: 256)
        let socket = KernelUDPSocket(bind: IPEndpoint("127.0.0.1:0")!)
        let peer = KernelUDPSocket(bind: IPEndpoint("127.0.0.1:0")!)
        do {
            let buffers = try URingBufferRing(ring: ring, group: 3, entries: 8, pool: pool, bufferOffset: 128)
            #expect(buffers.refill() == 8)
            #expect(buffers.providedCount == 8 && pool.freeCount == 8)
            let sqe = try ring.nextSubmission()
            io_uring_prep_recv_multishot(sqe, socket.descriptor, nil, 0, 0)
            sqe.pointee.flags |= UInt8(1 << IOSQE_BUFFER_SELECT_BIT)
            sqe.pointee.buf_group = 3
            sqe.pointee.user_data = 9
            try ring.submit()
            for i in 0..<3 { peer.send([UInt8](repeating: UInt8(i + 1), count: 10 + i), to: socket.localEndpoint) }
            let completions = try collect(ring, 3)
            #expect(completions.count == 3)
            for (i, c) in completions.enumerated() {
                #expect(c.hasMore && c.result == Int32(10 + i))
                let id = try #require(c.bufferID)
                let address = buffers.consumed(bufferID: id)
                #expect(address == UInt64(id) * 2048)
                let data = UnsafeRawBufferPointer(start: pool.base + Int(address) + 128, count: Int(c.result))
                #expect(data.allSatisfy { $0 == UInt8(i + 1) })
                pool.releaseAddress(address)
            }
            #expect(buffers.providedCount == 5)
            #expect(buffers.refill() == 3 && buffers.providedCount == 8)
            #expect(try ring.cancelAll())
        }
        #expect(pool.freeCount == 16, "frames still provided went back to the pool")
    }
}
