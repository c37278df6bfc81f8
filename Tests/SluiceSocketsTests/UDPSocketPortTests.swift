#if canImport(Glibc)
import Glibc
#endif
import SluiceCore
import SluicePackets
import SluiceTestSupport
import SluiceUDP
import Testing
@testable import SluiceSockets

/// A socket port with its pool, ready to use.
struct Harness: ~Copyable {
    let pool: FramePool
    var port: UDPSocketPort
    var batch: PacketBatch

    init(listen: String, gso: Bool = false, gro: Bool = false, batch capacity: Int = 64, frames: Int = 256,
         maximumDatagram: Int = 65507) throws {
        var configuration = UDPSocketConfiguration(listen: IPEndpoint(listen)!)
        configuration.reusePort = false
        configuration.segmentationOffload = gso
        configuration.receiveOffload = gro
        configuration.receiveTimeout = .milliseconds(50)
        let pool = try FramePool(frameCount: frames, frameSize: configuration.frameSize(maximumDatagram: maximumDatagram),
                                 headroom: DatagramHeader.minimumHeadroom)
        let port = try UDPSocketPort(configuration: configuration, pool: pool, batchCapacity: capacity)
        self.pool = pool
        self.port = port
        batch = PacketBatch(pool: pool, capacity: capacity)
    }

    /// Receives until `count` datagrams are in the batch or 2 s pass.
    mutating func receive(_ count: Int) throws {
        let clock = MonotonicTimeSource()
        let deadline = clock.now() + .seconds(2)
        while batch.count < count, clock.now() < deadline { _ = try port.receive(into: &batch) }
    }

    var balanced: Bool { pool.tally(held: batch.count + port.framesHeld).isBalanced }
}

@Suite(.serialized) struct UDPSocketPortTests {
    @Test(arguments: ["127.0.0.1:0", "[::1]:0"])
    func receivesWithPeerAndLocalAddressAndRepliesFromIt(listen: String) throws {
        var h = try Harness(listen: listen)
        let server = h.port.localEndpoint
        let client = KernelUDPSocket(bind: IPEndpoint(address: server.address, port: 0))
        var random = TestBytes(seed: 1)
        let payloads = (0..<20).map { random.bytes($0 * 37) }
        for p in payloads { client.send(p, to: server) }
        try h.receive(payloads.count)
        check(h.batch.count == payloads.count)
        for i in 0..<h.batch.count {
            let header = DatagramHeader(frameStart: h.batch[i].frameStart)
            #expect(header.peer == client.localEndpoint)
            #expect(header.local == server)
            let bytes = Array(h.batch[i].data)
            #expect(bytes == payloads[i])
        }
        try h.port.transmit(&h.batch)
        check(h.batch.isEmpty)
        for p in payloads {
            let reply = try #require(client.receive())
            #expect(reply.bytes == p)
            #expect(reply.from == server)
        }
        check(h.port.counters.receivedPackets == 20 && h.port.counters.transmittedPackets == 20)
        check(h.port.counters.receiveCalls < 20, "recvmmsg takes many datagrams per call")
        check(h.balanced)
    }

    @Test func dualStackSeesIPv4PeersAsIPv4AndAnswersThem() throws {
        var h = try Harness(listen: "[::]:0")
        let port = h.port.localEndpoint.port
        let client4 = KernelUDPSocket(bind: IPEndpoint("127.0.0.1:0")!)
        let client6 = KernelUDPSocket(bind: IPEndpoint("[::1]:0")!)
        client4.send([4], to: IPEndpoint(address: .v4(.loopback), port: port))
        client6.send([6], to: IPEndpoint(address: .v6(.loopback), port: port))
        try h.receive(2)
        var peers: [IPEndpoint] = []
        var locals: [IPEndpoint] = []
        for i in 0..<h.batch.count {
            let header = DatagramHeader(frameStart: h.batch[i].frameStart)
            peers.append(header.peer)
            locals.append(header.local)
        }
        #expect(Set(peers) == [client4.localEndpoint, client6.localEndpoint])
        #expect(Set(locals) == [IPEndpoint(address: .v4(.loopback), port: port), IPEndpoint(address: .v6(.loopback), port: port)])
        try h.port.transmit(&h.batch)
        #expect(client4.receive()?.from == IPEndpoint(address: .v4(.loopback), port: port))
        #expect(client6.receive()?.from == IPEndpoint(address: .v6(.loopback), port: port))
    }

    @Test func repliesLeaveFromTheAddressTheyCameTo() throws {
        // Bound to any address, reached at 127.0.0.2: the reply must come from 127.0.0.2, not 127.0.0.1.
        var h = try Harness(listen: "0.0.0.0:0")
        let target = IPEndpoint(address: .v4(IPv4Address(127, 0, 0, 2)), port: h.port.localEndpoint.port)
        let client = KernelUDPSocket(bind: IPEndpoint("127.0.0.1:0")!)
        client.send([1, 2, 3], to: target)
        try h.receive(1)
        try h.port.transmit(&h.batch)
        let reply = try #require(client.receive())
        #expect(reply.from == target)
    }

    @Test func segmentationOffloadSendsRunsAsOneSendAndThePeerSeesEachDatagram() throws {
        var h = try Harness(listen: "127.0.0.1:0", gso: true)
        let server = h.port.localEndpoint
        let client = KernelUDPSocket(bind: IPEndpoint("127.0.0.1:0")!)
        var random = TestBytes(seed: 2)
        // 40 equal datagrams, a short last one, then a different size: three GSO-able runs at most.
        let payloads = (0..<40).map { _ in random.bytes(1000) } + [random.bytes(300)] + (0..<5).map { _ in random.bytes(1200) }
        for p in payloads {
            let i = h.batch.appendNewFrame()!
            h.batch[i].length = p.count
            h.batch[i].data.copyBytes(from: p)
            DatagramHeader.store(client.localEndpoint, sockaddrAt: h.batch[i].frameStart, mapIPv4: false)
            DatagramHeader(frameStart: h.batch[i].frameStart).local = server
        }
        try h.port.transmit(&h.batch)
        for p in payloads {
            let got = try #require(client.receive())
            #expect(got.bytes == p)
        }
        check(h.port.usesSegmentationOffload)
        check(h.port.counters.segmentedPackets >= 41)
        check(h.port.counters.transmitCalls == 1)
        check(h.port.counters.transmittedPackets == UInt64(payloads.count))
        check(h.balanced)
    }

    @Test func receiveOffloadSplitsCoalescedDatagramsInOrder() throws {
        // A batch smaller than one coalesced burst: the split continues across receive calls.
        var h = try Harness(listen: "127.0.0.1:0", gro: true, batch: 8)
        let server = h.port.localEndpoint
        let client = KernelUDPSocket(bind: IPEndpoint("127.0.0.1:0")!)
        var random = TestBytes(seed: 3)
        let segment = 1200
        let burst = random.bytes(segment * 20 + 77)
        #expect(client.send(burst, to: server, segmentSize: segment) == burst.count)
        var received: [[UInt8]] = []
        let clock = MonotonicTimeSource()
        let deadline = clock.now() + .seconds(2)
        while received.count < 21, clock.now() < deadline {
            _ = try h.port.receive(into: &h.batch)
            for i in 0..<h.batch.count { received.append(Array(h.batch[i].data)) }
            h.batch.releaseAll()
        }
        let expected = stride(from: 0, to: burst.count, by: segment).map { Array(burst[$0..<min($0 + segment, burst.count)]) }
        #expect(received == expected)
        check(h.port.counters.coalescedSegments == 21, "the kernel delivered the burst coalesced")
        check(h.port.counters.receivedPackets == 21)
        check(h.balanced)
    }

    @Test func datagramsLargerThanTheFrameAreCountedAndDropped() throws {
        var h = try Harness(listen: "127.0.0.1:0", maximumDatagram: 1000)
        let client = KernelUDPSocket(bind: IPEndpoint("127.0.0.1:0")!)
        let room = h.pool.frameSize - DatagramHeader.minimumHeadroom
        client.send(Array(repeating: 1, count: room + 1), to: h.port.localEndpoint)
        client.send(Array(repeating: 2, count: room), to: h.port.localEndpoint)
        try h.receive(1)
        check(h.batch.count == 1 && h.batch[0].length == room)
        check(h.port.counters.droppedTruncated == 1)
        check(h.balanced)
    }

    @Test func anEmptyPoolIsCountedNotFatal() throws {
        var h = try Harness(listen: "127.0.0.1:0", frames: 4)
        var hoard = PacketBatch(pool: h.pool, capacity: 4)
        while hoard.appendNewFrame() != nil {}
        let got = try h.port.receive(into: &h.batch)
        #expect(got == 0)
        check(h.port.counters.droppedNoFrame == 1)
        hoard.releaseAll()
        check(h.balanced)
    }

    @Test func bindErrorsNameTheCallAndTheFix() throws {
        let first = try Harness(listen: "127.0.0.1:0")
        let taken = first.port.localEndpoint
        var configuration = UDPSocketConfiguration(listen: taken)
        configuration.reusePort = false
        let pool = try FramePool(frameCount: 4, frameSize: 4096, headroom: DatagramHeader.minimumHeadroom)
        do {
            _ = try UDPSocketPort(configuration: configuration, pool: pool)
            Issue.record("second bind to \(taken) succeeded")
        } catch {
            #expect(error.code == EADDRINUSE)
            #expect(error.description.contains("bind(\(taken))") && error.description.contains("another socket holds"))
        }
        configuration.listen = IPEndpoint("192.0.2.1:9")!
        do {
            _ = try UDPSocketPort(configuration: configuration, pool: pool)
            Issue.record("bind to an address not on this host succeeded")
        } catch {
            #expect(error.code == EADDRNOTAVAIL && error.description.contains("not configured"))
        }
    }
}
