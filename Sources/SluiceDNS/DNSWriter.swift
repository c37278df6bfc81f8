/// Writes a DNS message into a buffer, compressing names against those already written
/// (RFC 1035 section 4.1.4): each name becomes its new labels and a pointer to the longest
/// suffix the message holds. Nothing allocates: the table of places is the caller's, fixed-size.
public struct DNSWriter: ~Copyable {
    /// The message's first byte.
    public let base: UnsafeMutableRawPointer
    /// The most bytes the message may take.
    public var capacity: Int
    /// Bytes written so far.
    public var count: Int
    /// Places of labels already written (offsets below 0x4000), for compression.
    @usableFromInline let places: UnsafeMutablePointer<UInt16>
    @usableFromInline var placeCount = 0
    /// How many label places compression keeps.
    public static let maximumPlaces = 64

    /// A writer over `capacity` bytes at `base`, starting at `count` (the header written
    /// already, say), keeping the places of names in `places` (room for ``maximumPlaces``).
    public init(base: UnsafeMutableRawPointer, capacity: Int, count: Int = 0, places: UnsafeMutablePointer<UInt16>) {
        self.base = base
        self.capacity = capacity
        self.count = count
        self.places = places
    }

    /// Forgets the places of names written at or after `offset` (the writer went back there).
    public mutating func rewind(to offset: Int) {
        count = offset
        while placeCount > 0 && Int(places[placeCount - 1]) >= offset { placeCount -= 1 }
    }

    /// Remembers the name starting at `offset` (already in the message, uncompressed or not)
    /// as a target for compression: the question's name, say.
    public mutating func remember(nameAt offset: Int) {
        var position = offset
        let message = UnsafeRawBufferPointer(start: base, count: count)
        while position < count, placeCount < Self.maximumPlaces {
            let length = Int(message[position])
            guard length != 0, length & 0xC0 == 0, position < 0x4000 else { return }
            places[placeCount] = UInt16(position)
            placeCount += 1
            position += 1 + length
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

    /// Writes `wire` (an uncompressed name), compressed when `compress` and a suffix is in the
    /// message already. `false` when it does not fit (nothing is written then).
    public mutating func write(name wire: [UInt8], compress: Bool = true) -> Bool {
        wire.withUnsafeBufferPointer { write(name: $0.baseAddress!, length: $0.count, compress: compress) }
    }

    /// ``write(name:compress:)`` for a name at `name`, `length` bytes.
    public mutating func write(name: UnsafePointer<UInt8>, length: Int, compress: Bool = true) -> Bool {
        let start = count
        let placesBefore = placeCount
        var offset = 0
        while name[offset] != 0 {
            if compress, let target = find(name + offset) {
                guard count + 2 <= capacity else { rewind(to: start); placeCount = placesBefore; return false }
                base.storeBytes(of: (0xC000 | UInt16(target)).bigEndian, toByteOffset: count, as: UInt16.self)
                count += 2
                return true
            }
            let label = Int(name[offset])
            guard count + 1 + label <= capacity else { rewind(to: start); placeCount = placesBefore; return false }
            if count < 0x4000, placeCount < Self.maximumPlaces {
                places[placeCount] = UInt16(count)
                placeCount += 1
            }
            (base + count).copyMemory(from: name + offset, byteCount: 1 + label)
            count += 1 + label
            offset += 1 + label
        }
        guard count + 1 <= capacity else { rewind(to: start); placeCount = placesBefore; return false }
        base.storeBytes(of: UInt8(0), toByteOffset: count, as: UInt8.self)
        count += 1
        return true
    }

    /// A remembered place whose name (followed through pointers) equals `suffix`, without case.
    func find(_ suffix: UnsafePointer<UInt8>) -> Int? {
        let message = UnsafeRawBufferPointer(start: base, count: count)
        for index in 0..<placeCount {
            let place = Int(places[index])
            if Self.matches(message, at: place, suffix) { return place }
        }
        return nil
    }

    static func matches(_ message: UnsafeRawBufferPointer, at place: Int, _ suffix: UnsafePointer<UInt8>) -> Bool {
        var position = place
        var offset = 0
        var hops = 0
        while true {
            guard position < message.count else { return false }
            let byte = Int(message[position])
            if byte & 0xC0 == 0xC0 {
                guard position + 1 < message.count, hops < DNSWire.maximumPointers else { return false }
                position = (byte & 0x3F) << 8 | Int(message[position + 1])
                hops += 1
                continue
            }
            guard byte == Int(suffix[offset]) else { return false }
            if byte == 0 { return true }
            guard position + 1 + byte <= message.count else { return false }
            for i in 1...byte where DNSWire.lower(message[position + i]) != DNSWire.lower(suffix[offset + i]) { return false }
            position += 1 + byte
            offset += 1 + byte
        }
    }
}
