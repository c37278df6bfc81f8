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
    typealias Namespace = TUNEchoTests.Namespace

    /// The kernel's address with its prefix, and the service's address behind it.
    static let families = [("198.18.1.1/24", "198.18.1.2"), ("2001:2:1::1/64", "2001:2:1::2")]

    static func bracketed(_ address: String) -> String { address.contains(":") ? "[\(address)]" : address }

    @Test(arguments: ["tun", "tap"], families)
    func datagramsFromEmptyTo65507BytesComeBackWhole(kind: String, family: (kernel: String, service: String)) throws {
        let namespace = try Namespace()
        let listen = "\(Self.bracketed(family.service)):9000"
        let server = try TUNEchoTests.startServer(namespace, device: "sl\(kind)0", kernel: family.kernel, listen: listen, kind: kind)
        let target = try #require(IPEndpoint(listen))
        let kernelAddress = try #require(IPAddress(family.kernel.split(separator: "/")[0]))
        let client = try withNetworkNamespace(namespace.name) { KernelUDPSocket(bind: IPEndpoint(address: kernelAddress, port: 0)) }
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
        let namespace = try Namespace()
        let server = try TUNEchoTests.startServer(namespace, device: "sl\(kind)1", kernel: family.kernel,
                                                  listen: "\(Self.bracketed(family.service)):9000", kind: kind)
        let six = family.service.contains(":") ? ["-6"] : []
        for size in ["56", "3000"] {
            let ping = try ChildProcess("/usr/sbin/ip", ["netns", "exec", namespace.name, "ping"] + six
                                        + ["-c", "3", "-i", "0.2", "-W", "2", "-s", size, family.service])
            #expect(ping.waitForExit(timeout: .seconds(15)) == 0, "\(ping.text)")
            #expect(ping.text.contains("3 received"), "\(ping.text)")
        }
        #expect(server.stop() == 0)
        #expect(server.text.contains("echo_replies=6"), "\(server.text)")
        #expect(server.text.contains("frames: all returned to their pools"), "\(server.text)")
    }

    @Test func twoQueuesShareTheFlows() throws {
        let namespace = try Namespace()
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
}
