/// The shape of a record's data by type, as Knot DNS reads every record of a message (its
/// rdata descriptors): fixed-size fields, domain names, and a remainder. A query whose answer,
/// authority or additional records do not have their type's shape is malformed (FORMERR).
/// Types not listed take any data (RFC 3597).
enum DNSRecordShape {
    /// One part of a record's data.
    enum Block {
        /// Exactly this many bytes.
        case fixed(Int)
        /// A domain name (compressed or not).
        case name
        /// NAPTR's order, preference and three character-strings (RFC 3403).
        case naptrHeader
        /// Whatever is left, possibly nothing.
        case remainder
    }

    static let shapes: [UInt16: [Block]] = {
        var shapes: [UInt16: [Block]] = [:]
        for type: UInt16 in [2, 3, 4, 5, 7, 8, 9, 12, 39] { shapes[type] = [.name] }   // NS MD MF CNAME MB MG MR PTR DNAME
        for type: UInt16 in [14, 17] { shapes[type] = [.name, .name] }                 // MINFO RP
        for type: UInt16 in [15, 18, 21, 36, 107] { shapes[type] = [.fixed(2), .name] } // MX AFSDB RT KX LP
        for type: UInt16 in [24, 46] { shapes[type] = [.fixed(18), .name, .remainder] } // SIG RRSIG
        for type: UInt16 in [64, 65] { shapes[type] = [.fixed(2), .name, .remainder] }  // SVCB HTTPS
        shapes[1] = [.fixed(4)]                         // A
        shapes[6] = [.name, .name, .fixed(20)]          // SOA
        shapes[26] = [.fixed(2), .name, .name]          // PX
        shapes[28] = [.fixed(16)]                       // AAAA
        shapes[29] = [.fixed(16)]                       // LOC
        shapes[33] = [.fixed(6), .name]                 // SRV
        shapes[35] = [.naptrHeader, .name]              // NAPTR
        shapes[30] = [.name, .remainder]                // NXT
        shapes[47] = [.name, .remainder]                // NSEC
        shapes[104] = [.fixed(10)]                      // NID
        shapes[105] = [.fixed(6)]                       // L32
        shapes[106] = [.fixed(10)]                      // L64
        shapes[108] = [.fixed(6)]                       // EUI48
        shapes[109] = [.fixed(8)]                       // EUI64
        shapes[250] = [.name, .remainder]               // TSIG
        return shapes
    }()

    /// Types Knot DNS knows (past its shaped ones, those whose data is opaque to it): their
    /// records may not be empty in class IN.
    static let known: Set<UInt16> = [10, 13, 16, 25, 37, 41, 42, 43, 44, 45, 48, 49, 50, 51, 52, 53, 59, 60, 61, 62, 63,
                                     99, 249, 251, 252, 255, 256, 257]

    /// Whether the `length` bytes of `type` data in `recordClass` at `start` in `message` have
    /// the type's shape, as Knot reads them: no data at all only for a type it does not know, in
    /// a class other than IN (an update's deletions) or for APL; otherwise each block in turn,
    /// and no more bytes than the data would take with its names written out (Knot counts a
    /// compressed name at its full length, so a few bytes after one pass).
    static func isWellFormed(_ message: UnsafeRawBufferPointer, type: UInt16, recordClass: UInt16, start: Int,
                             length: Int) -> Bool {
        // OPT, in nearly every query, is checked by its own rules.
        guard type != 41 else { return true }
        let blocks = shapes[type]
        if length == 0 {
            return recordClass != 1 || type == 42 || (blocks == nil && !known.contains(type))
        }
        guard let blocks else { return true }
        let end = start + length
        var position = start
        var written = 0
        for block in blocks {
            switch block {
            case .fixed(let size):
                guard end - position >= size else { return false }
                position += size
                written += size
            case .name:
                // A pointer may lead out of the data; the name's own bytes must stay in it.
                guard position < end, let (after, nameLength) = try? DNSWire.readName(message, at: position),
                      after <= end else { return false }
                position = after
                written += nameLength
            case .naptrHeader:
                let header = position
                guard end - position >= 4 else { return false }
                position += 4
                for _ in 0..<3 {
                    guard position < end, position + 1 + Int(message[position]) <= end else { return false }
                    position += 1 + Int(message[position])
                }
                written += position - header
            case .remainder:
                written += end - position
                position = end
            }
        }
        return length <= written
    }
}
