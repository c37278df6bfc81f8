@testable import SluiceDNS
import SluiceTestSupport
import Testing

/// Answers to DO queries from pre-signed zones, without a server: the NSEC3 hash against RFC
/// 5155's own examples, the canonical order of names, and the proofs each kind of answer carries.
@Suite struct DNSSECAnswerTests {
    static func zone(_ name: String) throws -> DNSZone {
        let text = try #require(readTextFile(DNSCodecTests.fixtures + "/\(name).zone"))
        return try DNSZone(origin: DNSName(name + ".")!, text: text)
    }

    /// RFC 5155 appendix A: salt aabbccdd, 12 extra iterations.
    @Test func nsec3HashesAsRFC5155Lists() throws {
        let parameters = DNSRecord(name: DNSName("example.")!, type: .nsec3param, ttl: 0, data: .opaque([1, 0, 0, 12, 4, 0xAA, 0xBB, 0xCC, 0xDD]))
        let owner = DNSName("0p9mhaveqvm6t7vbl5lop2u3t2rp3tom.example.")!
        let record = DNSRecord(name: owner, type: .nsec3, ttl: 0, data: .opaque([1, 0, 0, 12, 4, 0xAA, 0xBB, 0xCC, 0xDD]))
        let chain = try #require(NSEC3Chain([owner: [.nsec3: [record]]], parameters: parameters))
        let expected: [(String, String)] = [
            ("example.", "0p9mhaveqvm6t7vbl5lop2u3t2rp3tom"), ("a.example.", "35mthgpgcu1qg68fab165klnsnk3dpvl"),
            ("ai.example.", "gjeqe526plbf1g8mklp59enfd789njgi"), ("*.w.example.", "r53bq7cc2uvmubfu5ocmm6pers9tk9en"),
            ("x.y.w.example.", "2vptu5timamqttgl4luu9kg21e0aor3s"),
        ]
        for (name, hash) in expected {
            #expect(chain.hash(DNSName(name)!) == DNSZoneFile.base32Hex(hash), "\(name)")
        }
        #expect(chain.matching(DNSName("EXAMPLE.")!) == owner, "names are hashed in lower case")
        #expect(chain.covering(DNSName("a.example.")!) == owner, "a chain of one covers every other hash")
    }

    /// RFC 4034 section 6.1's own example, shuffled.
    @Test func namesSortInCanonicalOrder() {
        let ordered = ["example.", "a.example.", "yljkjljk.a.example.", "Z.a.example.", "zABC.a.EXAMPLE.", "z.example.",
                       "\\001.z.example.", "*.z.example.", "\\200.z.example."].map { DNSName($0)! }
        #expect(ordered.shuffled().sorted { $0.canonicallyPrecedes($1) } == ordered)
    }

    @Test func denialsCarryTheirNSECProofs() throws {
        let authority = DNSAuthority(zones: [try Self.zone("signed.test")])
        func proof(_ name: String, _ type: DNSRecordType) throws -> [String] {
            let answer = try #require(authority.answer(DNSName(name + ".signed.test.")!, type, dnssec: true))
            return answer.authority.filter { $0.type == .nsec }.map(\.name.description)
        }
        // NXDOMAIN: the NSEC covering the name and the one covering the wildcard at the apex.
        #expect(try proof("nothing", .a) == ["mail.signed.test.", "signed.test."])
        // NODATA: the name's own NSEC; at an empty non-terminal, the covering one.
        #expect(try proof("www", .mx) == ["www.signed.test."])
        #expect(try proof("b.deep", .a) == ["chain.signed.test."])
        // A wildcard's answer proves the name itself is not there; a delegation without DS, that it has none.
        #expect(try proof("x.wild", .a) == ["*.wild.signed.test."])
        #expect(try proof("a.insecure", .a) == ["insecure.signed.test."])
        // Without DO, or from an unsigned zone, nothing is added.
        let plain = try #require(authority.answer(DNSName("nothing.signed.test.")!, .a, dnssec: false))
        #expect(plain.authority.map(\.type) == [.soa])
        let unsigned = DNSAuthority(zones: [try Self.zone("example.test")])
        #expect(try #require(unsigned.answer(DNSName("nothing.example.test.")!, .a, dnssec: true)).authority.map(\.type) == [.soa])
    }

    @Test func signaturesFollowTheirSets() throws {
        let authority = DNSAuthority(zones: [try Self.zone("signed.test")])
        let answer = try #require(authority.answer(DNSName("x.wild.signed.test.")!, .a, dnssec: true))
        // The wildcard's signature, owned by the name it answered for.
        #expect(answer.answers.map(\.type) == [.a, .rrsig] && answer.answers.allSatisfy { $0.name == DNSName("x.wild.signed.test.")! })
        // A negative answer's SOA signature lives no longer than the SOA it signs (RFC 2308, as Knot).
        let negative = try #require(authority.answer(DNSName("www.signed.test.")!, .mx, dnssec: true))
        let soaSignature = try #require(negative.authority.first { $0.coveredType == .soa })
        #expect(soaSignature.ttl == 300)
        // Hashed owners are not names of the zone.
        let hashed = DNSAuthority(zones: [try Self.zone("hashed.test")])
        let owner = try #require(hashed.zones[0].hashedNodes.keys.first)
        #expect(try #require(hashed.answer(owner, .a)).responseCode == .nameError)
    }
}
