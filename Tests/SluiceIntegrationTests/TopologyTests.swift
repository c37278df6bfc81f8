#if canImport(Glibc)
import Glibc
#endif
import Sluice
import SluiceTestSupport
import Testing

/// `TestTopology` and `sluice netns up/down`: two namespaces joined by a veth pair, as tests,
/// demos and benchmarks use them. Every test has its own suffix and removes what it made.
@Suite struct TopologyTests {
    /// A suffix unique to this process and test (at most 13 characters).
    static func suffix(_ tag: String) -> String { "t\(getpid() % 1_000_000)\(tag)" }

    /// The first of `candidates` that is executable.
    static func tool(_ candidates: [String]) -> String? { candidates.first { access($0, X_OK) == 0 } }

    static let ip = tool(["/usr/sbin/ip", "/sbin/ip", "/usr/bin/ip", "/bin/ip"]) ?? "ip"
    /// iputils-ping, unless SLUICE_TEST_NO_PING is set (to exercise the raw-socket fallback).
    static let ping = getenv("SLUICE_TEST_NO_PING") != nil
        ? nil : tool(["/usr/bin/ping", "/bin/ping", "/usr/sbin/ping", "/sbin/ping"])
    static let ethtool = tool(["/usr/sbin/ethtool", "/sbin/ethtool", "/usr/bin/ethtool"]) ?? "ethtool"

    /// Runs `ip arguments…` to its end; returns exit status and output.
    static func runIP(_ arguments: [String]) throws -> (status: Int32?, text: String) {
        let child = try ChildProcess(ip, arguments)
        let status = child.waitForExit(timeout: .seconds(20))
        return (status, child.text)
    }

    /// Whether one ICMP echo from `namespace` to `address` gets its reply within a second.
    ///
    /// With `ping` (iputils-ping) installed: `ip netns exec NS ping -c1 -W1 ADDRESS`; without it,
    /// the same echo over a raw ICMP socket opened inside the namespace.
    static func pings(from namespace: String, _ address: IPAddress) throws -> Bool {
        if let ping {
            return try runIP(["netns", "exec", namespace, ping, "-c1", "-W1", "\(address)"]).status == 0
        }
        return try TestTopology.run(inNamespace: namespace) { RawPing.echo(to: address) }
    }

    @Test(arguments: [true, false])
    func pingsBothWaysOverIPv4AndIPv6(staticNeighbours: Bool) throws {
        let topology = try TestTopology(.init(suffix: Self.suffix(staticNeighbours ? "ps" : "pd"),
                                              staticNeighbours: staticNeighbours))
        defer { topology.destroy() }
        let t = topology
        #expect(try Self.pings(from: t.clientNamespace, .v4(t.serverIPv4)))
        #expect(try Self.pings(from: t.serverNamespace, .v4(t.clientIPv4)))
        #expect(try Self.pings(from: t.clientNamespace, .v6(t.serverIPv6)))
        #expect(try Self.pings(from: t.serverNamespace, .v6(t.clientIPv6)))
        if staticNeighbours {
            // The check can fail: nobody answers for another address on the subnet.
            #expect(try !Self.pings(from: t.clientNamespace, .v4(IPv4Address(198, 18, 0, 99))))
        }
        // The neighbour entries carry the MACs the topology reports.
        let neighbours = try Self.runIP(["-n", t.clientNamespace, "neigh", "show", "dev", t.clientInterface]).text
        #expect(neighbours.contains("\(t.serverIPv4) lladdr \(t.serverMAC)"), "\(neighbours)")
        if staticNeighbours {
            #expect(neighbours.contains("PERMANENT"), "\(neighbours)")
        }
        #expect(t.serverMAC != t.clientMAC)
    }

    @Test(arguments: ["v4", "v6"])
    func udpDatagramCrossesBetweenSocketsMadeInTheNamespaces(family: String) throws {
        let topology = try TestTopology(.init(suffix: Self.suffix("u" + family)))
        defer { topology.destroy() }
        let t = topology
        let (serverAddress, clientAddress): (IPAddress, IPAddress) =
            family == "v4" ? (.v4(t.serverIPv4), .v4(t.clientIPv4)) : (.v6(t.serverIPv6), .v6(t.clientIPv6))
        let server = try TestTopology.run(inNamespace: t.serverNamespace) {
            Unchecked(KernelUDPSocket(bind: IPEndpoint(address: serverAddress, port: 0)))
        }.value
        let client = try TestTopology.run(inNamespace: t.clientNamespace) {
            Unchecked(KernelUDPSocket(bind: IPEndpoint(address: clientAddress, port: 0)))
        }.value
        // Used from this thread, which never left its own namespace.
        let request: [UInt8] = Array("ping over the veth pair".utf8)
        #expect(client.send(request, to: server.localEndpoint) == request.count)
        let received = try #require(server.receive(), "no datagram reached the server")
        #expect(received.bytes == request)
        #expect(received.from == client.localEndpoint)
        let reply: [UInt8] = Array(repeating: 0xA5, count: 1400)
        #expect(server.send(reply, to: received.from) == reply.count)
        let back = try #require(client.receive(), "no reply reached the client")
        #expect(back.bytes == reply)
        #expect(back.from == server.localEndpoint)
    }

    @Test func runEntersTheNamespaceOnlyOnItsOwnThread() throws {
        let topology = try TestTopology(.init(suffix: Self.suffix("r")))
        defer { topology.destroy() }
        let before = Self.networkNamespace()
        let inside = try TestTopology.run(inNamespace: topology.serverNamespace) { Self.networkNamespace() }
        #expect(inside != before)
        #expect(Self.networkNamespace() == before)
        struct Failure: Error, Equatable {}
        #expect(throws: Failure.self) { try TestTopology.run(inNamespace: topology.clientNamespace) { throw Failure() } }
        #expect(throws: TopologyError.self) { try TestTopology.run(inNamespace: "sluice-none-\(getpid())") { 1 } }
    }

    static func networkNamespace() -> String {
        var buffer = [CChar](repeating: 0, count: 256)
        let count = readlink("/proc/thread-self/ns/net", &buffer, buffer.count - 1)
        return count > 0 ? String(decoding: buffer[0..<count].map { UInt8(bitPattern: $0) }, as: UTF8.self) : ""
    }

    @Test func twoQueuesGiveTwoRXQueuesOnBothEnds() throws {
        let topology = try TestTopology(.init(suffix: Self.suffix("q"), queues: 2))
        defer { topology.destroy() }
        for (namespace, interface) in [(topology.serverNamespace, topology.serverInterface),
                                       (topology.clientNamespace, topology.clientInterface)] {
            let (status, text) = try Self.runIP(["netns", "exec", namespace, "/bin/ls", "/sys/class/net/\(interface)/queues"])
            #expect(status == 0, "\(text)")
            let queues = Set(text.split(whereSeparator: \.isWhitespace).map(String.init))
            #expect(queues == ["rx-0", "rx-1", "tx-0", "tx-1"], "\(text)")
            let details = try Self.runIP(["-n", namespace, "-d", "link", "show", "dev", interface]).text
            #expect(details.contains("numtxqueues 2 numrxqueues 2"), "\(details)")
        }
    }

    @Test func senderTransmitChecksumOffloadIsOffUnlessAskedToKeepIt() throws {
        for disable in [true, false] {
            let topology = try TestTopology(.init(suffix: Self.suffix(disable ? "co" : "cn"),
                                                  disableSenderChecksumOffload: disable))
            defer { topology.destroy() }
            let (status, text) = try Self.runIP(["netns", "exec", topology.clientNamespace, Self.ethtool, "-k",
                                                 topology.clientInterface])
            #expect(status == 0, "\(text)")
            #expect(text.contains(disable ? "tx-checksumming: off" : "tx-checksumming: on"), "\(text)")
            // The server end is left as veth makes it.
            let server = try Self.runIP(["netns", "exec", topology.serverNamespace, Self.ethtool, "-k",
                                         topology.serverInterface]).text
            #expect(server.contains("tx-checksumming: on"), "\(server)")
        }
    }

    @Test func destroyRemovesEverythingAndIsIdempotent() throws {
        let suffix = Self.suffix("d")
        let topology = try TestTopology(.init(suffix: suffix))
        defer { topology.destroy() }
        #expect(TestTopology.exists(suffix: suffix))
        let listed = try Self.runIP(["netns", "list"]).text
        #expect(listed.contains(topology.serverNamespace) && listed.contains(topology.clientNamespace), "\(listed)")
        topology.destroy()
        topology.destroy()
        #expect(!TestTopology.exists(suffix: suffix))
        let after = try Self.runIP(["netns", "list"]).text
        #expect(!after.contains(topology.serverNamespace) && !after.contains(topology.clientNamespace), "\(after)")
        // No veth end was left behind in this namespace either.
        #expect(access("/sys/class/net/\(topology.serverInterface)", F_OK) != 0)
        #expect(access("/sys/class/net/\(topology.clientInterface)", F_OK) != 0)
    }

    @Test func deinitDestroysUnlessKept() throws {
        let dropped = Self.suffix("x")
        do { _ = try TestTopology(.init(suffix: dropped)) }
        #expect(!TestTopology.exists(suffix: dropped))

        let kept = Self.suffix("k")
        defer { TestTopology.destroy(suffix: kept) }
        do { try TestTopology(.init(suffix: kept)).keep() }
        #expect(TestTopology.exists(suffix: kept))
        // Making it again over the leftover works (the leftover is removed first).
        let again = try TestTopology(.init(suffix: kept))
        #expect(try Self.pings(from: again.clientNamespace, .v4(again.serverIPv4)))
        again.destroy()
        #expect(!TestTopology.exists(suffix: kept))
    }

    @Test func badConfigurationsAreRefusedWithAReason() {
        for suffix in ["", "fourteen-chars", "a/b", "a b"] {
            #expect {
                _ = try TestTopology(.init(suffix: suffix))
            } throws: { error in
                "\(error)".contains("13 letters, digits")
            }
        }
        #expect {
            _ = try TestTopology(.init(suffix: Self.suffix("z"), queues: 0))
        } throws: { error in
            "\(error)".contains("queues")
        }
        #expect(!TestTopology.exists(suffix: Self.suffix("z")))
    }

    @Test func cliUpAndDownRoundTrip() throws {
        let suffix = Self.suffix("cli")
        defer { TestTopology.destroy(suffix: suffix) }
        let up = try ChildProcess(sluice: ["netns", "up", "--suffix", suffix, "--queues", "2"])
        #expect(up.waitForExit(timeout: .seconds(30)) == 0, "\(up.text)")
        let text = up.text
        for expected in ["sluice-s\(suffix)", "sluice-c\(suffix)", "ss\(suffix)", "sc\(suffix)", "198.18.0.1/24",
                         "198.18.0.2/24", "2001:2::1/64", "2001:2::2/64", "MAC ", "sluice netns down --suffix \(suffix)"] {
            #expect(text.contains(expected), "missing '\(expected)' in: \(text)")
        }
        // It outlived the command, and works.
        #expect(TestTopology.exists(suffix: suffix))
        #expect(try Self.pings(from: "sluice-c\(suffix)", .v4(IPv4Address(198, 18, 0, 1))))
        #expect(try Self.pings(from: "sluice-s\(suffix)", .v6(IPv6Address("2001:2::2")!)))
        let details = try Self.runIP(["-n", "sluice-s\(suffix)", "-d", "link", "show", "dev", "ss\(suffix)"]).text
        #expect(details.contains("numrxqueues 2"), "\(details)")

        let down = try ChildProcess(sluice: ["netns", "down", "--suffix", suffix])
        #expect(down.waitForExit(timeout: .seconds(30)) == 0, "\(down.text)")
        #expect(down.text.contains("removed"), "\(down.text)")
        #expect(!TestTopology.exists(suffix: suffix))
        let listed = try Self.runIP(["netns", "list"]).text
        #expect(!listed.contains("sluice-s\(suffix)") && !listed.contains("sluice-c\(suffix)"), "\(listed)")

        // A second down has nothing to do and says so.
        let again = try ChildProcess(sluice: ["netns", "down", "--suffix", suffix])
        #expect(again.waitForExit(timeout: .seconds(30)) == 0, "\(again.text)")
        #expect(again.text.contains("nothing to remove"), "\(again.text)")

        // A bad suffix is refused with the reason and a failing status.
        let bad = try ChildProcess(sluice: ["netns", "up", "--suffix", "much-too-long-suffix"])
        #expect(bad.waitForExit(timeout: .seconds(30)) != 0)
        #expect(bad.text.contains("13 letters"), "\(bad.text)")
    }
}

/// Carries a value that is not `Sendable` (a socket made in a namespace) out of
/// `TestTopology.run(inNamespace:)`; the value is used by one thread at a time.
struct Unchecked<Value>: @unchecked Sendable {
    let value: Value
    init(_ value: Value) { self.value = value }
}

/// One ICMP echo over a raw socket, for machines without `ping`.
enum RawPing {
    /// Sends an echo request to `address` and waits up to a second for its reply.
    static func echo(to address: IPAddress) -> Bool {
        let isV4: Bool
        if case .v4 = address { isV4 = true } else { isV4 = false }
        let fd = socket(isV4 ? AF_INET : AF_INET6, Int32(SOCK_RAW.rawValue), Int32(isV4 ? IPPROTO_ICMP : IPPROTO_ICMPV6))
        guard fd >= 0 else { return false }
        defer { close(fd) }
        var timeout = timeval(tv_sec: 1, tv_usec: 0)
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, socklen_t(MemoryLayout<timeval>.size))
        let identifier = UInt16(truncatingIfNeeded: getpid())
        // type, code, checksum, identifier, sequence 1, payload
        var message: [UInt8] = [isV4 ? 8 : 128, 0, 0, 0, UInt8(identifier >> 8), UInt8(identifier & 0xFF), 0, 1]
            + Array("sluice".utf8)
        if isV4 {
            // The kernel fills the ICMPv6 checksum itself; ICMPv4's is ours.
            var sum: UInt32 = 0
            for i in stride(from: 0, to: message.count, by: 2) {
                sum += UInt32(message[i]) << 8 | (i + 1 < message.count ? UInt32(message[i + 1]) : 0)
            }
            while sum >> 16 != 0 { sum = (sum & 0xFFFF) + (sum >> 16) }
            let checksum = ~UInt16(sum)
            message[2] = UInt8(checksum >> 8)
            message[3] = UInt8(checksum & 0xFF)
        }
        var storage = sockaddr_storage()
        let length: Int = withUnsafeMutableBytes(of: &storage) { raw in
            switch address {
            case .v4(let a):
                raw.storeBytes(of: sa_family_t(AF_INET), as: sa_family_t.self)
                a.store(networkBytesAt: raw.baseAddress! + 4)
                return MemoryLayout<sockaddr_in>.size
            case .v6(let a):
                raw.storeBytes(of: sa_family_t(AF_INET6), as: sa_family_t.self)
                a.store(networkBytesAt: raw.baseAddress! + 8)
                return MemoryLayout<sockaddr_in6>.size
            }
        }
        let sent = withUnsafePointer(to: &storage) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { to in
                message.withUnsafeBytes { sendto(fd, $0.baseAddress, $0.count, 0, to, socklen_t(length)) }
            }
        }
        guard sent == message.count else { return false }
        var buffer = [UInt8](repeating: 0, count: 2048)
        for _ in 0..<16 {
            let count = buffer.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
            guard count > 0 else { return false }
            // Raw IPv4 sockets deliver the IP header too; IPv6 ones do not.
            let start = isV4 ? Int(buffer[0] & 0x0F) * 4 : 0
            guard count >= start + 8 else { continue }
            let reply = isV4 ? 0 : 129
            if buffer[start] == reply, buffer[start + 4] == UInt8(identifier >> 8),
               buffer[start + 5] == UInt8(identifier & 0xFF) {
                return true
            }
        }
        return false
    }
}
