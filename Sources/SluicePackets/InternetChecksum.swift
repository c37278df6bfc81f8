/// The Internet checksum (RFC 1071) and its incremental update (RFC 1624).
///
/// Sums are carried as `UInt64` values congruent to the one's-complement sum of big-endian
/// 16-bit words; they are cheap to add together and are folded to 16 bits only at the end.
public enum InternetChecksum {
    /// The one's-complement sum of `bytes` read as big-endian 16-bit words (an odd trailing
    /// byte is padded with a zero byte), added to `initial`. Not folded.
    ///
    /// The sum runs over native-order 64-bit loads with end-around carry and is byte-swapped
    /// once at the end: one's-complement addition commutes with byte swapping (RFC 1071 2(B)).
    /// The result may differ from a plain word sum by a multiple of 0xFFFF; ``fold(_:)`` gives
    /// the same 16-bit value for both.
    @inlinable
    public static func sum(_ bytes: UnsafeRawBufferPointer, initial: UInt64 = 0) -> UInt64 {
        guard let start = bytes.baseAddress else { return initial }
        // An IPv4 header without options, summed on every packet both ways: three loads.
        if bytes.count == 20 { return addWithCarry(initial, sum(twentyBytesAt: start)) }
        var remaining = bytes.count
        var p = start
        // Four independent accumulators keep the carry chains apart.
        var a: UInt64 = 0, b: UInt64 = 0, c: UInt64 = 0, d: UInt64 = 0
        while remaining >= 32 {
            a = addWithCarry(a, p.loadUnaligned(as: UInt64.self))
            b = addWithCarry(b, p.loadUnaligned(fromByteOffset: 8, as: UInt64.self))
            c = addWithCarry(c, p.loadUnaligned(fromByteOffset: 16, as: UInt64.self))
            d = addWithCarry(d, p.loadUnaligned(fromByteOffset: 24, as: UInt64.self))
            p += 32
            remaining -= 32
        }
        while remaining >= 8 {
            a = addWithCarry(a, p.loadUnaligned(as: UInt64.self))
            p += 8
            remaining -= 8
        }
        // Every chunk so far started at an even offset, so the tail keeps the word pairing.
        if remaining >= 4 {
            b = addWithCarry(b, UInt64(p.loadUnaligned(as: UInt32.self)))
            p += 4
            remaining -= 4
        }
        if remaining >= 2 {
            c = addWithCarry(c, UInt64(p.loadUnaligned(as: UInt16.self)))
            p += 2
            remaining -= 2
        }
        if remaining == 1 {
            // The lone byte is the high half of a big-endian word; in native order that is
            // whatever the two bytes [byte, 0] load as.
            let byte = UInt16(p.load(as: UInt8.self))
            d = addWithCarry(d, UInt64(UInt16(bigEndian: byte &<< 8)))
        }
        let native = fold(addWithCarry(addWithCarry(a, b), addWithCarry(c, d)))
        return addWithCarry(initial, UInt64(UInt16(bigEndian: native)))
    }

    /// ``sum(_:initial:)`` of the 20 bytes at `start` (an IPv4 header without options), in three
    /// loads instead of the general loop.
    @inlinable @inline(__always)
    public static func sum(twentyBytesAt start: UnsafeRawPointer) -> UInt64 {
        let head = addWithCarry(start.loadUnaligned(as: UInt64.self), start.loadUnaligned(fromByteOffset: 8, as: UInt64.self))
        let native = fold(addWithCarry(head, UInt64(start.loadUnaligned(fromByteOffset: 16, as: UInt32.self))))
        return UInt64(UInt16(bigEndian: native))
    }

    /// Folds a sum to 16 bits with end-around carry. Not inverted.
    @inlinable @inline(__always)
    public static func fold(_ sum: UInt64) -> UInt16 {
        // A value plus itself rotated by half its width holds, in its high half, the sum of its
        // halves with the end-around carry already in: the carry out of the low half.
        let half = UInt32(truncatingIfNeeded: (sum &+ (sum &<< 32 | sum &>> 32)) &>> 32)
        return UInt16(truncatingIfNeeded: (half &+ (half &<< 16 | half &>> 16)) &>> 16)
    }

    /// The checksum of `bytes` on top of `initial`: the inverted, folded ``sum(_:initial:)``.
    @inlinable
    public static func checksum(_ bytes: UnsafeRawBufferPointer, initial: UInt64 = 0) -> UInt16 {
        ~fold(sum(bytes, initial: initial))
    }

    /// The checksum after one 16-bit field changes from `old` to `new`:
    /// RFC 1624 eqn. 3, `HC' = ~(~HC + ~m + m')`, which avoids eqn. 2's -0 result.
    @inlinable
    public static func update(_ checksum: UInt16, old: UInt16, new: UInt16) -> UInt16 {
        ~fold(UInt64(~checksum) &+ UInt64(~old) &+ UInt64(new))
    }

    /// The checksum after one 32-bit field (an IPv4 address, say) changes from `old` to `new`.
    @inlinable
    public static func update(_ checksum: UInt16, old: UInt32, new: UInt32) -> UInt16 {
        // A 32-bit value is congruent to the sum of its two words modulo 0xFFFF, and ~old
        // complements both words at once.
        ~fold(UInt64(~checksum) &+ UInt64(~old) &+ UInt64(new))
    }

    /// The checksum after fields summing to `oldSum` are replaced by fields summing to `newSum`
    /// (sums as ``sum(_:initial:)`` and ``pseudoHeaderSum(source:destination:protocol:length:)``
    /// give them): RFC 1624 eqn. 3 over several fields at once.
    @inlinable @inline(__always)
    public static func update(_ checksum: UInt16, oldSum: UInt64, newSum: UInt64) -> UInt16 {
        ~fold(UInt64(~checksum) &+ UInt64(~fold(oldSum)) &+ newSum)
    }

    /// The sum of the IPv4 pseudo-header (RFC 768): addresses, protocol, and transport length.
    @inlinable
    public static func pseudoHeaderSum(
        source: IPv4Address, destination: IPv4Address, protocol proto: UInt8, length: Int
    ) -> UInt64 {
        // 32-bit quantities can be added whole: 2^16 is 1 modulo 0xFFFF.
        UInt64(source.rawValue) &+ UInt64(destination.rawValue) &+ UInt64(proto)
            &+ UInt64(UInt32(truncatingIfNeeded: length))
    }

    /// The sum of the IPv6 pseudo-header (RFC 8200 section 8.1): addresses, the 32-bit
    /// upper-layer length, and the next header.
    @inlinable
    public static func pseudoHeaderSum(
        source: IPv6Address, destination: IPv6Address, nextHeader: UInt8, length: Int
    ) -> UInt64 {
        var s = (source.high >> 32) &+ (source.high & 0xFFFF_FFFF)
        s &+= (source.low >> 32) &+ (source.low & 0xFFFF_FFFF)
        s &+= (destination.high >> 32) &+ (destination.high & 0xFFFF_FFFF)
        s &+= (destination.low >> 32) &+ (destination.low & 0xFFFF_FFFF)
        return s &+ UInt64(nextHeader) &+ UInt64(UInt32(truncatingIfNeeded: length))
    }

    /// `x + y` with the carry out of bit 63 added back in (one's-complement addition).
    @inlinable
    static func addWithCarry(_ x: UInt64, _ y: UInt64) -> UInt64 {
        let (s, overflow) = x.addingReportingOverflow(y)
        // After an overflow s <= 2^64 - 2, so adding the carry cannot overflow again.
        return s &+ (overflow ? 1 : 0)
    }
}
