#if canImport(Glibc)
import Glibc
#endif
import SluiceTestSupport
import Testing

/// `sluice dns query` against servers that misbehave on purpose (a Python server in a namespace
/// of the test's own) and against addresses that cannot be reached: how long it takes, what it
/// prints, what it says.
@Suite(.serialized) struct DNSQueryCommandTests {
    /// Answers on UDP and TCP port 5353 of every address, as `mode` says: `stray` (NOERROR with
    /// an A record of another name), `drip` (TC over UDP, then the TCP reply a byte a second),
    /// `otherID` (TC over UDP, then a TCP reply with another ID), `plain` (the A record asked for).
    static let server = #"""
        import socket, struct, sys, threading, time
        mode = sys.argv[1]
        def reply(query, tc=False, other=False, stray=False):
            qid, = struct.unpack("!H", query[:2])
            end = 12
            while query[end]: end += query[end] + 1
            question = query[12:end + 5]
            rdata = bytes([198, 18, 6, 6])
            owner = b"\x04evil\x04test\x00" if stray else b"\xc0\x0c"
            answer = b"" if tc else owner + struct.pack("!HHIH", 1, 1, 60, 4) + rdata
            flags = 0x8180 | (0x0200 if tc else 0)
            return struct.pack("!HHHHHH", (qid + 1) & 0xFFFF if other else qid, flags, 1, 0 if tc else 1, 0, 0) + question + answer
        udp = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
        udp.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
        udp.bind(("::", 5353))
        tcp = socket.socket(socket.AF_INET6, socket.SOCK_STREAM)
        tcp.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
        tcp.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        tcp.bind(("::", 5353)); tcp.listen(8)
        def serve_tcp():
            while True:
                connection, _ = tcp.accept()
                length, = struct.unpack("!H", connection.recv(2))
                query = connection.recv(length)
                answer = reply(query, other=(mode == "otherID"))
                framed = struct.pack("!H", len(answer)) + answer
                if mode == "drip":
                    for byte in framed:
                        connection.send(bytes([byte])); time.sleep(1)
                else:
                    connection.send(framed)
                connection.close()
        threading.Thread(target=serve_tcp, daemon=True).start()
        print("ready", flush=True)
        while True:
            query, peer = udp.recvfrom(4096)
            udp.sendto(reply(query, tc=mode in ("drip", "otherID"), stray=(mode == "stray")), peer)
        """#

    /// Runs the server in `mode` in `namespace`, for the life of the returned process.
    static func misbehaving(_ mode: String, in namespace: ScratchNamespace) throws -> ChildProcess {
        let path = "/tmp/sluice-dns-server-\(getpid()).py"
        try server.write(toFile: path, atomically: true, encoding: .utf8)
        let process = try ChildProcess("/usr/sbin/ip", ["netns", "exec", namespace.name, "/usr/bin/python3", path, mode])
        _ = process.waitForLine(containing: "ready")
        unlink(path)
        return process
    }

    /// Runs `sluice dns query` in `namespace`; returns its status, what it printed, and the seconds it took.
    static func query(_ arguments: [String], in namespace: ScratchNamespace) throws -> (status: Int32?, text: String, seconds: Double) {
        let clock = ContinuousClock()
        let started = clock.now
        let process = try ChildProcess(sluice: ["dns", "query", "--netns", namespace.name] + arguments)
        let status = process.waitForExit(timeout: .seconds(30))
        let elapsed = clock.now - started
        return (status, process.text, Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) / 1e18)
    }

    @Test func aReplyOverTCPADripAtATimeEndsWithinTheTimeout() throws {
        let namespace = try ScratchNamespace(prefix: "sldnq")
        let server = try Self.misbehaving("drip", in: namespace)
        // Two attempts of 2 s over UDP, each truncated, then TCP given twice that: not the
        // minute the reply would take a byte a second.
        let run = try Self.query(["@127.0.0.1:5353", "www.bank.test"], in: namespace)
        server.stop(signal: SIGKILL)
        #expect(run.status == 2 && run.seconds < 15, "\(run)")
        #expect(run.text.contains("the reply over TCP from 127.0.0.1:5353 was not whole within 4.0 seconds after a truncated answer over UDP"),
                "\(run.text)")
    }

    @Test func aReplyOverTCPToAnotherQueryIsSaidAtOnce() throws {
        let namespace = try ScratchNamespace(prefix: "sldnq")
        let server = try Self.misbehaving("otherID", in: namespace)
        let run = try Self.query(["@127.0.0.1:5353", "www.bank.test"], in: namespace)
        server.stop(signal: SIGKILL)
        #expect(run.status == 2 && run.seconds < 2, "\(run)")
        #expect(run.text.contains("answered another query (its ID or question differ)"), "\(run.text)")
    }

    @Test func anAnswerForAnotherNameIsNotPrinted() throws {
        let namespace = try ScratchNamespace(prefix: "sldnq")
        let server = try Self.misbehaving("stray", in: namespace)
        let short = try Self.query(["@127.0.0.1:5353", "www.bank.test"], in: namespace)
        let full = try Self.query(["@127.0.0.1:5353", "www.bank.test", "--full"], in: namespace)
        server.stop(signal: SIGKILL)
        #expect(short.status == 0 && short.text.isEmpty, "\(short.text)")
        #expect(full.text.contains("evil.test.") && full.text.contains("198.18.6.6"), "the full answer shows it: \(full.text)")
    }

    /// As dig and kdig read them: ANY is a type, an empty name is no name, nor is one IDNA2008 refuses.
    @Test func namesAndTypesAreReadAsDigReadsThem() throws {
        let namespace = try ScratchNamespace(prefix: "sldnq")
        let server = try Self.misbehaving("plain", in: namespace)
        let any = try Self.query(["@127.0.0.1:5353", "www.bank.test", "ANY"], in: namespace)
        let empty = try Self.query(["@127.0.0.1:5353", ""], in: namespace)
        let snowman = try Self.query(["@127.0.0.1:5353", "☃.bank.test"], in: namespace)
        server.stop(signal: SIGKILL)
        #expect(any.status == 0 && any.text == "198.18.6.6\n", "\(any)")
        #expect(empty.status == 64 && empty.text.contains("'' is not a domain name"), "\(empty)")
        // A mistake in the command line, as the empty name is.
        #expect(snowman.status == 64 && snowman.text.contains("☃.bank.test is not a domain name"), "\(snowman)")
    }

    /// No route: said at once with the kernel's reason, not after the timeout as silence.
    @Test func aServerWithNoRouteIsSaidAtOnce() throws {
        let namespace = try ScratchNamespace(prefix: "sldnq")
        for server in ["@198.18.0.1", "@2001:2::1"] {
            let run = try Self.query([server, "www.bank.test"], in: namespace)
            #expect(run.status == 2 && run.seconds < 2, "\(server): \(run)")
            #expect(run.text.contains("Network is unreachable"), "\(server): \(run.text)")
        }
    }

    /// A link-local server with its zone, as resolv.conf and dig take it; a zone naming no
    /// interface is said as such.
    @Test func aLinkLocalServerIsAskedOnItsInterface() throws {
        let namespace = try ScratchNamespace(prefix: "sldnq")
        let setup = try ChildProcess("/bin/sh", ["-c", "ip -n \(namespace.name) link add sldq0 type veth peer name sldq1 && ip -n \(namespace.name) link set sldq0 up"
                                                 + " && ip -n \(namespace.name) link set sldq1 up"
                                                 + " && ip -n \(namespace.name) addr add fe80::53/64 dev sldq0 nodad && echo UP"])
        _ = setup.waitForExit()
        try #require(setup.text.contains("UP"), "\(setup.text)")
        let server = try Self.misbehaving("plain", in: namespace)
        let scoped = try Self.query(["@fe80::53%sldq0", "-p", "5353", "www.bank.test"], in: namespace)
        let bracketed = try Self.query(["@[fe80::53%sldq0]:5353", "www.bank.test"], in: namespace)
        let nowhere = try Self.query(["@fe80::53%nosuch0", "-p", "5353", "www.bank.test"], in: namespace)
        server.stop(signal: SIGKILL)
        #expect(scoped.status == 0 && scoped.text == "198.18.6.6\n", "\(scoped)")
        #expect(bracketed.status == 0 && bracketed.text == "198.18.6.6\n", "\(bracketed)")
        #expect(nowhere.status == 2 && nowhere.text.contains("no interface nosuch0"), "\(nowhere)")
    }
}
