#if canImport(Glibc)
import Glibc
#endif
import FuzzDriver
import SluiceDNS

/// A query to an authoritative server, over UDP and over TCP: answered in its own buffer, never
/// past the buffer's capacity, and what it answers decodes. The server also holds the test
/// fixtures' pre-signed zones (NSEC, NSEC3, salted NSEC3 with opt-out), for DO queries.
let zone = try! DNSZone(origin: DNSName("example.test.")!, text: """
    $TTL 3600
    @ SOA ns1 hostmaster 1 7200 3600 1209600 300
      NS ns1
      MX 10 mail
    ns1 A 198.18.5.53
    mail A 198.18.5.25
      AAAA 2001:2:5::25
    www CNAME mail
    *.wild TXT "wildcard"
    sub NS ns.sub
    ns.sub A 198.18.6.53
    svc HTTPS 1 . alpn=h2 port=443
    """)
let fixtures = String(#filePath.split(separator: "/Tests/Fuzz/")[0]) + "/Tests/SluiceDNSTests/Fixtures/"
let signed = ["signed.test", "hashed.test", "salted.test"].map { name in
    let file = fopen(fixtures + name + ".zone", "r")!
    var text = ""
    var line = [CChar](repeating: 0, count: 4096)
    while fgets(&line, Int32(line.count), file) != nil { text += String(cString: line) }
    fclose(file)
    return try! DNSZone(origin: DNSName(name + ".")!, text: text)
}
nonisolated(unsafe) var responder = DNSResponder(authority: DNSAuthority(zones: [zone] + signed))
// A name, and a version longer than one TXT string, for NSID and CHAOS queries.
responder.identity = DNSServerIdentity(nsid: Array("fuzz.example".utf8), name: Array("fuzz.example".utf8),
                                       version: [UInt8](repeating: UInt8(ascii: "v"), count: 300))
let capacity = 65535
nonisolated(unsafe) let buffer = UnsafeMutableRawPointer.allocate(byteCount: capacity, alignment: 16)

func fuzz(_ start: UnsafePointer<UInt8>?, _ count: Int) -> Int32 {
    let query = input(start, count)
    guard let base = query.baseAddress, query.count <= capacity else { return 0 }
    for (overTCP, limit) in [(false, 512), (false, 4096), (true, capacity)] {
        buffer.copyMemory(from: base, byteCount: query.count)
        guard let length = responder.respond(buffer, length: query.count, capacity: max(limit, query.count), overTCP: overTCP)
        else { continue }
        precondition(length >= 12 && length <= max(limit, query.count), "a response of \(length) bytes for a buffer of \(limit)")
        let response = Array(UnsafeRawBufferPointer(start: buffer, count: length))
        precondition((try? DNSMessage.decode(response)) != nil, "a response that does not decode")
    }
    return 0
}

runFuzzer(fuzz)
