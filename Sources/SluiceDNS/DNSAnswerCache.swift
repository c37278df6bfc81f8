/// Responses already worked out, per worker: for a question (its name without case, its type)
/// the bytes after the question, their counts and flags. Compression pointers in them point
/// into the question, whose layout depends only on the name's labels, so the same bytes answer
/// the same name in any case. A hit is one probe and one copy, and allocates nothing.
///
/// Bounded: a fixed table of slots; a new answer takes the slot of the one it collides with.
final class DNSAnswerCache {
    struct Entry {
        var hash: UInt64
        var type: UInt16
        /// The question's name, lower case.
        var name: [UInt8]
        /// The header's flags to set: AA and the response code.
        var flags: UInt16
        var answerCount: UInt16
        var authorityCount: UInt16
        var additionalCount: UInt16
        /// The sections, as they follow the question.
        var tail: [UInt8]
    }

    /// Slots: a power of two.
    static let capacity = 4096
    private var slots: [Entry?] = Array(repeating: nil, count: capacity)

    static func hash(_ name: UnsafePointer<UInt8>, length: Int, type: UInt16) -> UInt64 {
        DNSWire.hash(UnsafeBufferPointer(start: name, count: length)) ^ (UInt64(type) &* 0x9E37_79B9_7F4A_7C15)
    }

    /// The entry for `type` at `name` (`length` bytes, any case), if kept.
    func lookup(_ name: UnsafePointer<UInt8>, length: Int, type: UInt16, hash: UInt64) -> Int? {
        let index = Int(truncatingIfNeeded: hash) & (Self.capacity - 1)
        guard let entry = slots[index], entry.hash == hash, entry.type == type,
              DNSWire.equalNames(name, length, entry.name) else { return nil }
        return index
    }

    /// Calls `body` with the entry at `index` (from ``lookup``), without copying it.
    func withEntry<R>(_ index: Int, _ body: (borrowing Entry) -> R) -> R {
        body(slots[index]!)
    }

    /// Keeps `entry`, in place of whatever held its slot.
    func store(_ entry: Entry) {
        slots[Int(truncatingIfNeeded: entry.hash) & (Self.capacity - 1)] = entry
    }
}
