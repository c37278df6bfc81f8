import FuzzDriver
import SluiceDNS

/// An RFC 1035 master file, parsed and, when it parses, made a zone.
let origin = DNSName("example.test.")!

func fuzz(_ start: UnsafePointer<UInt8>?, _ count: Int) -> Int32 {
    let text = String(decoding: input(start, count), as: UTF8.self)
    if let records = try? DNSZoneFile.parse(text, origin: origin) {
        _ = try? DNSZone(origin: origin, records: records)
    }
    return 0
}

runFuzzer(fuzz)
