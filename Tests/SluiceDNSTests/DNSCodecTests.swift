import SluiceDNS
import SluicePackets
import SluiceTestSupport
import Testing

/// The codec against real traffic: dig's queries and Knot's answers, captured on loopback.
@Suite struct DNSCodecTests {
    static let fixtures: String = {
        var path = #filePath
        path = String(path[..<path.lastIndex(of: "/")!])
        return path + "/Fixtures"
    }()

    struct Capture {
        var isResponse: Bool
        var name: String
        var type: UInt16
        var bytes: [UInt8]
    }

    static func captures() throws -> [Capture] {
        let text = try #require(readTextFile(fixtures + "/dig-knot.hex"))
        return text.split(separator: "\n").filter { !$0.hasPrefix("#") }.map { line in
            let fields = line.split(separator: " ")
            let hex = Array(fields[3].utf8)
            let bytes = stride(from: 0, to: hex.count, by: 2).map { UInt8(String(decoding: hex[$0..<($0 + 2)], as: UTF8.self), radix: 16)! }
            return Capture(isResponse: fields[0] == "response", name: String(fields[1]), type: UInt16(fields[2])!, bytes: bytes)
        }
    }

    @Test func capturedMessagesDecodeToTheirFields() throws {
        let captures = try Self.captures()
        #expect(captures.count == 22)
        for capture in captures {
            let message = try DNSMessage.decode(capture.bytes)
            #expect(message.header.isResponse == capture.isResponse)
            #expect(message.questions.count == 1)
            #expect(message.questions.first?.name == DNSName(capture.name + "."), "\(capture.name)")
            #expect(message.questions.first?.type.rawValue == capture.type)
            #expect(message.edns?.payloadSize == (capture.isResponse ? 1232 : 1232), "dig and Knot both say 1232")
        }
        let responses = captures.filter(\.isResponse)
        let soa = try DNSMessage.decode(responses[0].bytes)
        #expect(soa.header.isAuthoritative && soa.responseCode == .noError)
        #expect(soa.answers.first?.data == .soa(primary: DNSName("ns1.example.test.")!, mailbox: DNSName("hostmaster.example.test.")!,
                                                serial: 2026120201, refresh: 7200, retry: 3600, expire: 1209600, minimum: 300))
        let chain = try DNSMessage.decode(responses[1].bytes)
        #expect(chain.answers.map(\.type) == [.cname, .cname, .a])
        #expect(chain.answers.last?.data == .a(IPv4Address(198, 18, 5, 80)))
        let nxdomain = try DNSMessage.decode(responses[3].bytes)
        #expect(nxdomain.responseCode == .nameError && nxdomain.authority.first?.ttl == 300 && nxdomain.edns?.dnssecOK == true)
        let referral = try DNSMessage.decode(responses[4].bytes)
        #expect(!referral.header.isAuthoritative && referral.authority.count == 2 && referral.additional.count == 1)
        let srv = try DNSMessage.decode(responses[6].bytes)
        #expect(srv.answers.first?.data == .srv(priority: 10, weight: 60, port: 5060, target: DNSName("host.deep.example.test.")!))
        let caa = try DNSMessage.decode(responses[7].bytes)
        #expect(caa.answers.first?.data == .caa(flags: 0, tag: Array("issue".utf8), value: Array("letsencrypt.org".utf8)))
        let generic = try DNSMessage.decode(responses[8].bytes)
        #expect(generic.answers.first?.data == .opaque([0x0A, 0, 0, 1]))
        let big = try DNSMessage.decode(responses[9].bytes)
        #expect(big.header.isTruncated)
        let mixedCase = try DNSMessage.decode(responses[10].bytes)
        #expect(mixedCase.questions.first?.name.description == "WwW.ExAmPle.TeSt.", "the query's case comes back")
    }

    @Test func capturedMessagesEncodeBackByteForByte() throws {
        var inexact: [String] = []
        for capture in try Self.captures() {
            let message = try DNSMessage.decode(capture.bytes)
            let encoded = message.encode()
            // Where a compression choice differs, the bytes may too; the meaning may not.
            #expect(try DNSMessage.decode(encoded) == message, "\(capture.name) \(capture.type)")
            if encoded != capture.bytes { inexact.append("\(capture.name) \(capture.type)") }
        }
        #expect(inexact.isEmpty, "every captured message re-encodes exactly")
    }

    @Test func namesReadAndPrintWithEscapes() throws {
        let name = try #require(DNSName("esc\\.aped.Example.TEST."))
        #expect(name.labelCount == 3 && name.description == "esc\\.aped.Example.TEST.")
        #expect(name == DNSName("ESC\\.APED.example.test.")!, "names compare without case")
        #expect(DNSName("www", origin: DNSName("example.test.")!) == DNSName("www.example.test.")!)
        #expect(DNSName(String(repeating: "a", count: 64) + ".test.") == nil, "a label over 63 bytes")
        #expect(DNSName(Array(repeating: "abcdefghi", count: 26).joined(separator: ".") + ".") == nil, "a name over 255 bytes")
        #expect(DNSName("\\065b.test.")?.wire == [2, 65, 98, 4, 116, 101, 115, 116, 0])
    }

    @Test func zoneFilesReadTheirDirectives() throws {
        let text = """
            $ORIGIN example.test.
            $TTL 1h
            @ IN SOA ns hostmaster ( 1 2h 1h 2w 5m ) ; comment
            www 300 IN A 198.18.5.1
                IN 600 AAAA 2001:2::1
            txt TXT "a \\"quoted\\" string" unquoted "\\065"
            $ORIGIN sub.example.test.
            host A 198.18.5.2
            """
        let records = try DNSZoneFile.parse(text, origin: DNSName("example.test.")!)
        #expect(records.count == 5)
        #expect(records[0].data == .soa(primary: DNSName("ns.example.test.")!, mailbox: DNSName("hostmaster.example.test.")!,
                                        serial: 1, refresh: 7200, retry: 3600, expire: 1_209_600, minimum: 300))
        #expect(records[0].ttl == 3600)
        #expect(records[1].ttl == 300 && records[2].ttl == 600 && records[2].name == DNSName("www.example.test.")!)
        #expect(records[3].data == .txt([Array("a \"quoted\" string".utf8), Array("unquoted".utf8), [65]]))
        #expect(records[4].name == DNSName("host.sub.example.test.")!)
        #expect(throws: DNSError.self) { try DNSZoneFile.parse("www A 1.2.3", origin: .root) }
        #expect(throws: DNSError.self) { try DNSZoneFile.parse("www 60 A 1.2.3.4 (", origin: .root) }
        #expect(throws: DNSError.self) { try DNSZoneFile.parse("$INCLUDE other", origin: .root) }
    }

    @Test("as Knot loads them: of two SOAs at the apex the first is kept; an SOA below the apex is left out; mixed TTLs in a set are noted")
    func misplacedSOAsAreLoadedAsKnotLoadsThem() throws {
        let text = """
            $ORIGIN example.test.
            @ 300 SOA ns hostmaster 7 7200 3600 1209600 300
            @ 300 SOA ns hostmaster 9 7200 3600 1209600 300
            @ 300 NS ns
            ns 300 A 198.18.5.1
            sub 300 SOA ns hostmaster 1 7200 3600 1209600 300
            mixed 60 A 198.18.5.2
            mixed 120 A 198.18.5.3
            twice 300 A 198.18.5.4
            twice 300 A 198.18.5.4
            twice 600 A 198.18.5.4
            """
        let zone = try DNSZone(origin: DNSName("example.test.")!, text: text)
        #expect(zone.misplacedSOAOwners == [DNSName("sub.example.test.")!])
        #expect(zone.mixedTTLOwners == [DNSName("mixed.example.test.")!, DNSName("twice.example.test.")!])
        // A duplicate is served once, with the set's last TTL, its own (as Knot sets it).
        #expect(DNSAuthority(zones: [zone]).answer(DNSName("twice.example.test.")!, .a)?.answers.map(\.ttl) == [600])
        #expect(DNSAuthority(zones: [zone]).answer(DNSName("mixed.example.test.")!, .a)?.answers.map(\.ttl) == [120, 120])
        let authority = DNSAuthority(zones: [zone])
        let apex = try #require(authority.answer(DNSName("example.test.")!, .soa))
        #expect(apex.answers.count == 1 && apex.answers.first?.data == zone.soa.data)
        if case .soa(_, _, let serial, _, _, _, _)? = apex.answers.first?.data { #expect(serial == 7) } else { Issue.record("\(apex)") }
        #expect(authority.answer(DNSName("sub.example.test.")!, .soa)?.responseCode == .nameError)
    }

    @Test("$INCLUDE reads a file relative to the including one, under the origin given; its $ORIGIN ends with it; no endless nesting")
    func includesAreRead() throws {
        let files = [
            "/zones/sub/hosts.zone": "$ORIGIN other.test.\nmail A 198.18.0.25\n$INCLUDE more.zone\n",
            "/zones/sub/more.zone": "more A 198.18.0.26\n",
            "/zones/loop.zone": "$INCLUDE loop.zone\n",
        ]
        let read: DNSZoneFile.IncludeReader = { files[$0] }
        let records = try DNSZoneFile.parse("$TTL 60\n$INCLUDE sub/hosts.zone hosts\nwww A 198.18.0.80", origin: DNSName("example.test.")!,
                                            directory: "/zones", include: read)
        #expect(records.map(\.name.description) == ["mail.other.test.", "more.other.test.", "www.example.test."])
        #expect(records.map(\.ttl) == [60, 60, 60])
        #expect(throws: DNSError.self) { try DNSZoneFile.parse("$INCLUDE loop.zone", origin: .root, directory: "/zones", include: read) }
        #expect(throws: DNSError.self) { try DNSZoneFile.parse("$INCLUDE missing.zone", origin: .root, directory: "/zones", include: read) }
    }

    @Test("as Knot reads a zone: an hour's TTL before any $TTL, escapes in bare strings, TXT strings past 255 bytes split")
    func zoneFilesReadAsKnotReadsThem() throws {
        let records = try DNSZoneFile.parse("@ SOA ns h 1 2 3 4 5\nx 77 A 198.18.0.2\ny A 198.18.0.3\n"
                                            + "t TXT a\\;b \\065x e\\\"f\nl TXT " + String(repeating: "L", count: 300),
                                            origin: DNSName("example.test.")!)
        #expect(records.map(\.ttl) == [3600, 77, 3600, 3600, 3600])
        #expect(records[3].data == .txt([Array("a;b".utf8), Array("Ax".utf8), Array("e\"f".utf8)]))
        #expect(records[4].data == .txt([[UInt8](repeating: 76, count: 255), [UInt8](repeating: 76, count: 45)]))
    }

    @Test func keyAndFingerprintTypesReadAsTheirRFCsWriteThem() throws {
        let text = """
            $TTL 60
            child DS 60485 5 1 ( 2BB183AF5F22588179A53B0A
                                 98631FAD1A292118 )
            @ DNSKEY 256 3 13 AAECAw==
            host SSHFP 4 2 0A0B
            _443._tcp TLSA 3 1 1 ff
            host HINFO "PC" "Linux"
            host KEY 256 3 RSASHA256 AwEAAQ==
            host KEY \\# 4 C0000308
            """
        let records = try DNSZoneFile.parse(text, origin: DNSName("example.test.")!)
        // RFC 4034 section 5.4's example DS, and the other types' wire forms.
        #expect(records[0].type == .ds && records[0].data == .opaque([0xEC, 0x45, 5, 1] + [
            0x2B, 0xB1, 0x83, 0xAF, 0x5F, 0x22, 0x58, 0x81, 0x79, 0xA5, 0x3B, 0x0A, 0x98, 0x63, 0x1F, 0xAD, 0x1A, 0x29, 0x21, 0x18]))
        #expect(records[1].data == .opaque([1, 0, 3, 13, 0, 1, 2, 3]))
        #expect(records[2].data == .opaque([4, 2, 0x0A, 0x0B]))
        #expect(records[3].data == .opaque([3, 1, 1, 0xFF]))
        #expect(records[4].data == .opaque([2] + Array("PC".utf8) + [5] + Array("Linux".utf8)))
        // RFC 2535's KEY as DNSKEY is written; flagged "no key" (0xC000), it may have none.
        #expect(records[5].data == .opaque([1, 0, 3, 8, 3, 1, 0, 1]) && records[5].dataText == "256 3 8 AwEAAQ==")
        #expect(records[6].data == .opaque([0xC0, 0, 3, 8]))
        for bad in ["x DS 1 2 3 ABC", "x DS 1 2 3", "x DNSKEY 256 3 13 AAE=Aw==", "x DNSKEY 256 3 13 A", "x KEY 256 3 8", "x KEY \\# 3 010003", "x TLSA 3 1 1 zz",
                    "x LOC 91 N 0 E 0", "x LOC 42 60 N 0 E 0", "x LOC 42 21 54 X 71 W 0", "x LOC 42 N 181 E 0", "x LOC 42 N 71 W -100001m",
                    "x LOC 42 N 71 W 0 1.234m", "x LOC 42 21 -54.5 N 71 W 0",
                    "x LOC 42 N 71 W --9223372036854775808m", "x LOC 42 N 71 W +5m", "x LOC 42 N 71 W 0 1.-5m", "x ZONEMD 1 1 1", "x CSYNC 1 3 NOTATYPE"] {
            #expect(throws: DNSError.self, "\(bad)") { try DNSZoneFile.parse("$TTL 60\n" + bad, origin: .root) }
        }
        // A DNAME, in either form, is read as one (and served: DNSAgainstKnotTests).
        let zone = "$TTL 60\n@ SOA ns h 1 2 3 4 5\n"
        for dname in ["old TYPE39 \\# 5 036e657700", "old DNAME new."] {
            let records = try DNSZone(origin: DNSName("example.test.")!, text: zone + dname).recordSets(at: DNSName("old.example.test.")!)
            #expect(records?[.dname]?.first?.data == .name(DNSName("new.")!))
        }
        // A DNAME beside NS is refused below the apex (RFC 6672 section 2.3), as Knot refuses it.
        #expect(throws: DNSError.self) { try DNSZone(origin: DNSName("example.test.")!, text: zone + "d NS ns\nd DNAME new.") }
        _ = try DNSZone(origin: DNSName("example.test.")!, text: zone + "d A 198.18.0.1\nd DNAME new.")
    }

    /// What Knot refuses to load, Sluice refuses too: an escaped line end, a quote inside a
    /// field or a quoted string running into the next, and a directive with fields to spare.
    @Test func looseSyntaxIsRefusedAsKnotRefusesIt() {
        for bad in ["a TXT abc\\\n", "b TXT abc\"def\"ghi", "c TXT \"abc\"def", "d TXT \"ab\\\ncd\"", "$TTL 1h 1m", "$ORIGIN q.example.test. extra",
                    "x OPT \\# 0", "x ANY \\# 0", "x AXFR \\# 0", "x TYPE250 \\# 0",
                    // Numbers are ASCII digits alone: no sign, no other script's digits (knotd refuses each).
                    "x +1 A 1.2.3.4", "x 1h+1 A 1.2.3.4", "x \u{0661}h A 1.2.3.4", "x MX +10 t.test.", "x TYPE+1 \\# 4 01020304",
                    "x A \\# +4 01020304", "x SVCB 1 . port=+53", "x SVCB 1 . key+3=x", "x APL 1:192.168.0.0/+16", "x LOC +52 N 4 E 0",
                    "x RRSIG A 5 3 86400 +20300101000000 20200101000000 2642 t.test. AQID", "@ SOA ns h +1 2 3 4 5"] {
            #expect(throws: DNSError.self, "\(bad)") { try DNSZoneFile.parse("$TTL 60\n" + bad + "\n", origin: DNSName("example.test.")!) }
        }
        #expect(throws: Never.self) { try DNSZoneFile.parse("$TTL 60\ne TXT \"abc\" \"def\";c\nf TXT \"x\"(\n\"y\")\n", origin: DNSName("example.test.")!) }
    }

    /// RFC 4034 (appendix A.1) and RFC 4398 let a zone file name the algorithm where a number
    /// goes, as Knot reads it: the same record either way.
    @Test func algorithmsMayBeNamed() throws {
        let pairs = [
            ("d DS 60485 RSASHA1 1 2BB183AF5F22588179A53B0A98631FAD1A292118", "d DS 60485 5 1 2BB183AF5F22588179A53B0A98631FAD1A292118"),
            ("k DNSKEY 257 3 ECDSAP256SHA256 AQID", "k DNSKEY 257 3 13 AQID"),
            ("k DNSKEY 256 3 ed25519 AQID", "k DNSKEY 256 3 15 AQID"),
            ("r RRSIG A RSASHA256 2 300 20300101000000 20200101000000 1 example.test. AQID",
             "r RRSIG A 8 2 300 20300101000000 20200101000000 1 example.test. AQID"),
            ("c CERT PKIX 1 RSASHA256 AAAA", "c CERT 1 1 8 AAAA"),
        ]
        for (named, numbered) in pairs {
            let a = try DNSZoneFile.parse("$TTL 60\n" + named, origin: DNSName("example.test.")!)
            let b = try DNSZoneFile.parse("$TTL 60\n" + numbered, origin: DNSName("example.test.")!)
            #expect(a == b, "\(named)")
        }
        #expect(throws: DNSError.self) { try DNSZoneFile.parse("$TTL 60\nd DS 1 NOSUCHALGORITHM 1 AB", origin: .root) }
    }

    /// A service parameter written as keyNNNNN takes its value as wire bytes whatever the key
    /// (RFC 9460 section 2.1); keys are lower case; the keys mandatory names must be there (section 8).
    /// Each as Knot reads it.
    @Test func serviceParametersAsKnotReadsThem() throws {
        func data(_ line: String) throws -> DNSRecordData {
            try DNSZoneFile.parse("$TTL 60\n" + line, origin: DNSName("example.test.")!)[0].data
        }
        #expect(try data("s SVCB 1 . key1=h2") == .opaque([0, 1, 0, 0, 1, 0, 2] + Array("h2".utf8)))
        #expect(try data("s SVCB 1 . key3=\"53\"") == .opaque([0, 1, 0, 0, 3, 0, 2] + Array("53".utf8)))
        #expect(try data("s SVCB 1 . port=53") == .opaque([0, 1, 0, 0, 3, 0, 2, 0, 53]))
        #expect(try data("s SVCB 1 . key65000=abc port=53 mandatory=key65000,port")
                == .opaque([0, 1, 0, 0, 0, 0, 4, 0, 3, 0xFD, 0xE8, 0, 3, 0, 2, 0, 53, 0xFD, 0xE8, 0, 3] + Array("abc".utf8)))
        for bad in ["s SVCB 1 . mandatory=alpn", "s SVCB 1 . KEY3=53", "s SVCB 1 . ALPN=h2", "s SVCB 1 . alpn=h2 mandatory=mandatory,alpn",
                    "s SVCB 1 . alpn=h2 mandatory=alpn,alpn", "s SVCB 1 . key65535=x"] {
            #expect(throws: DNSError.self, "\(bad)") { try data(bad) }
        }
    }

    /// MINFO, APL and IPSECKEY in the bytes knotd 3.2 sends for the same lines (its answers,
    /// captured), printed as dig prints them, and refused where Knot refuses the zone.
    @Test func mailboxPrefixListAndIPsecKeyRecordsReadAsKnotReadsThem() throws {
        let key = "AQNRU3mG7TVTO2BkR47usntb102uFJtugbo6BSGvgqt4AQ=="
        let keyBytes: [UInt8] = [0x01, 0x03, 0x51, 0x53, 0x79, 0x86, 0xED, 0x35, 0x53, 0x3B, 0x60, 0x64, 0x47, 0x8E, 0xEE, 0xB2,
                                 0x7B, 0x5B, 0xD7, 0x4D, 0xAE, 0x14, 0x9B, 0x6E, 0x81, 0xBA, 0x3A, 0x05, 0x21, 0xAF, 0x82, 0xAB, 0x78, 0x01]
        let records = try DNSZoneFile.parse("""
            $TTL 60
            m MINFO RM.t.test. em.t.test.
            a APL 1:192.168.32.0/21 !1:192.168.38.0/28 2:2001:db8::/32
            a APL
            i IPSECKEY 10 0 2 . \(key)
            i IPSECKEY 10 1 2 192.0.2.38 \(key)
            i IPSECKEY 10 2 2 2001:0DB8:0:8002::2000:1 \(key)
            i IPSECKEY 10 3 2 MyGateway.t.test. \(key)
            i IPSECKEY 10 1 0 192.0.2.3
            """, origin: DNSName("t.test.")!)
        let test: [UInt8] = [4, 0x74, 0x65, 0x73, 0x74, 0]
        #expect(records.map(\.data) == [
            .opaque([2, 0x72, 0x6D, 1, 0x74] + test + [2, 0x65, 0x6D, 1, 0x74] + test),
            .opaque([0, 1, 0x15, 3, 0xC0, 0xA8, 0x20, 0, 1, 0x1C, 0x83, 0xC0, 0xA8, 0x26, 0, 2, 0x20, 4, 0x20, 0x01, 0x0D, 0xB8]),
            .opaque([]),
            .opaque([10, 0, 2] + keyBytes),
            .opaque([10, 1, 2, 192, 0, 2, 38] + keyBytes),
            .opaque([10, 2, 2, 0x20, 0x01, 0x0D, 0xB8, 0, 0, 0x80, 0x02, 0, 0, 0, 0, 0x20, 0, 0, 1] + keyBytes),
            .opaque([10, 3, 2, 9] + Array("MyGateway".utf8) + [1, 0x74] + test + keyBytes),
            .opaque([10, 1, 0, 192, 0, 2, 3]),
        ])
        #expect(records.map(\.dataText) == [
            "rm.t.test. em.t.test.", "1:192.168.32.0/21 !1:192.168.38.0/28 2:2001:db8::/32", "", "10 0 2 . \(key)",
            "10 1 2 192.0.2.38 \(key)", "10 2 2 2001:db8:0:8002::2000:1 \(key)", "10 3 2 MyGateway.t.test. \(key)", "10 1 0 192.0.2.3",
        ])
        // MINFO's names go out compressed (each a label and a pointer to the question's t.test.),
        // as knotd sends them, and are read back whole.
        var message = DNSMessage()
        message.questions = [DNSQuestion(name: DNSName("m.t.test.")!, type: .minfo)]
        message.answers = [records[0]]
        let wire = message.encode()
        #expect(Array(wire.suffix(12)) == [0, 10, 2, 0x72, 0x6D, 0xC0, 14, 2, 0x65, 0x6D, 0xC0, 14])
        #expect(try DNSMessage.decode(wire).answers == [records[0]])
        for bad in ["x APL 3:1.2.3.0/8", "x APL 1:1.2.3.4/33", "x APL 1:1.2.3.4", "x APL 2:::1/129", "x APL 01:192.168.0.0/16",
                    "x APL 1:192.168.0.0/16 junk", "x IPSECKEY 10 0 2 1.2.3.4 \(key)", "x IPSECKEY 10 4 2 . \(key)",
                    "x IPSECKEY 10 1 2 . \(key)", "x IPSECKEY 10 1 2 192.0.2.1 !!!", "x IPSECKEY 256 1 2 192.0.2.1", "x MINFO rm.t.test.",
                    "x MINFO rm em extra"] {
            #expect(throws: DNSError.self, "\(bad)") { try DNSZoneFile.parse("$TTL 60\n" + bad, origin: .root) }
        }
    }

    /// The CNAME made from a DNAME names its target in lower case, as Knot does, whatever case
    /// the question came in: answers are cached by name in any case, so one client's case would
    /// otherwise be every later client's.
    @Test func aDNAMEsCNAMETargetIsTheSameWhoeverAskedFirst() throws {
        let zone = try DNSZone(origin: DNSName("hx.test.")!, text: "$TTL 60\n@ SOA ns h 1 2 3 4 5\n@ NS ns\nns A 198.18.0.1\ndnext DNAME other.test.\n")
        var responder = DNSResponder(authority: DNSAuthority(zones: [zone]))
        for asked in ["FirSt.dnext.hx.test.", "first.dnext.hx.test.", "FIRST.DNEXT.hx.test."] {
            var query = DNSMessage()
            query.questions = [DNSQuestion(name: DNSName(asked)!, type: .a)]
            let wire = query.encode()
            var buffer = wire + [UInt8](repeating: 0, count: 4096)
            let length = try #require(buffer.withUnsafeMutableBytes { bytes in
                responder.respond(bytes.baseAddress!, length: wire.count, capacity: bytes.count)
            })
            let answer = try DNSMessage.decode(Array(buffer[..<length]))
            let cname = try #require(answer.answers.first { $0.type == .cname }, "\(asked): \(answer)")
            guard case .name(let target) = cname.data else { Issue.record("\(cname)"); continue }
            #expect(target.wire == DNSName("first.other.test.")!.wire, "\(asked): \(target)")
            #expect(cname.name.wire == DNSName(asked)!.wire, "the owner is the question as asked")
        }
    }

    /// Names in data are lower-cased where the canonical form lowers them (RFC 4034 section 6.2),
    /// and kept as written where RFC 6840 section 5.1 and RFC 9460 keep them (NSEC's next name,
    /// SVCB's target), as Knot serves them: a pre-signed zone's signatures cover that case.
    @Test func namesInDataKeepTheCaseTheCanonicalFormKeeps() throws {
        let zone = try DNSZone(origin: DNSName("case.test.")!, text: """
            $TTL 60
            @ SOA ns h 1 2 3 4 5
            @ NS ns
            ns A 198.18.0.1
            x NSEC Next.Case.Test. A
            s SVCB 0 Alias.Target.Test.
            c CNAME Target.Case.Test.
            """)
        let authority = DNSAuthority(zones: [zone])
        func data(_ name: String, _ type: DNSRecordType) -> DNSRecordData? { authority.answer(DNSName(name)!, type)?.answers.first?.data }
        guard case .opaque(let nsec)? = data("x.case.test.", .nsec), case .opaque(let svcb)? = data("s.case.test.", .svcb) else {
            Issue.record("no NSEC or SVCB")
            return
        }
        #expect(nsec.starts(with: [4] + Array("Next".utf8) + [4] + Array("Case".utf8) + [4] + Array("Test".utf8) + [0]))
        #expect(Array(svcb.dropFirst(2)) == [5] + Array("Alias".utf8) + [6] + Array("Target".utf8) + [4] + Array("Test".utf8) + [0])
        guard case .name(let target)? = data("c.case.test.", .cname) else { Issue.record("no CNAME"); return }
        #expect(target.wire == [6] + Array("target".utf8) + [4] + Array("case".utf8) + [4] + Array("test".utf8) + [0])
    }

    /// A zone whose file did not load answers SERVFAIL without AA, as Knot answers it, even
    /// below a zone that loaded; DS at its apex is still its parent's, and a zone that loaded
    /// below it answers its own names.
    @Test func aZoneThatDidNotLoadAnswersServerFailure() throws {
        let parent = try DNSZone(origin: DNSName("up.test.")!, text: "$TTL 60\n@ SOA ns h 1 2 3 4 5\n@ NS ns\nns A 198.18.0.1\n"
                                     + "down NS ns.down\nns.down A 198.18.0.2\ndown DS 1 13 2 0011223344556677889900112233445566778899001122334455667788990011\n")
        let child = try DNSZone(origin: DNSName("in.down.up.test.")!, text: "$TTL 60\n@ SOA ns h 1 2 3 4 5\n@ NS ns\nns A 198.18.0.3\n")
        var responder = DNSResponder(authority: DNSAuthority(zones: [parent, child], unloaded: [DNSName("down.up.test.")!]))
        func ask(_ name: String, _ type: DNSRecordType) throws -> DNSMessage {
            var query = DNSMessage()
            query.questions = [DNSQuestion(name: DNSName(name)!, type: type)]
            query.edns = DNSEDNS()
            let wire = query.encode()
            var buffer = wire + [UInt8](repeating: 0, count: 4096)
            let length = try #require(buffer.withUnsafeMutableBytes { bytes in
                responder.respond(bytes.baseAddress!, length: wire.count, capacity: bytes.count)
            })
            return try DNSMessage.decode(Array(buffer[..<length]))
        }
        for (name, type) in [("down.up.test.", DNSRecordType.soa), ("x.down.up.test.", .a), ("x.down.up.test.", .a), ("down.up.test.", .ns)] {
            let answer = try ask(name, type)
            #expect(answer.responseCode == .serverFailure && !answer.header.isAuthoritative, "\(name) \(type): \(answer)")
            #expect(answer.answers.isEmpty && answer.authority.isEmpty)
            #expect(answer.edns?.options == [0, 15, 0, 2, 0, 24], "Extended DNS Error 24, as Knot sends")
        }
        let ds = try ask("down.up.test.", .ds)
        #expect(ds.responseCode == .noError && ds.answers.map(\.type) == [.ds], "\(ds)")
        #expect(try ask("ns.in.down.up.test.", .a).answers.map(\.dataText) == ["198.18.0.3"])
        #expect(try ask("ns.up.test.", .a).answers.map(\.dataText) == ["198.18.0.1"])
        #expect(try ask("other.test.", .a).responseCode == .refused)
    }

    @Test("RFC 3597 data for a type Sluice knows is read as that type, and refused when it cannot be one (as Knot refuses it)")
    func genericDataIsCheckedAgainstItsType() throws {
        let records = try DNSZoneFile.parse("$TTL 60\na TYPE1 \\# 4 0A000001\nm TYPE15 \\# 3 000a00\nt TYPE16 \\# 3 02 6869",
                                            origin: DNSName("example.test.")!)
        #expect(records[0].data == .a(IPv4Address(10, 0, 0, 1)))
        #expect(records[1].data == .mx(preference: 10, exchange: .root))
        #expect(records[2].data == .txt([Array("hi".utf8)]))
        for bad in ["a TYPE1 \\# 3 010203", "a TYPE1 \\# 0", "a TYPE28 \\# 4 01020304", "m TYPE15 \\# 2 0001", "t TYPE16 \\# 2 05 61",
                    "h TYPE13 \\# 2 0161", "d TYPE43 \\# 4 00010203"] {
            #expect(throws: DNSError.self, "\(bad)") { try DNSZoneFile.parse("$TTL 60\n" + bad, origin: .root) }
        }
    }
}
