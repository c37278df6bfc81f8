/// One packet in one frame: where the frame is, and which bytes of it hold the packet.
///
/// A packet is `~Copyable` because it *is* the ownership of its frame: it can be moved from
/// a port into a batch, from a batch into another batch, or back to its ``FramePool``, but never
/// duplicated, so no frame is ever in two places. Bytes are reached in place through
/// ``data`` (no copy); headers are pushed and pulled by moving the start within the frame.
@frozen
public struct Packet: ~Copyable {
    /// The first byte of the frame.
    public let frameStart: UnsafeMutableRawPointer
    @usableFromInline var _offset: UInt32
    @usableFromInline var _length: UInt32
    @usableFromInline let _capacity: UInt32

    /// Wraps `length` bytes at `offset` in the frame at `frameStart` of `capacity` bytes.
    @inlinable
    public init(frameStart: UnsafeMutableRawPointer, capacity: Int, offset: Int, length: Int) {
        precondition(offset >= 0 && length >= 0 && offset + length <= capacity, "packet: data past its frame")
        self.frameStart = frameStart
        _offset = UInt32(truncatingIfNeeded: offset)
        _length = UInt32(truncatingIfNeeded: length)
        _capacity = UInt32(truncatingIfNeeded: capacity)
    }

    /// The frame's size in bytes.
    @inlinable
    public var capacity: Int { Int(_capacity) }

    /// Where the data starts, counted from the frame start (the headroom in front of the data).
    @inlinable
    public var offset: Int { Int(_offset) }

    /// The number of data bytes.
    @inlinable
    public var length: Int {
        get { Int(_length) }
        set {
            precondition(newValue >= 0 && Int(_offset) + newValue <= Int(_capacity), "packet: length past its frame")
            _length = UInt32(truncatingIfNeeded: newValue)
        }
    }

    /// Bytes free after the data, up to the frame's end.
    @inlinable
    public var tailroom: Int { Int(_capacity) - Int(_offset) - Int(_length) }

    /// The first data byte.
    @inlinable
    public var dataStart: UnsafeMutableRawPointer { frameStart + Int(_offset) }

    /// The data, in place in the frame.
    @inlinable
    public var data: UnsafeMutableRawBufferPointer {
        UnsafeMutableRawBufferPointer(start: frameStart + Int(_offset), count: Int(_length))
    }

    /// The whole frame, headroom and tailroom included.
    @inlinable
    public var frame: UnsafeMutableRawBufferPointer {
        UnsafeMutableRawBufferPointer(start: frameStart, count: Int(_capacity))
    }

    /// Sets where the data starts and how long it is, both within the frame.
    @inlinable
    public mutating func setData(offset: Int, length: Int) {
        precondition(offset >= 0 && length >= 0 && offset + length <= Int(_capacity), "packet: data past its frame")
        _offset = UInt32(truncatingIfNeeded: offset)
        _length = UInt32(truncatingIfNeeded: length)
    }

    /// Grows the data at the front by `count` bytes of headroom (to prepend a header).
    @inlinable
    public mutating func pushFront(_ count: Int) {
        precondition(count >= 0 && count <= Int(_offset), "packet: not enough headroom")
        _offset &-= UInt32(truncatingIfNeeded: count)
        _length &+= UInt32(truncatingIfNeeded: count)
    }

    /// Drops `count` bytes from the front of the data (to strip a header).
    @inlinable
    public mutating func pullFront(_ count: Int) {
        precondition(count >= 0 && count <= Int(_length), "packet: pulled past its data")
        _offset &+= UInt32(truncatingIfNeeded: count)
        _length &-= UInt32(truncatingIfNeeded: count)
    }
}
