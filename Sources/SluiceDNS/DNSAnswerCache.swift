/// Responses already worked out, per worker: for a question (its name without case, its type,
/// and the query's DO bit) the bytes after the question, their counts and flags. Compression pointers in them point
/// into the question, whose layout depends only on the name's labels, so the same bytes answer
/// the same name in any case. A hit is one probe and one copy: no allocation, no reference
/// counting (entries are plain values over memory the cache owns).
///
/// Bounded: a fixed table of slots; a new answer takes the slot of the one it collides with.
final class DNSAnswerCache {
    struct Entry {
        var hash: UInt64 = 0
        var type: UInt16 = 0
        var dnssec = false
        var nameLength = 0
        /// The header's flags to set: AA and the response code.
        var flags: UInt16 = 0
        var answerCount: UInt16 = 0
        var authorityCount: UInt16 = 0
        var additionalCount: UInt16 = 0
        var tailLength = 0
        /// What the answer is to the rate limiter.
        var limitKey: UInt64 = 0
        /// The name in lower case, then the tail; `nil` for an empty slot.
        var storage: UnsafeMutableRawPointer?
    }

    /// Slots: a power of two.
    static let capacity = 4096
    let slots: UnsafeMutablePointer<Entry>

    init() {
        slots = .allocate(capacity: Self.capacity)
        slots.initialize(repeating: Entry(), count: Self.capacity)
    }

    deinit {
        for index in 0..<Self.capacity { slots[index].storage?.deallocate() }
        slots.deallocate()
    }

    /// Mixed into ``hash(_:length:type:)`` for a query with the DO bit.
    static let dnssecKey: UInt64 = 0x5DEE_CE66_D1CE_5EC5

    /// A hash of `name` in any case (ASCII letters folded, as ``DNSWire/lower(_:)`` does) and
    /// `type`, eight bytes at a time: a byte-at-a-time hash was a fifth of answering from the cache.
    static func hash(_ name: UnsafePointer<UInt8>, length: Int, type: UInt16) -> UInt64 {
        let bytes = UnsafeRawPointer(name)
        var hash: UInt64 = 0xCBF2_9CE4_8422_2325 ^ UInt64(type) ^ UInt64(truncatingIfNeeded: length) << 16
        var index = 0
        while index + 8 <= length {
            hash = mix(hash, lowercased(bytes.loadUnaligned(fromByteOffset: index, as: UInt64.self)))
            index += 8
        }
        if index < length {
            var tail: UInt64 = 0
            withUnsafeMutableBytes(of: &tail) { $0.baseAddress!.copyMemory(from: bytes + index, byteCount: length - index) }
            hash = mix(hash, lowercased(tail))
        }
        // The slot is the low bits: let every input bit reach them (MurmurHash3's finalizer).
        hash ^= hash >> 33
        hash &*= 0xFF51_AFD7_ED55_8CCD
        return hash ^ hash >> 33
    }

    /// Eight bytes with 'A' to 'Z' made 'a' to 'z', every byte at once: bytes of 0x80 and up are
    /// kept out, so no sum carries into the next byte.
    static func lowercased(_ word: UInt64) -> UInt64 {
        let ones: UInt64 = 0x0101_0101_0101_0101
        let ascii = word & (0x7F &* ones)
        let atLeastA = (ascii &+ (0x80 - 0x41) &* ones) & ~word
        let pastZ = ascii &+ (0x80 - 0x5B) &* ones
        let upper = atLeastA & ~pastZ & (0x80 &* ones)
        return word | upper >> 2
    }

    static func mix(_ hash: UInt64, _ word: UInt64) -> UInt64 {
        let product = (hash ^ word) &* 0x9E37_79B9_7F4A_7C15
        return product << 29 | product >> 35
    }

    /// The entry for `type` at `name` (`length` bytes, any case) with or without `dnssec`, if kept.
    func lookup(_ name: UnsafePointer<UInt8>, length: Int, type: UInt16, dnssec: Bool, hash: UInt64) -> UnsafeMutablePointer<Entry>? {
        let slot = slots + (Int(truncatingIfNeeded: hash) & (Self.capacity - 1))
        guard let storage = slot.pointee.storage, slot.pointee.hash == hash, slot.pointee.type == type, slot.pointee.dnssec == dnssec,
              slot.pointee.nameLength == length else { return nil }
        let kept = storage.assumingMemoryBound(to: UInt8.self)
        for index in 0..<length where DNSWire.lower(name[index]) != kept[index] { return nil }
        return slot
    }

    /// The tail of `entry`.
    static func tail(_ entry: UnsafeMutablePointer<Entry>) -> UnsafeRawBufferPointer {
        UnsafeRawBufferPointer(start: entry.pointee.storage! + entry.pointee.nameLength, count: entry.pointee.tailLength)
    }

    /// Keeps the answer to `type` at `name` (`length` bytes) with or without `dnssec`, in place of whatever held its slot.
    func store(hash: UInt64, type: UInt16, dnssec: Bool, name: UnsafePointer<UInt8>, length: Int, limitKey: UInt64, flags: UInt16,
               counts: (UInt16, UInt16, UInt16), tail: UnsafeRawBufferPointer) {
        let slot = slots + (Int(truncatingIfNeeded: hash) & (Self.capacity - 1))
        slot.pointee.storage?.deallocate()
        let storage = UnsafeMutableRawPointer.allocate(byteCount: max(1, length + tail.count), alignment: 8)
        for index in 0..<length { storage.storeBytes(of: DNSWire.lower(name[index]), toByteOffset: index, as: UInt8.self) }
        if let base = tail.baseAddress { (storage + length).copyMemory(from: base, byteCount: tail.count) }
        slot.pointee = Entry(hash: hash, type: type, dnssec: dnssec, nameLength: length, flags: flags, answerCount: counts.0,
                             authorityCount: counts.1, additionalCount: counts.2, tailLength: tail.count, limitKey: limitKey,
                             storage: storage)
    }
}
