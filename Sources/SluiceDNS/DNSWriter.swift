/// Writes a DNS message into a buffer, compressing names as Knot DNS does (RFC 1035 section
/// 4.1.4), so an authoritative answer is Knot's byte for byte: each name is compressed against
/// one suffix, the question's name or the last name written with labels of its own (similar
/// names come together), and an owner goes back to the question's name when it is neither that
/// suffix nor a name the caller points at (a set's first owner, a glue record's server name).
/// Nothing allocates.
public struct DNSWriter: ~Copyable {
    /// The message's first byte.
    public let base: UnsafeMutableRawPointer
    /// The most bytes the message may take.
    public var capacity: Int
    /// Bytes written so far.
    public var count: Int
    /// Where the name later names are compressed against starts, and its labels; 0 until
    /// ``compressAgainstQuestion()``: no compression without a question, as in Knot.
    var suffix = 0
    var suffixLabels = 0
    var questionLabels = 0
    /// Where the owner of the record written last is (the place later owners of its set can
    /// point at), 0 when it cannot be pointed at.
    public internal(set) var ownerPlace = 0
    /// Where the first name in the data of the record written last begins, 0 for none.
    public internal(set) var dataNamePlace = 0
    /// The furthest a compression pointer reaches.
    static let pointerLimit = 0x3FFF

    /// A writer over `capacity` bytes at `base`, starting at `count` (the header written
    /// already, say).
    public init(base: UnsafeMutableRawPointer, capacity: Int, count: Int = 0) {
        self.base = base
        self.capacity = capacity
        self.count = count
    }

    /// Compresses names from here on, against the question's name (the one after the header).
    public mutating func compressAgainstQuestion() {
        suffix = DNSWire.headerLength
        suffixLabels = labels(at: suffix)
        questionLabels = suffixLabels
    }

    /// Goes back to `offset`, dropping what was written after it; names compress against the
    /// question's again if their suffix was dropped.
    public mutating func rewind(to offset: Int) {
        count = offset
        if suffix >= offset, suffix != 0 {
            suffix = DNSWire.headerLength
            suffixLabels = questionLabels
        }
    }

    @inlinable
    public mutating func write(_ value: UInt8) -> Bool {
        guard count + 1 <= capacity else { return false }
        base.storeBytes(of: value, toByteOffset: count, as: UInt8.self)
        count += 1
        return true
    }

    @inlinable
    public mutating func write(_ value: UInt16) -> Bool {
        guard count + 2 <= capacity else { return false }
        base.storeBytes(of: value.bigEndian, toByteOffset: count, as: UInt16.self)
        count += 2
        return true
    }

    @inlinable
    public mutating func write(_ value: UInt32) -> Bool {
        guard count + 4 <= capacity else { return false }
        base.storeBytes(of: value.bigEndian, toByteOffset: count, as: UInt32.self)
        count += 4
        return true
    }

    @inlinable
    public mutating func write(bytes: UnsafeRawBufferPointer) -> Bool {
        guard count + bytes.count <= capacity else { return false }
        if let source = bytes.baseAddress { (base + count).copyMemory(from: source, byteCount: bytes.count) }
        count += bytes.count
        return true
    }

    public mutating func write(bytes: [UInt8]) -> Bool {
        bytes.withUnsafeBytes { write(bytes: $0) }
    }

    /// Writes `wire` (an uncompressed name), compressed against the suffix when `compress` (and a
    /// question is there to begin with). `false` when it does not fit (nothing is written then).
    public mutating func write(name wire: [UInt8], compress: Bool = true) -> Bool {
        wire.withUnsafeBufferPointer { write(name: $0.baseAddress!, length: $0.count, compress: compress) }
    }

    /// ``write(name:compress:)`` for a name at `name`, `length` bytes.
    public mutating func write(name: UnsafePointer<UInt8>, length: Int, compress: Bool = true) -> Bool {
        guard compress, suffix != 0, name[0] != 0 else {
            guard count + length <= capacity else { return false }
            (base + count).copyMemory(from: name, byteCount: length)
            count += length
            return true
        }
        let start = count
        var nameLabels = 0
        var offset = 0
        while name[offset] != 0 {
            nameLabels += 1
            offset += 1 + Int(name[offset])
        }
        // Align the suffix with the name: drop its first labels, or write the name's own.
        var place = suffix
        var placeLabels = suffixLabels
        while placeLabels > nameLabels {
            place = nextLabel(after: place)
            placeLabels -= 1
        }
        offset = 0
        var labelsLeft = nameLabels
        while labelsLeft > placeLabels {
            offset += 1 + Int(name[offset])
            labelsLeft -= 1
        }
        guard copy(name, 0..<offset, start: start) else { return false }
        // The longest run of equal labels that reaches the root is pointed at.
        var matchBegin = offset
        var pointer = place
        while name[offset] != 0 {
            let next = offset + 1 + Int(name[offset])
            let nextPlace = nextLabel(after: place)
            if !labelsEqual(name + offset, at: place) {
                guard copy(name, matchBegin..<next, start: start) else { return false }
                matchBegin = next
                pointer = nextPlace
            }
            offset = next
            place = nextPlace
        }
        if matchBegin == offset {
            guard write(UInt8(0)) else { count = start; return false }
        } else {
            guard write(UInt16(0xC000 | pointer)) else { count = start; return false }
        }
        if count - start > 2, count < Self.pointerLimit {
            suffix = start
            suffixLabels = nameLabels
        }
        return true
    }

    /// Writes the first name of a record's data, noting its place (``dataNamePlace``): glue
    /// records' owners point there.
    mutating func write(dataName wire: [UInt8], compress: Bool = true) -> Bool {
        let start = count
        guard write(name: wire, compress: compress) else { return false }
        dataNamePlace = count < Self.pointerLimit ? follow(start) : 0
        return true
    }

    /// Writes a record's owner: a pointer to `hint` (where the same name is), else a pointer to
    /// the suffix when it is that name, else the name compressed against the question's.
    /// - Returns: where later owners of the same set can point (0: nowhere), `nil` when it does not fit.
    public mutating func write(owner wire: [UInt8], hint: Int) -> Int? {
        let isRoot = wire.first == 0
        if hint != 0, !isRoot {
            return write(UInt16(0xC000 | hint)) ? hint : nil
        }
        if suffix != 0, !isRoot, wire.withUnsafeBufferPointer({ nameEquals($0.baseAddress!, at: suffix) }) {
            guard write(UInt16(0xC000 | suffix)) else { return nil }
            return suffix + wire.count < Self.pointerLimit ? suffix : 0
        }
        if suffix != 0 {
            suffix = DNSWire.headerLength
            suffixLabels = questionLabels
        }
        let start = count
        guard write(name: wire) else { return nil }
        return count < Self.pointerLimit ? follow(start) : 0
    }

    /// Copies `range` of `name`; on failure goes back to `start`.
    mutating func copy(_ name: UnsafePointer<UInt8>, _ range: Range<Int>, start: Int) -> Bool {
        guard count + range.count <= capacity else { count = start; return false }
        (base + count).copyMemory(from: name + range.lowerBound, byteCount: range.count)
        count += range.count
        return true
    }

    /// The label after the one at `place` in the message, pointers followed.
    func nextLabel(after place: Int) -> Int {
        follow(place + 1 + Int(base.load(fromByteOffset: place, as: UInt8.self)))
    }

    /// `place`, or where the pointers starting there lead.
    func follow(_ place: Int) -> Int {
        var position = place
        var hops = 0
        while position + 1 < count, hops < DNSWire.maximumPointers {
            let byte = base.load(fromByteOffset: position, as: UInt8.self)
            guard byte & 0xC0 == 0xC0 else { break }
            position = Int(byte & 0x3F) << 8 | Int(base.load(fromByteOffset: position + 1, as: UInt8.self))
            hops += 1
        }
        return position
    }

    /// The labels of the name at `place` in the message.
    func labels(at place: Int) -> Int {
        var position = follow(place)
        var labels = 0
        while position < count, base.load(fromByteOffset: position, as: UInt8.self) != 0, labels < 128 {
            labels += 1
            position = nextLabel(after: position)
        }
        return labels
    }

    /// Whether the label at `label` equals the one at `place` in the message, without case.
    func labelsEqual(_ label: UnsafePointer<UInt8>, at place: Int) -> Bool {
        let length = Int(label[0])
        guard base.load(fromByteOffset: place, as: UInt8.self) == label[0] else { return false }
        for index in stride(from: 1, through: length, by: 1)
        where DNSWire.lower(base.load(fromByteOffset: place + index, as: UInt8.self)) != DNSWire.lower(label[index]) {
            return false
        }
        return true
    }

    /// Whether the name at `place` in the message (pointers followed) is `name`, without case.
    func nameEquals(_ name: UnsafePointer<UInt8>, at place: Int) -> Bool {
        var position = follow(place)
        var offset = 0
        while true {
            guard labelsEqual(name + offset, at: position) else { return false }
            if name[offset] == 0 { return true }
            offset += 1 + Int(name[offset])
            position = nextLabel(after: position)
        }
    }
}

/// Where names are already in a message being written, as Knot keeps them (its compression
/// hints): each set's owner, where its RRSIGs point, and the servers named by the first 15
/// records of NS, MX and SRV sets, where their glue addresses point. Sets go through
/// ``beginSet(_:section:)`` then ``write(_:to:)`` for each record.
struct DNSSetWriter {
    struct Owner: Hashable {
        var name: DNSName
        var type: DNSRecordType
    }

    /// Looked up by name, not searched: a section of hundreds of sets stays linear.
    private var owners: [Owner: Int] = [:]
    private var servers: [DNSName: Int] = [:]
    /// What the set being written changed, to take back: an owner's earlier place (or none),
    /// and the servers it added.
    private var replacedOwner: (Owner, Int?)?
    private var addedServers: [DNSName] = []
    private var hint = 0
    private var indexInSet = 0
    private var section = 0

    /// Begins the set `record` opens in `section` (0 answer, 1 authority, 2 additional).
    mutating func beginSet(_ record: DNSRecord, section: Int) {
        self.section = section
        replacedOwner = nil
        addedServers.removeAll(keepingCapacity: true)
        indexInSet = 0
        if let covered = record.coveredType {
            hint = owners[Owner(name: record.name, type: covered)] ?? 0
        } else if section == 2, record.type == .a || record.type == .aaaa {
            hint = servers[record.name] ?? 0
        } else {
            hint = 0
        }
    }

    /// Writes the set's next record; `false` when it does not fit (the writer is back where it was).
    mutating func write(_ record: DNSRecord, to writer: inout DNSWriter) -> Bool {
        guard record.write(to: &writer, ownerHint: hint) else { return false }
        // The rest of the set points at its first owner; the last set of a name and type is
        // the one its RRSIGs point at.
        if indexInSet == 0 {
            hint = writer.ownerPlace
            let owner = Owner(name: record.name, type: record.type)
            replacedOwner = (owner, owners.updateValue(hint, forKey: owner))
        }
        // The first record naming a server is the one its glue points at.
        if section < 2, indexInSet < 15, writer.dataNamePlace != 0, let server = record.server, servers[server] == nil {
            servers[server] = writer.dataNamePlace
            addedServers.append(server)
        }
        indexInSet += 1
        return true
    }

    /// Forgets the places the set being written noted: it was taken back.
    mutating func dropSet() {
        if let (owner, earlier) = replacedOwner { owners[owner] = earlier }
        for server in addedServers { servers[server] = nil }
        replacedOwner = nil
        addedServers.removeAll(keepingCapacity: true)
    }
}
