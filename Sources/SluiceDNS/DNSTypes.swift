/// A resource record type (RFC 1035 section 3.2.2 and later RFCs); any 16-bit value is kept,
/// named or not (RFC 3597).
public struct DNSRecordType: RawRepresentable, Hashable, Sendable, CustomStringConvertible {
    public var rawValue: UInt16
    /// The type numbered `rawValue`.
    public init(rawValue: UInt16) { self.rawValue = rawValue }

    public static let a = DNSRecordType(rawValue: 1)
    public static let ns = DNSRecordType(rawValue: 2)
    public static let cname = DNSRecordType(rawValue: 5)
    public static let dname = DNSRecordType(rawValue: 39)
    public static let soa = DNSRecordType(rawValue: 6)
    public static let ptr = DNSRecordType(rawValue: 12)
    public static let mx = DNSRecordType(rawValue: 15)
    public static let txt = DNSRecordType(rawValue: 16)
    public static let aaaa = DNSRecordType(rawValue: 28)
    public static let srv = DNSRecordType(rawValue: 33)
    public static let opt = DNSRecordType(rawValue: 41)
    public static let ds = DNSRecordType(rawValue: 43)
    public static let hinfo = DNSRecordType(rawValue: 13)
    public static let sshfp = DNSRecordType(rawValue: 44)
    public static let dnskey = DNSRecordType(rawValue: 48)
    public static let tlsa = DNSRecordType(rawValue: 52)
    public static let cds = DNSRecordType(rawValue: 59)
    public static let cdnskey = DNSRecordType(rawValue: 60)
    public static let ixfr = DNSRecordType(rawValue: 251)
    public static let axfr = DNSRecordType(rawValue: 252)
    public static let any = DNSRecordType(rawValue: 255)
    public static let caa = DNSRecordType(rawValue: 257)

    static let names: [(DNSRecordType, String)] = [
        (.a, "A"), (.ns, "NS"), (.cname, "CNAME"), (.dname, "DNAME"), (.soa, "SOA"), (.ptr, "PTR"), (.mx, "MX"), (.txt, "TXT"),
        (.aaaa, "AAAA"), (.srv, "SRV"), (.opt, "OPT"), (.ds, "DS"), (.ixfr, "IXFR"), (.axfr, "AXFR"), (.any, "ANY"),
        (.caa, "CAA"), (.hinfo, "HINFO"), (.sshfp, "SSHFP"), (.dnskey, "DNSKEY"), (.tlsa, "TLSA"), (.cds, "CDS"),
        (.cdnskey, "CDNSKEY"), (.rp, "RP"), (.afsdb, "AFSDB"), (.rt, "RT"), (.naptr, "NAPTR"), (.kx, "KX"), (.cert, "CERT"),
        (.rrsig, "RRSIG"), (.nsec, "NSEC"), (.dhcid, "DHCID"), (.nsec3, "NSEC3"), (.nsec3param, "NSEC3PARAM"), (.smimea, "SMIMEA"),
        (.openpgpkey, "OPENPGPKEY"), (.svcb, "SVCB"), (.https, "HTTPS"), (.spf, "SPF"), (.eui48, "EUI48"), (.eui64, "EUI64"),
        (.uri, "URI"), (.loc, "LOC"), (.csync, "CSYNC"), (.zonemd, "ZONEMD"), (.nid, "NID"), (.l32, "L32"),
        (.l64, "L64"), (.lp, "LP"), (.minfo, "MINFO"), (.apl, "APL"), (.ipseckey, "IPSECKEY"), (.key, "KEY"),
    ]

    /// The type's mnemonic ("AAAA"), or the generic form ("TYPE65") of RFC 3597.
    public var description: String { Self.names.first { $0.0 == self }?.1 ?? "TYPE\(rawValue)" }

    /// The type a mnemonic or `TYPEnnn` names, in any case.
    public init?(_ text: some StringProtocol) {
        let upper = text.uppercased()
        if let known = Self.names.first(where: { $0.1 == upper }) {
            self = known.0
        } else if upper.hasPrefix("TYPE"), let value = DNSZoneFile.decimal(upper.dropFirst(4), as: UInt16.self) {
            self.init(rawValue: value)
        } else {
            return nil
        }
    }
}

/// The response codes this module sends and reads (RFC 1035, RFC 6891 for BADVERS).
public struct DNSResponseCode: RawRepresentable, Hashable, Sendable, CustomStringConvertible {
    /// The 12-bit extended code (the header's 4 bits plus the OPT record's 8).
    public var rawValue: UInt16
    /// The code numbered `rawValue`.
    public init(rawValue: UInt16) { self.rawValue = rawValue }

    public static let noError = DNSResponseCode(rawValue: 0)
    public static let formatError = DNSResponseCode(rawValue: 1)
    public static let serverFailure = DNSResponseCode(rawValue: 2)
    public static let nameError = DNSResponseCode(rawValue: 3)
    public static let notImplemented = DNSResponseCode(rawValue: 4)
    public static let refused = DNSResponseCode(rawValue: 5)
    /// YXDOMAIN: a name that should not exist does (RFC 6672: a DNAME's substitution would be too long).
    public static let nameExists = DNSResponseCode(rawValue: 6)
    public static let notAuthorized = DNSResponseCode(rawValue: 9)
    public static let badVersion = DNSResponseCode(rawValue: 16)

    public var description: String {
        switch rawValue {
        case 0: "NOERROR"
        case 1: "FORMERR"
        case 2: "SERVFAIL"
        case 3: "NXDOMAIN"
        case 4: "NOTIMP"
        case 5: "REFUSED"
        case 6: "YXDOMAIN"
        case 9: "NOTAUTH"
        case 16: "BADVERS"
        default: "RCODE\(rawValue)"
        }
    }
}

/// Why a message, name or zone could not be read.
public enum DNSError: Error, Equatable, Sendable, CustomStringConvertible {
    /// The message ends inside a field.
    case truncated
    /// A label longer than 63 bytes, or of a reserved kind (0x40, 0x80).
    case badLabel
    /// A name longer than 255 bytes.
    case nameTooLong
    /// A compression pointer that does not point backwards, or too many of them.
    case badPointer
    /// Section counts that do not match the message.
    case badCount
    /// An OPT record outside the additional section, not at the root, or more than one.
    case badOPT
    /// A zone file line that cannot be read, with where and why; line 0 for a check of the whole
    /// zone (a CNAME with other data, names below a DNAME, no SOA).
    case zoneSyntax(line: Int, reason: String)

    public var description: String {
        switch self {
        case .truncated: "the message ends inside a field"
        case .badLabel: "a label over 63 bytes or of a reserved kind"
        case .nameTooLong: "a name over 255 bytes"
        case .badPointer: "a compression pointer that does not point backwards, or too many"
        case .badCount: "section counts larger than the message"
        case .badOPT: "an OPT record in the wrong place, or twice"
        case .zoneSyntax(let line, let reason): line > 0 ? "zone file line \(line): \(reason)" : reason
        }
    }
}
