#if canImport(Glibc)
import Glibc
#endif
import Sluice
import SluiceTestSupport
import Testing

/// The host in front of the service over real TUN and TAP devices, with the kernel as the peer:
/// ARP and neighbour discovery answered (TAP), pings answered, datagrams of any size reassembled
/// and their replies fragmented, flows shared between queues.
@Suite(.serialized) struct HostOverDeviceTests {
    /// The kernel's address with its prefix, and the service's address behind it.
    static let families = [("198.18.1.1/24", "198.18.1.2"), ("2001:2:1::1/64", "2001:2:1::2")]

    static func bracketed(_ address: String) -> String { address.contains(":") ? "[\(address)]" : address }

    /// A namespace with `device` of `kind` in it, the echo service behind it on port 9000, and a
    /// kernel UDP socket on the kernel's side.
    static func serve(kind: String, family: (kernel: String, service: String), device: String) throws
        -> (ScratchNamespace, ChildProcess, IPEndpoint, KernelUDPSocket) {
        let namespace = try ScratchNamespace(prefix: "sltun")
        let listen = "\(bracketed(family.service)):9000"
        let server = try TUNEchoTests.startServer(namespace, device: device, kernel: family.kernel, listen: listen, kind: kind)
        let target = try #require(IPEndpoint(listen))
        let kernelAddress = try #require(IPAddress(family.kernel.split(separator: "/")[0]))
        let client = try withNetworkNamespace(namespace.name) { KernelUDPSocket(bind: IPEndpoint(address: kernelAddress, port: 0)) }
        return (namespace, server, target, client)
    }

    @Test(arguments: ["tun", "tap"], families)
    func datagramsFromEmptyTo65507BytesComeBackWhole(kind: String, family: (kernel: String, service: String)) throws {
        let (namespace, server, target, client) = try Self.serve(kind: kind, family: family, device: "sl\(kind)0")
        defer { withExtendedLifetime(namespace) {} }
        var random = TestBytes(seed: 17)
        let rounds = 60
        var echoed = 0
        for round in 0..<rounds {
            // Both ends, the MTU's edge, then a mix of single packets and fragmented datagrams.
            let fixed = [0, 65507, 1472, 1473, 1452, 1453]
            let size = round < fixed.count ? fixed[round]
                : round % 2 == 0 ? Int(random.next() % 1400) : Int(random.next() % 65508)
            let payload = random.bytes(size)
            client.send(payload, to: target)
            let reply = client.receive()
            #expect(reply?.bytes == payload && reply?.from == target, "round \(round), \(size) bytes")
            if reply?.bytes != payload { break }
            echoed += 1
        }
        #expect(echoed == rounds)
        #expect(server.stop() == 0)
        let text = server.text
        #expect(text.contains("sent"), "\(text)")
        #expect(text.contains("reassembled="), "\(text)")
        #expect(text.contains("fragmented_replies="), "\(text)")
        if kind == "tap" {
            #expect(text.contains(family.service.contains(":") ? "neighbor_advertisements=" : "arp_replies="), "\(text)")
        }
        #expect(text.contains("frames: all returned to their pools"), "\(text)")
    }

    @Test(arguments: ["tun", "tap"], families)
    func pingIsAnswered(kind: String, family: (kernel: String, service: String)) throws {
        let namespace = try ScratchNamespace(prefix: "sltun")
        let server = try TUNEchoTests.startServer(namespace, device: "sl\(kind)1", kernel: family.kernel,
                                                  listen: "\(Self.bracketed(family.service)):9000", kind: kind)
        let six = family.service.contains(":") ? ["-6"] : []
        for size in ["56", "3000"] {
            let ping = try ChildProcess("/usr/sbin/ip", ["netns", "exec", namespace.name, "ping"] + six
                                        + ["-c", "3", "-i", "0.2", "-W", "2", "-s", size, family.service])
            #expect(ping.waitForExit(timeout: .seconds(15)) == 0, "\(ping.text)")
            #expect(ping.text.contains("3 received"), "\(ping.text)")
        }
        if kind == "tap" {
            // The host's MAC comes from its whole address: an IPv6 one's last bytes alone (::2)
            // would give the servers of two prefixes on one link the same (02:73:00:00:00:02).
            let neighbours = try ChildProcess("/usr/sbin/ip", ["-n", namespace.name, "neigh", "show", family.service])
            _ = neighbours.waitForExit()
            #expect(neighbours.text.contains("lladdr 02:73:") && !neighbours.text.contains("02:73:00:00:00:02"), "\(neighbours.text)")
        }
        #expect(server.stop() == 0)
        #expect(server.text.contains("echo_replies=6"), "\(server.text)")
        #expect(server.text.contains("frames: all returned to their pools"), "\(server.text)")
    }

    @Test func twoQueuesShareTheFlows() throws {
        let namespace = try ScratchNamespace(prefix: "sltun")
        let server = try TUNEchoTests.startServer(namespace, device: "sltun3", kernel: "198.18.1.1/24",
                                                  listen: "198.18.1.2:9000", workers: 2)
        let target = try #require(IPEndpoint("198.18.1.2:9000"))
        let clients = try withNetworkNamespace(namespace.name) {
            (0..<32).map { _ in KernelUDPSocket(bind: IPEndpoint(address: .v4(IPv4Address(198, 18, 1, 1)), port: 0)) }
        }
        var echoed = 0
        for round in 0..<4 {
            for (index, client) in clients.enumerated() {
                let payload = Array("flow \(index) round \(round)".utf8)
                client.send(payload, to: target)
                if client.receive()?.bytes == payload { echoed += 1 }
            }
        }
        #expect(echoed == 128)
        #expect(server.stop() == 0)
        let text = server.text
        let line = try #require(text.split(separator: "\n").first { $0.contains("per worker:") }, "\(text)")
        // Both queues took part: neither worker's count is zero.
        #expect(!line.contains("received 0 "), "\(line)")
        #expect(text.contains("frames: all returned to their pools"), "\(text)")
    }

    @Test(arguments: ["tun", "tap"], families)
    func aUDPSegmentSendArrivesAsOneSuperPacketAndLeavesAsOne(kind: String, family: (kernel: String, service: String)) throws {
        let (namespace, server, target, client) = try Self.serve(kind: kind, family: family, device: "sl\(kind)5")
        defer { withExtendedLifetime(namespace) {} }
        var random = TestBytes(seed: 5)
        let segment = 1400
        let payload = random.bytes(64_000)
        #expect(client.send(payload, to: target, segmentSize: segment) == payload.count)
        var echoed: [UInt8] = []
        var replies = 0
        while echoed.count < payload.count, let reply = client.receive() {
            #expect(reply.bytes.count <= segment)
            echoed += reply.bytes
            replies += 1
        }
        #expect(echoed == payload)
        #expect(replies == (payload.count + segment - 1) / segment)
        #expect(server.stop() == 0)
        let text = server.text
        #expect(text.contains("offload: \(replies) datagrams arrived coalesced"), "\(text)")
        #expect(text.contains("\(replies) left segmented"), "\(text)")
        #expect(text.contains("frames: all returned to their pools"), "\(text)")
    }

    @Test(arguments: ["tun", "tap"], families)
    func aDatagramToAnotherPortGetsPortUnreachable(kind: String, family: (kernel: String, service: String)) throws {
        let (namespace, server, target, client) = try Self.serve(kind: kind, family: family, device: "sl\(kind)7")
        defer { withExtendedLifetime(namespace) {} }
        let closed = IPEndpoint(address: target.address, port: 9001)
        #expect(client.connect(to: closed) == 0)
        client.send([1, 2, 3], to: closed)
        #expect(client.receive() == nil)
        #expect(client.lastReceiveError == ECONNREFUSED, "errno \(client.lastReceiveError)")
        #expect(server.stop() == 0)
        #expect(server.text.contains("port_unreachable_sent=1"), "\(server.text)")
        #expect(!server.text.contains("received 1 datagrams"), "the service saw none: \(server.text)")
    }

    /// The host bounds its ICMP errors as the kernel of its namespace is set to: with
    /// `icmp_ratelimit` 0 every datagram to a closed port gets its port unreachable (six, the
    /// default burst, before).
    @Test(arguments: families)
    func portUnreachablesFollowTheNamespacesRateLimit(family: (kernel: String, service: String)) throws {
        let namespace = try ScratchNamespace(prefix: "sltun")
        let setting = family.service.contains(":") ? "net.ipv6.icmp.ratelimit=0" : "net.ipv4.icmp_ratelimit=0"
        #expect(try ChildProcess("/usr/sbin/ip", ["netns", "exec", namespace.name, "sysctl", "-qw", setting]).waitForExit() == 0)
        let listen = "\(Self.bracketed(family.service)):9000"
        let server = try TUNEchoTests.startServer(namespace, device: "sltun8", kernel: family.kernel, listen: listen, kind: "tun")
        let closed = try #require(IPEndpoint("\(Self.bracketed(family.service)):9001"))
        let kernelAddress = try #require(IPAddress(family.kernel.split(separator: "/")[0]))
        let client = try withNetworkNamespace(namespace.name) { KernelUDPSocket(bind: IPEndpoint(address: kernelAddress, port: 0)) }
        for _ in 0..<20 { client.send([1, 2, 3], to: closed) }
        usleep(200_000)
        #expect(server.stop() == 0)
        #expect(server.text.contains("port_unreachable_sent=20"), "\(server.text)")
    }

    /// TCP to the service's address is refused at once, by a reset, as a host with no listener
    /// refuses it; a packet of a protocol the host does not carry gets ICMP protocol unreachable
    /// (ICMPv6 parameter problem, unrecognized next header), which the kernel's raw ICMP socket sees.
    @Test(arguments: ["tun", "tap"], families)
    func tcpAndOtherProtocolsAreRefused(kind: String, family: (kernel: String, service: String)) throws {
        let (namespace, server, target, _) = try Self.serve(kind: kind, family: family, device: "sl\(kind)8")
        defer { withExtendedLifetime(namespace) {} }
        let isIPv6 = family.service.contains(":")
        let (refusal, icmp) = try withNetworkNamespace(namespace.name) { () throws -> (Int32, (UInt8, UInt8)?) in
            var refusal: Int32 = 0
            do { _ = try KernelTCPSocket(connectingTo: IPEndpoint(address: target.address, port: 80), timeout: 3) } catch let error as KernelSocketError { refusal = error.errno }
            let listener = socket(isIPv6 ? AF_INET6 : AF_INET, Int32(SOCK_RAW.rawValue), isIPv6 ? Int32(IPPROTO_ICMPV6) : Int32(IPPROTO_ICMP))
            let sender = socket(isIPv6 ? AF_INET6 : AF_INET, Int32(SOCK_RAW.rawValue), 253)
            defer { close(listener); close(sender) }
            var limit = timeval(tv_sec: 2, tv_usec: 0)
            setsockopt(listener, SOL_SOCKET, SO_RCVTIMEO, &limit, socklen_t(MemoryLayout<timeval>.size))
            let payload: [UInt8] = [1, 2, 3, 4]
            _ = KernelSocketAddress.with(IPEndpoint(address: target.address, port: 0), family: target.address.family) { address, length in
                payload.withUnsafeBytes { sendto(sender, $0.baseAddress, $0.count, 0, address, length) }
            }
            var buffer = [UInt8](repeating: 0, count: 2048)
            while true {
                let count = buffer.withUnsafeMutableBytes { recv(listener, $0.baseAddress, $0.count, 0) }
                guard count > 0 else { return (refusal, nil) }
                // A raw IPv4 socket reads the IP header too; an ICMPv6 one does not.
                let start = isIPv6 ? 0 : Int(buffer[0] & 0x0F) * 4
                let (type, code) = (buffer[start], buffer[start + 1])
                if isIPv6 ? type == 4 : type == 3 { return (refusal, (type, code)) }
            }
        }
        #expect(refusal == ECONNREFUSED, "errno \(refusal)")
        #expect(icmp.map { isIPv6 ? $0 == (4, 1) : $0 == (3, 2) } == true, "\(String(describing: icmp))")
        #expect(server.stop() == 0)
        #expect(server.text.contains("tcp_resets_sent=1"), "\(server.text)")
        #expect(server.text.contains("protocol_unreachable_sent=1"), "\(server.text)")
    }

    /// An IPv4 packet of protocol 17 from `source` to 198.18.1.2, with the fields given.
    static func ipv4(source: UInt8, identification: UInt16, offset: Int, more: Bool, payload: Int,
                     totalLength: Int? = nil, headerWords: UInt8 = 5) -> [UInt8] {
        var packet: [UInt8] = [0x40 | headerWords, 0, 0, 0, UInt8(identification >> 8), UInt8(identification & 0xFF),
                               0, 0, 64, 17, 0, 0, 198, 18, 1, source, 198, 18, 1, 2]
        let total = totalLength ?? 20 + payload
        packet[2] = UInt8(total >> 8); packet[3] = UInt8(total & 0xFF)
        let field = (more ? 0x2000 : 0) | offset / 8
        packet[6] = UInt8(field >> 8); packet[7] = UInt8(field & 0xFF)
        let checksum = packet.withUnsafeBytes { InternetChecksum.checksum($0) }
        packet[10] = UInt8(checksum >> 8); packet[11] = UInt8(checksum & 0xFF)
        return packet + [UInt8](repeating: 0x5A, count: payload)
    }

    @Test func craftedBadInputIsCountedAndDroppedAndTheServiceGoesOn() throws {
        let namespace = try ScratchNamespace(prefix: "sltun")
        let server = try TUNEchoTests.startServer(namespace, device: "sltun6", kernel: "198.18.1.1/24", listen: "198.18.1.2:9000")
        let target = try #require(IPEndpoint("198.18.1.2:9000"))
        let (injector, client) = try withNetworkNamespace(namespace.name) {
            (try PacketSocket(interface: "sltun6"), KernelUDPSocket(bind: IPEndpoint(address: .v4(IPv4Address(198, 18, 1, 1)), port: 0)))
        }
        // Overlapping fragments: the datagram is thrown away (RFC 5722).
        injector.send(Self.ipv4(source: 1, identification: 1, offset: 0, more: true, payload: 1480))
        injector.send(Self.ipv4(source: 1, identification: 1, offset: 8, more: true, payload: 1480))
        // Lengths that lie: past the packet, a header shorter than 20 bytes, a stub.
        injector.send(Self.ipv4(source: 1, identification: 2, offset: 0, more: true, payload: 100, totalLength: 2000))
        injector.send(Self.ipv4(source: 1, identification: 3, offset: 0, more: true, payload: 100, headerWords: 4))
        injector.send([0x45, 0, 0])
        // A flood of first fragments that never finish, from a few sources.
        for id in 0..<2000 {
            injector.send(Self.ipv4(source: UInt8(10 + id % 4), identification: UInt16(100 + id), offset: 0, more: true, payload: 512))
            if id % 200 == 199 { usleep(2000) }
        }
        // The service still answers, whole and fragmented datagrams alike.
        var random = TestBytes(seed: 6)
        // The device's queue (500 packets) may still be full of the flood, and drops what comes
        // on top: a datagram lost there is sent again, as a client would.
        usleep(200_000)
        for size in [10, 5000, 30000] {
            let payload = random.bytes(size)
            var reply: [UInt8]?
            for _ in 0..<3 where reply != payload {
                client.send(payload, to: target)
                reply = client.receive()?.bytes
            }
            #expect(reply == payload, "\(size) bytes after the flood")
        }
        #expect(server.stop() == 0)
        let text = server.text
        #expect(text.contains("fragment_overlaps=1"), "\(text)")
        #expect(text.contains("reassembly_evictions="), "\(text)")
        // The drops line counts the host's drops, as the metrics and the JSON summary do.
        let drops = text.split(separator: "\n").first { $0.contains("drops: ") } ?? ""
        #expect(drops.contains("fragment_overlaps=1") && drops.contains("reassembly_evictions="), "\(text)")
        #expect(text.contains("host_malformed=") || text.contains("fragment_malformed="), "\(text)")
        #expect(text.contains("frames: all returned to their pools"), "\(text)")
    }
}
