/// Reading DNS messages in place: names with bounded decompression, integers in network order.
public enum DNSWire {
    /// Compression pointers followed in one name at most (each must point backwards, so a loop is impossible anyway).
    public static let maximumPointers = 127
    /// The fixed header's length.
    public static let headerLength = 12

    /// ASCII lower case of one byte (names compare without case, RFC 4343).
    @inlinable
    public static func lower(_ byte: UInt8) -> UInt8 { byte &- 0x41 < 26 ? byte | 0x20 : byte }

    /// FNV-1a over the lowercased bytes.
    @inlinable
    public static func hash(_ bytes: some Sequence<UInt8>) -> UInt64 {
        var hash: UInt64 = 0xCBF2_9CE4_8422_2325
        for byte in bytes { hash = (hash ^ UInt64(lower(byte))) &* 0x100_0000_01B3 }
        return hash
    }

    @inlinable
    static func u16(_ message: UnsafeRawBufferPointer, _ offset: Int) -> UInt16 {
        UInt16(message[offset]) << 8 | UInt16(message[offset + 1])
    }

    @inlinable
    static func u32(_ message: UnsafeRawBufferPointer, _ offset: Int) -> UInt32 {
        UInt32(u16(message, offset)) << 16 | UInt32(u16(message, offset + 2))
    }

    /// Reads the name at `offset`, following compression pointers, and writes it uncompressed
    /// (case kept) to `output` (room for 255 bytes) when given.
    ///
    /// - Returns: where the name ends in place (after its first pointer, or its root byte), and
    ///   the length of the uncompressed name.
    /// - Throws: ``DNSError/truncated``, ``DNSError/badLabel`` (over 63, or the reserved 0x40
    ///   and 0x80 kinds), ``DNSError/nameTooLong``, ``DNSError/badPointer`` (not strictly
    ///   backwards, or more than ``maximumPointers``).
    @inlinable
    public static func readName(_ message: UnsafeRawBufferPointer, at offset: Int,
                                into output: UnsafeMutablePointer<UInt8>? = nil) throws(DNSError) -> (end: Int, length: Int) {
        var position = offset
        var end: Int?
        var length = 0
        var pointers = 0
        // Pointers must go strictly backwards from the lowest place read so far.
        var limit = offset
        while true {
            guard position < message.count else { throw .truncated }
            let byte = Int(message[position])
            switch byte & 0xC0 {
            case 0xC0:
                guard position + 1 < message.count else { throw .truncated }
                let target = (byte & 0x3F) << 8 | Int(message[position + 1])
                pointers += 1
                guard target < limit, pointers <= maximumPointers else { throw .badPointer }
                if end == nil { end = position + 2 }
                position = target
                limit = target
            case 0:
                guard position + 1 + byte <= message.count else { throw .truncated }
                guard length + 1 + byte <= 255 else { throw .nameTooLong }
                if let output {
                    output[length] = UInt8(byte)
                    for i in 0..<byte { output[length + 1 + i] = message[position + 1 + i] }
                }
                length += 1 + byte
                if byte == 0 { return (end ?? position + 1, length) }
                position += 1 + byte
            default:
                throw .badLabel
            }
        }
    }

    /// Reads the name at `offset` as a ``DNSName``.
    public static func name(_ message: UnsafeRawBufferPointer, at offset: Int) throws(DNSError) -> (DNSName, end: Int) {
        var bytes = [UInt8](repeating: 0, count: 255)
        let result = bytes.withUnsafeMutableBufferPointer { buffer in
            Result { () throws(DNSError) in try readName(message, at: offset, into: buffer.baseAddress!) }
        }
        let (end, length) = try result.get()
        return (DNSName(validatedWire: Array(bytes[..<length])), end)
    }
}

/// The fixed 12-byte header, read from and written to a message in place.
public struct DNSHeader: Hashable, Sendable {
    public var id: UInt16 = 0
    /// The second 16-bit word: QR, opcode, AA, TC, RD, RA, Z, AD, CD, RCODE.
    public var flags: UInt16 = 0
    public var questionCount: UInt16 = 0
    public var answerCount: UInt16 = 0
    public var authorityCount: UInt16 = 0
    public var additionalCount: UInt16 = 0

    /// An empty header.
    public init() {}

    /// Reads the header at the start of `message` (at least 12 bytes).
    @inlinable
    public init(_ message: UnsafeRawBufferPointer) {
        id = DNSWire.u16(message, 0)
        flags = DNSWire.u16(message, 2)
        questionCount = DNSWire.u16(message, 4)
        answerCount = DNSWire.u16(message, 6)
        authorityCount = DNSWire.u16(message, 8)
        additionalCount = DNSWire.u16(message, 10)
    }

    /// Writes the header at the start of `message`.
    @inlinable
    public func store(_ message: UnsafeMutableRawPointer) {
        message.storeBytes(of: id.bigEndian, as: UInt16.self)
        message.storeBytes(of: flags.bigEndian, toByteOffset: 2, as: UInt16.self)
        message.storeBytes(of: questionCount.bigEndian, toByteOffset: 4, as: UInt16.self)
        message.storeBytes(of: answerCount.bigEndian, toByteOffset: 6, as: UInt16.self)
        message.storeBytes(of: authorityCount.bigEndian, toByteOffset: 8, as: UInt16.self)
        message.storeBytes(of: additionalCount.bigEndian, toByteOffset: 10, as: UInt16.self)
    }

    public static let response: UInt16 = 0x8000
    public static let authoritative: UInt16 = 0x0400
    public static let truncated: UInt16 = 0x0200
    public static let recursionDesired: UInt16 = 0x0100
    public static let recursionAvailable: UInt16 = 0x0080
    public static let authenticData: UInt16 = 0x0020
    public static let checkingDisabled: UInt16 = 0x0010

    /// QR: a response.
    public var isResponse: Bool { flags & Self.response != 0 }
    /// The opcode (0 for a standard query).
    public var opcode: UInt8 { UInt8((flags >> 11) & 0xF) }
    /// The header's 4 bits of response code.
    public var responseCode: UInt8 { UInt8(flags & 0xF) }
    /// TC.
    public var isTruncated: Bool { flags & Self.truncated != 0 }
    /// AA.
    public var isAuthoritative: Bool { flags & Self.authoritative != 0 }
}
