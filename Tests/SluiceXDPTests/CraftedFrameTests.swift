#if canImport(Glibc)
import Glibc
#endif
import Sluice
import SluiceTestSupport
import Testing

/// Frames crafted byte by byte and sent with AF_PACKET from the peer namespace, each to the xdp
/// backend and to the socket backend (the kernel's own verdict): both must answer the same
/// frames and drop the same frames.
@Suite(.serialized) struct CraftedFrameTests {
    /// One crafted request, and what the kernel is known to do with it (`nil`: compared only).
    struct Case: CustomStringConvertible {
        var description: String
        var isIPv6: Bool
        var frame: [UInt8]
        var payload: [UInt8]
        var echoed: Bool?
    }

    static let serverPort: UInt16 = 7000
    static let clientPort: UInt16 = 5555

    static func bytes(_ count: Int, _ store: (UnsafeMutableRawPointer) -> Void) -> [UInt8] {
        var out = [UInt8](repeating: 0, count: count)
        out.withUnsafeMutableBytes { store($0.baseAddress!) }
        return out
    }

    static func cases(_ topology: TestTopology) -> [Case] {
        let serverMAC = bytes(6) { topology.serverMAC.store(networkBytesAt: $0) }
        let clientMAC = bytes(6) { topology.clientMAC.store(networkBytesAt: $0) }
        let server4 = bytes(4) { topology.serverIPv4.store(networkBytesAt: $0) }
        let client4 = bytes(4) { topology.clientIPv4.store(networkBytesAt: $0) }
        let server6 = bytes(16) { topology.serverIPv6.store(networkBytesAt: $0) }
        let client6 = bytes(16) { topology.clientIPv6.store(networkBytesAt: $0) }
        var all: [Case] = []
        func add(_ name: String, ipv6: Bool = false, echoed: Bool?, destinationMAC: [UInt8]? = nil, vlan: UInt16? = nil,
                 source: [UInt8]? = nil, destination: [UInt8]? = nil, sourcePort: UInt16 = clientPort,
                 ipv4Options: [UInt8] = [], ipv6ExtensionHeaders: [(kind: UInt8, body: [UInt8])] = [],
                 udpChecksum: UInt16? = nil, edit: (_ frame: inout [UInt8], _ udpOffset: Int) -> Void = { _, _ in }) {
            let payload = Array("crafted \(all.count): \(name)".utf8)
            var frame = Reference.frame(
                vlan: vlan, sourceMAC: clientMAC, destinationMAC: destinationMAC ?? serverMAC,
                source: source ?? (ipv6 ? client6 : client4), destination: destination ?? (ipv6 ? server6 : server4),
                sourcePort: sourcePort, destinationPort: serverPort, payload: payload, ipv4Options: ipv4Options,
                ipv6ExtensionHeaders: ipv6ExtensionHeaders, udpChecksum: udpChecksum)
            edit(&frame, frame.count - payload.count - 8)
            all.append(Case(description: "\(ipv6 ? "IPv6" : "IPv4"): \(name)", isIPv6: ipv6, frame: frame,
                            payload: payload, echoed: echoed))
        }
        let padN: [UInt8] = [0, 1, 4, 0, 0, 0, 0]   // hdr ext len 0, PadN of four bytes
        for ipv6 in [false, true] {
            add("a valid datagram", ipv6: ipv6, echoed: true)
            add("a wrong UDP checksum", ipv6: ipv6, echoed: false, udpChecksum: 0x1234)
            add("for another host's MAC", ipv6: ipv6, echoed: false, destinationMAC: [0x02, 0x11, 0x22, 0x33, 0x44, 0x55])
            add("a broadcast frame", ipv6: ipv6, echoed: nil, destinationMAC: [0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF])
            add("tagged with a VLAN no device owns", ipv6: ipv6, echoed: false, vlan: 42)
            add("tagged with a VLAN that has a device", ipv6: ipv6, echoed: nil, vlan: 100)
            add("from source port 0", ipv6: ipv6, echoed: false, sourcePort: 0)
            add("a UDP length past the IP payload", ipv6: ipv6, echoed: false) { frame, udp in frame[udp + 5] &+= 16 }
            add("with a priority tag (VLAN 0)", ipv6: ipv6, echoed: true, vlan: 0)
        }
        // IPv4 options as ip_options_compile reads them.
        add("a record route option", echoed: true, ipv4Options: [7, 7, 4, 0, 0, 0, 0, 0])
        add("a record route whose pointer is 3", echoed: false, ipv4Options: [7, 7, 3, 0, 0, 0, 0, 0])
        add("a record route of 2 bytes", echoed: false, ipv4Options: [7, 2, 1, 1])
        add("two record routes", echoed: false, ipv4Options: [7, 7, 4, 0, 0, 0, 0, 7, 7, 4, 0, 0, 0, 0, 1, 1])
        add("a timestamp option", echoed: true, ipv4Options: [0x44, 8, 5, 0, 0, 0, 0, 0])
        add("a timestamp whose pointer is 4", echoed: false, ipv4Options: [0x44, 8, 4, 0, 0, 0, 0, 0])
        add("a full timestamp with its overflow count at 15", echoed: false, ipv4Options: [0x44, 8, 9, 0xF0, 0, 0, 0, 0])
        add("a timestamp with addresses in 8 bytes", echoed: false, ipv4Options: [0x44, 8, 5, 1, 0, 0, 0, 0])
        add("a router alert of 3 bytes", echoed: false, ipv4Options: [148, 3, 0, 1])
        add("a CIPSO option (no DOI)", echoed: false, ipv4Options: [0x86, 6, 0, 0, 0, 1, 1, 1])
        add("from this host's own address", echoed: false, source: server4)
        add("to another address", echoed: false, destination: [198, 18, 0, 99])
        add("from 127.0.0.1", echoed: false, source: [127, 0, 0, 1])
        add("from a multicast source", echoed: false, source: [224, 0, 0, 9])
        add("a wrong header checksum", echoed: false) { frame, _ in frame[14 + 10] ^= 0x55 }
        add("UDP checksum zero (none, allowed over IPv4)", echoed: true, udpChecksum: 0)
        add("a loose source route option", echoed: false, ipv4Options: [131, 7, 4, 198, 18, 0, 1, 0])
        add("a router alert option", echoed: true, ipv4Options: [148, 4, 0, 0])
        add("to the subnet broadcast", echoed: true, destinationMAC: [0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF],
            destination: [198, 18, 0, 255])
        add("UDP checksum zero (forbidden over IPv6)", ipv6: true, echoed: false, udpChecksum: 0)
        add("to another address", ipv6: true, echoed: false, destination: server6.dropLast() + [0x99])
        add("from ::1", ipv6: true, echoed: false, source: [UInt8](repeating: 0, count: 15) + [1])
        add("from a multicast source", ipv6: true, echoed: false, source: [0xFF, 0x02] + [UInt8](repeating: 0, count: 13) + [1])
        add("a hop-by-hop header first", ipv6: true, echoed: true, ipv6ExtensionHeaders: [(0, padN)])
        add("a hop-by-hop header after another", ipv6: true, echoed: false, ipv6ExtensionHeaders: [(60, padN), (0, padN)])
        add("a destination option the receiver must discard", ipv6: true, echoed: false,
            ipv6ExtensionHeaders: [(60, [0, 0x7E, 4, 0, 0, 0, 0])])
        // Routing header bytes after the next header: length, type, segments left, reserved.
        add("a type 0 routing header with no segments left", ipv6: true, echoed: true,
            ipv6ExtensionHeaders: [(43, [0, 0, 0, 0, 0, 0, 0])])
        add("a type 0 routing header with segments left", ipv6: true, echoed: false,
            ipv6ExtensionHeaders: [(43, [2, 0, 1, 0, 0, 0, 0] + server6)])
        add("a segment routing header while seg6 is off", ipv6: true, echoed: false,
            ipv6ExtensionHeaders: [(43, [2, 4, 0, 0, 0, 0, 0] + server6)])
        add("a routing header in a broadcast frame", ipv6: true, echoed: false, destinationMAC: [0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF],
            ipv6ExtensionHeaders: [(43, [0, 0, 0, 0, 0, 0, 0])])
        // Options as ip6_parse_tlv reads them: padding, their number, the router alert's length.
        add("PadN with a non-zero byte", ipv6: true, echoed: false, ipv6ExtensionHeaders: [(0, [0, 1, 4, 0, 0, 0, 9])])
        add("12 bytes of padding", ipv6: true, echoed: false, ipv6ExtensionHeaders: [(0, [1, 1, 12] + [UInt8](repeating: 0, count: 12))])
        add("eight options", ipv6: true, echoed: true,
            ipv6ExtensionHeaders: [(60, [2] + [UInt8]([0x1E, 0]).repeated(8) + [1, 4, 0, 0, 0, 0])])
        add("nine options", ipv6: true, echoed: false,
            ipv6ExtensionHeaders: [(60, [2] + [UInt8]([0x1E, 0]).repeated(9) + [1, 2, 0, 0])])
        add("a router alert of 2 bytes", ipv6: true, echoed: true, ipv6ExtensionHeaders: [(0, [0, 5, 2, 0, 0, 0, 0])])
        add("a router alert of 4 bytes", ipv6: true, echoed: false, ipv6ExtensionHeaders: [(0, [0, 5, 4, 0, 0, 0, 0])])
        return all
    }

    /// What came back for each case: true when the payload was echoed to the client.
    func outcomes(backend: [String], topology: TestTopology, cases: [Case]) throws -> (outcomes: [Bool], server: String) {
        let server = try ChildProcess(sluice: [
            "udp-echo", "--netns", topology.serverNamespace, "--listen", "[::]:\(Self.serverPort)",
            "--duration", "120", "--stats-interval", "0",
        ] + backend)
        defer { _ = server.stop() }
        try #require(server.waitForLine(containing: "backend on") != nil, "\(server.text)")
        let (packets, v4, v6) = try withNetworkNamespace(topology.clientNamespace) {
            (try PacketSocket(interface: topology.clientInterface),
             KernelUDPSocket(bind: IPEndpoint(address: .v4(topology.clientIPv4), port: Self.clientPort), receiveTimeout: .milliseconds(500)),
             KernelUDPSocket(bind: IPEndpoint(address: .v6(topology.clientIPv6), port: Self.clientPort), receiveTimeout: .milliseconds(500)))
        }
        var outcomes: [Bool] = []
        for crafted in cases {
            #expect(packets.send(crafted.frame), "\(crafted)")
            let reply = (crafted.isIPv6 ? v6 : v4).receive()
            outcomes.append(reply?.bytes == crafted.payload)
        }
        _ = server.stop()
        return (outcomes, server.text)
    }

    @Test func theXDPBackendAnswersExactlyWhatTheKernelAnswers() throws {
        var configuration = TestTopology.Configuration()
        configuration.suffix = "c\(getpid() % 10000)n\(fixtureCounter.add(1, ordering: .relaxed).newValue)"
        let topology = try TestTopology(configuration)
        defer { topology.destroy() }
        let vlan = try ChildProcess("/usr/sbin/ip", ["-n", topology.serverNamespace, "link", "add", "link", topology.serverInterface,
                                                     "name", "sv100", "type", "vlan", "id", "100"])
        // The kernel here may lack 8021q: then a tag with a device cannot be tried.
        let hasVLANDevice = vlan.waitForExit() == 0
        if !hasVLANDevice { print("skip: no VLAN device can be made here (\(vlan.text.split(separator: "\n").first ?? "")); VLAN 100 is tried without one") }
        let cases = Self.cases(topology)
        let kernel = try outcomes(backend: ["--backend", "socket"], topology: topology, cases: cases)
        let xdp = try outcomes(backend: ["--backend", "xdp", "--dev", topology.serverInterface, "--mode", "native"],
                               topology: topology, cases: cases)
        for (index, crafted) in cases.enumerated() {
            #expect(xdp.outcomes[index] == kernel.outcomes[index],
                    "\(crafted): xdp \(xdp.outcomes[index] ? "echoed" : "dropped"), kernel \(kernel.outcomes[index] ? "echoed" : "dropped")")
            if let echoed = crafted.echoed {
                #expect(kernel.outcomes[index] == echoed, "the kernel's verdict on \(crafted) changed")
            }
        }
        // Another host's MAC, another address and a VLAN with a device are left to the kernel by the program.
        let notOurs = xdp.server.split(separator: "\n").first { $0.contains("xdp program:") }
            .flatMap { $0.split(separator: "not ours ").last.flatMap { Int($0.prefix { $0.isNumber }) } }
        #expect(notOurs == (hasVLANDevice ? 6 : 4), "\(xdp.server)")
    }
}

extension Array {
    /// The elements `count` times over.
    func repeated(_ count: Int) -> [Element] { (0..<count).flatMap { _ in self } }
}
