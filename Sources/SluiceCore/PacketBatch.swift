/// Up to `capacity` packets moving together through a pipeline: the unit of every ring
/// operation and syscall.
///
/// A batch owns its packets' frames. It is `~Copyable`, so a batch, like a packet, is in one
/// place only; when a batch is destroyed, whatever frames it still holds go back to its pool.
/// Storage is allocated once, when the batch is made; nothing on the packet path allocates.
public struct PacketBatch: ~Copyable {
    @usableFromInline let storage: UnsafeMutablePointer<Packet>
    @usableFromInline var _count: Int
    /// The most packets the batch holds.
    public let capacity: Int
    /// The pool the frames come from and go back to.
    public let pool: FramePool

    /// The default capacity: 64 packets, as xdpsock and liburing examples batch.
    public static let defaultCapacity = 64

    /// Creates an empty batch drawing frames from `pool`.
    public init(pool: FramePool, capacity: Int = PacketBatch.defaultCapacity) {
        precondition(capacity > 0, "a batch holds at least one packet")
        self.pool = pool
        self.capacity = capacity
        storage = .allocate(capacity: capacity)
        _count = 0
    }

    deinit {
        for i in 0..<_count {
            pool.release((storage + i).move())
        }
        storage.deallocate()
    }

    /// The number of packets in the batch.
    @inlinable
    public var count: Int { _count }

    /// True when the batch holds no packets.
    @inlinable
    public var isEmpty: Bool { _count == 0 }

    /// True when no more packets fit.
    @inlinable
    public var isFull: Bool { _count == capacity }

    /// Room left.
    @inlinable
    public var remainingCapacity: Int { capacity - _count }

    /// The packet at `index`, read or changed in place.
    @inlinable
    public subscript(index: Int) -> Packet {
        _read {
            precondition(index >= 0 && index < _count, "batch index out of range")
            yield storage[index]
        }
        _modify {
            precondition(index >= 0 && index < _count, "batch index out of range")
            yield &storage[index]
        }
    }

    /// Adds a packet at the end. The batch must not be full.
    @inlinable
    public mutating func append(_ packet: consuming Packet) {
        precondition(_count < capacity, "batch is full")
        (storage + _count).initialize(to: packet)
        _count &+= 1
    }

    /// Takes a fresh frame from the pool and appends it as an empty packet with the pool's headroom.
    ///
    /// - Returns: the new packet's index, or `nil` when the batch is full or the pool is empty.
    @inlinable
    public mutating func appendNewFrame() -> Int? {
        guard _count < capacity, let packet = pool.allocate() else { return nil }
        append(packet)
        return _count &- 1
    }

    /// Removes and returns the last packet.
    @inlinable
    public mutating func removeLast() -> Packet {
        precondition(_count > 0, "batch is empty")
        _count &-= 1
        return (storage + _count).move()
    }

    /// Returns every packet's frame to the pool.
    @inlinable
    public mutating func releaseAll() {
        while _count > 0 {
            _count &-= 1
            pool.release((storage + _count).move())
        }
    }

    /// Empties the batch without returning frames to the pool: for ports that have just handed
    /// every frame to the kernel (a transmit ring) and track them by address from now on.
    @inlinable
    public mutating func relinquishAll() {
        _count = 0
    }

    /// Moves every packet, in order, to the end of `other`, which must have room for them.
    @inlinable
    public mutating func moveAll(to other: inout PacketBatch) {
        precondition(other.remainingCapacity >= _count, "batch: destination has no room")
        (other.storage + other._count).moveInitialize(from: storage, count: _count)
        other._count &+= _count
        _count = 0
    }

    /// Moves packets from the front, in order, to the end of `other` until it is full or this
    /// batch is empty; the rest move up to the front.
    @inlinable
    public mutating func moveFront(to other: inout PacketBatch) {
        let moved = min(_count, other.remainingCapacity)
        guard moved > 0 else { return }
        (other.storage + other._count).moveInitialize(from: storage, count: moved)
        other._count &+= moved
        storage.moveInitialize(from: storage + moved, count: _count &- moved)
        _count &-= moved
    }

    /// Hands each packet, in order, to `body`, which takes it over (to another batch, or back
    /// to the pool). This batch is empty afterwards.
    @inlinable
    public mutating func takeAll(_ body: (consuming Packet) -> Void) {
        let count = _count
        _count = 0
        for i in 0..<count { body((storage + i).move()) }
    }

    /// Sends each packet, in order, where `decide` says: `true` appends it to `kept`,
    /// `false` returns its frame to the pool. `decide` may rewrite the packet in place.
    ///
    /// This batch is empty afterwards. `kept` must have room for all of them.
    @inlinable
    public mutating func drain(keepingInto kept: inout PacketBatch, _ decide: (inout Packet) -> Bool) {
        precondition(kept.remainingCapacity >= _count, "batch: destination has no room")
        for i in 0..<_count {
            if decide(&storage[i]) {
                (kept.storage + kept._count).initialize(to: (storage + i).move())
                kept._count &+= 1
            } else {
                pool.release((storage + i).move())
            }
        }
        _count = 0
    }

    /// Keeps the packets for which `decide` returns `true`, in order, and returns the others'
    /// frames to the pool. `decide` may rewrite the packet in place.
    @inlinable
    public mutating func filterInPlace(_ decide: (inout Packet) -> Bool) {
        var kept = 0
        for i in 0..<_count {
            if decide(&storage[i]) {
                if kept != i { (storage + kept).moveInitialize(from: storage + i, count: 1) }
                kept &+= 1
            } else {
                pool.release((storage + i).move())
            }
        }
        _count = kept
    }
}
