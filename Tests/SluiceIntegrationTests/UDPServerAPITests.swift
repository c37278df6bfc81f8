#if canImport(Glibc)
import Glibc
#endif
import Logging
import Sluice
import SluiceBench
import SluiceSockets
import SluiceTestSupport
import ServiceLifecycle
import Testing

/// A backend the runtime does not ship: kernel sockets opened by the test itself, registered
/// under a name of its own. The server, the bench's backend list and the registry must all see it.
final class LoopbackTestBackend: UDPBackend {
    static let name = "test-loopback"
    static let summary = "a test's own backend over kernel sockets"
    let configuration: UDPServerConfiguration

    init(configuration: UDPServerConfiguration) throws(RuntimeError) { self.configuration = configuration }

    var workerCount: Int { configuration.workers }
    var modeDescription: String { "test sockets" }

    func runWorker<Service: UDPService>(index: Int, listen: IPEndpoint, service: Service, state: WorkerState,
                                        bound: (IPEndpoint) -> Void) throws(SystemCallError) -> WorkerReport {
        let pool = try FramePool(frameCount: 64, frameSize: 4096, headroom: DatagramHeader.minimumHeadroom)
        var port = try UDPSocketPort(configuration: UDPSocketConfiguration(listen: listen), pool: pool)
        bound(port.localEndpoint)
        return UDPWorkerLoop.serve(port: &port, pool: pool, service: service, state: state, batchCapacity: 32)
    }
}

@Suite(.serialized) struct UDPServerAPITests {
    static func configuration(_ backend: Backend = .socket) -> UDPServerConfiguration {
        var configuration = UDPServerConfiguration(listen: IPEndpoint("127.0.0.1:0")!)
        configuration.backend = backend
        configuration.handlesSignals = false
        configuration.framesPerWorker = 64
        return configuration
    }

    /// One datagram to `server` and its echo. The wait is generous: with the whole suite running
    /// under AddressSanitizer on two cores, a worker thread can wait seconds for a CPU.
    static func roundTrip(_ server: IPEndpoint) -> Bool {
        let client = KernelUDPSocket(bind: IPEndpoint("127.0.0.1:0")!, receiveTimeout: .seconds(10))
        client.send([7, 8, 9], to: server)
        return client.receive()?.bytes == [7, 8, 9]
    }

    @Test func asyncRunServesUntilItsTaskIsCancelled() async throws {
        let server = try UDPServer(configuration: Self.configuration()) { _ in UDPEchoService() }
        let running = Task { try await server.run() }
        #expect(Self.roundTrip(server.boundEndpoint))
        running.cancel()
        try await running.value
        #expect(server.states.allSatisfy { $0.currentPhase == .finished })
        #expect(server.workerReports.allSatisfy { $0.frames.isBalanced })
    }

    /// A server dropped before it runs (an error in between, say) stops serving: its port is free again.
    @Test func aServerDroppedUnrunStopsServing() throws {
        var server: UDPServer? = try UDPServer(configuration: Self.configuration()) { _ in UDPEchoService() }
        let endpoint = try #require(server?.boundEndpoint)
        #expect(Self.roundTrip(endpoint))
        server = nil
        let probe = socket(AF_INET, Int32(SOCK_DGRAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        defer { close(probe) }
        let bound = KernelSocketAddress.with(endpoint, family: AF_INET) { bind(probe, $0, $1) }
        #expect(bound == 0, "the port is still held: errno \(errno)")
    }

    @Test func aServiceGroupRunsItAndStopsItOnGracefulShutdown() async throws {
        let server = try UDPServer(configuration: Self.configuration(.uring)) { _ in UDPEchoService() }
        let group = ServiceGroup(services: [server], gracefulShutdownSignals: [], logger: Logger(label: "test") { _ in
            SwiftLogNoOpLogHandler()
        })
        let running = Task { try await group.run() }
        #expect(Self.roundTrip(server.boundEndpoint))
        await group.triggerGracefulShutdown()
        try await running.value
        #expect(server.states.allSatisfy { $0.currentPhase == .finished })
        #expect(server.workerReports.count == 1 && server.workerReports.allSatisfy { $0.frames.isBalanced })
    }

    @Test func aRegisteredBackendServesAndTheBenchListsIt() throws {
        UDPBackendRegistry.register(LoopbackTestBackend.self)
        #expect(UDPBackendRegistry.names.contains("test-loopback"))
        #expect(BenchBackend.allCases.contains(BenchBackend(rawValue: "test-loopback")))
        var configuration = Self.configuration(Backend(rawValue: "test-loopback"))
        configuration.workers = 2
        let server = try UDPServer(configuration: configuration) { _ in UDPEchoService() }
        #expect(Self.roundTrip(server.boundEndpoint))
        server.stop()
        #expect(server.summary().contains("sluice udp test-loopback on"), "\(server.summary())")
        #expect(server.workerReports.count == 2)
    }

    @Test func anUnknownBackendIsATypedError() {
        #expect {
            _ = try UDPServer(configuration: Self.configuration(Backend(rawValue: "carrier-pigeon"))) { _ in UDPEchoService() }
        } throws: { error in
            "\(error)".contains("no backend named 'carrier-pigeon'") && "\(error)".contains("socket, uring, xdp")
        }
    }

    @Test func aFailingPortPassesItsSystemCallErrorUp() throws {
        let holder = KernelUDPSocket(bind: IPEndpoint("127.0.0.1:0")!)
        var configuration = Self.configuration()
        configuration.listen = holder.localEndpoint
        do {
            // The holder has no SO_REUSEPORT: the server's bind fails.
            _ = try UDPServer(configuration: configuration) { _ in UDPEchoService() }
            Issue.record("binding a taken port must fail")
        } catch {
            #expect(error.cause?.errno == .addressInUse, "\(error)")
            #expect(error.cause?.subsystem == .socket)
        }
    }

    /// Workers share their port through SO_REUSEPORT, which would also let a second server (or
    /// any socket of this user with the option) join the group and take part of the traffic.
    @Test(arguments: [Backend.socket, Backend.uring])
    func aSecondServerOnATakenPortIsRefused(backend: Backend) throws {
        var first = Self.configuration(backend)
        first.workers = 2
        let server = try UDPServer(configuration: first) { _ in UDPEchoService() }
        defer { server.stop() }
        var second = Self.configuration(backend)
        second.listen = server.boundEndpoint
        #expect {
            _ = try UDPServer(configuration: second) { _ in UDPEchoService() }
        } throws: { error in
            (error as? RuntimeError)?.cause?.errno == .addressInUse
        }
        // A foreign socket that set SO_REUSEPORT holds the port first: the server does not join it.
        let holder = socket(AF_INET, Int32(SOCK_DGRAM.rawValue), 0)
        defer { close(holder) }
        var one: Int32 = 1
        setsockopt(holder, SOL_SOCKET, SO_REUSEPORT, &one, socklen_t(MemoryLayout<Int32>.size))
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        let bound = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(holder, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        try #require(bound == 0)
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        _ = withUnsafeMutablePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(holder, $0, &length) }
        }
        var third = Self.configuration(backend)
        third.listen = IPEndpoint(address: .v4(IPv4Address(127, 0, 0, 1)), port: UInt16(bigEndian: address.sin_port))
        #expect {
            _ = try UDPServer(configuration: third) { _ in UDPEchoService() }
        } throws: { error in
            (error as? RuntimeError)?.cause?.errno == .addressInUse
        }
        #expect(Self.roundTrip(server.boundEndpoint))
    }
}

/// `sluice --version` and `--help` say what this build is and only what exists.
@Suite struct CommandLineBasicsTests {
    @Test func versionAndHelp() throws {
        let version = try ChildProcess(sluice: ["--version"])
        #expect(version.waitForExit() == 0)
        #expect(version.text == SluiceVersion.current + "\n", "\(version.text)")
        let help = try ChildProcess(sluice: ["--help"])
        #expect(help.waitForExit() == 0)
        #expect(help.text.contains("Make or remove a persistent TUN or TAP device"), "\(help.text)")
        let echoHelp = try ChildProcess(sluice: ["udp-echo", "--help"])
        #expect(echoHelp.waitForExit() == 0)
        for name in UDPBackendRegistry.names where name != LoopbackTestBackend.name {
            #expect(echoHelp.text.contains(name), "udp-echo --help lists the \(name) backend: \(echoHelp.text)")
        }
    }
}

/// A request to the subnet's broadcast address is answered, as the kernel's own sockets do,
/// from the interface's address (`ipi_spec_dst`), never from the broadcast address.
@Suite(.serialized) struct BroadcastReplyTests {
    /// Port 53 as well: the io_uring receive writes its control messages in front of the
    /// datagram header, and a low port once read as the control length there.
    @Test(arguments: [Backend.socket, Backend.uring], ["0.0.0.0:9000", "[::]:9000", "[::]:53"])
    func aBroadcastRequestIsAnsweredFromTheInterfaceAddress(backend: Backend, listen: String) throws {
        let topology = try TestTopology(.init(suffix: "b\(getpid() % 100_000)\(backend == .socket ? "s" : "u")\(listen.count)"))
        defer { topology.destroy() }
        var configuration = UDPServerConfiguration(listen: IPEndpoint(listen)!)
        configuration.backend = backend
        configuration.handlesSignals = false
        let server = try TestTopology.run(inNamespace: topology.serverNamespace) { [configuration] in
            try UDPServer(configuration: configuration) { _ in UDPEchoService() }
        }
        defer { try? TestTopology.run(inNamespace: topology.serverNamespace) { server.stop() } }
        let port = IPEndpoint(listen)!.port
        let broadcast = IPEndpoint(address: .v4(IPv4Address(198, 18, 0, 255)), port: port)
        let reply = try TestTopology.run(inNamespace: topology.clientNamespace) { () -> IPEndpoint? in
            let client = KernelUDPSocket(bind: IPEndpoint(address: .v4(topology.clientIPv4), port: 0))
            var on: Int32 = 1
            setsockopt(client.descriptor, SOL_SOCKET, SO_BROADCAST, &on, socklen_t(MemoryLayout<Int32>.size))
            client.send([1, 2, 3], to: broadcast)
            return client.receive()?.from
        }
        #expect(reply == IPEndpoint(address: .v4(topology.serverIPv4), port: port), "\(backend) \(listen): \(String(describing: reply))")
    }
}
