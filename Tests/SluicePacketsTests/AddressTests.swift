import SluicePackets
import Testing

@Suite struct AddressTests {
    @Test func ipv4ParseAndPrint() {
        let a = IPv4Address("198.18.0.1")
        #expect(a?.rawValue == 0xC612_0001)
        #expect(a?.description == "198.18.0.1")
        #expect(IPv4Address("0.0.0.0") == .any)
        #expect(IPv4Address("255.255.255.255")?.rawValue == .max)
        #expect(IPv4Address(127, 0, 0, 1) == .loopback)
        #expect(IPv4Address(10, 1, 2, 3).bytes == (10, 1, 2, 3))
        var rng = SeededGenerator(seed: 4)
        for _ in 0..<1000 {
            let x = IPv4Address(rawValue: UInt32.random(in: 0...UInt32.max, using: &rng))
            #expect(IPv4Address(x.description) == x)
        }
    }

    @Test(arguments: [
        "", "1.2.3", "1.2.3.4.5", "256.1.1.1", "01.2.3.4", "1..2.3", "1.2.3.4.", " 1.2.3.4", "+1.2.3.4",
        "1.2.3.-4", "a.b.c.d", "1.2.3.4/24", "١.٢.٣.٤",
    ])
    func ipv4RejectsInvalidText(text: String) {
        #expect(IPv4Address(text) == nil)
    }

    @Test(arguments: [
        // RFC 5952 section 4 and section 5 examples, and the usual special cases.
        ("2001:db8::1", "2001:db8::1"),
        ("::", "::"),
        ("::1", "::1"),
        ("2001:db8:0:0:1:0:0:1", "2001:db8::1:0:0:1"),
        ("2001:0db8:0000:0000:0000:0000:0002:0001", "2001:db8::2:1"),
        ("2001:db8:0:1:1:1:1:1", "2001:db8:0:1:1:1:1:1"),
        ("2001:0:0:1:0:0:0:1", "2001:0:0:1::1"),
        ("2001:DB8::AAAA", "2001:db8::aaaa"),
        ("::ffff:192.0.2.1", "::ffff:192.0.2.1"),
        ("0:0:0:0:0:ffff:c000:0201", "::ffff:192.0.2.1"),
        ("1::", "1::"),
        ("fe80::1:2:3:4", "fe80::1:2:3:4"),
        ("1:2:3:4:5:6:7:8", "1:2:3:4:5:6:7:8"),
        ("1:0:0:0:0:0:0:0", "1::"),
        ("64:ff9b::192.0.2.33", "64:ff9b::c000:221"),
    ])
    func ipv6CanonicalText(text: String, canonical: String) {
        let a = IPv6Address(text)
        #expect(a?.description == canonical)
        #expect(a.flatMap { IPv6Address($0.description) } == a)
    }

    @Test(arguments: [
        "", ":", ":::", "1::2::3", "12345::", "g::", "1:2:3:4:5:6:7:8:9", "1:2:3:4:5:6:7", "1:2:3:4:5:6:7:8::",
        "::1:2:3:4:5:6:7:8", ":1::", "1::2:", "+1::", "::-1", "::ffff:1.2.3", "::ffff:1.2.3.256", "1.2.3.4::",
        "::1.2.3.4:5", "[::1]", "fe80::1%eth0",
    ])
    func ipv6RejectsInvalidText(text: String) {
        #expect(IPv6Address(text) == nil)
    }

    @Test func subnetsAreComparedByTheirPrefixBits() {
        let v4 = IPAddress("198.18.9.1")!
        #expect(v4.sharesPrefix(with: IPAddress("198.18.9.200")!, length: 24))
        #expect(!v4.sharesPrefix(with: IPAddress("198.18.10.1")!, length: 24))
        #expect(v4.sharesPrefix(with: IPAddress("198.18.10.1")!, length: 20) && v4.sharesPrefix(with: IPAddress("10.0.0.1")!, length: 0))
        #expect(!v4.sharesPrefix(with: IPAddress("198.18.9.2")!, length: 32) && v4.sharesPrefix(with: v4, length: 32))
        let v6 = IPAddress("2001:2::1")!
        #expect(v6.sharesPrefix(with: IPAddress("2001:2::ffff:1")!, length: 64))
        #expect(!v6.sharesPrefix(with: IPAddress("2001:2:0:1::1")!, length: 64))
        #expect(v6.sharesPrefix(with: IPAddress("2001:2::1:0")!, length: 100) && !v6.sharesPrefix(with: IPAddress("2001:2::1:0")!, length: 112))
        #expect(!v6.sharesPrefix(with: v4, length: 0), "another family")
    }

    @Test func ipv6BytesAndMapping() {
        let a = IPv6Address("2001:db8::1:0:0:1")!
        #expect(a.groups == [0x2001, 0xdb8, 0, 0, 1, 0, 0, 1])
        #expect(IPv6Address(groups: a.groups) == a)
        var bytes = [UInt8](repeating: 0, count: 16)
        bytes.withUnsafeMutableBytes { a.store(networkBytesAt: $0.baseAddress!) }
        #expect(bytes == [0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 1])
        #expect(bytes.withUnsafeBytes { IPv6Address(networkBytesAt: $0.baseAddress!) } == a)

        let mapped = IPv6Address(mapping: IPv4Address(192, 0, 2, 1))
        #expect(mapped == IPv6Address("::ffff:192.0.2.1"))
        #expect(mapped.mappedIPv4 == IPv4Address(192, 0, 2, 1))
        #expect(IPv6Address("::192.0.2.1")?.mappedIPv4 == nil)
        #expect(IPv6Address("1::ffff:192.0.2.1")?.mappedIPv4 == nil)
        #expect(IPAddress("::ffff:192.0.2.1")?.unmapped == .v4(IPv4Address(192, 0, 2, 1)))
        #expect(IPAddress("2001:db8::1")?.unmapped == IPAddress("2001:db8::1"))
        #expect(IPAddress("10.0.0.1") == .v4(IPv4Address(10, 0, 0, 1)))
        #expect(IPAddress("nope") == nil)

        var rng = SeededGenerator(seed: 5952)
        for i in 0..<2000 {
            // Sparse groups, so that zero runs of every length and position appear.
            let groups = (0..<8).map { _ in
                Int.random(in: 0..<3, using: &rng) == 0 ? UInt16.random(in: 0...0xFFFF, using: &rng) : 0
            }
            let x = i == 0 ? IPv6Address.any : IPv6Address(groups: groups)
            let text = x.description
            #expect(IPv6Address(text) == x, "\(text)")
            #expect(!text.contains(":::") && text == text.lowercased())
        }
    }

    @Test func endpointsParseAndPrint() {
        #expect(IPEndpoint("198.18.0.1:53") == IPEndpoint(address: .v4(IPv4Address(198, 18, 0, 1)), port: 53))
        #expect(IPEndpoint("[2001:db8::1]:853")?.description == "[2001:db8::1]:853")
        #expect(IPEndpoint(":53") == IPEndpoint(address: .v4(.any), port: 53))
        #expect(IPEndpoint("10.0.0.1:65535")?.description == "10.0.0.1:65535")
        for bad in ["10.0.0.1", "10.0.0.1:", "10.0.0.1:65536", "10.0.0.1:+53", "10.0.0.1:-0", "[::1]53", "[::1]:",
                    "::1:53", "[1.2.3.4]:53", "host:53"] {
            #expect(IPEndpoint(bad) == nil, "\(bad)")
        }
    }

    @Test func macParseAndPrint() {
        let m = MACAddress("52:54:00:AB:cd:0f")
        #expect(m?.rawValue == 0x5254_00AB_CD0F)
        #expect(m?.description == "52:54:00:ab:cd:0f")
        #expect(MACAddress(rawValue: 0xFFFF_0000_0000_0001).rawValue == 1)
        #expect(MACAddress.broadcast.description == "ff:ff:ff:ff:ff:ff")
        var bytes = [UInt8](repeating: 0, count: 6)
        bytes.withUnsafeMutableBytes { m!.store(networkBytesAt: $0.baseAddress!) }
        #expect(bytes == [0x52, 0x54, 0x00, 0xab, 0xcd, 0x0f])
        #expect(bytes.withUnsafeBytes { MACAddress(networkBytesAt: $0.baseAddress!) } == m)
        for bad in ["", "52:54:00:ab:cd", "52:54:00:ab:cd:0f:00", "5:54:00:ab:cd:0f", "+5:54:00:ab:cd:0f",
                    "52-54-00-ab-cd-0f", "52:54:00:ab:cd:0g"] {
            #expect(MACAddress(bad) == nil, "\(bad)")
        }
    }
}
