#if canImport(Glibc)
import Glibc
#endif
import CSluiceSystem
import CSluiceURing
import SluiceCore
import SluiceSystem

/// A provided-buffer ring whose buffers are `FramePool` frames: the kernel picks a frame for
/// each receive (`IOSQE_BUFFER_SELECT`) and names it in the completion by its buffer ID, which
/// is the frame's index in the pool.
///
/// liburing 2.3 lacks `io_uring_setup_buf_ring`, so the ring is mapped here and registered with
/// `io_uring_register_buf_ring`. The ring knows which frames it has handed to the kernel: a frame
/// is *provided* from ``provide(frameAddress:)`` until ``consumed(bufferID:)`` takes it back, and
/// frames still provided when the ring goes away return to the pool.
public final class URingBufferRing {
    /// The buffer group ID receives name in `sqe.buf_group`.
    public let group: UInt16
    /// Ring slots (a power of two): the most frames provided at once.
    public let entries: UInt32
    /// Where in each frame the kernel's buffer starts.
    public let bufferOffset: Int
    /// The ring the buffers are registered with.
    public let ring: URing
    @usableFromInline let pool: FramePool
    @usableFromInline let bufferRing: UnsafeMutablePointer<io_uring_buf_ring>
    @usableFromInline let mappedBytes: Int
    @usableFromInline let mask: Int32
    /// One bit per pool frame: set while the frame is provided.
    @usableFromInline let providedBits: UnsafeMutablePointer<UInt64>
    // Touched for every received datagram by the ring's one thread: no runtime exclusivity checks.
    @exclusivity(unchecked) @usableFromInline var _providedCount = 0
    @exclusivity(unchecked) @usableFromInline var uncommitted: Int32 = 0

    /// Maps and registers an empty ring.
    ///
    /// - Parameters:
    ///   - ring: the io_uring to register with.
    ///   - group: the buffer group ID (unique per ring).
    ///   - entries: ring slots, a power of two up to 32768.
    ///   - pool: the frames to provide; at most 65536 (buffer IDs are 16 bits).
    ///   - bufferOffset: where in each frame the kernel may start writing (the rest of the frame follows).
    /// - Throws: `SystemCallError` when mapping or registration fails.
    public init(ring: URing, group: UInt16, entries: UInt32, pool: FramePool, bufferOffset: Int = 0) throws(SystemCallError) {
        precondition(entries > 0 && entries <= 32768 && entries & (entries - 1) == 0,
                     "buffer ring entries must be a power of two up to 32768")
        precondition(pool.frameCount <= 65536, "buffer IDs are 16 bits: a buffer ring takes pools of up to 65536 frames")
        precondition(bufferOffset >= 0 && bufferOffset < pool.frameSize, "buffer offset past the frame")
        let page = Int(sysconf(Int32(_SC_PAGESIZE)))
        let bytes = (Int(entries) * MemoryLayout<io_uring_buf>.stride + page - 1) / page * page
        let memory = mmap(nil, bytes, PROT_READ | PROT_WRITE, MAP_ANONYMOUS | MAP_PRIVATE, -1, 0)
        guard let memory, memory != MAP_FAILED else {
            throw SystemCallError(.uring, operation: "mmap(\(bytes) bytes for buffer ring \(group))", errno: errno)
        }
        let bufferRing = memory.assumingMemoryBound(to: io_uring_buf_ring.self)
        io_uring_buf_ring_init(bufferRing)
        var registration = io_uring_buf_reg()
        registration.ring_addr = UInt64(UInt(bitPattern: memory))
        registration.ring_entries = entries
        registration.bgid = group
        let result = io_uring_register_buf_ring(ring.raw, &registration, 0)
        guard result == 0 else {
            munmap(memory, bytes)
            let hint = -result == EINVAL ? "this kernel lacks provided buffer rings (Linux 5.19+)"
                : -result == EEXIST ? "buffer group \(group) is already registered on this ring; pick another group" : nil
            throw SystemCallError(.uring, operation: "io_uring_register_buf_ring(group \(group), \(entries) entries)",
                             errno: -result, hint: hint)
        }
        self.ring = ring
        self.group = group
        self.entries = entries
        self.pool = pool
        self.bufferOffset = bufferOffset
        self.bufferRing = bufferRing
        mappedBytes = bytes
        mask = io_uring_buf_ring_mask(entries)
        let words = (pool.frameCount + 63) / 64
        providedBits = .allocate(capacity: words)
        providedBits.initialize(repeating: 0, count: words)
    }

    deinit {
        _ = io_uring_unregister_buf_ring(ring.raw, Int32(group))
        munmap(bufferRing, mappedBytes)
        for word in 0..<((pool.frameCount + 63) / 64) {
            var bits = providedBits[word]
            while bits != 0 {
                let bit = bits.trailingZeroBitCount
                bits &= bits - 1
                pool.releaseAddress(UInt64(word * 64 + bit) * UInt64(pool.frameSize))
            }
        }
        providedBits.deallocate()
    }

    /// Frames provided to the kernel and not yet consumed.
    @inlinable
    public var providedCount: Int { _providedCount }

    /// Queues the frame at `frameAddress` (taken from the pool) as buffer ID `frameAddress / frameSize`.
    /// It reaches the kernel at the next ``commit()``. The ring must not be full.
    @inlinable
    public func provide(frameAddress: UInt64) {
        precondition(_providedCount < Int(entries), "buffer ring \(group) is full")
        let index = Int(frameAddress / UInt64(pool.frameSize))
        providedBits[index >> 6] |= 1 << UInt64(index & 63)
        io_uring_buf_ring_add(bufferRing, pool.base + Int(frameAddress) + bufferOffset,
                              UInt32(pool.frameSize - bufferOffset), UInt16(index), mask, uncommitted)
        uncommitted &+= 1
        _providedCount &+= 1
    }

    /// Makes the frames queued by ``provide(frameAddress:)`` visible to the kernel.
    @inlinable
    public func commit() {
        guard uncommitted > 0 else { return }
        io_uring_buf_ring_advance(bufferRing, uncommitted)
        uncommitted = 0
    }

    /// Tops the ring up with frames from the pool and commits; returns how many were added.
    @inlinable
    @discardableResult
    public func refill() -> Int {
        var added = 0
        while _providedCount < Int(entries), let address = pool.allocateAddress() {
            provide(frameAddress: address)
            added &+= 1
        }
        commit()
        return added
    }

    /// Takes back the frame the kernel filled as buffer `bufferID` (from a completion's
    /// ``URingCompletion/bufferID``); the caller owns it from now on.
    ///
    /// - Returns: the frame's address in the pool.
    @inlinable
    public func consumed(bufferID: UInt16) -> UInt64 {
        let index = Int(bufferID)
        let bit: UInt64 = 1 << UInt64(index & 63)
        precondition(providedBits[index >> 6] & bit != 0, "buffer \(bufferID) of group \(group) was not provided")
        providedBits[index >> 6] &= ~bit
        _providedCount &-= 1
        return UInt64(index) * UInt64(pool.frameSize)
    }
}
