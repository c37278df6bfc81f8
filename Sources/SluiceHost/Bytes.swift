/// Big-endian field access for the headers this module reads and writes in place.
extension UnsafeMutableRawPointer {
    @usableFromInline
    func hostByte(_ offset: Int) -> UInt8 { load(fromByteOffset: offset, as: UInt8.self) }

    @usableFromInline
    func hostSetByte(_ offset: Int, _ value: UInt8) { storeBytes(of: value, toByteOffset: offset, as: UInt8.self) }

    @usableFromInline
    func hostBig16(_ offset: Int) -> UInt16 { UInt16(bigEndian: loadUnaligned(fromByteOffset: offset, as: UInt16.self)) }

    @usableFromInline
    func hostSetBig16(_ offset: Int, _ value: UInt16) { storeBytes(of: value.bigEndian, toByteOffset: offset, as: UInt16.self) }

    @usableFromInline
    func hostBig32(_ offset: Int) -> UInt32 { UInt32(bigEndian: loadUnaligned(fromByteOffset: offset, as: UInt32.self)) }

    @usableFromInline
    func hostSetBig32(_ offset: Int, _ value: UInt32) { storeBytes(of: value.bigEndian, toByteOffset: offset, as: UInt32.self) }
}
