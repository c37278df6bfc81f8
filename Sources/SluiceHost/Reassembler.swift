import SluiceCore
import SluicePackets

/// IPv4 and IPv6 reassembly (RFC 791 section 3.2, RFC 8200 section 4.5) under the kernel's
/// rules: a fragment wholly inside one run of fragments already received (those that came
/// each where the last ended) is a duplicate and is dropped alone; one that partly overlaps,
/// or spans two runs, ends its datagram (RFC 5722); so does a zero-length fragment, or
/// an end that disagrees with the last fragment's. A non-final IPv4 fragment is cut to a
/// multiple of 8 bytes, a non-final IPv6 one that is not is dropped. An IPv6 atomic fragment
/// (offset 0, no more fragments; RFC 6946) is a whole datagram at once.
///
/// Memory is bounded: at most ``ReassemblyLimits/datagrams`` datagrams at once (and half the
/// pool's frames, leaving the rest to receiving and sending), each in one pool frame, at most ``ReassemblyLimits/datagramsPerSource`` from one source; a newer one
/// evicts the oldest, and a datagram not whole by its timeout is dropped. Every fragment is
/// copied into its datagram's frame at its offset, so the fragment's own frame goes straight
/// back to the pool, and the datagram leaves in a frame of its own, headers first.
public struct Reassembler: ~Copyable {
    /// Bytes kept in front of a datagram's payload for the link header and the IP header with
    /// its options or unfragmentable extension headers.
    public static let headerRoom = 320

    /// The smallest frame that holds any reassembled datagram, in a pool with `headroom`.
    public static func minimumFrameSize(headroom: Int) -> Int { headroom + headerRoom + 65535 }

    /// Bytes per bit of a datagram's coverage map: fragments start on 8-byte boundaries.
    static let blockSize = 8
    /// Words per map: one bit for each 8 bytes of 64 KiB.
    static let wordsPerMap = 65536 / blockSize / 64
    /// Each datagram's two maps: the blocks received, then the blocks where a run of fragments starts.
    static let wordsPerSlot = 2 * wordsPerMap
    /// IPv6 extension headers walked before giving up on finding the fragment header.
    static let extensionHeaderLimit = 8

    struct Slot {
        var inUse = false
        var isIPv6 = false
        var source: IPAddress = .v4(.any)
        var destination: IPAddress = .v4(.any)
        var identification: UInt32 = 0
        var protocolNumber: UInt8 = 0
        var frame: UInt64 = 0
        var started = Instant.zero
        var deadline = Instant.zero
        /// The ECN codepoints its fragments carried, one bit each (1 << codepoint).
        var ecn: UInt8 = 0
        /// The payload length, once the last fragment has come; -1 before.
        var length = -1
        var highestEnd = 0
        var received = 0
        /// The link and IP header copied from the first fragment; 0 until it comes.
        var headerLength = 0
        var networkOffset = 0
        /// The first fragment's data bytes, and (IPv6) where in its headers the fragment header
        /// was named: what an ICMP error on its timeout quotes.
        var firstLength = 0
        var fragmentHeaderField = 0
    }

    /// What reassembly has done so far.
    public private(set) var counters = ReassemblyCounters()
    /// Datagrams being reassembled now (each holds one frame).
    public private(set) var activeDatagrams = 0
    /// The most datagrams reassembled at once.
    public var capacity: Int { slots.count }

    let pool: FramePool
    let limits: ReassemblyLimits
    var slots: [Slot]
    /// The maps of every slot (``wordsPerSlot`` words each).
    let coverage: UnsafeMutablePointer<UInt64>

    /// A reassembler drawing its frames from `pool`, whose frames must be at least
    /// ``minimumFrameSize(headroom:)``, within `limits`.
    public init(pool: FramePool, limits: ReassemblyLimits) {
        precondition(pool.frameSize >= Self.minimumFrameSize(headroom: pool.headroom),
                     "reassembly needs frames of \(Self.minimumFrameSize(headroom: pool.headroom)) bytes")
        self.pool = pool
        self.limits = limits
        slots = Array(repeating: Slot(), count: max(1, min(limits.datagrams, pool.frameCount / 2)))
        coverage = .allocate(capacity: slots.count * Self.wordsPerSlot)
        coverage.initialize(repeating: 0, count: slots.count * Self.wordsPerSlot)
    }

    deinit {
        for slot in slots where slot.inUse { pool.releaseAddress(slot.frame) }
        coverage.deallocate()
    }

    /// The earliest deadline of a datagram being reassembled; `nil` when there is none. Kept
    /// as slots start and end, so asking (every loop pass) scans nothing.
    public private(set) var nextDeadline: Instant?

    mutating func updateNextDeadline() {
        nextDeadline = activeDatagrams == 0 ? nil : slots.lazy.filter(\.inUse).map(\.deadline).min()
    }

    /// Drops the datagrams whose time ran out by `now`.
    public mutating func expire(now: Instant) {
        let pool = pool
        expire(now: now) { pool.release($0) }
    }

    /// Drops the datagrams whose time ran out by `now`, and puts the first fragment of each
    /// whose first fragment came, as it arrived (link header included), into `firstFragments`
    /// while it has room: the kernel answers those with ICMP time exceeded.
    public mutating func expire(now: Instant, firstFragments: inout PacketBatch) {
        let pool = pool
        expire(now: now) { if firstFragments.isFull { pool.release($0) } else { firstFragments.append($0) } }
    }

    mutating func expire(now: Instant, firstFragment: (consuming Packet) -> Void) {
        guard activeDatagrams > 0 else { return }
        for index in slots.indices where slots[index].inUse && slots[index].deadline <= now {
            counters.timedOut &+= 1
            // Without its first fragment there is nothing to quote; an IPv6 one needs 8 bytes in
            // front of its headers to put its fragment header back.
            let room = pool.headroom + Self.headerRoom - slots[index].headerLength
            guard slots[index].headerLength > 0, !slots[index].isIPv6 || room >= 8 else {
                free(index, releasingFrame: true)
                continue
            }
            let packet = rebuildFirstFragment(index)
            free(index, releasingFrame: false)
            firstFragment(packet)
        }
    }

    /// The first fragment of slot `index` in the slot's frame, as it arrived: its headers and
    /// data are there, and an IPv6 fragment header, taken out, goes back in front of the data.
    func rebuildFirstFragment(_ index: Int) -> Packet {
        let slot = slots[index]
        let payloadStart = pool.headroom + Self.headerRoom
        var start = payloadStart - slot.headerLength
        var length = slot.headerLength + slot.firstLength
        if slot.isIPv6 {
            let frame = pool.base + Int(slot.frame)
            (frame + start - 8).copyMemory(from: frame + start, byteCount: slot.headerLength)
            start -= 8
            let network = frame + start + slot.networkOffset
            let fragment = frame + payloadStart - 8
            fragment.hostSetByte(0, network.hostByte(slot.fragmentHeaderField))
            fragment.hostSetByte(1, 0)
            fragment.hostSetBig16(2, 1)
            fragment.hostSetBig32(4, slot.identification)
            network.hostSetByte(slot.fragmentHeaderField, 44)
            length += 8
        }
        return pool.packet(at: slot.frame, offset: start, length: length)
    }

    /// Whether the IPv4 packet at `network` is a fragment (more fragments follow, or it has an offset).
    @inlinable
    public static func isIPv4Fragment(_ network: UnsafeMutableRawPointer) -> Bool {
        UInt16(bigEndian: network.loadUnaligned(fromByteOffset: 6, as: UInt16.self)) & 0x3FFF != 0
    }

    /// The offset of the IPv6 fragment header in the `length`-byte packet at `network`, and
    /// the offset of the next-header field that names it; `nil` when there is none within the
    /// first few extension headers (hop-by-hop, destination options, routing).
    public static func ipv6FragmentHeader(_ network: UnsafeMutableRawPointer, length: Int) -> (header: Int, nextHeaderField: Int)? {
        guard length >= 40 else { return nil }
        var next = network.hostByte(6)
        var field = 6
        var offset = 40
        for _ in 0..<extensionHeaderLimit {
            if next == 44 { return offset + 8 <= length ? (offset, field) : nil }
            guard next == 0 || next == 43 || next == 60, offset + 2 <= length else { return nil }
            field = offset
            next = network.hostByte(offset)
            offset += (Int(network.hostByte(offset + 1)) + 1) * 8
        }
        return nil
    }

    /// What RFC 8200 section 4.5 answers with ICMPv6 parameter problem for the IPv6 fragment of
    /// `length` bytes at `network`, checked in the kernel's order: code 3 at 0 for a first
    /// fragment without the whole header chain through the upper-layer header (RFC 7112; TCP 20
    /// bytes, UDP and ICMPv6 8, anything else 1); code 0 at the fragment offset for one whose
    /// data reaches past 65535 bytes; code 0 at the payload length (4) for a fragment not the
    /// last whose length is no multiple of 8. `nil` for the rest.
    public static func ipv6FragmentProblem(_ network: UnsafeMutableRawPointer, length: Int) -> (code: UInt8, pointer: Int)? {
        let total = 40 + Int(network.hostBig16(4))
        guard total <= length, let (fragment, _) = ipv6FragmentHeader(network, length: total) else { return nil }
        let field = network.hostBig16(fragment + 2)
        let (offset, more) = (Int(field & 0xFFF8), field & 1 != 0)
        let dataLength = total - fragment - 8
        if offset == 0 && more && lacksUpperLayerHeader(network, after: fragment + 8, next: network.hostByte(fragment), total: total) {
            return (3, 0)
        }
        if offset + dataLength > 65535 { return (0, fragment + 2) }
        if more && dataLength % 8 != 0 { return (0, 4) }
        return nil
    }

    /// Whether the headers from `position` (the first named `next`) end before the upper-layer
    /// header's first bytes do, in a packet of `total` bytes (the kernel's
    /// `ipv6frag_thdr_truncated`; a header chain it cannot walk is not its to report).
    static func lacksUpperLayerHeader(_ network: UnsafeMutableRawPointer, after position: Int, next: UInt8, total: Int) -> Bool {
        var (position, next, headers) = (position, next, 0)
        while next == 0 || next == 43 || next == 60 || next == 51, headers < extensionHeaderLimit {
            guard position + 2 <= total else { return false }
            let size = next == 51 ? (Int(network.hostByte(position + 1)) + 2) * 4 : (Int(network.hostByte(position + 1)) + 1) * 8
            next = network.hostByte(position)
            position += size
            headers += 1
        }
        let upperLength = switch next {
        case 6: 20
        case 17, 58: 8
        default: 1
        }
        return position + upperLength > total
    }

    /// Takes in `packet`, an IPv4 or IPv6 fragment whose IP header starts `networkOffset` bytes
    /// into its data (after the link header, if any).
    ///
    /// - Returns: `true` when `packet` now holds the whole datagram (in a frame of the
    ///   reassembler's; the fragment's frame went back to the pool). `false` when the fragment
    ///   was taken in (copied) or dropped (counted): the caller returns its frame to the pool.
    public mutating func insert(_ packet: inout Packet, networkOffset: Int, now: Instant) -> Bool {
        let network = packet.dataStart + networkOffset
        let available = packet.length - networkOffset
        guard available >= 20 else {
            counters.malformed &+= 1
            return false
        }
        if network.hostByte(0) >> 4 == 6 {
            return insertIPv6(&packet, network: network, available: available, networkOffset: networkOffset, now: now)
        }
        let headerLength = Int(network.hostByte(0) & 0x0F) * 4
        let total = Int(network.hostBig16(2))
        guard headerLength >= 20, total >= headerLength, total <= available, headerLength <= Self.headerRoom - networkOffset else {
            counters.malformed &+= 1
            return false
        }
        let field = network.hostBig16(6)
        let more = field & 0x2000 != 0
        let offset = Int(field & 0x1FFF) * 8
        var end = offset + total - headerLength
        // The kernel cuts a non-final fragment to whole 8-byte blocks.
        if more { end &= ~7 }
        guard end + headerLength <= 65535 else {
            counters.malformed &+= 1
            return false
        }
        let key = Slot(isIPv6: false, source: .v4(IPv4Address(networkBytesAt: network + 12)),
                       destination: .v4(IPv4Address(networkBytesAt: network + 16)),
                       identification: UInt32(network.hostBig16(4)), protocolNumber: network.hostByte(9))
        return take(&packet, key: key, offset: offset, end: end, more: more, data: network + headerLength,
                     header: packet.dataStart, headerLength: networkOffset + headerLength, networkOffset: networkOffset,
                     nextHeaderField: nil, nextHeader: 0, ecn: network.hostByte(1) & 3, now: now)
    }

    mutating func insertIPv6(_ packet: inout Packet, network: UnsafeMutableRawPointer, available: Int,
                             networkOffset: Int, now: Instant) -> Bool {
        let total = 40 + Int(network.hostBig16(4))
        guard available >= 40, total <= available,
              let (fragment, nextHeaderField) = Self.ipv6FragmentHeader(network, length: total),
              fragment <= Self.headerRoom - networkOffset
        else {
            counters.malformed &+= 1
            return false
        }
        let nextHeader = network.hostByte(fragment)
        let field = network.hostBig16(fragment + 2)
        let more = field & 1 != 0
        let offset = Int(field & 0xFFF8)
        let dataStart = fragment + 8
        let end = offset + total - dataStart
        if offset == 0 && !more {
            // An atomic fragment (RFC 6946): the datagram is here whole; take the header out.
            network.hostSetByte(nextHeaderField, nextHeader)
            network.hostSetBig16(4, UInt16(total - 48))
            let front = packet.dataStart
            (front + 8).copyMemory(from: front, byteCount: networkOffset + fragment)
            packet.pullFront(8)
            packet.length = networkOffset + total - 8
            counters.fragments &+= 1
            counters.reassembled &+= 1
            return true
        }
        // RFC 8200: a fragment that is not the last is a multiple of 8 bytes; and the
        // reassembled payload, unfragmentable headers included, fits in 65535 bytes.
        guard !more || (end - offset) % 8 == 0, end + (fragment - 40) <= 65535 else {
            counters.malformed &+= 1
            return false
        }
        let key = Slot(isIPv6: true, source: .v6(IPv6Address(networkBytesAt: network + 8)),
                       destination: .v6(IPv6Address(networkBytesAt: network + 24)),
                       identification: network.hostBig32(fragment + 4), protocolNumber: 0)
        return take(&packet, key: key, offset: offset, end: end, more: more, data: network + dataStart,
                    header: packet.dataStart, headerLength: networkOffset + fragment, networkOffset: networkOffset,
                    nextHeaderField: nextHeaderField, nextHeader: nextHeader, ecn: network.hostByte(1) >> 4 & 3, now: now)
    }

    /// The family-independent part: find or start the datagram, apply the rules, copy.
    mutating func take(_ packet: inout Packet, key: Slot, offset: Int, end: Int, more: Bool, data: UnsafeMutableRawPointer,
                       header: UnsafeMutableRawPointer, headerLength: Int, networkOffset: Int,
                       nextHeaderField: Int?, nextHeader: UInt8, ecn: UInt8, now: Instant) -> Bool {
        counters.fragments &+= 1
        guard let index = find(key) ?? start(key, now: now) else { return false }
        // Not-ECT among ECT or CE fragments: marks no datagram can carry (RFC 3168 section 5.3),
        // dropped whole, as the kernel's ip_frag_ecn_table drops it.
        slots[index].ecn |= 1 << ecn
        if slots[index].ecn & 1 != 0, slots[index].ecn & 0x0E != 0 { return discard(index, counting: \.malformed) }
        if !more {
            guard end >= slots[index].highestEnd, slots[index].length < 0 || end == slots[index].length else {
                return discard(index)
            }
            slots[index].length = end
        } else if end > slots[index].highestEnd, slots[index].length >= 0 {
            return discard(index)
        }
        // A zero-length fragment ends the datagram, as in the kernel.
        guard end > offset else { return discard(index, counting: \.malformed) }
        let tailEnd = slots[index].highestEnd
        slots[index].highestEnd = max(slots[index].highestEnd, end)
        let first = offset / Self.blockSize
        let last = (end + Self.blockSize - 1) / Self.blockSize
        let covered = coveredBlocks(index, from: first, to: last)
        if covered == last - first {
            // Within one run, a duplicate; across two (they came apart), an overlap, as the
            // kernel's fragment runs tell them apart.
            if runStarts(index, from: first + 1, to: last) > 0 { return discard(index) }
            counters.duplicates &+= 1
            return false
        }
        if covered > 0 { return discard(index) }
        let frame = pool.base + Int(slots[index].frame)
        let payloadStart = pool.headroom + Self.headerRoom
        (frame + payloadStart + offset).copyMemory(from: data, byteCount: end - offset)
        if offset == 0 {
            let copy = frame + payloadStart - headerLength
            copy.copyMemory(from: header, byteCount: headerLength)
            if let nextHeaderField {
                (copy + networkOffset).hostSetByte(nextHeaderField, nextHeader)
                slots[index].fragmentHeaderField = nextHeaderField
            }
            slots[index].headerLength = headerLength
            slots[index].networkOffset = networkOffset
            slots[index].firstLength = end
        }
        cover(index, from: first, to: last)
        // A fragment starting where the highest one ended extends its run; any other starts one.
        if offset != tailEnd || slots[index].received == 0 { markRunStart(index, block: first) }
        slots[index].received += end - offset
        guard slots[index].length >= 0, slots[index].received == slots[index].length, slots[index].headerLength > 0 else {
            return false
        }
        // The first fragment's headers and the whole payload must fit one IP length field (the
        // kernel's out_oversize): its options may be longer than the last fragment's.
        let ipHeaders = slots[index].headerLength - slots[index].networkOffset - (slots[index].isIPv6 ? 40 : 0)
        guard ipHeaders + slots[index].length <= 65535 else { return discard(index, counting: \.malformed) }
        var whole = complete(index)
        swap(&packet, &whole)
        pool.release(whole)
        return true
    }

    /// The whole datagram of slot `index`, its lengths and (IPv4) checksum set; the slot is free after.
    mutating func complete(_ index: Int) -> Packet {
        let slot = slots[index]
        let start = pool.headroom + Self.headerRoom - slot.headerLength
        let packet = pool.packet(at: slot.frame, offset: start, length: slot.headerLength + slot.length)
        let network = packet.dataStart + slot.networkOffset
        let ipHeaderLength = slot.headerLength - slot.networkOffset
        if slot.isIPv6 {
            network.hostSetBig16(4, UInt16(ipHeaderLength - 40 + slot.length))
        } else {
            network.hostSetBig16(2, UInt16(ipHeaderLength + slot.length))
            network.hostSetBig16(6, 0)
            network.hostSetBig16(10, 0)
            let checksum = InternetChecksum.checksum(UnsafeRawBufferPointer(start: network, count: ipHeaderLength))
            network.storeBytes(of: checksum.bigEndian, toByteOffset: 10, as: UInt16.self)
        }
        free(index, releasingFrame: false)
        counters.reassembled &+= 1
        return packet
    }

    func find(_ key: Slot) -> Int? {
        guard activeDatagrams > 0 else { return nil }
        return slots.firstIndex {
            $0.inUse && $0.identification == key.identification && $0.source == key.source
                && $0.destination == key.destination && $0.protocolNumber == key.protocolNumber && $0.isIPv6 == key.isIPv6
        }
    }

    /// A slot for a new datagram, evicting the source's oldest or the oldest of all to stay in bounds.
    mutating func start(_ key: Slot, now: Instant) -> Int? {
        var fromSource = 0
        var oldestOfSource: Int?
        var oldest: Int?
        var freeSlot: Int?
        for index in slots.indices {
            guard slots[index].inUse else {
                if freeSlot == nil { freeSlot = index }
                continue
            }
            if oldest.map({ slots[index].started < slots[$0].started }) ?? true { oldest = index }
            if slots[index].source == key.source {
                fromSource += 1
                if oldestOfSource.map({ slots[index].started < slots[$0].started }) ?? true { oldestOfSource = index }
            }
        }
        if fromSource >= limits.datagramsPerSource, let victim = oldestOfSource {
            free(victim, releasingFrame: true)
            counters.evicted &+= 1
            freeSlot = victim
        } else if freeSlot == nil, let victim = oldest {
            free(victim, releasingFrame: true)
            counters.evicted &+= 1
            freeSlot = victim
        }
        guard let index = freeSlot, let frame = pool.allocateAddress() else {
            counters.noFrame &+= 1
            return nil
        }
        slots[index] = key
        slots[index].inUse = true
        slots[index].frame = frame
        slots[index].started = now
        slots[index].deadline = now + (key.isIPv6 ? limits.timeoutIPv6 : limits.timeoutIPv4)
        (coverage + index * Self.wordsPerSlot).update(repeating: 0, count: Self.wordsPerSlot)
        activeDatagrams += 1
        if nextDeadline.map({ slots[index].deadline < $0 }) ?? true { nextDeadline = slots[index].deadline }
        return index
    }

    /// Throws the datagram away after a fragment that breaks the rules, counted under `cause`;
    /// always `false`, for the caller to return.
    mutating func discard(_ index: Int, counting cause: WritableKeyPath<ReassemblyCounters, UInt64> = \.overlaps) -> Bool {
        free(index, releasingFrame: true)
        counters[keyPath: cause] &+= 1
        return false
    }

    mutating func free(_ index: Int, releasingFrame: Bool) {
        if releasingFrame { pool.releaseAddress(slots[index].frame) }
        slots[index].inUse = false
        activeDatagrams -= 1
        if nextDeadline == slots[index].deadline || activeDatagrams == 0 { updateNextDeadline() }
    }

    /// How many of the blocks `first..<last` of slot `index` hold data already.
    func coveredBlocks(_ index: Int, from first: Int, to last: Int) -> Int {
        var count = 0
        forEachWord(index, map: 0, from: first, to: last) { word, mask in count += (word.pointee & mask).nonzeroBitCount }
        return count
    }

    func cover(_ index: Int, from first: Int, to last: Int) {
        forEachWord(index, map: 0, from: first, to: last) { word, mask in word.pointee |= mask }
    }

    /// How many runs of fragments start within blocks `first..<last`.
    func runStarts(_ index: Int, from first: Int, to last: Int) -> Int {
        var count = 0
        forEachWord(index, map: 1, from: first, to: last) { word, mask in count += (word.pointee & mask).nonzeroBitCount }
        return count
    }

    func markRunStart(_ index: Int, block: Int) {
        forEachWord(index, map: 1, from: block, to: block + 1) { word, mask in word.pointee |= mask }
    }

    /// Calls `body` with each word of slot `index`'s `map` (0 coverage, 1 run starts) that
    /// blocks `first..<last` touch, and the mask of their bits in it.
    func forEachWord(_ index: Int, map: Int, from first: Int, to last: Int, _ body: (UnsafeMutablePointer<UInt64>, UInt64) -> Void) {
        let words = coverage + index * Self.wordsPerSlot + map * Self.wordsPerMap
        var block = first
        while block < last {
            let bit = block % 64
            let span = min(64 - bit, last - block)
            body(words + block / 64, span == 64 ? UInt64.max : ((1 << UInt64(span)) - 1) << UInt64(bit))
            block += span
        }
    }
}
