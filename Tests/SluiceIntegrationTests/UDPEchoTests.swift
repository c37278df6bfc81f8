#if canImport(Glibc)
import Glibc
#endif
import SluicePackets
import SluiceTestSupport
import Testing

/// `sluice udp-echo --backend socket` as a user runs it, driven by plain kernel sockets.
@Suite(.serialized) struct UDPEchoTests {
    /// Starts the server and returns it with the endpoint it bound.
    func startServer(_ listen: String, _ extra: [String] = []) throws -> (ChildProcess, IPEndpoint) {
        let server = try ChildProcess(sluice: ["udp-echo", "--backend", "socket", "--listen", listen, "--stats-interval", "0",
                                        "--duration", "120"] + extra)
        let line = try #require(server.waitForLine(containing: "backend on"), "server did not start: \(server.text)")
        return (server, try #require(Self.endpoint(in: line)))
    }

    /// The endpoint in a line like "sluice udp-echo: socket backend on 127.0.0.1:40000, 1 worker(s)".
    static func endpoint(in line: String) -> IPEndpoint? {
        line.split(separator: " ").lazy.compactMap { IPEndpoint($0.filter { $0 != "," }) }.first
    }

    /// Sends every payload (in windows, as plain datagrams or as GSO bursts of equal sizes) and
    /// checks that each comes back byte for byte.
    func echo(_ payloads: [[UInt8]], to server: IPEndpoint, from client: KernelUDPSocket, gsoBursts: Bool = false,
              window: Int = 32) {
        var index = 0
        while index < payloads.count {
            let end = min(index + window, payloads.count)
            let chunk = Array(payloads[index..<end])
            if gsoBursts, chunk.count > 1, chunk.allSatisfy({ $0.count == chunk[0].count }), chunk[0].count > 0,
               chunk[0].count * chunk.count <= 65000 {
                let sent = client.send(chunk.flatMap { $0 }, to: server, segmentSize: chunk[0].count)
                #expect(sent == chunk.count * chunk[0].count)
            } else {
                for p in chunk { client.send(p, to: server) }
            }
            var replies: [[UInt8]] = []
            while replies.count < chunk.count, let reply = client.receive() {
                #expect(reply.from == server)
                replies.append(reply.bytes)
            }
            // One worker per flow keeps order, but compare as multisets so the check is about bytes only.
            #expect(replies.sorted { $0.lexicographicallyPrecedes($1) } == chunk.sorted { $0.lexicographicallyPrecedes($1) },
                    "window at \(index): \(replies.count) of \(chunk.count) came back")
            if replies.count < chunk.count { return }
            index = end
        }
    }

    /// Sizes from 0 to 65507: edges (MTU and header boundaries) and random ones.
    static func payloads(seed: UInt64, count: Int) -> [[UInt8]] {
        var random = TestBytes(seed: seed)
        let edges = [0, 1, 2, 7, 8, 9, 63, 64, 65, 511, 512, 1023, 1024, 1231, 1232, 1452, 1472, 1473, 1500, 2048,
                     4095, 4096, 8192, 9000, 16384, 32768, 65000, 65506, 65507]
        var sizes = edges
        while sizes.count < count {
            // Mostly small, as real traffic, with a tail of large ones.
            let r = random.next() % 100
            sizes.append(r < 70 ? Int(random.next() % 1473) : r < 95 ? Int(random.next() % 9001) : Int(random.next() % 65508))
        }
        return sizes.map { random.bytes($0) }
    }

    @Test(arguments: ["127.0.0.1:0", "[::1]:0"])
    func echoesThousandsOfDatagramsOfEverySize(listen: String) throws {
        let (server, endpoint) = try startServer(listen)
        let client = KernelUDPSocket(bind: IPEndpoint(address: endpoint.address, port: 0))
        let payloads = Self.payloads(seed: 11, count: 3000)
        echo(payloads, to: endpoint, from: client)
        #expect(server.stop() == 0)
        #expect(server.text.contains("received 3000 datagrams"), "\(server.text)")
        #expect(server.text.contains("frames: all returned to their pools"))
        #expect(server.text.contains("drops: none"))
    }

    /// `--socket-buffer` reaches the socket: the kernel reports twice the asked size (its
    /// bookkeeping share), and 0 leaves its default.
    @Test func theSocketBufferIsWhatWasAsked() throws {
        for asked in [1_048_576, 0] {
            let (server, endpoint) = try startServer("127.0.0.1:0", ["--socket-buffer", String(asked)])
            defer { _ = server.stop() }
            let child = try ChildProcess("/bin/sh", ["-c", "cat /proc/sys/net/core/rmem_default; ss -u -a -n -m 'sport = :\(endpoint.port)'"])
            #expect(child.waitForExit(timeout: .seconds(10)) == 0, "\(child.text)")
            let defaultSize = try #require(child.text.split(separator: "\n").first.flatMap { Int($0) }, "\(child.text)")
            let expected = asked == 0 ? defaultSize : 2 * asked
            #expect(child.text.contains("rb\(expected),"), "--socket-buffer \(asked): \(child.text)")
        }
    }

    @Test func echoesWithGSOAndGROAndTwoWorkersOnDualStack() throws {
        let (server, endpoint) = try startServer("[::]:0", ["--gso", "--gro", "--workers", "2"])
        var random = TestBytes(seed: 12)
        // Runs of equal sizes so the client can send GSO bursts the server receives coalesced,
        // and replies the server can send back segmented; then mixed sizes.
        var payloads: [[UInt8]] = []
        for size in [1, 64, 500, 1000, 1200, 1452, 1472] {
            for _ in 0..<(32 * 8) { payloads.append(random.bytes(size)) }
        }
        let mixed = Self.payloads(seed: 13, count: 1000)
        for family in [IPAddress.v4(.loopback), .v6(.loopback)] {
            let client = KernelUDPSocket(bind: IPEndpoint(address: family, port: 0))
            let target = IPEndpoint(address: family, port: endpoint.port)
            echo(payloads, to: target, from: client, gsoBursts: true)
            echo(mixed, to: target, from: client)
        }
        #expect(server.stop() == 0)
        let text = server.text
        #expect(text.contains("received \(2 * (payloads.count + mixed.count)) datagrams"), "\(text)")
        #expect(text.contains("arrived coalesced (GRO)") && !text.contains(" 0 datagrams arrived coalesced"), "\(text)")
        #expect(text.contains("frames: all returned to their pools"))
    }

    @Test func stopsCleanlyOnSIGINTAndSIGTERMWithASummary() throws {
        for signal in [SIGINT, SIGTERM] {
            let (server, endpoint) = try startServer("127.0.0.1:0")
            let client = KernelUDPSocket(bind: IPEndpoint("127.0.0.1:0")!)
            echo([[1, 2, 3]], to: endpoint, from: client)
            #expect(server.stop(signal: signal) == 0)
            #expect(server.text.contains(signal == SIGINT ? "SIGINT received" : "SIGTERM received"))
            #expect(server.text.contains("received 1 datagrams"))
        }
    }

    @Test func stopsByItselfAfterItsDuration() throws {
        let server = try ChildProcess(sluice: ["udp-echo", "--listen", "127.0.0.1:0", "--duration", "0.5", "--stats-interval", "0"])
        #expect(server.waitForExit(timeout: .seconds(10)) == 0)
        #expect(server.text.contains("frames: all returned"))
    }

    @Test func aTakenPortIsAClearError() throws {
        let holder = KernelUDPSocket(bind: IPEndpoint("127.0.0.1:0")!)
        let server = try ChildProcess(sluice: ["udp-echo", "--listen", holder.localEndpoint.description])
        #expect(server.waitForExit() != 0)
        #expect(server.text.contains("Address already in use") && server.text.contains("another socket holds"), "\(server.text)")
    }

    @Test func theBundledClientChecksEveryReply() throws {
        let (server, endpoint) = try startServer("127.0.0.1:0")
        let client = try ChildProcess(sluice: ["udp-client", "--target", endpoint.description, "--size", "1000",
                                        "--duration", "10", "--count", "5000"])
        #expect(client.waitForExit(timeout: .seconds(30)) == 0)
        #expect(client.text.contains("sent 5000, replies 5000 intact, 0 corrupt"), "\(client.text)")
        server.stop()
    }
}

/// Datagrams the kernel drops at a full socket buffer are drops like any other: in the summary,
/// the JSON and the metrics (`layer="port", cause="socket_buffer"`), read from the socket.
@Suite(.serialized) struct SocketBufferDropTests {
    @Test(arguments: ["socket", "uring"])
    func aFullSocketBufferIsCounted(backend: String) throws {
        let server = try ChildProcess(sluice: ["udp-echo", "--backend", backend, "--listen", "127.0.0.1:0", "--socket-buffer", "65536",
                                               "--stats-interval", "0.2", "--duration", "60"])
        let line = try #require(server.waitForLine(containing: "backend on"), "\(server.text)")
        let target = try #require(UDPEchoTests.endpoint(in: line))
        let client = KernelUDPSocket(bind: IPEndpoint("127.0.0.1:0")!)
        kill(server.pid, SIGSTOP)
        for _ in 0..<3000 { client.send([UInt8](repeating: 1, count: 1000), to: target) }
        kill(server.pid, SIGCONT)
        usleep(600_000)
        // The progress lines count them too (they said "drops 0" while the summary had thousands).
        let progress = server.text.split(separator: "\n").filter { $0.hasPrefix("rx ") && $0.contains(" drops ") }
        let lastDrops = progress.last.flatMap { Int($0.split(separator: " ").last ?? "") }
        #expect((lastDrops ?? 0) > 0, "\(server.text)")
        #expect(server.stop() == 0)
        let drops = try #require(server.text.split(separator: "\n").first { $0.hasPrefix("  drops: ") }, "\(server.text)")
        let dropped = drops.split(separator: " ").first { $0.hasPrefix("drop_socket_buffer=") }.flatMap { Int($0.dropFirst(19)) } ?? 0
        let summary = try #require(server.text.split(separator: "\n").first { $0.hasPrefix("  received ") }, "\(server.text)")
        let received = Int(summary.split(separator: " ")[1]) ?? -1
        // Every datagram sent is either received or dropped at the socket (loopback loses nothing else).
        #expect(dropped > 0 && received + dropped == 3000, "received \(received), dropped \(dropped): \(server.text)")
    }
}

/// What the kernel refuses a send for, told apart: a GSO segment past the path's MTU (EMSGSIZE),
/// and a reply to port 0 (EINVAL, however it is sent).
@Suite(.serialized) struct UDPSendRefusalTests {
    @Test(arguments: ["socket", "uring"])
    func segmentsPastTheMTUAndRepliesToPortZero(backend: String) throws {
        let namespace = try ScratchNamespace(prefix: "slgso")
        let mtu = try ChildProcess("/usr/sbin/ip", ["-n", namespace.name, "link", "set", "lo", "mtu", "1280"])
        #expect(mtu.waitForExit() == 0, "\(mtu.text)")
        let server = try ChildProcess(sluice: ["udp-echo", "--backend", backend, "--gso", "--listen", "127.0.0.1:9000",
                                               "--netns", namespace.name, "--stats-interval", "0", "--duration", "60"])
        try #require(server.waitForLine(containing: "backend on") != nil, "\(server.text)")
        let target = IPEndpoint("127.0.0.1:9000")!
        let client = try withNetworkNamespace(namespace.name) {
            KernelUDPSocket(bind: IPEndpoint("127.0.0.1:0")!, receiveTimeout: .milliseconds(300))
        }
        // A reply to port 0 fails however it is sent: no reason to give up GSO or SEND with an address.
        let raw = try withNetworkNamespace(namespace.name) {
            socket(AF_INET, Int32(SOCK_RAW.rawValue) | Int32(SOCK_CLOEXEC.rawValue), Int32(IPPROTO_RAW))
        }
        defer { close(raw) }
        let fromPortZero: [UInt8] = [0x45, 0, 0, 30, 0, 1, 0, 0, 64, 17, 0, 0, 127, 0, 0, 1, 127, 0, 0, 1,
                                     0, 0, 0x23, 0x28, 0, 10, 0, 0, 1, 2]
        for _ in 0..<40 {
            _ = KernelSocketAddress.with(target, family: AF_INET) { sendto(raw, fromPortZero, fromPortZero.count, 0, $0, $1) }
        }
        usleep(100_000)
        // Bursts of 1400-byte datagrams: replies joined for GSO do not fit 1280 bytes; after the
        // first refusal they go one by one (fragmented), as the kernel sends such a datagram.
        var echoed = [Int]()
        for burst in 0..<3 {
            for n in 0..<32 { client.send([UInt8](repeating: UInt8(burst * 32 + n), count: 1400), to: target) }
            var got = 0
            while got < 32, client.receive() != nil { got += 1 }
            echoed.append(got)
        }
        // Both backends resend the refused run one by one at once: nothing is lost.
        #expect(echoed.allSatisfy { $0 == 32 }, "\(echoed)")
        #expect(server.stop() == 0)
        #expect(server.text.contains("segments of 1400 bytes are past the path's MTU"), "\(server.text)")
        #expect(!server.text.contains("GSO refused") && !server.text.contains("SEND with an address refused"), "\(server.text)")
    }
}

/// Debian's sockperf, a real peer, against the sockperf responder.
@Suite(.serialized) struct SockperfPeerTests {
    /// Runs sockperf to the end (bounded: a hung peer is killed and fails the test).
    func sockperf(_ arguments: [String]) throws -> String {
        let peer = try ChildProcess("/usr/bin/sockperf", arguments)
        #expect(peer.waitForExit(timeout: .seconds(30)) == 0, "sockperf \(arguments) did not finish")
        return peer.text
    }

    @Test(.enabled(if: access("/usr/bin/sockperf", X_OK) == 0, "sockperf is installed by make test"))
    func pingPongAndThroughputWork() throws {
        let server = try ChildProcess(sluice: ["udp-echo", "--responder", "sockperf", "--listen", "127.0.0.1:0",
                                        "--stats-interval", "0", "--duration", "60"])
        let line = try #require(server.waitForLine(containing: "backend on"))
        let endpoint = try #require(UDPEchoTests.endpoint(in: line))
        let pingPong = try sockperf(["ping-pong", "-i", "127.0.0.1", "-p", "\(endpoint.port)", "-t", "1", "-m", "64"])
        #expect(pingPong.contains("Summary: Latency is"), "\(pingPong)")
        #expect(pingPong.contains("# dropped messages = 0"), "\(pingPong)")
        let throughput = try sockperf(["throughput", "-i", "127.0.0.1", "-p", "\(endpoint.port)", "-t", "1", "-m", "1472"])
        #expect(throughput.contains("Summary: Message Rate is"), "\(throughput)")
        #expect(server.stop() == 0)
        #expect(server.text.contains("frames: all returned"))
        // Throughput messages ask for no reply: the summary says where they went.
        #expect(server.text.contains(", consumed without a reply "), "\(server.text)")
    }
}
