import SluiceCore
import SluiceHost
import SluicePackets
import Testing

@Suite struct ReassemblerTests {
    let harness: Harness
    init() throws { harness = try Harness() }

    func insert(_ reassembler: inout Reassembler, _ bytes: [UInt8], at now: Instant = Instant(nanoseconds: 1_000_000_000)) -> [UInt8]? {
        var packet = harness.packet(bytes)
        let whole = reassembler.insert(&packet, networkOffset: 0, now: now)
        let result = whole ? Harness.bytes(packet) : nil
        harness.pool.release(packet)
        return result
    }

    @Test func ipv4FragmentsInAnyOrderMakeTheDatagram() {
        var reassembler = Reassembler(pool: harness.pool, limits: ReassemblyLimits())
        let whole = Harness.datagram(from: "198.18.0.1:4000", to: "198.18.0.2:9000", payload: 3000)
        let pieces = [Harness.fragment4(whole, offset: 2960, count: whole.count - 20 - 2960, more: false),
                      Harness.fragment4(whole, offset: 0, count: 1480, more: true),
                      Harness.fragment4(whole, offset: 1480, count: 1480, more: true)]
        #expect(insert(&reassembler, pieces[0]) == nil)
        #expect(insert(&reassembler, pieces[1]) == nil)
        let result = insert(&reassembler, pieces[2])
        #expect(result.map { Array($0[20...]) } == Array(whole[20...]))
        #expect(result.map { Harness.isIPv4HeaderValid($0) } == true)
        #expect(result.map { Int($0[2]) << 8 | Int($0[3]) } == whole.count)
        #expect(result.map { $0[6] & 0x3F == 0 && $0[7] == 0 } == true, "no fragment bits left")
        #expect(reassembler.counters.reassembled == 1 && reassembler.activeDatagrams == 0)
        #expect(harness.pool.freeCount == harness.pool.frameCount)
    }

    /// `fragment` with its ECN codepoint set to `ecn` (the header checksum summed again).
    static func marked(_ fragment: [UInt8], ecn: UInt8) -> [UInt8] {
        var marked = fragment
        marked[1] = marked[1] & 0xFC | ecn
        marked[10] = 0; marked[11] = 0
        let checksum = marked[0..<20].withUnsafeBytes { InternetChecksum.checksum($0) }
        marked[10] = UInt8(checksum >> 8); marked[11] = UInt8(checksum & 0xFF)
        return marked
    }

    @Test("fragments marked Not-ECT and ECT or CE make no datagram; ECT with CE does, as the kernel's ip_frag_ecn_table says")
    func ecnMarksThatCannotBeCombinedDropTheDatagram() {
        var reassembler = Reassembler(pool: harness.pool, limits: ReassemblyLimits())
        let whole = Harness.datagram(from: "198.18.0.1:4000", to: "198.18.0.2:9000", payload: 2000)
        let first = Harness.fragment4(whole, offset: 0, count: 1480, more: true)
        let last = Harness.fragment4(whole, offset: 1480, count: whole.count - 20 - 1480, more: false)
        for (a, b, combines) in [(UInt8(0), UInt8(3), false), (2, 0, false), (2, 3, true), (1, 2, true), (0, 0, true)] {
            #expect(insert(&reassembler, Self.marked(first, ecn: a)) == nil)
            #expect((insert(&reassembler, Self.marked(last, ecn: b)) != nil) == combines, "ECN \(a) then \(b)")
            #expect(reassembler.activeDatagrams == 0)
        }
        #expect(reassembler.counters.malformed == 2 && reassembler.counters.reassembled == 3)
        #expect(harness.pool.freeCount == harness.pool.frameCount)
    }

    @Test func aDuplicateIsDroppedAloneAndAPartialOverlapEndsTheDatagram() {
        var reassembler = Reassembler(pool: harness.pool, limits: ReassemblyLimits())
        let whole = Harness.datagram(from: "198.18.0.1:4000", to: "198.18.0.2:9000", payload: 2000)
        let first = Harness.fragment4(whole, offset: 0, count: 1480, more: true)
        let last = Harness.fragment4(whole, offset: 1480, count: whole.count - 20 - 1480, more: false)
        #expect(insert(&reassembler, first) == nil)
        #expect(insert(&reassembler, first) == nil)
        #expect(reassembler.counters.duplicates == 1)
        #expect(insert(&reassembler, last) != nil)

        let overlapping = Harness.fragment4(whole, offset: 8, count: 1480, more: true)
        #expect(insert(&reassembler, first) == nil)
        #expect(insert(&reassembler, overlapping) == nil)
        #expect(reassembler.counters.overlaps == 1 && reassembler.activeDatagrams == 0)
        #expect(insert(&reassembler, last) == nil, "the datagram is gone; its last fragment starts a new one")
        #expect(reassembler.activeDatagrams == 1)
    }

    @Test("a fragment across two runs that came apart ends the datagram; inside one run that grew in order, it is a duplicate (the kernel's runs)")
    func aFragmentAcrossTwoRunsIsAnOverlap() {
        let whole = Harness.datagram(from: "198.18.0.1:4000", to: "198.18.0.2:9000", payload: 3000)
        let a = Harness.fragment4(whole, offset: 0, count: 1000, more: true)
        let b = Harness.fragment4(whole, offset: 1000, count: 1000, more: true)
        let across = Harness.fragment4(whole, offset: 992, count: 16, more: true)
        let last = Harness.fragment4(whole, offset: 2000, count: whole.count - 20 - 2000, more: false)
        // In order, one run: a duplicate, and the datagram completes.
        var inOrder = Reassembler(pool: harness.pool, limits: ReassemblyLimits())
        for piece in [a, b, across] { #expect(insert(&inOrder, piece) == nil) }
        #expect(inOrder.counters.duplicates == 1 && inOrder.counters.overlaps == 0)
        #expect(insert(&inOrder, last).map { Array($0[20...]) } == Array(whole[20...]))
        // The second piece first: two runs, and a fragment across them is an overlap.
        var apart = Reassembler(pool: harness.pool, limits: ReassemblyLimits())
        for piece in [b, a, across] { #expect(insert(&apart, piece) == nil) }
        #expect(apart.counters.overlaps == 1 && apart.activeDatagrams == 0)
        // A copy of either piece alone is still a duplicate.
        var copies = Reassembler(pool: harness.pool, limits: ReassemblyLimits())
        for piece in [b, a, b, a] { #expect(insert(&copies, piece) == nil) }
        #expect(copies.counters.duplicates == 2 && copies.counters.overlaps == 0)
        #expect(insert(&copies, last) != nil)
        #expect(harness.pool.freeCount == harness.pool.frameCount)
    }

    @Test func lengthsThatDisagreeEndTheDatagram() {
        var reassembler = Reassembler(pool: harness.pool, limits: ReassemblyLimits())
        let whole = Harness.datagram(from: "198.18.0.1:4000", to: "198.18.0.2:9000", payload: 3000)
        // Data past the last fragment's end.
        #expect(insert(&reassembler, Harness.fragment4(whole, offset: 1480, count: 800, more: false)) == nil)
        #expect(insert(&reassembler, Harness.fragment4(whole, offset: 2960, count: 8, more: true)) == nil)
        #expect(reassembler.counters.overlaps == 1 && reassembler.activeDatagrams == 0)
        // A zero-length fragment.
        #expect(insert(&reassembler, Harness.fragment4(whole, offset: 0, count: 1480, more: true)) == nil)
        #expect(insert(&reassembler, Harness.fragment4(whole, offset: 1480, count: 0, more: true)) == nil)
        #expect(reassembler.counters.malformed == 1 && reassembler.activeDatagrams == 0)
        #expect(harness.pool.freeCount == harness.pool.frameCount)
    }

    @Test func anUnfinishedDatagramTimesOutAndGivesItsFrameBack() {
        var reassembler = Reassembler(pool: harness.pool, limits: ReassemblyLimits())
        let whole = Harness.datagram(from: "198.18.0.1:4000", to: "198.18.0.2:9000", payload: 3000)
        let start = Instant(nanoseconds: 1_000_000_000)
        #expect(insert(&reassembler, Harness.fragment4(whole, offset: 0, count: 1480, more: true), at: start) == nil)
        #expect(reassembler.nextDeadline == start + .seconds(30))
        reassembler.expire(now: start + .seconds(29))
        #expect(reassembler.activeDatagrams == 1)
        reassembler.expire(now: start + .seconds(30))
        #expect(reassembler.activeDatagrams == 0 && reassembler.counters.timedOut == 1)
        #expect(reassembler.nextDeadline == nil)
        #expect(harness.pool.freeCount == harness.pool.frameCount)
    }

    @Test func oneSourceCannotHoldMoreThanItsShare() {
        var limits = ReassemblyLimits()
        limits.datagramsPerSource = 4
        limits.datagrams = 8
        var reassembler = Reassembler(pool: harness.pool, limits: limits)
        let whole = Harness.datagram(from: "198.18.0.1:4000", to: "198.18.0.2:9000", payload: 3000)
        for id in 0..<10 {
            _ = insert(&reassembler, Harness.fragment4(whole, identification: UInt16(id), offset: 0, count: 1480, more: true),
                       at: Instant(nanoseconds: UInt64(1 + id) * 1_000_000))
        }
        #expect(reassembler.activeDatagrams == 4)
        #expect(reassembler.counters.evicted == 6)
        // Other sources still get in, up to the total.
        for host in 2..<8 {
            let other = Harness.datagram(from: "198.18.0.\(host):4000", to: "198.18.0.2:9000", payload: 3000)
            _ = insert(&reassembler, Harness.fragment4(other, offset: 0, count: 1480, more: true))
        }
        #expect(reassembler.activeDatagrams == 8)
        #expect(harness.pool.outstandingCount == 8)
    }

    @Test("first fragments of 64 datagrams from one source (the kernel's ipfrag_max_dist), then their second fragments: each comes back whole")
    func interleavedDatagramsKeepTheirOwnBytes() {
        var reassembler = Reassembler(pool: harness.pool, limits: ReassemblyLimits())
        let wholes = (0..<64).map { id in
            var whole = Harness.datagram(from: "198.18.0.1:4000", to: "198.18.0.2:9000", payload: 2000)
            for index in 28..<whole.count { whole[index] = UInt8(truncatingIfNeeded: id &* 31 &+ index) }
            return whole
        }
        for (id, whole) in wholes.enumerated() {
            _ = insert(&reassembler, Harness.fragment4(whole, identification: UInt16(0x7000 + id), offset: 0, count: 1480, more: true),
                       at: Instant(nanoseconds: 1_000_000_000 + UInt64(id) * 1000))
        }
        var intact = 0
        for (id, whole) in wholes.enumerated() {
            let last = Harness.fragment4(whole, identification: UInt16(0x7000 + id), offset: 1480, count: whole.count - 20 - 1480, more: false)
            if let result = insert(&reassembler, last, at: Instant(nanoseconds: 2_000_000_000 + UInt64(id) * 1000)) {
                #expect(Array(result[20...]) == Array(whole[20...]), "datagram \(id)")
                intact += 1
            }
        }
        #expect(intact == wholes.count)
    }

    @Test func aFloodOfRandomFragmentsStaysBounded() {
        var reassembler = Reassembler(pool: harness.pool, limits: ReassemblyLimits())
        var state: UInt64 = 0x5EED
        func next() -> Int {
            state = state &* 6_364_136_223_846_793_005 &+ 1_442_695_040_888_963_407
            return Int(truncatingIfNeeded: state >> 33)
        }
        let wholes = (1..<40).map { Harness.datagram(from: "198.18.0.\($0):4000", to: "198.18.0.2:9000", payload: 8000) }
        for round in 0..<20_000 {
            let whole = wholes[next() % wholes.count]
            let offset = (next() % 900) * 8
            let count = min(next() % 1500, whole.count - 20 - offset)
            let fragment = Harness.fragment4(whole, identification: UInt16(next() % 300), offset: offset, count: count,
                                             more: next() % 4 != 0)
            _ = insert(&reassembler, fragment, at: Instant(nanoseconds: UInt64(1_000_000_000 + round * 1000)))
            #expect(reassembler.activeDatagrams <= reassembler.capacity)
        }
        #expect(reassembler.capacity == harness.pool.frameCount / 2)
        reassembler.expire(now: Instant(nanoseconds: 100_000_000_000))
        #expect(reassembler.activeDatagrams == 0)
        #expect(harness.pool.freeCount == harness.pool.frameCount)
    }

    @Test func ipv6FragmentsFromTheFragmenterComeBackAsTheDatagram() throws {
        var reassembler = Reassembler(pool: harness.pool, limits: ReassemblyLimits())
        var fragmenter = Fragmenter(mtu: 1280)
        for size in [1233, 1240, 5000, 65507] {
            let whole = Harness.datagram(from: "[2001:2::1]:4000", to: "[2001:2::2]:9000", payload: size)
            var fragments = PacketBatch(pool: harness.pool, capacity: 128)
            let count = fragmenter.fragment(harness.packet(whole), networkOffset: 0, into: &fragments)
            #expect(count == fragments.count && count > 1)
            var pieces: [[UInt8]] = []
            fragments.takeAll { packet in
                pieces.append(Harness.bytes(packet))
                harness.pool.release(packet)
            }
            #expect(pieces.allSatisfy { $0.count <= 1280 && $0[6] == 44 })
            var result: [UInt8]?
            for piece in pieces.reversed() { result = insert(&reassembler, piece) ?? result }
            #expect(result == whole, "\(size) bytes")
        }
        #expect(harness.pool.freeCount == harness.pool.frameCount)
    }

    @Test func ipv4FragmentsFromTheFragmenterComeBackAsTheDatagram() {
        var reassembler = Reassembler(pool: harness.pool, limits: ReassemblyLimits())
        var fragmenter = Fragmenter(mtu: 576)
        for size in [549, 550, 551, 3000, 65507] {
            let whole = Harness.datagram(from: "198.18.0.1:4000", to: "198.18.0.2:9000", payload: size)
            var fragments = PacketBatch(pool: harness.pool, capacity: 256)
            _ = fragmenter.fragment(harness.packet(whole), networkOffset: 0, into: &fragments)
            var pieces: [[UInt8]] = []
            fragments.takeAll { packet in
                pieces.append(Harness.bytes(packet))
                harness.pool.release(packet)
            }
            #expect(pieces.allSatisfy { $0.count <= 576 && Harness.isIPv4HeaderValid($0) })
            var result: [UInt8]?
            for piece in pieces { result = insert(&reassembler, piece) ?? result }
            #expect(result.map { Array($0[20...]) } == Array(whole[20...]), "\(size) bytes")
        }
    }

    @Test func anIPv6AtomicFragmentIsWholeAtOnce() {
        var reassembler = Reassembler(pool: harness.pool, limits: ReassemblyLimits())
        let whole = Harness.datagram(from: "[2001:2::1]:4000", to: "[2001:2::2]:9000", payload: 100)
        let atomic = Harness.fragment6(whole, offset: 0, count: whole.count - 40, more: false)
        #expect(insert(&reassembler, atomic) == whole)
        #expect(reassembler.activeDatagrams == 0)
    }

    @Test func anIPv6FragmentNotAMultipleOfEightIsDropped() {
        var reassembler = Reassembler(pool: harness.pool, limits: ReassemblyLimits())
        let whole = Harness.datagram(from: "[2001:2::1]:4000", to: "[2001:2::2]:9000", payload: 3000)
        #expect(insert(&reassembler, Harness.fragment6(whole, offset: 0, count: 1201, more: true)) == nil)
        #expect(reassembler.counters.malformed == 1 && reassembler.activeDatagrams == 0)
    }

    @Test func aFirstFragmentWithLongerOptionsCannotPushTheDatagramPast65535Bytes() {
        var reassembler = Reassembler(pool: harness.pool, limits: ReassemblyLimits())
        let whole = Harness.datagram(from: "198.18.0.1:4000", to: "198.18.0.2:9000", payload: 65480)
        // The first fragment carries 40 bytes of options (a 60-byte header), the rest 20-byte headers:
        // each fragment passes its own check, the whole would be 60 + 65515 bytes.
        var first = Harness.fragment4(whole, offset: 0, count: 1480, more: true)
        first[0] = 0x4F
        first.insert(contentsOf: [UInt8](repeating: 1, count: 40), at: 20)
        let total = first.count
        first[2] = UInt8(total >> 8); first[3] = UInt8(total & 0xFF)
        first[10] = 0; first[11] = 0
        let checksum = first[0..<60].withUnsafeBytes { InternetChecksum.checksum($0) }
        first[10] = UInt8(checksum >> 8); first[11] = UInt8(checksum & 0xFF)
        #expect(insert(&reassembler, first) == nil)
        var offset = 1480
        while offset < 65488 {
            let count = min(1480, 65488 - offset)
            #expect(insert(&reassembler, Harness.fragment4(whole, offset: offset, count: count, more: offset + count < 65488)) == nil)
            offset += count
        }
        #expect(reassembler.counters.malformed == 1 && reassembler.counters.reassembled == 0 && reassembler.activeDatagrams == 0)
        #expect(harness.pool.freeCount == harness.pool.frameCount)
    }
}
