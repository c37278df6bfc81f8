#if canImport(Glibc)
import Glibc
#endif
import Sluice
@_spi(Testing) import SluiceXDP
import SluiceTestSupport
import Synchronization
import Testing

/// Cases from the kernel's AF_XDP selftest (tools/testing/selftests/bpf/xskxceiver.c), run on a
/// veth pair between two namespaces this test makes: the XSK serves queue 0 of the server end,
/// plain kernel UDP sockets in the client namespace are the peer, and every payload byte is
/// checked. After each case the pool's frames (free, fill, RX, TX, completion) add up.

let fixtureCounter = Atomic<Int>(0)

/// A topology with Sluice's program on the server end.
final class XDPFixture {
    let topology: TestTopology
    let program: XDPProgram
    let port: UInt16 = 9000

    init(mode: XDPAttachMode, queues: Int = 1) throws {
        var configuration = TestTopology.Configuration()
        configuration.suffix = "x\(getpid() % 10000)n\(fixtureCounter.add(1, ordering: .relaxed).newValue)"
        configuration.queues = queues
        topology = try TestTopology(configuration)
        let (namespace, interface) = (topology.serverNamespace, topology.serverInterface)
        do {
            program = try withNetworkNamespace(namespace) { try XDPProgram.attach(to: interface, mode: mode) }
            try program.setPort(port)
            // veth takes native XDP: a silent fallback would run every native case as a generic one.
            guard program.mode == mode else {
                throw TopologyError("asked for \(mode.rawValue) XDP on \(interface), got \(program.mode.rawValue)")
            }
        } catch {
            topology.destroy()
            throw error
        }
    }

    deinit {
        try? program.detach()
        topology.destroy()
    }

    var serverIPv4: IPEndpoint { IPEndpoint(address: .v4(topology.serverIPv4), port: port) }
    var serverIPv6: IPEndpoint { IPEndpoint(address: .v6(topology.serverIPv6), port: port) }

    /// A kernel UDP socket in the client namespace.
    func client(ipv6: Bool = false) throws -> KernelUDPSocket {
        let address: IPAddress = ipv6 ? .v6(topology.clientIPv6) : .v4(topology.clientIPv4)
        return try withNetworkNamespace(topology.clientNamespace) {
            KernelUDPSocket(bind: IPEndpoint(address: address, port: 0), receiveTimeout: .seconds(2))
        }
    }

    /// A UMEM made in the server namespace, where its sockets will be.
    func makeUMEM(_ pool: FramePool) throws -> XSKUmem {
        try withNetworkNamespace(topology.serverNamespace) { try XSKUmem(pool: pool) }
    }

    /// An XSK on `queue` of the server end, in the program's map.
    func openPort(umem: XSKUmem, pool: FramePool, queue: UInt32 = 0,
                  _ adjust: (inout XDPPortConfiguration) -> Void = { _ in }) throws -> XDPPort {
        var configuration = XDPPortConfiguration(interface: topology.serverInterface, queue: queue)
        configuration.bindMode = .copy
        configuration.receiveTimeout = .milliseconds(20)
        adjust(&configuration)
        let port = try withNetworkNamespace(topology.serverNamespace) {
            try XDPPort(configuration: configuration, umem: umem, pool: pool)
        }
        try program.insertSocket(port.descriptor, queue: queue)
        return port
    }
}

/// Receives, echoes and transmits until `count` datagrams were handled or `timeout` passed.
@discardableResult
func pump(_ port: inout XDPPort, pool: FramePool, count: Int, timeout: Duration = .seconds(3)) throws -> Int {
    var stage = UDPStage(service: UDPEchoService(), format: .ethernet)
    var input = PacketBatch(pool: pool)
    var output = PacketBatch(pool: pool)
    let clock = MonotonicTimeSource()
    let deadline = clock.now() + timeout
    var handled = 0
    while handled < count, clock.now() < deadline {
        handled += try port.receive(into: &input)
        stage.handle(&input, output: &output, now: clock.now())
        if !output.isEmpty { try port.transmit(&output) }
    }
    // Let the last sends complete so their frames come back.
    let settle = clock.now() + .milliseconds(200)
    while port.frameCounts.transmit + port.frameCounts.completion > 0, clock.now() < settle { _ = port.reclaim() }
    return handled
}

/// Sends every payload and expects each back, byte for byte, from `server`.
func expectEcho(_ payloads: [[UInt8]], via client: KernelUDPSocket, to server: IPEndpoint,
                port: inout XDPPort, pool: FramePool, window: Int = 32) throws {
    var index = 0
    while index < payloads.count {
        let chunk = Array(payloads[index..<min(index + window, payloads.count)])
        for payload in chunk { #expect(client.send(payload, to: server) == payload.count) }
        let handled = try pump(&port, pool: pool, count: chunk.count)
        #expect(handled == chunk.count, "XSK received \(handled) of \(chunk.count)")
        var replies: [[UInt8]] = []
        while replies.count < chunk.count, let reply = client.receive() {
            #expect(reply.from == server)
            replies.append(reply.bytes)
        }
        #expect(replies == chunk, "window at \(index): \(replies.count) of \(chunk.count) came back intact")
        if replies.count < chunk.count { return }
        index += chunk.count
    }
}

func balanced(_ pool: FramePool, _ port: borrowing XDPPort) -> Bool {
    pool.tally(held: port.framesHeld).isBalanced && port.frameCounts.total == port.framesHeld
}

@Suite(.serialized) struct XSKConformanceTests {
    static let sizes = [0, 1, 18, 64, 100, 512, 1000, 1400, 1472]

    @Test(arguments: [XDPAttachMode.generic, .native], [2048, 4096])
    func sendAndReceiveIPv4AndIPv6(mode: XDPAttachMode, frameSize: Int) throws {
        let fixture = try XDPFixture(mode: mode)
        let pool = try FramePool(frameCount: 1024, frameSize: frameSize, headroom: 256)
        let umem = try fixture.makeUMEM(pool)
        var port = try fixture.openPort(umem: umem, pool: pool)
        var random = TestBytes(seed: UInt64(frameSize))
        let v4 = Self.sizes.map { random.bytes($0) } + (0..<200).map { _ in random.bytes(Int(random.next() % 1473)) }
        try expectEcho(v4, via: try fixture.client(), to: fixture.serverIPv4, port: &port, pool: pool)
        let v6 = Self.sizes.dropLast().map { random.bytes($0) } + (0..<100).map { _ in random.bytes(Int(random.next() % 1453)) }
        try expectEcho(v6, via: try fixture.client(ipv6: true), to: fixture.serverIPv6, port: &port, pool: pool)
        check(!port.isZeroCopy, "veth has no zero-copy: copy mode")
        check(port.statistics.transmitInvalidDescriptors == 0)
        check(balanced(pool, port))
    }

    @Test func singlePacket() throws {
        let fixture = try XDPFixture(mode: .generic)
        let pool = try FramePool(frameCount: 256)
        let umem = try fixture.makeUMEM(pool)
        var port = try fixture.openPort(umem: umem, pool: pool)
        try expectEcho([Array("one".utf8)], via: try fixture.client(), to: fixture.serverIPv4, port: &port, pool: pool)
        check(port.counters.receivedPackets == 1 && port.counters.transmittedPackets == 1)
        check(balanced(pool, port))
    }

    @Test func headroomInFrontOfReceivedData() throws {
        let fixture = try XDPFixture(mode: .generic)
        let pool = try FramePool(frameCount: 256)
        let umem = try fixture.makeUMEM(pool)
        var port = try fixture.openPort(umem: umem, pool: pool)
        let client = try fixture.client()
        client.send([7, 7, 7], to: fixture.serverIPv4)
        var batch = PacketBatch(pool: pool)
        let clock = MonotonicTimeSource()
        let deadline = clock.now() + .seconds(2)
        while batch.isEmpty, clock.now() < deadline { _ = try port.receive(into: &batch) }
        check(batch.count == 1)
        // XDP_PACKET_HEADROOM: room to push an encapsulation header without moving the packet.
        check(batch.count == 1 && batch[0].offset >= 256, "headroom \(batch.count == 1 ? batch[0].offset : -1)")
        check(batch.count == 1 && batch[0].length == 14 + 20 + 8 + 3)
        batch.releaseAll()
        check(balanced(pool, port))
    }

    @Test func pollTimesOutWhenIdleAndWakesOnTraffic() throws {
        let fixture = try XDPFixture(mode: .generic)
        let pool = try FramePool(frameCount: 256)
        let umem = try fixture.makeUMEM(pool)
        var port = try fixture.openPort(umem: umem, pool: pool) { $0.receiveTimeout = .milliseconds(100) }
        var batch = PacketBatch(pool: pool)
        let clock = MonotonicTimeSource()
        let start = clock.now()
        let idle = try port.receive(into: &batch)
        let waited = clock.now() - start
        #expect(idle == 0)
        #expect(waited >= .milliseconds(80) && waited < .seconds(2), "poll waited \(waited)")
        try expectEcho([[1, 2, 3]], via: try fixture.client(), to: fixture.serverIPv4, port: &port, pool: pool)
        check(balanced(pool, port))
    }

    @Test func receiveRingFullIsCountedAndRecovers() throws {
        let fixture = try XDPFixture(mode: .generic)
        let pool = try FramePool(frameCount: 1024)
        let umem = try fixture.makeUMEM(pool)
        var port = try fixture.openPort(umem: umem, pool: pool) { $0.ringSize = 64 }
        let client = try fixture.client()
        for i in 0..<500 { client.send([UInt8(i & 0xFF)], to: fixture.serverIPv4) }
        usleep(200_000)
        let statistics = port.statistics
        check(statistics.receiveRingFull > 0, "rx_ring_full \(statistics.receiveRingFull)")
        // Drain what made it, then the socket works as before.
        _ = try pump(&port, pool: pool, count: 10_000, timeout: .milliseconds(500))
        while client.receive() != nil {}
        try expectEcho([Array("after".utf8)], via: client, to: fixture.serverIPv4, port: &port, pool: pool)
        check(balanced(pool, port))
    }

    @Test func sentFramesReturnToTheFillRingInTheOrderTheyWereSent() throws {
        let fixture = try XDPFixture(mode: .generic)
        let pool = try FramePool(frameCount: 256)
        let umem = try fixture.makeUMEM(pool)
        var port = try fixture.openPort(umem: umem, pool: pool)
        let reserve = pool.freeCount
        let client = try fixture.client()
        for i in 0..<40 { client.send([UInt8(i)], to: fixture.serverIPv4) }
        var stage = UDPStage(service: UDPEchoService(), format: .ethernet)
        var input = PacketBatch(pool: pool)
        var output = PacketBatch(pool: pool)
        var sent: [UInt64] = []
        let clock = MonotonicTimeSource()
        let deadline = clock.now() + .seconds(3)
        while sent.count < 40, clock.now() < deadline {
            _ = try port.receive(into: &input)
            stage.handle(&input, output: &output, now: clock.now())
            for i in 0..<output.count { sent.append(pool.address(of: output[i])) }
            if !output.isEmpty { try port.transmit(&output) }
        }
        let settle = clock.now() + .seconds(1)
        while port.frameCounts.transmit + port.frameCounts.completion > 0, clock.now() < settle { _ = port.reclaim() }
        check(sent.count == 40, "echoed \(sent.count) of 40")
        // Straight back, in order: the pool still holds just its reserve.
        check(Array(port.fillRingAddresses.suffix(sent.count)) == sent, "fill ring tail \(port.fillRingAddresses.suffix(sent.count)) after sending \(sent)")
        check(pool.freeCount == reserve, "pool \(pool.freeCount), reserve \(reserve)")
        check(balanced(pool, port))
    }

    @Test func fillRingEmptyIsCountedAndRecovers() throws {
        let fixture = try XDPFixture(mode: .generic)
        let pool = try FramePool(frameCount: 64)
        let umem = try fixture.makeUMEM(pool)
        // Keep every frame back: the kernel finds the fill ring empty.
        var port = try fixture.openPort(umem: umem, pool: pool) { $0.reservedFrames = 64 }
        let client = try fixture.client()
        for _ in 0..<10 { client.send([9], to: fixture.serverIPv4) }
        usleep(200_000)
        var batch = PacketBatch(pool: pool)
        check((try port.receive(into: &batch)) == 0)
        check(port.statistics.fillRingEmpty > 0, "fill_ring_empty \(port.statistics.fillRingEmpty)")
        check(port.statistics.receiveDropped + port.statistics.fillRingEmpty >= 1)
        check(balanced(pool, port))
        // Recovery: once the fill ring gets frames again, the same socket receives again.
        port.setReservedFrames(0)
        try expectEcho([[1, 2, 3]], via: client, to: fixture.serverIPv4, port: &port, pool: pool)
        check(balanced(pool, port))
    }

    @Test func transmitRingFullDropsAndCountsWithoutLeaking() throws {
        let fixture = try XDPFixture(mode: .generic)
        let pool = try FramePool(frameCount: 2048)
        let umem = try fixture.makeUMEM(pool)
        var port = try fixture.openPort(umem: umem, pool: pool) { $0.ringSize = 64 }
        // Frames of our own, far more than the TX ring holds, sent without waiting.
        var sent = 0
        for _ in 0..<20 {
            // Twice what the ring holds in one go: the rest must be dropped and counted.
            var batch = PacketBatch(pool: pool, capacity: 128)
            while let i = batch.appendNewFrame() {
                let length = UDPFrame.build(
                    into: batch[i].frame, linkLayer: .ethernet, sourceMAC: fixture.topology.serverMAC,
                    destinationMAC: fixture.topology.clientMAC, source: fixture.serverIPv4,
                    destination: IPEndpoint(address: .v4(fixture.topology.clientIPv4), port: 9),
                    payload: UnsafeRawBufferPointer(start: nil, count: 0))
                batch[i].setData(offset: 0, length: length)
            }
            sent += batch.count
            let before = port.counters
            try port.transmit(&batch)
            if sent == 128 {
                // The first batch meets an empty 64-entry ring: exactly what fits goes, the rest is counted.
                check(port.counters.transmittedPackets - before.transmittedPackets == 64, "\(port.counters)")
                check(port.counters.droppedTransmit - before.droppedTransmit == 64, "\(port.counters)")
            }
        }
        let counters = port.counters
        check(counters.transmittedPackets + counters.droppedTransmit == UInt64(sent))
        let clock = MonotonicTimeSource()
        let deadline = clock.now() + .seconds(2)
        while port.framesHeld > port.frameCounts.fill, clock.now() < deadline { _ = port.reclaim() }
        check(balanced(pool, port))
    }

    /// In copy mode one wakeup sends at most 32 frames (the kernel's TX budget) and none once the
    /// completion ring is full until it is drained: a burst larger than both, with nothing sent
    /// after it, still leaves whole and in order from one `transmit`.
    @Test func aBurstPastTheCompletionRingAndTheKernelsBudgetLeavesWhole() throws {
        let fixture = try XDPFixture(mode: .generic)
        let pool = try FramePool(frameCount: 1024)
        let umem = try withNetworkNamespace(fixture.topology.serverNamespace) {
            try XSKUmem(pool: pool, completionRingSize: 16)
        }
        let count = 150
        var port = try fixture.openPort(umem: umem, pool: pool) { $0.reservedFrames = count }
        let client = try fixture.client()
        let destination = client.localEndpoint
        var batch = PacketBatch(pool: pool, capacity: count)
        for i in 0..<count {
            guard let index = batch.appendNewFrame() else { break }
            let payload: [UInt8] = [UInt8(i)]
            let length = payload.withUnsafeBytes {
                UDPFrame.build(
                    into: batch[index].frame, linkLayer: .ethernet, sourceMAC: fixture.topology.serverMAC,
                    destinationMAC: fixture.topology.clientMAC, source: fixture.serverIPv4,
                    destination: destination, payload: $0)
            }
            batch[index].setData(offset: 0, length: length)
        }
        check(batch.count == count)
        try port.transmit(&batch)
        check(port.counters.transmittedPackets == UInt64(count) && port.counters.droppedTransmit == 0, "\(port.counters)")
        var received: [UInt8] = []
        while received.count < count, let datagram = client.receive() { received += datagram.bytes }
        check(received == (0..<count).map { UInt8($0) }, "\(received.count) of \(count) arrived")
        _ = port.reclaim()
        check(port.frameCounts.transmit + port.frameCounts.completion == 0, "\(port.frameCounts)")
        check(balanced(pool, port))
    }

    @Test func invalidTransmitDescriptorsAreRejectedAndCounted() throws {
        let fixture = try XDPFixture(mode: .generic)
        let pool = try FramePool(frameCount: 256)
        let umem = try fixture.makeUMEM(pool)
        var port = try fixture.openPort(umem: umem, pool: pool)
        // Past the end of the UMEM, and longer than a frame: the kernel must refuse both.
        port.submitUncheckedDescriptor(address: UInt64(pool.regionSize) + 4096, length: 60)
        port.submitUncheckedDescriptor(address: 0, length: UInt32(pool.frameSize) + 1)
        usleep(100_000)
        check(port.statistics.transmitInvalidDescriptors == 2, "tx_invalid_descs \(port.statistics.transmitInvalidDescriptors)")
        // The socket still works.
        try expectEcho([[4, 2]], via: try fixture.client(), to: fixture.serverIPv4, port: &port, pool: pool)
    }

    /// Opens a port, trying again for up to a second while the queue is still bound: the kernel
    /// unbinds a closed socket from its queue after an RCU grace period, which a loaded machine
    /// can stretch past the next round's bind.
    func openRetryingBusy(_ open: () throws -> XDPPort) throws -> XDPPort {
        for _ in 0..<100 {
            do { return try open() } catch let error as SystemCallError where error.errno == .resourceBusy {
                usleep(10_000)
            }
        }
        return try open()
    }

    @Test func fiftySocketsCreatedAndDestroyedLeaveNothingBehind() throws {
        let fixture = try XDPFixture(mode: .generic)
        let pool = try FramePool(frameCount: 512)
        // The sockets' inodes, not a descriptor count: other suites open and close descriptors
        // in this process meanwhile.
        var sockets: Set<UInt64> = []
        for round in 0..<50 {
            // As xskxceiver's teardown case: a UMEM and a socket per round (the first socket of a
            // UMEM is the UMEM's own, so a UMEM serves one generation of sockets).
            let umem = try fixture.makeUMEM(pool)
            var port = try openRetryingBusy { try fixture.openPort(umem: umem, pool: pool) }
            sockets.insert(socketInode(port.descriptor))
            if round % 10 == 0 {
                try expectEcho([[UInt8(round)]], via: try fixture.client(), to: fixture.serverIPv4, port: &port, pool: pool)
            }
            _ = consume port
            check(pool.freeCount == pool.frameCount, "round \(round): \(pool.freeCount) of \(pool.frameCount) frames back")
        }
        #expect(sockets.count == 50)
        let stillOpen = openSocketInodes().intersection(sockets)
        #expect(stillOpen.isEmpty, "\(stillOpen.count) of the 50 XDP sockets are still open")
    }

    @Test func sharedUMEMOverTwoQueues() throws {
        // Native mode: veth then runs XDP per receive queue (generic XDP sees every frame as queue 0).
        let fixture = try XDPFixture(mode: .native, queues: 2)
        let pool = try FramePool(frameCount: 1024)
        let umem = try fixture.makeUMEM(pool)
        let halves = pool.partition(into: 2)
        var first = try fixture.openPort(umem: umem, pool: halves[0], queue: 0)
        var second = try fixture.openPort(umem: umem, pool: halves[1], queue: 1)
        // Many flows: the sender's queue choice hashes them over both queues.
        let clients = try (0..<32).map { _ in try fixture.client() }
        for (i, client) in clients.enumerated() { client.send([UInt8(i)], to: fixture.serverIPv4) }
        var handled = (0, 0)
        let clock = MonotonicTimeSource()
        let deadline = clock.now() + .seconds(3)
        while handled.0 + handled.1 < 32, clock.now() < deadline {
            handled.0 += try pump(&first, pool: halves[0], count: 1, timeout: .milliseconds(20))
            handled.1 += try pump(&second, pool: halves[1], count: 1, timeout: .milliseconds(20))
        }
        #expect(handled.0 + handled.1 == 32)
        #expect(handled.0 > 0 && handled.1 > 0, "both queues served traffic: \(handled)")
        for (i, client) in clients.enumerated() { #expect(client.receive()?.bytes == [UInt8(i)]) }
        check(balanced(halves[0], first) && balanced(halves[1], second))
    }

    @Test func zeroCopyOnVethIsRefusedAndAutomaticFallsBackToCopy() throws {
        let fixture = try XDPFixture(mode: .native)
        let pool = try FramePool(frameCount: 256)
        let umem = try fixture.makeUMEM(pool)
        do {
            _ = try fixture.openPort(umem: umem, pool: pool) { $0.bindMode = .zeroCopy }
            Issue.record("zero-copy bind on veth succeeded")
        } catch let error as SystemCallError {
            #expect(error.code == EOPNOTSUPP || error.code == EINVAL, "\(error)")
        }
        let port = try fixture.openPort(umem: umem, pool: pool) { $0.bindMode = .automatic }
        check(!port.isZeroCopy)
    }

    @Test func hostTrafficStillWorksWhileAttached() throws {
        let fixture = try XDPFixture(mode: .native)
        let pool = try FramePool(frameCount: 256)
        let umem = try fixture.makeUMEM(pool)
        var port = try fixture.openPort(umem: umem, pool: pool)
        let topology = fixture.topology
        // ICMP both families.
        for target in [topology.serverIPv4.description, topology.serverIPv6.description] {
            let ping = try ChildProcess("/usr/sbin/ip", ["netns", "exec", topology.clientNamespace, "ping", "-c", "1", "-W", "2", target])
            #expect(ping.waitForExit() == 0, "ping \(target): \(ping.text)")
        }
        // UDP to a port not in the map reaches the kernel socket in the server namespace.
        let kernelSide = try withNetworkNamespace(topology.serverNamespace) {
            KernelUDPSocket(bind: IPEndpoint(address: .v4(topology.serverIPv4), port: 9001))
        }
        let client = try fixture.client()
        client.send([5, 5], to: IPEndpoint(address: .v4(topology.serverIPv4), port: 9001))
        #expect(kernelSide.receive()?.bytes == [5, 5])
        // TCP: a connection and a few bytes each way.
        let listener = try withNetworkNamespace(topology.serverNamespace) { try TCPTestSocket.listen(port: 9002) }
        let connection = try withNetworkNamespace(topology.clientNamespace) {
            try TCPTestSocket.connect(to: topology.serverIPv4, port: 9002)
        }
        let accepted = try listener.accept()
        #expect(connection.write(Array("hello".utf8)) == 5)
        #expect(accepted.read(5) == Array("hello".utf8))
        // And the XSK keeps serving UDP to its own port.
        try expectEcho([[1]], via: client, to: fixture.serverIPv4, port: &port, pool: pool)
        let verdicts = try fixture.program.verdicts()
        #expect(verdicts.redirected >= 1 && verdicts.passedPort >= 1 && verdicts.passedNotUDP >= 1)
    }
}

/// The inode of the socket behind `descriptor`.
func socketInode(_ descriptor: Int32) -> UInt64 {
    var status = stat()
    return fstat(descriptor, &status) == 0 ? UInt64(status.st_ino) : 0
}

/// The inodes of every socket this process has open (`/proc/self/fd/N -> socket:[INODE]`).
func openSocketInodes() -> Set<UInt64> {
    guard let directory = opendir("/proc/self/fd") else { return [] }
    defer { closedir(directory) }
    var inodes: Set<UInt64> = []
    while let entry = readdir(directory) {
        let name = withUnsafeBytes(of: entry.pointee.d_name) { String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self) }
        var target = [CChar](repeating: 0, count: 64)
        let count = readlink("/proc/self/fd/\(name)", &target, target.count - 1)
        guard count > 0 else { continue }
        let link = String(decoding: target[0..<count].map { UInt8(bitPattern: $0) }, as: UTF8.self)
        if link.hasPrefix("socket:["), let inode = UInt64(link.dropFirst(8).dropLast()) { inodes.insert(inode) }
    }
    return inodes
}

/// A minimal blocking TCP socket for the "host traffic still works" check.
final class TCPTestSocket {
    let descriptor: Int32
    init(descriptor: Int32) { self.descriptor = descriptor }
    deinit { close(descriptor) }

    static func listen(port: UInt16) throws -> TCPTestSocket {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        var one: Int32 = 1
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, 4)
        var address = sockaddr_in(sin_family: sa_family_t(AF_INET), sin_port: port.bigEndian, sin_addr: in_addr(s_addr: 0),
                                  sin_zero: (0, 0, 0, 0, 0, 0, 0, 0))
        let bound = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        guard bound == 0, Glibc.listen(fd, 4) == 0 else { throw ChildProcessError(message: "tcp listen: errno \(errno)") }
        return TCPTestSocket(descriptor: fd)
    }

    static func connect(to address: IPv4Address, port: UInt16) throws -> TCPTestSocket {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        var target = sockaddr_in(sin_family: sa_family_t(AF_INET), sin_port: port.bigEndian,
                                 sin_addr: in_addr(s_addr: address.rawValue.bigEndian), sin_zero: (0, 0, 0, 0, 0, 0, 0, 0))
        let connected = withUnsafePointer(to: &target) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { Glibc.connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        guard connected == 0 else { throw ChildProcessError(message: "tcp connect: errno \(errno)") }
        return TCPTestSocket(descriptor: fd)
    }

    func accept() throws -> TCPTestSocket {
        let fd = Glibc.accept(descriptor, nil, nil)
        guard fd >= 0 else { throw ChildProcessError(message: "tcp accept: errno \(errno)") }
        return TCPTestSocket(descriptor: fd)
    }

    func write(_ bytes: [UInt8]) -> Int { bytes.withUnsafeBytes { Glibc.write(descriptor, $0.baseAddress, $0.count) } }

    func read(_ count: Int) -> [UInt8] {
        var buffer = [UInt8](repeating: 0, count: count)
        var got = 0
        while got < count {
            let n = buffer.withUnsafeMutableBytes { Glibc.read(descriptor, $0.baseAddress! + got, count - got) }
            if n <= 0 { break }
            got += n
        }
        return Array(buffer[0..<got])
    }
}
