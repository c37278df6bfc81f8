#if canImport(Glibc)
import Glibc
#endif
import CSluiceSystem
import CSluiceURing
import Sluice
import SluiceCore
import SluicePackets
import SluiceTestSupport
import SluiceURing
import Synchronization
import Testing

/// FNV-1a, 64 bits, fed incrementally: what was sent and what came back must hash the same.
struct StreamHash: Equatable {
    var value: UInt64 = 0xCBF2_9CE4_8422_2325

    mutating func add(_ bytes: UnsafeRawBufferPointer) {
        var h = value
        for byte in bytes {
            h = (h ^ UInt64(byte)) &* 0x0000_0100_0000_01B3
        }
        value = h
    }
}

/// What one kernel-socket client saw.
struct ClientResult: Sendable {
    var sent = 0
    var received = 0
    var sentHash: UInt64 = 0
    var receivedHash: UInt64 = 0
    var sawEOF = false
    var error: String?
}

/// A plain kernel TCP client: connects to `server`, sends `total` bytes from `pattern` (starting at
/// `start`), shuts down its write side, and reads until EOF, hashing both directions. Sending and
/// receiving interleave through `poll`, so neither side's buffers can deadlock the exchange.
func runClient(server: IPEndpoint, total: Int, pattern: UnsafeRawBufferPointer, start: Int,
               timeout: Duration = .seconds(40), receiveBufferBytes: Int32? = nil) -> ClientResult {
    var result = ClientResult()
    let peer: KernelTCPSocket
    do {
        peer = try KernelTCPSocket(connectingTo: server, receiveBufferBytes: receiveBufferBytes)
    } catch {
        return ClientResult(error: "\(error)")
    }
    peer.setNonBlocking()
    let fd = peer.descriptor
    var sentHash = StreamHash()
    var receivedHash = StreamHash()
    var offset = start % pattern.count
    var writeShut = false
    let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: 65536, alignment: 8)
    defer { buffer.deallocate() }
    let clock = ContinuousClock()
    let deadline = clock.now + timeout
    while !result.sawEOF {
        guard clock.now < deadline else {
            result.error = "timed out: sent \(result.sent), received \(result.received)"
            break
        }
        var descriptor = pollfd(fd: fd, events: Int16(POLLIN) | (writeShut ? 0 : Int16(POLLOUT)), revents: 0)
        _ = poll(&descriptor, 1, 100)
        if !writeShut {
            let count = min(total - result.sent, pattern.count - offset, 65536)
            if count > 0 {
                let n = send(fd, pattern.baseAddress! + offset, count, Int32(MSG_NOSIGNAL))
                if n > 0 {
                    sentHash.add(UnsafeRawBufferPointer(rebasing: pattern[offset..<(offset + n)]))
                    result.sent += n
                    offset = (offset + n) % pattern.count
                } else if n < 0 && errno != EAGAIN {
                    result.error = "send: errno \(errno)"
                    break
                }
            }
            if result.sent == total {
                shutdown(fd, Int32(SHUT_WR))
                writeShut = true
            }
        }
        while true {
            let n = recv(fd, buffer.baseAddress!, buffer.count, 0)
            if n > 0 {
                receivedHash.add(UnsafeRawBufferPointer(rebasing: buffer[0..<n]))
                result.received += n
            } else if n == 0 {
                result.sawEOF = true
                break
            } else {
                if errno != EAGAIN { result.error = "recv: errno \(errno)" }
                break
            }
        }
        if result.error != nil { break }
    }
    result.sentHash = sentHash.value
    result.receivedHash = receivedHash.value
    withExtendedLifetime(peer) {}   // closes the socket only now
    return result
}

/// A TCP echo server on its own thread, for tests.
final class EchoServerThread: @unchecked Sendable {
    let stopFlag = Atomic<Bool>(false)
    let endpoint = Mutex<IPEndpoint?>(nil)
    let outcome = Mutex<Result<TCPEchoReport, SystemCallError>?>(nil)
    var thread: WorkerThread?

    init(configuration: TCPEngineConfiguration, listen: IPEndpoint = IPEndpoint("127.0.0.1:0")!) throws {
        thread = try WorkerThread(name: "tcp-echo-test") { [self] in
            let result: Result<TCPEchoReport, SystemCallError>
            do throws(SystemCallError) {
                result = .success(try TCPEchoServer.run(
                    listen: listen, configuration: configuration,
                    ready: { bound in self.endpoint.withLock { $0 = bound } },
                    shouldStop: { self.stopFlag.load(ordering: .relaxed) }))
            } catch {
                result = .failure(error)
            }
            self.outcome.withLock { $0 = result }
        }
        let clock = ContinuousClock()
        let deadline = clock.now + .seconds(10)
        while endpoint.withLock({ $0 }) == nil, outcome.withLock({ $0 }) == nil, clock.now < deadline { usleep(1000) }
    }

    var bound: IPEndpoint? { endpoint.withLock { $0 } }

    func stop() -> Result<TCPEchoReport, SystemCallError>? {
        stopFlag.store(true, ordering: .relaxed)
        thread?.join()
        thread = nil
        return outcome.withLock { $0 }
    }
}

/// A shared 1 MiB of random bytes that clients send from, each at its own offset.
nonisolated(unsafe) let testPattern: UnsafeRawBufferPointer = {
    var random = TestBytes(seed: 4)
    let buffer = UnsafeMutableRawBufferPointer.allocate(byteCount: 1 << 20, alignment: 8)
    for i in stride(from: 0, to: buffer.count, by: 8) {
        buffer.storeBytes(of: random.next(), toByteOffset: i, as: UInt64.self)
    }
    return UnsafeRawBufferPointer(buffer)
}()

/// Runs `count` clients at once, each sending `bytesEach`, and returns their results.
func runClients(_ count: Int, bytesEach: Int, server: IPEndpoint) throws -> [ClientResult] {
    let results = Mutex<[Int: ClientResult]>([:])
    var threads: [WorkerThread] = []
    for index in 0..<count {
        threads.append(try WorkerThread(name: "tcp-client\(index)") {
            let result = runClient(server: server, total: bytesEach, pattern: testPattern, start: index * 4099 + 17)
            results.withLock { $0[index] = result }
        })
    }
    for thread in threads { thread.join() }
    return results.withLock { all in (0..<count).map { all[$0] ?? ClientResult(error: "no result") } }
}

@Suite(.serialized) struct TCPEchoTests {
    static let modes: [URingMode] = [.plain, .submissionPolling(idle: .milliseconds(100), cpu: nil), .deferTaskRun]

    /// 100 MB in all over 16 concurrent connections, every byte back in order (hash per
    /// connection), every connection closed by the server after the client's shutdown(SHUT_WR),
    /// and every frame back in the pool.
    @Test(arguments: modes)
    func echoes100MBOver16Connections(mode: URingMode) throws {
        var configuration = TCPEngineConfiguration(mode: mode)
        configuration.zeroCopyThreshold = 8192
        let server = try EchoServerThread(configuration: configuration)
        let endpoint = try #require(server.bound, "server did not start: \(String(describing: server.stop()))")
        let connections = 16
        let bytesEach = 100_000_000 / connections
        let results = try runClients(connections, bytesEach: bytesEach, server: endpoint)
        let outcome = server.stop()
        for (index, result) in results.enumerated() {
            #expect(result.error == nil, "client \(index): \(result.error ?? "")")
            #expect(result.sent == bytesEach, "client \(index) sent \(result.sent)")
            #expect(result.received == bytesEach, "client \(index) received \(result.received) of \(bytesEach)")
            #expect(result.sentHash == result.receivedHash, "client \(index): bytes came back different")
            #expect(result.sawEOF, "client \(index): the server did not close after the peer's shutdown")
        }
        let report = try #require(try outcome?.get())
        #expect(report.counters.accepted == UInt64(connections))
        #expect(report.counters.closed == UInt64(connections))
        #expect(report.counters.receivedBytes == UInt64(100_000_000 / connections * connections))
        #expect(report.counters.sentBytes == report.counters.receivedBytes)
        #expect(report.counters.zeroCopySends > 0)
        #expect(report.failedConnections == 0)
        #expect(report.frames.isBalanced, "\(report.frames)")
        #expect(report.operationsInFlight == 0)
    }

    /// The one-shot receive path (kernels without multishot recv) and copy-only sends echo as well.
    @Test func echoesWithOneShotReceivesAndNoZeroCopy() throws {
        var configuration = TCPEngineConfiguration()
        configuration.multishotReceive = false
        configuration.zeroCopyThreshold = nil
        let server = try EchoServerThread(configuration: configuration)
        let endpoint = try #require(server.bound)
        let results = try runClients(4, bytesEach: 4_000_000, server: endpoint)
        let report = try #require(try server.stop()?.get())
        for result in results {
            #expect(result.error == nil && result.received == 4_000_000 && result.sentHash == result.receivedHash
                    && result.sawEOF, "\(result)")
        }
        #expect(report.counters.zeroCopySends == 0)
        #expect(report.counters.closed == 4)
        #expect(report.frames.isBalanced && report.operationsInFlight == 0)
    }

    /// A peer with a 2 KiB receive buffer gets its echo at once with the default configuration:
    /// zero-copy sends, charged to it by whole pages, left it a window below one segment and the
    /// echo crawled at the kernel's window probes (a few KB/s).
    @Test func aPeerWithASmallReceiveBufferIsNotLeftToWindowProbes() throws {
        let server = try EchoServerThread(configuration: TCPEngineConfiguration())
        let endpoint = try #require(server.bound)
        let result = runClient(server: endpoint, total: 1_000_000, pattern: testPattern, start: 5, timeout: .seconds(10),
                               receiveBufferBytes: 2048)
        let report = try #require(try server.stop()?.get())
        #expect(result.error == nil && result.received == 1_000_000 && result.sentHash == result.receivedHash, "\(result)")
        #expect(report.frames.isBalanced, "\(report.frames)")
    }

    /// A peer that reads slowly but steadily is not idle: its sends wait on a full socket buffer
    /// (no completion for a while) yet data moves. Only a peer that moves nothing is cut.
    @Test func aSlowButSteadyReaderIsNotIdle() throws {
        let (server, endpoint) = try startTCPEcho(["--idle-timeout", "1"])
        let script = """
            import socket, threading, time, sys
            s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 2048)
            s.connect(('127.0.0.1', int(sys.argv[1])))
            def upload():
                try: s.sendall(b'x' * 3000000)
                except OSError: pass
            threading.Thread(target=upload, daemon=True).start()
            got, start = 0, time.time()
            try:
                while time.time() - start < 3.5:
                    d = s.recv(1024)
                    if not d: break
                    got += len(d); time.sleep(0.05)
                print('read', got, 'alive', flush=True)
            except OSError as e:
                print('read', got, 'error', e, flush=True)
            """
        let client = try ChildProcess("/usr/bin/python3", ["-c", script, "\(endpoint.port)"])
        #expect(client.waitForExit(timeout: .seconds(15)) == 0, "\(client.text)")
        #expect(client.text.contains("alive"), "cut while reading: \(client.text)")
        #expect(server.stop() == 0)
        #expect(server.text.contains("closed idle: 0,"), "\(server.text)")
    }

    /// Past the connection cap, accepted sockets are closed at once and counted; the others echo.
    @Test func connectionsPastTheCapAreRejected() throws {
        var configuration = TCPEngineConfiguration()
        configuration.maximumConnections = 3   // the listener and two connections
        let engine = try TCPEngine(configuration: configuration)
        let (_, endpoint) = try engine.listen(on: IPEndpoint("127.0.0.1:0")!)
        var delegate = StreamEchoHandler<TCPEngine>()
        var peers = try (0..<4).map { _ in try KernelTCPSocket(connectingTo: endpoint) }
        let clock = ContinuousClock()
        let until = clock.now + .milliseconds(300)
        while clock.now < until { try engine.poll(&delegate, timeout: .milliseconds(20)) }
        check(engine.counters.accepted == 2, "accepted \(engine.counters.accepted)")
        check(engine.counters.rejected == 2, "rejected \(engine.counters.rejected)")
        check(delegate.open == 2)
        let tally = engine.shutdown(&delegate)
        check(tally.isBalanced && engine.operationsInFlight == 0)
        peers.removeAll()   // closes them
    }

    /// With `closesIdlestWhenFull`, silent connections make room when the table fills, the idlest
    /// first and only once idle a sixteenth of the idle timeout: a newcomer is served, not refused.
    @Test func silentConnectionsMakeRoomForNewOnes() throws {
        var configuration = TCPEngineConfiguration()
        configuration.maximumConnections = 5   // the listener and four connections
        configuration.idleTimeout = .milliseconds(3200)   // closed for room after 200 ms idle
        configuration.closesIdlestWhenFull = true
        let engine = try TCPEngine(configuration: configuration)
        let (_, endpoint) = try engine.listen(on: IPEndpoint("127.0.0.1:0")!)
        var delegate = StreamEchoHandler<TCPEngine>()
        let clock = ContinuousClock()
        func poll(for duration: Duration) throws {
            let until = clock.now + duration
            while clock.now < until { try engine.poll(&delegate, timeout: .milliseconds(10)) }
        }
        let silent = try (0..<4).map { _ in try KernelTCPSocket(connectingTo: endpoint) }
        try poll(for: .milliseconds(100))
        check(engine.counters.accepted == 4 && engine.counters.evicted == 0, "\(engine.counters)")
        try poll(for: .milliseconds(300))
        check(engine.counters.evicted == 1, "one slot kept free: \(engine.counters)")
        // The first to connect was the idlest: the server closed it.
        var byte: UInt8 = 0
        silent[0].setReceiveTimeout(seconds: 1)
        let read = recv(silent[0].descriptor, &byte, 1, 0)
        check(read == 0 || (read < 0 && errno == ECONNRESET), "the idlest connection is still open: \(read), errno \(errno)")
        let newcomer = try KernelTCPSocket(connectingTo: endpoint)
        newcomer.setNonBlocking()
        let message: [UInt8] = Array("still answered".utf8)
        check(send(newcomer.descriptor, message, message.count, 0) == message.count)
        var echoed: [UInt8] = []
        let until = clock.now + .seconds(2)
        var buffer = [UInt8](repeating: 0, count: 64)
        while echoed.count < message.count && clock.now < until {
            try engine.poll(&delegate, timeout: .milliseconds(10))
            let got = recv(newcomer.descriptor, &buffer, buffer.count, 0)
            if got > 0 { echoed += buffer[..<got] }
        }
        check(echoed == message, "the newcomer got \(echoed.count) bytes back")
        check(engine.counters.rejected == 0 && engine.counters.accepted == 5, "\(engine.counters)")
        let tally = engine.shutdown(&delegate)
        check(tally.isBalanced && engine.operationsInFlight == 0)
        withExtendedLifetime(silent) {}
    }

    /// The peer shuts down its write side right after a little data: the server sends all of it
    /// back, then closes, so the client reads every byte and then EOF.
    @Test func peerShutdownMakesTheServerFinishAndClose() throws {
        let server = try EchoServerThread(configuration: TCPEngineConfiguration())
        let endpoint = try #require(server.bound)
        for size in [0, 1, 1000, 16384, 16385, 300_000] {
            let result = runClient(server: endpoint, total: size, pattern: testPattern, start: size, timeout: .seconds(10))
            #expect(result.error == nil, "\(size): \(result.error ?? "")")
            #expect(result.received == size && result.sentHash == result.receivedHash, "\(size) bytes")
            #expect(result.sawEOF, "\(size) bytes: no EOF")
        }
        let report = try #require(try server.stop()?.get())
        #expect(report.counters.closed == 6)
        #expect(report.frames.isBalanced)
    }

    /// Stopping the engine while receives, sends (to peers that do not read), accepts and
    /// zero-copy notifications are in flight cancels them all and brings every frame home.
    @Test(arguments: modes)
    func shutdownCancelsOperationsInFlightAndReturnsEveryFrame(mode: URingMode) throws {
        var configuration = TCPEngineConfiguration(mode: mode)
        configuration.frameCount = 256
        configuration.receiveBuffers = 128
        configuration.maximumQueuedPerConnection = 16
        configuration.zeroCopyThreshold = 8192
        let engine = try TCPEngine(configuration: configuration)
        let (_, endpoint) = try engine.listen(on: IPEndpoint("127.0.0.1:0")!)
        var delegate = StreamEchoHandler<TCPEngine>()
        // Peers that send a lot and never read: the echo backs up in the server.
        var peers = try (0..<4).map { _ in try KernelTCPSocket(connectingTo: endpoint) }
        for peer in peers { peer.setNonBlocking() }
        let clock = ContinuousClock()
        let until = clock.now + .milliseconds(600)
        while clock.now < until {
            for peer in peers { _ = send(peer.descriptor, testPattern.baseAddress!, 65536, Int32(MSG_NOSIGNAL)) }
            try engine.poll(&delegate, timeout: .milliseconds(10))
        }
        check(engine.framesHeld > 0, "sends should be queued or in flight: \(engine.tally())")
        check(engine.operationsInFlight > 4, "operations in flight: \(engine.operationsInFlight)")
        let tally = engine.shutdown(&delegate)
        check(tally.isBalanced, "\(tally)")
        check(engine.operationsInFlight == 0, "still in flight: \(engine.operationsInFlight)")
        check(engine.framesHeld == 0)
        check(engine.pool.freeCount + Int(engine.tally().held) == configuration.frameCount)
        check(engine.counters.closed == 4)
        peers.removeAll()   // closes them
    }

    /// `sluice tcp-echo --backend uring` as a user runs it: two clients, then SIGTERM, then the summary.
    @Test func sluiceTCPEchoEndToEnd() throws {
        let server = try ChildProcess(sluice: ["tcp-echo", "--backend", "uring", "--listen", "127.0.0.1:0", "--duration", "60"])
        let line = try #require(server.waitForLine(containing: "listening on"), "did not start: \(server.text)")
        let endpoint = try #require(line.split(separator: " ").lazy.compactMap { IPEndpoint($0.filter { $0 != "," }) }.first)
        let results = try runClients(2, bytesEach: 3_000_000, server: endpoint)
        for result in results {
            #expect(result.error == nil && result.received == 3_000_000 && result.sentHash == result.receivedHash && result.sawEOF,
                    "\(result)")
        }
        #expect(server.stop() == 0)
        let text = server.text
        #expect(text.contains("2 connections"), "\(text)")
        #expect(text.contains("received 6000000 bytes"), "\(text)")
        #expect(text.contains("io_uring_enter calls"), "\(text)")
        #expect(text.contains("frames: all returned to their pool"), "\(text)")
    }

    /// Peers that connect and say nothing, as many as `--max-connections`, do not lock a real
    /// client out until their idle timeout: at the limit the idlest make room.
    @Test func silentPeersAtTheLimitMakeRoomForARealOne() throws {
        let (server, endpoint) = try startTCPEcho(["--max-connections", "4", "--idle-timeout", "1.6"])
        let silent = try (0..<4).map { _ in try KernelTCPSocket(connectingTo: endpoint) }
        usleep(500_000)
        let client = try KernelTCPSocket(connectingTo: endpoint)
        let message = [UInt8](repeating: 7, count: 100)
        #expect(echoWhole(message, on: client.descriptor) == message)
        #expect(server.stop() == 0)
        let made = capturedNumber("closed idlest to make room: (\\d+)", in: server.text)
        #expect(made.map { $0 >= 1 } == true, "\(server.text)")
        withExtendedLifetime(silent) {}
    }

    /// The async stream API: a listener whose handler echoes with `inbound` and `send`, reading
    /// only after a pause (so the inbound high-water mark stops and restarts receiving), and a
    /// client connection on the same loop that sends 32 MB, shuts its write side and reads to the end.
    @Test func streamAPIEchoesWithBackPressureAndShutdown() async throws {
        let loop = try TCPEventLoop()
        let listener = try await loop.listen(on: IPEndpoint("127.0.0.1:0")!)
        let progress = SentProgress()
        let serverTask = Task {
            var served = 0
            for await connection in listener.connections {
                served += 1
                Task {
                    // Read only once the sender has stalled: by then the engine must have paused
                    // receiving (32 MB is far more than its 4 MiB mark plus the kernel's buffers).
                    var last = -1
                    while progress.value != last {
                        last = progress.value
                        try await Task.sleep(for: .milliseconds(200))
                    }
                    for try await chunk in connection.inbound { try await connection.send(chunk) }
                    connection.close()
                }
            }
            return served
        }
        let client = try await loop.connect(to: listener.localEndpoint)
        let total = 32 << 20
        let sender = Task {
            var hash = StreamHash()
            var sent = 0
            while sent < total {
                let count = min(50_000, total - sent)
                let start = sent % (testPattern.count - 50_000)
                let piece = UnsafeRawBufferPointer(rebasing: testPattern[start..<(start + count)])
                hash.add(piece)
                try await client.send(piece)
                sent += count
                progress.value = sent
            }
            client.shutdownWrite()
            return hash.value
        }
        var received = 0
        var receivedHash = StreamHash()
        for try await chunk in client.inbound {
            received += chunk.count
            chunk.withUnsafeBytes { receivedHash.add($0) }
        }
        let sentHash = try await sender.value
        #expect(received == total)
        #expect(receivedHash.value == sentHash)
        client.close()
        listener.close()
        #expect(await serverTask.value == 1)
        let report = loop.shutdown()
        #expect(report.frames.isBalanced, "\(report.frames)")
        #expect(report.operationsInFlight == 0)
        #expect(report.counters.connected == 1 && report.counters.accepted == 1)
        #expect(report.counters.receivedBytes == UInt64(2 * total))
        #expect(report.counters.receivePauses > 0, "the slow reader should have paused receiving")
    }

    /// Stopping the loop right after a send and a shutdown still delivers every byte and the FIN:
    /// what was handed to the loop leaves before it stops (a TLS client's last records and its
    /// close_notify were cut mid-record).
    @Test func stoppingTheLoopFinishesWhatWasSent() async throws {
        let listening = socket(AF_INET, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        defer { close(listening) }
        var address = sockaddr_in(sin_family: sa_family_t(AF_INET), sin_port: 0,
                                  sin_addr: in_addr(s_addr: UInt32(0x7F00_0001).bigEndian), sin_zero: (0, 0, 0, 0, 0, 0, 0, 0))
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        let bound = withUnsafeMutablePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                bind(listening, $0, length) == 0 && listen(listening, 1) == 0 && getsockname(listening, $0, &length) == 0
            }
        }
        try #require(bound)
        let received = Mutex<(bytes: Int, sawEOF: Bool)>((0, false))
        let reader = try WorkerThread(name: "kernel-reader") {
            let connection = accept(listening, nil, nil)
            guard connection >= 0 else { return }
            defer { close(connection) }
            var buffer = [UInt8](repeating: 0, count: 65536)
            while true {
                let n = recv(connection, &buffer, buffer.count, 0)
                if n <= 0 {
                    received.withLock { $0.sawEOF = n == 0 }
                    return
                }
                received.withLock { $0.bytes += n }
            }
        }
        let loop = try TCPEventLoop()
        let client = try await loop.connect(to: IPEndpoint(address: .v4(IPv4Address(127, 0, 0, 1)), port: UInt16(bigEndian: address.sin_port)))
        let total = 4 << 20
        try await client.send([UInt8](repeating: 7, count: total))
        client.shutdownWrite()
        let report = loop.shutdown()
        reader.join()
        let (bytes, sawEOF) = received.withLock { $0 }
        #expect(bytes == total && sawEOF, "the peer got \(bytes) of \(total) bytes, EOF \(sawEOF)")
        #expect(report.frames.isBalanced)
    }

    /// How far a sender has got, shared with a reader that waits for it to stall.
    final class SentProgress: Sendable {
        private let sent = Atomic<Int>(0)
        var value: Int {
            get { sent.load(ordering: .relaxed) }
            set { sent.store(newValue, ordering: .relaxed) }
        }
    }

    /// Connecting to a port nobody listens on fails with ECONNREFUSED; a stopped loop refuses work.
    @Test func streamAPIReportsErrors() async throws {
        let loop = try TCPEventLoop()
        let listener = try await loop.listen(on: IPEndpoint("127.0.0.1:0")!)
        let port = listener.localEndpoint.port
        listener.close()
        #expect(await listener.accept() == nil)
        await #expect(throws: SystemCallError.self) { _ = try await loop.connect(to: IPEndpoint(address: .v4(.loopback), port: port)) }
        loop.shutdown()
        await #expect(throws: SystemCallError.self) { _ = try await loop.listen(on: IPEndpoint("127.0.0.1:0")!) }
    }

    /// A connect whose SYN goes unanswered (an on-link address nobody holds, in a namespace of
    /// the test's own) fails with ETIMEDOUT when its linked timeout fires, long before the
    /// kernel would give up; a connect that completes in time cancels its timeout.
    @Test func connectTimesOutThroughALinkedTimeout() async throws {
        let topology = try TestTopology(.init(suffix: "lt\(getpid() % 100_000)"))
        defer { topology.destroy() }
        // The engine's thread is made in the namespace, so its sockets live there.
        let loop = try TestTopology.run(inNamespace: topology.serverNamespace) { try TCPEventLoop() }
        let clock = ContinuousClock()
        let started = clock.now
        do {
            _ = try await loop.connect(to: IPEndpoint("198.18.0.77:80")!, timeout: .milliseconds(300))
            Issue.record("a connect to an address nobody holds succeeded")
        } catch {
            #expect(error.code == ETIMEDOUT, "\(error)")
        }
        let waited = clock.now - started
        #expect(waited >= .milliseconds(250) && waited < .seconds(2), "\(waited)")

        let listener = try await loop.listen(on: IPEndpoint(address: .v4(topology.serverIPv4), port: 0))
        let connection = try await loop.connect(to: listener.localEndpoint, timeout: .seconds(5))
        connection.close()
        listener.close()
        let report = loop.shutdown()
        #expect(report.counters.connectTimeouts == 1 && report.counters.connected == 1, "\(report.counters)")
        #expect(report.operationsInFlight == 0 && report.frames.isBalanced)
    }

    /// A send after ``TCPConnection/shutdownWrite()`` or ``TCPConnection/close()`` fails at once,
    /// whether the shutdown has been applied already (such a send used to wait forever for a write
    /// side that would never open again) or is still waiting behind earlier sends (it must not
    /// overtake it); the bytes sent before the shutdown arrive, then EOF.
    @Test func sendsAfterShutdownWriteOrCloseFail() async throws {
        let loop = try TCPEventLoop()
        let listener = try await loop.listen(on: IPEndpoint("127.0.0.1:0")!)
        for applied in [true, false] {
            let client = try await loop.connect(to: listener.localEndpoint)
            let server = try #require(await listener.accept())
            try await client.send([1, 2, 3])
            client.shutdownWrite()
            var received: [UInt8] = []
            if applied {
                for try await chunk in server.inbound { received += chunk }   // EOF: the shutdown is done
            }
            #expect(await boundedSend(client, loop) == .failed(EPIPE), "shutdown applied: \(applied)")
            if !applied {
                for try await chunk in server.inbound { received += chunk }
            }
            #expect(received == [1, 2, 3], "shutdown applied: \(applied)")
            client.close()
            server.close()
        }

        let closing = try await loop.connect(to: listener.localEndpoint)
        closing.close()
        let outcome = await boundedSend(closing, loop)
        // EPIPE while the close is under way, ENOTCONN once it is done.
        #expect(outcome == .failed(EPIPE) || outcome == .failed(ENOTCONN), "\(outcome)")
        listener.close()
        let report = loop.shutdown()
        #expect(report.frames.isBalanced && report.operationsInFlight == 0, "\(report.frames)")
    }

    /// How a send that ``boundedSend(_:_:)`` made ended.
    enum SendOutcome: Equatable, Sendable {
        case sent
        case failed(Int32)
        case hung
    }

    /// Sends one byte on `connection`, giving up after 5 s: then it shuts `loop` down, which fails
    /// the hung send, so the test ends with a failure instead of hanging.
    func boundedSend(_ connection: TCPConnection, _ loop: TCPEventLoop) async -> SendOutcome {
        await withTaskGroup(of: SendOutcome.self) { group in
            group.addTask {
                do throws(SystemCallError) {
                    try await connection.send([7])
                    return .sent
                } catch {
                    return .failed(error.code)
                }
            }
            group.addTask {
                try? await Task.sleep(for: .seconds(5))
                return .hung
            }
            let first = await group.next()!
            group.cancelAll()
            if first == .hung { loop.shutdown() }
            return first
        }
    }

    /// Several threads shutting the loop down at once all get its report (a second caller used to
    /// find the thread gone and the report not yet stored).
    @Test func concurrentShutdownsAllGetTheReport() throws {
        let loop = try TCPEventLoop()
        let enterCalls = Mutex<[UInt64]>([])
        let threads = try (0..<4).map { index in
            try WorkerThread(name: "tcp-shutdown\(index)") {
                let report = loop.shutdown()
                enterCalls.withLock { $0.append(report.enterCalls) }
            }
        }
        for thread in threads { thread.join() }
        let seen = enterCalls.withLock { $0 }
        #expect(seen.count == 4 && Set(seen).count == 1, "\(seen)")
        #expect(loop.shutdown().enterCalls == seen.first)
    }

    /// The loop's thread carries its name, as `top -H` and `/proc` show it.
    @Test func eventLoopThreadIsNamed() throws {
        let loop = try TCPEventLoop()
        defer { loop.shutdown() }
        #expect(threadNames().contains("sluice-tcp"), "\(threadNames())")
    }

    /// A ring that can no longer enter the kernel makes the engine fail, visibly and for good,
    /// instead of spinning for a submission entry; shutdown then does not wait for completions
    /// that cannot come.
    @Test func aBrokenRingFailsInsteadOfSpinning() throws {
        var configuration = TCPEngineConfiguration()
        configuration.ringEntries = 4
        let engine = try TCPEngine(configuration: configuration)
        let (_, endpoint) = try engine.listen(on: IPEndpoint("127.0.0.1:0")!)   // one entry queued: the accept
        breakRing(engine.ring)
        var failure: SystemCallError?
        // Each connect queues an entry; the one that finds the queue full must submit, and fails.
        for _ in 0..<8 where failure == nil {
            do throws(SystemCallError) { _ = try engine.connect(to: endpoint) } catch { failure = error }
        }
        let error = try #require(failure, "connect kept queuing past a full submission queue")
        var delegate = StreamEchoHandler<TCPEngine>()
        #expect(throws: error) { try engine.poll(&delegate, timeout: .zero) }
        #expect(throws: error) { _ = try engine.connect(to: endpoint) }
        let clock = ContinuousClock()
        let start = clock.now
        _ = engine.shutdown(&delegate)
        #expect(clock.now - start < .seconds(1))
    }

    /// Peers that send and never read get no more than their share of frames while others
    /// connect, and are aborted after the idle timeout: a well-behaved connection beside them
    /// is served, and every frame comes back.
    @Test func peersThatNeverReadAreBoundedAndClosedWhenIdle() throws {
        let (server, endpoint) = try startTCPEcho(["--idle-timeout", "2"])
        // 24 peers, more than the pool holds at the full per-connection budget (24 × 33 > 512).
        let stuck = try peersThatNeverRead(24, to: endpoint, sendingFor: .seconds(1))
        let clock = ContinuousClock()
        let healthy = try KernelTCPSocket(connectingTo: endpoint)
        let message = (0..<65536).map { UInt8(truncatingIfNeeded: $0 &* 7) }
        let asked = clock.now
        #expect(echoWhole(message, on: healthy.descriptor) == message, "the well-behaved connection was not served")
        // Served beside them, not only once the idle timeout (2 s after their last progress) freed their frames.
        #expect(clock.now - asked < .seconds(1), "the well-behaved connection waited \(clock.now - asked)")
        // The stuck peers are reset once idle (their reads end with an error or EOF).
        for (index, peer) in stuck.enumerated() {
            var ended = false
            var buffer = [UInt8](repeating: 0, count: 65536)
            let deadline = clock.now + .seconds(10)
            while !ended, clock.now < deadline {
                let count = recv(peer.descriptor, &buffer, buffer.count, 0)
                if count == 0 || (count < 0 && errno != EAGAIN) { ended = true } else if count < 0 { usleep(10_000) }
            }
            #expect(ended, "stuck peer \(index) was not closed")
        }
        #expect(server.stop() == 0)
        let text = server.text
        #expect(number(after: "closed idle: ", in: text) == 24, "\(text)")
        #expect((number(after: "receive pauses (frame budget): ", in: text) ?? 0) >= 1, "\(text)")
        #expect(text.contains("frames: all returned to their pool"), "\(text)")
    }

    /// More peers that never read than sends may be in flight by configuration: each holds a
    /// send the kernel cannot finish, and were their credits all there is, a newcomer's echo
    /// would wait for them. The engine keeps a credit per connection; the newcomer is served.
    @Test func peersThatNeverReadCannotHoldEverySendCredit() throws {
        var configuration = TCPEngineConfiguration()
        configuration.maximumSendsInFlight = 8
        configuration.maximumConnections = 64
        let server = try EchoServerThread(configuration: configuration)
        let endpoint = try #require(server.bound)
        let stuck = try peersThatNeverRead(24, to: endpoint, sendingFor: .milliseconds(800), receiveBufferBytes: 2048)
        let clock = ContinuousClock()
        let healthy = try KernelTCPSocket(connectingTo: endpoint)
        let message = Array("beside them".utf8)
        let asked = clock.now
        #expect(echoWhole(message, on: healthy.descriptor) == message, "the well-behaved connection was not served")
        #expect(clock.now - asked < .seconds(1), "the well-behaved connection waited \(clock.now - asked)")
        withExtendedLifetime(stuck) {}
        let report = try #require(try server.stop()?.get())
        #expect(report.frames.isBalanced, "\(report.frames)")
    }

    /// Peers that vanish mid-stream (a reset, with echoes in flight and unread) are closed and
    /// their frames freed; a peer after them is served as before.
    @Test func peersVanishingMidStreamAreClosedAndFreed() throws {
        let (server, endpoint) = try startTCPEcho()
        let chunk = [UInt8](repeating: 0xA5, count: 65536)
        for _ in 0..<8 {
            let peer = try KernelTCPSocket(connectingTo: endpoint)
            peer.setNonBlocking()
            var sent = 0
            let clock = ContinuousClock()
            let until = clock.now + .milliseconds(200)
            while clock.now < until { sent += max(0, send(peer.descriptor, chunk, chunk.count, Int32(MSG_NOSIGNAL))) }
            #expect(sent > 65536, "the peer could not get data in flight")
            // SO_LINGER 0: close sends a reset, dropping what is queued either way.
            var option = linger(l_onoff: 1, l_linger: 0)
            setsockopt(peer.descriptor, SOL_SOCKET, SO_LINGER, &option, socklen_t(MemoryLayout<linger>.size))
        }
        let after = try KernelTCPSocket(connectingTo: endpoint)
        let message = (0..<100_000).map { UInt8(truncatingIfNeeded: $0 &* 13) }
        #expect(echoWhole(message, on: after.descriptor) == message, "the peer after them was not served")
        #expect(server.stop() == 0)
        let text = server.text
        #expect(text.contains("9 connections"), "\(text)")
        #expect(text.contains("frames: all returned to their pool"), "\(text)")
    }

    /// Out of descriptors, a listener stops accepting (rather than re-arming an accept that fails
    /// at once, over and over) and accepts again as connections close, so every client is served.
    /// The server is `sluice tcp-echo` under `prlimit --nofile`: lowering the limit in this process
    /// would starve every test running beside this one.
    @Test(.enabled(if: access("/usr/bin/prlimit", X_OK) == 0, "needs prlimit (util-linux)"))
    func acceptPausesWhileDescriptorsRunOut() throws {
        let server = try ChildProcess("/usr/bin/prlimit", [
            "--nofile=24", SluiceExecutable.path, "tcp-echo", "--backend", "uring", "--listen", "127.0.0.1:0",
            "--duration", "60",
        ])
        let line = try #require(server.waitForLine(containing: "listening on"), "did not start: \(server.text)")
        let endpoint = try #require(line.split(separator: " ").lazy.compactMap { IPEndpoint($0.filter { $0 != "," }) }.first)
        // More clients than the server has descriptors: the backlog completes every handshake, and
        // the server accepts until it runs out.
        let clients = try (0..<40).map { _ in try KernelTCPSocket(connectingTo: endpoint) }
        usleep(300_000)
        for (index, client) in clients.enumerated() {
            let message = [UInt8](repeating: UInt8(index), count: 100)
            #expect(echoWhole(message, on: client.descriptor) == message, "client \(index)")
        }
        #expect(server.stop() == 0)
        let text = server.text
        #expect(text.contains("40 connections"), "\(text)")
        let pauses = try #require(number(after: "accept pauses for want of descriptors: ", in: text), "\(text)")
        // One pause when the descriptors ran out, then at most one per close that freed one.
        #expect(pauses >= 1 && pauses <= 41, "\(text)")
        #expect(text.contains("frames: all returned to their pool"), "\(text)")
    }
}

/// Makes `ring` unusable from now on: its descriptor (and its registered copy) no longer names
/// an io_uring, so every `io_uring_enter` fails. The ring's memory stays mapped until it is freed.
func breakRing(_ ring: URing) {
    if ring.hasRegisteredDescriptor { _ = io_uring_unregister_ring_fd(ring.raw) }
    let null = open("/dev/null", O_RDWR | O_CLOEXEC)
    dup2(null, ring.raw.pointee.ring_fd)
    close(null)
}

/// The names of this process's threads, from `/proc/self/task/*/comm`.
func threadNames() -> [String] {
    guard let directory = opendir("/proc/self/task") else { return [] }
    defer { closedir(directory) }
    var names: [String] = []
    while let entry = readdir(directory) {
        let task = withUnsafeBytes(of: entry.pointee.d_name) { String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self) }
        guard task.first?.isNumber == true, let file = fopen("/proc/self/task/\(task)/comm", "r") else { continue }
        var line = [CChar](repeating: 0, count: 64)
        if fgets(&line, Int32(line.count), file) != nil {
            names.append(String(decoding: line.prefix { $0 != 0 && $0 != 10 }.map { UInt8(bitPattern: $0) }, as: UTF8.self))
        }
        fclose(file)
    }
    return names
}

/// Reads a blocking TCP socket until EOF, or `nil` when nothing comes for `timeout`.
/// Sends `message` on `descriptor`, shuts the sending side and reads to the end: the echo of it.
func echoWhole(_ message: [UInt8], on descriptor: Int32, timeout: Duration = .seconds(10)) -> [UInt8]? {
    guard send(descriptor, message, message.count, Int32(MSG_NOSIGNAL)) == message.count else { return nil }
    shutdown(descriptor, Int32(SHUT_WR))
    return readToEnd(descriptor, timeout: timeout)
}

/// `count` peers of `endpoint` that send as fast as it takes for `duration` and never read.
func peersThatNeverRead(_ count: Int, to endpoint: IPEndpoint, sendingFor duration: Duration,
                        receiveBufferBytes: Int32? = nil) throws -> [KernelTCPSocket] {
    let peers = try (0..<count).map { _ in try KernelTCPSocket(connectingTo: endpoint, receiveBufferBytes: receiveBufferBytes) }
    let chunk = [UInt8](repeating: 0x5A, count: 65536)
    let clock = ContinuousClock()
    let until = clock.now + duration
    for peer in peers { peer.setNonBlocking() }
    while clock.now < until {
        var accepted = 0
        for peer in peers { accepted += max(0, send(peer.descriptor, chunk, chunk.count, Int32(MSG_NOSIGNAL))) }
        if accepted == 0 { usleep(20_000) }
    }
    return peers
}

/// `sluice tcp-echo --backend uring` on a port of loopback, and the endpoint it listens on.
func startTCPEcho(_ extra: [String] = []) throws -> (ChildProcess, IPEndpoint) {
    let server = try ChildProcess(sluice: [
        "tcp-echo", "--backend", "uring", "--listen", "127.0.0.1:0", "--duration", "60"] + extra)
    let line = try #require(server.waitForLine(containing: "listening on"), "did not start: \(server.text)")
    let endpoint = try #require(line.split(separator: " ").lazy.compactMap { IPEndpoint($0.filter { $0 != "," }) }.first)
    return (server, endpoint)
}

func readToEnd(_ descriptor: Int32, timeout: Duration) -> [UInt8]? {
    var bytes: [UInt8] = []
    var buffer = [UInt8](repeating: 0, count: 4096)
    while true {
        var ready = pollfd(fd: descriptor, events: Int16(POLLIN), revents: 0)
        guard poll(&ready, 1, Int32(timeout.components.seconds * 1000)) == 1 else { return nil }
        let count = recv(descriptor, &buffer, buffer.count, 0)
        if count == 0 { return bytes }
        guard count > 0 else { return nil }
        bytes += buffer[0..<count]
    }
}

/// The decimal number right after `marker` in `text`.
func number(after marker: String, in text: String) -> Int? {
    guard let range = text.firstRange(of: marker) else { return nil }
    return Int(text[range.upperBound...].prefix { $0.isNumber })
}
