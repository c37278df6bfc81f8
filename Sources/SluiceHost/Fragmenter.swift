import SluiceCore
import SluicePackets

/// Cuts IP packets longer than the MTU into fragments (RFC 791 section 3.2, RFC 8200 section
/// 4.5), each in a frame of its own with a copy of the link header: what the kernel does for a
/// datagram its own host sends past the MTU. The packets it cuts are the host's own replies,
/// so an IPv4 "don't fragment" bit is the host's to clear; IPv4 options stay in the first
/// fragment only, and an IPv6 packet's headers after the first 40 bytes travel as its payload.
public struct Fragmenter: Sendable {
    /// The most bytes of IP packet one fragment may hold.
    public var mtu: Int
    var identifiers: IPIdentifiers

    /// A fragmenter for `mtu`, numbering its datagrams with `identifiers`.
    public init(mtu: Int, identifiers: IPIdentifiers = IPIdentifiers()) {
        self.mtu = mtu
        self.identifiers = identifiers
    }

    /// Cuts `packet` (its IP header `networkOffset` bytes into its data) into fragments of at most
    /// `mtu` bytes (the fragmenter's own when `nil`) appended to `batch`, in order, with frames
    /// from `batch`'s pool. Its frame goes back to the pool.
    ///
    /// - Returns: how many fragments were appended: 0 when they could not all be (too little
    ///   room in `batch`, too few free frames, an MTU below the headers), and then none is.
    public mutating func fragment(_ packet: consuming Packet, networkOffset: Int, mtu: Int? = nil, into batch: inout PacketBatch) -> Int {
        let mtu = mtu ?? self.mtu
        let pool = batch.pool
        let data = packet.dataStart
        let network = data + networkOffset
        let ipLength = packet.length - networkOffset
        let isIPv6 = ipLength >= 40 && network.hostByte(0) >> 4 == 6
        let headerLength = isIPv6 ? 40 : Int(network.hostByte(0) & 0x0F) * 4
        let payload = isIPv6 ? min(40 + Int(network.hostBig16(4)), ipLength) - 40
                             : min(Int(network.hostBig16(2)), ipLength) - headerLength
        // Every fragment but the last carries a multiple of 8 bytes.
        let firstChunk = (mtu - headerLength - (isIPv6 ? 8 : 0)) & ~7
        let chunk = isIPv6 ? firstChunk : (mtu - 20) & ~7
        guard headerLength >= 20, payload > 0, firstChunk >= 8, chunk >= 8 else {
            pool.release(packet)
            return 0
        }
        let count = payload <= firstChunk ? 1 : 1 + (payload - firstChunk + chunk - 1) / chunk
        guard batch.remainingCapacity >= count, pool.freeCount >= count else {
            pool.release(packet)
            return 0
        }
        let identification = identifiers.next(forHeaderAt: network, isIPv6: isIPv6,
                                              protocolNumber: isIPv6 ? network.hostByte(6) : network.hostByte(9))
        var offset = 0
        while offset < payload {
            let size = min(offset == 0 ? firstChunk : chunk, payload - offset)
            let more = offset + size < payload
            guard var piece = pool.allocate() else { preconditionFailure("frames counted above") }
            let out = piece.dataStart
            out.copyMemory(from: data, byteCount: networkOffset)
            let outNetwork = out + networkOffset
            let fragmentHeaders: Int
            if isIPv6 {
                outNetwork.copyMemory(from: network, byteCount: 40)
                outNetwork.hostSetByte(6, 44)
                outNetwork.hostSetBig16(4, UInt16(8 + size))
                outNetwork.hostSetByte(40, network.hostByte(6))
                outNetwork.hostSetByte(41, 0)
                outNetwork.hostSetBig16(42, UInt16(offset) | (more ? 1 : 0))
                outNetwork.hostSetBig32(44, identification)
                fragmentHeaders = 48
            } else {
                fragmentHeaders = offset == 0 ? headerLength : 20
                outNetwork.copyMemory(from: network, byteCount: fragmentHeaders)
                outNetwork.hostSetByte(0, 0x40 | UInt8(fragmentHeaders / 4))
                outNetwork.hostSetBig16(2, UInt16(fragmentHeaders + size))
                outNetwork.hostSetBig16(4, UInt16(truncatingIfNeeded: identification))
                outNetwork.hostSetBig16(6, (more ? 0x2000 : 0) | UInt16(offset / 8))
                outNetwork.hostSetBig16(10, 0)
                let checksum = InternetChecksum.checksum(UnsafeRawBufferPointer(start: outNetwork, count: fragmentHeaders))
                outNetwork.storeBytes(of: checksum.bigEndian, toByteOffset: 10, as: UInt16.self)
            }
            (outNetwork + fragmentHeaders).copyMemory(from: network + headerLength + offset, byteCount: size)
            piece.length = networkOffset + fragmentHeaders + size
            batch.append(piece)
            offset += size
        }
        pool.release(packet)
        return count
    }
}
