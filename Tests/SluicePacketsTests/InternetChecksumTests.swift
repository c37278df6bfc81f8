import SluicePackets
import Testing

@Suite struct InternetChecksumTests {
    @Test func rfc1071Section3Example() {
        let bytes: [UInt8] = [0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7]
        bytes.withUnsafeBytes { raw in
            #expect(InternetChecksum.fold(InternetChecksum.sum(raw)) == 0xddf2)
            #expect(InternetChecksum.checksum(raw) == 0x220d)
        }
        #expect(referenceFold(bytes) == 0xddf2)
    }

    @Test func rfc1624Section4Example() {
        // HC = 0xDD2F, m = 0x5555 -> m' = 0x3285: eqn. 3 gives 0x0000 (eqn. 2 would give -0).
        #expect(InternetChecksum.update(0xDD2F, old: UInt16(0x5555), new: UInt16(0x3285)) == 0x0000)
    }

    @Test func emptyAndOddInputs() {
        let empty: [UInt8] = []
        empty.withUnsafeBytes { #expect(InternetChecksum.sum($0, initial: 7) == 7) }
        // A lone byte is the high half of a word.
        ([0xAB] as [UInt8]).withUnsafeBytes { #expect(InternetChecksum.fold(InternetChecksum.sum($0)) == 0xAB00) }
        ([0x01, 0x02, 0x03] as [UInt8]).withUnsafeBytes { #expect(InternetChecksum.fold(InternetChecksum.sum($0)) == 0x0402) }
    }

    @Test func fastSumMatchesReferenceOnRandomInputs() {
        var rng = SeededGenerator(seed: 0x1071)
        let storage = UnsafeMutableRawBufferPointer.allocate(byteCount: 2016, alignment: 16)
        defer { storage.deallocate() }
        for trial in 0..<3000 {
            let length = trial < 2001 ? trial : Int.random(in: 0...2000, using: &rng)
            let start = Int.random(in: 0..<16, using: &rng)
            for i in 0..<(start + length) { storage[i] = UInt8.random(in: 0...255, using: &rng) }
            // Some inputs full of 0xFF, to drive every carry path.
            if trial % 7 == 0 { for i in start..<(start + length) { storage[i] = 0xFF } }
            let slice = UnsafeRawBufferPointer(rebasing: storage[start..<(start + length)])
            let initial = UInt32.random(in: 0...0xFFFF, using: &rng)
            #expect(
                InternetChecksum.fold(InternetChecksum.sum(slice, initial: UInt64(initial)))
                    == referenceFold(Array(slice), initial: initial),
                "length \(length) start \(start)")
        }
    }

    @Test func sumsChainLikeOneSum() {
        var rng = SeededGenerator(seed: 2)
        let bytes = (0..<1000).map { _ in UInt8.random(in: 0...255, using: &rng) }
        bytes.withUnsafeBytes { raw in
            let first = InternetChecksum.sum(UnsafeRawBufferPointer(rebasing: raw[0..<500]))
            let chained = InternetChecksum.sum(UnsafeRawBufferPointer(rebasing: raw[500...]), initial: first)
            #expect(InternetChecksum.fold(chained) == referenceFold(bytes))
        }
    }

    @Test func foldHandlesExtremes() {
        #expect(InternetChecksum.fold(0) == 0)
        #expect(InternetChecksum.fold(0xFFFF) == 0xFFFF)
        #expect(InternetChecksum.fold(0x1_0000) == 1)
        #expect(InternetChecksum.fold(.max) == 0xFFFF)
        #expect(InternetChecksum.fold(0x0001_0002_0003_0004) == 0x000A)
        // Words FFFF 8000 FFFF 8000 sum to 0x2FFFE: the third carry fold still leaves 0x10000.
        #expect(InternetChecksum.fold(0xFFFF_8000_FFFF_8000) == 1)
    }

    @Test func foldMatchesRemainderOnRandomSums() {
        // One's-complement folding keeps the value modulo 0xFFFF, and gives 0xFFFF, never 0,
        // for a non-zero multiple of it.
        var rng = SeededGenerator(seed: 1071)
        for _ in 0..<100_000 {
            let sum = rng.next() as UInt64
            let remainder = UInt16(sum % 0xFFFF)
            #expect(InternetChecksum.fold(sum) == (sum != 0 && remainder == 0 ? 0xFFFF : remainder))
        }
    }

    @Test func incrementalUpdateMatchesRecomputation() {
        var rng = SeededGenerator(seed: 1624)
        for _ in 0..<2000 {
            var header = (0..<20).map { _ in UInt8.random(in: 0...255, using: &rng) }
            header[0] = 0x45
            put16(&header, 10, 0)
            put16(&header, 10, referenceChecksum(header))
            let stored = be16(header, 10)

            // One 16-bit field: the TTL/protocol word.
            let old16 = be16(header, 8)
            let new16 = UInt16.random(in: 0...0xFFFF, using: &rng)
            var changed = header
            put16(&changed, 8, new16)
            put16(&changed, 10, 0)
            #expect(InternetChecksum.update(stored, old: old16, new: new16) == referenceChecksum(changed))

            // One 32-bit field: the source address.
            let old32 = UInt32(be16(header, 12)) << 16 | UInt32(be16(header, 14))
            let new32 = UInt32.random(in: 0...UInt32.max, using: &rng)
            changed = header
            put16(&changed, 12, UInt16(new32 >> 16))
            put16(&changed, 14, UInt16(new32 & 0xFFFF))
            put16(&changed, 10, 0)
            #expect(InternetChecksum.update(stored, old: old32, new: new32) == referenceChecksum(changed))
        }
    }

    @Test func pseudoHeaderSumsMatchByteLayout() {
        let v4 = InternetChecksum.pseudoHeaderSum(
            source: IPv4Address(192, 168, 1, 10), destination: IPv4Address(8, 8, 8, 8), protocol: 17, length: 37)
        #expect(InternetChecksum.fold(v4) == referenceFold([192, 168, 1, 10, 8, 8, 8, 8, 0, 17, 0, 37]))

        let s = IPv6Address("2001:db8::1234")!, d = IPv6Address("ff02::fb")!
        var bytes: [UInt8] = []
        for group in s.groups + d.groups { bytes += [UInt8(group >> 8), UInt8(group & 0xFF)] }
        bytes += [0x00, 0x01, 0x00, 0x10, 0, 0, 0, 58]  // a 65552-byte jumbo length exercises the high word
        let v6 = InternetChecksum.pseudoHeaderSum(source: s, destination: d, nextHeader: 58, length: 65552)
        #expect(InternetChecksum.fold(v6) == referenceFold(bytes))
    }
}
