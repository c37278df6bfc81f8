#if canImport(Glibc)
import Glibc
#endif
import SluicePackets
import SluiceCore
import SluiceURing
import SluiceTestSupport
import Testing

/// `sluice udp-echo --backend uring` as a user runs it, driven by plain kernel sockets.
@Suite(.serialized) struct URingEchoCommandTests {
    /// Starts the server and returns it with the endpoint it bound.
    func startServer(_ listen: String, _ extra: [String] = []) throws -> (ChildProcess, IPEndpoint) {
        let server = try ChildProcess(sluice: ["udp-echo", "--backend", "uring", "--listen", listen,
                                               "--stats-interval", "0", "--duration", "120"] + extra)
        let line = try #require(server.waitForLine(containing: "backend on"), "server did not start: \(server.text)")
        let endpoint = line.split(separator: " ").lazy.compactMap { IPEndpoint($0.filter { $0 != "," }) }.first
        return (server, try #require(endpoint))
    }

    @Test(arguments: [("127.0.0.1:0", [String]()), ("[::1]:0", ["--gso"]), ("127.0.0.1:0", ["--sqpoll"]),
                      ("[::]:0", ["--defer-taskrun", "--workers", "2"])])
    func echoesThousandsOfDatagramsOfEverySize(listen: String, options: [String]) throws {
        let (server, endpoint) = try startServer(listen, options)
        let target = listen == "[::]:0" ? IPEndpoint(address: .v4(.loopback), port: endpoint.port) : endpoint
        let client = KernelUDPSocket(bind: IPEndpoint(address: target.address, port: 0))
        var random = TestBytes(seed: 31)
        let payloads = payloadSizes(seed: 32, count: 2000).map { random.bytes($0) }
        var index = 0
        while index < payloads.count {
            let window = payloads[index..<min(index + 32, payloads.count)]
            for p in window { client.send(p, to: target) }
            var replies: [[UInt8]] = []
            while replies.count < window.count, let reply = client.receive() { replies.append(reply.bytes) }
            #expect(replies == Array(window), "window at \(index): \(replies.count) of \(window.count) came back")
            if replies.count < window.count { break }
            index += window.count
        }
        #expect(server.stop() == 0)
        let text = server.text
        #expect(text.contains("sluice udp uring on") && text.contains("io_uring ("), "\(text)")
        #expect(text.contains("received \(payloads.count) datagrams"), "\(text)")
        #expect(text.contains("drops: none"), "\(text)")
        #expect(text.contains("frames: all returned to their pools"), "\(text)")
        // A lone reply with no control data goes as SEND with an address; a wildcard's replies
        // carry their source address (IP_PKTINFO), so SENDMSG.
        let operations = Set(text.split(separator: "\n").filter { $0.contains("ops used:") }
            .flatMap { $0.split(separator: ":").last!.split(separator: " ").map(String.init) })
        #expect(operations.contains("RECVMSG"), "\(text)")
        #expect(operations.contains(listen.hasPrefix("[::]") ? "SENDMSG" : "SEND"), "\(text)")
        #expect(text.contains("1 registered file"), "the socket is a fixed file: \(text)")
    }

    /// A server restarted at once on the same port binds it: the first one's socket leaves with
    /// it, not with the ring's deferred teardown (which held it some 60 ms).
    @Test func aRestartOnTheSamePortBindsAtOnce() throws {
        for _ in 0..<3 {
            let (first, bound) = try startServer("127.0.0.1:0")
            #expect(first.stop() == 0)
            let second = try ChildProcess(sluice: ["udp-echo", "--backend", "uring", "--listen", bound.description,
                                                   "--duration", "0.2", "--stats-interval", "0"])
            #expect(second.waitForExit(timeout: .seconds(10)) == 0, "\(second.text)")
        }
    }

    /// Stopped mid-flood, the summary accounts for every datagram: what it counts received it
    /// counts sent (or dropped), and the client got exactly what it counts sent. Datagrams still
    /// waiting in the port were counted received and never answered; sends completing at the
    /// stop went out uncounted.
    @Test(arguments: [[String](), ["--defer-taskrun"]])
    func aStopUnderLoadAccountsForEveryDatagram(options: [String]) throws {
        let (server, endpoint) = try startServer("127.0.0.1:0", options)
        let client = try ChildProcess(sluice: ["udp-client", "--target", endpoint.description, "--window", "256", "--duration", "2"])
        usleep(800_000)
        #expect(server.stop() == 0)
        _ = client.waitForExit(timeout: .seconds(10))
        func number(after prefix: String, in text: String) -> Int? {
            guard let range = text.range(of: prefix) else { return nil }
            return Int(text[range.upperBound...].prefix { $0.isNumber })
        }
        let received = number(after: "received ", in: server.text)
        let sent = number(after: "avg), sent ", in: server.text)
        let replies = number(after: "replies ", in: client.text)
        #expect(received != nil && received! > 1000 && received == sent, "\(server.text)")
        #expect(server.text.contains("drops: none"), "\(server.text)")
        #expect(replies == sent, "client: \(client.text)\nserver: \(server.text)")
    }

    @Test func theBundledClientChecksEveryReply() throws {
        let (server, endpoint) = try startServer("127.0.0.1:0")
        let client = try ChildProcess(sluice: ["udp-client", "--target", endpoint.description, "--size", "1000",
                                               "--duration", "10", "--count", "5000"])
        #expect(client.waitForExit(timeout: .seconds(30)) == 0)
        #expect(client.text.contains("sent 5000, replies 5000 intact, 0 corrupt"), "\(client.text)")
        #expect(server.stop() == 0)
        #expect(server.text.contains("frames: all returned to their pools"), "\(server.text)")
    }

    @Test func uringOnlyOptionsAreRefusedElsewhere() throws {
        let server = try ChildProcess(sluice: ["udp-echo", "--backend", "socket", "--sqpoll", "--listen", "127.0.0.1:0"])
        #expect(server.waitForExit() != 0)
        #expect(server.text.contains("--sqpoll and --defer-taskrun are for --backend uring"), "\(server.text)")
    }

    /// A sandbox that refuses io_uring (seccomp, as container runtimes do): `udp-echo` and
    /// `tcp-echo --backend uring` each say so in one line naming the fix and exit; `--backend
    /// socket` in the same sandbox serves.
    @Test func aSandboxRefusingIOURingGetsOneLineAndTheSocketBackendStillServes() throws {
        let (refusals, socketServer) = try withIOURingDenied {
            let refusals = try [["udp-echo", "--backend", "uring"], ["tcp-echo", "--backend", "uring"]].map {
                let refused = try ChildProcess(sluice: $0 + ["--listen", "127.0.0.1:0"])
                _ = refused.waitForExit()
                return refused
            }
            return (refusals, try ChildProcess(sluice: ["udp-echo", "--backend", "socket", "--listen", "127.0.0.1:0",
                                                        "--stats-interval", "0", "--duration", "60"]))
        }
        for refused in refusals {
            #expect(refused.waitForExit() != 0)
            #expect(refused.text.split(separator: "\n").count == 1, "\(refused.text)")
            #expect(refused.text.contains("io_uring_setup") && refused.text.contains("errno 1"), "\(refused.text)")
            #expect(refused.text.contains("use --backend socket"), "\(refused.text)")
        }

        let line = try #require(socketServer.waitForLine(containing: "backend on"), "\(socketServer.text)")
        let endpoint = try #require(line.split(separator: " ").lazy.compactMap { IPEndpoint($0.filter { $0 != "," }) }.first)
        let client = KernelUDPSocket(bind: IPEndpoint("127.0.0.1:0")!)
        client.send([1, 2, 3], to: endpoint)
        #expect(client.receive()?.bytes == [1, 2, 3])
        #expect(socketServer.stop() == 0)
    }

    @Test func theRingItselfReportsTheRefusal() throws {
        let error = try withIOURingDenied { () -> SystemCallError? in
            do throws(SystemCallError) { _ = try URing(entries: 8); return nil } catch { return error }
        }
        let refusal = try #require(error)
        #expect(refusal.code == EPERM)
        #expect(refusal.description.contains("io_uring_setup"), "\(refusal)")
        #expect(refusal.hint.contains("io_uring is disabled here"), "\(refusal)")
        #expect(!refusal.hint.contains("--"), "the library names no command-line flags: \(refusal)")
    }
}
