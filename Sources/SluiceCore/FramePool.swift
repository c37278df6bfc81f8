#if canImport(Glibc)
import Glibc
#endif

/// One page-aligned memory region cut into equal frames, with a free list.
///
/// The region is laid out as AF_XDP wants its UMEM (frame `i` starts at offset `i * frameSize`),
/// so the same memory can be registered with an XSK socket; kernel-socket and io_uring ports
/// use it as plain receive and send buffers. A frame is named by its *address*: its offset from
/// the region's start, as in an XDP descriptor.
///
/// A pool belongs to one worker thread: it is not thread-safe, and nothing on the packet path
/// locks. It is `Sendable` only so a controller can build it and hand it to its worker.
public final class FramePool: @unchecked Sendable {
    /// The first byte of the region.
    public let base: UnsafeMutableRawPointer
    /// The size of the region in bytes (`frameCount * frameSize`, rounded up to whole pages).
    public let regionSize: Int
    /// The size of every frame.
    public let frameSize: Int
    /// The number of frames.
    public let frameCount: Int
    /// Where a packet's data starts in a freshly allocated frame, leaving room to push headers.
    public let headroom: Int

    @usableFromInline let freeList: UnsafeMutablePointer<UInt64>
    // Per packet, by the pool's one thread: no runtime exclusivity checks (a swift_beginAccess call each).
    @exclusivity(unchecked) @usableFromInline var freeTop: Int
    /// The pool that mapped the region, when this one is a partition of it (keeps it alive).
    private let regionOwner: FramePool?

    /// Maps a region of `frameCount` frames of `frameSize` bytes, all free.
    ///
    /// - Parameters:
    ///   - frameCount: how many frames.
    ///   - frameSize: bytes per frame; 2048 or 4096 for AF_XDP, up to 1 MiB for sockets that take 64 KiB datagrams.
    ///   - headroom: where packet data starts in a fresh frame.
    ///   - prefaulted: whether every page is mapped at once (`MAP_POPULATE`: no page fault on
    ///     the hot path); without, a page is mapped when first touched, so a pool of large frames
    ///     that mostly hold small packets costs only the pages they use.
    public init(frameCount: Int, frameSize: Int = 2048, headroom: Int = 256, prefaulted: Bool = true) throws(SystemCallError) {
        guard frameCount > 0, frameCount <= 1 << 24, frameSize % 64 == 0, (256...(1 << 20)).contains(frameSize),
              headroom >= 0, headroom < frameSize
        else {
            throw SystemCallError(
                .memory, operation: "a frame pool of \(frameCount) frames of \(frameSize) bytes with \(headroom) bytes of headroom",
                errno: EINVAL, hint: "frame sizes are multiples of 64 from 256 bytes to 1 MiB, the headroom below the frame size, at least one frame")
        }
        let page = Int(sysconf(Int32(_SC_PAGESIZE)))
        let bytes = (frameCount * frameSize + page - 1) / page * page
        let region = mmap(nil, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | (prefaulted ? MAP_POPULATE : 0), -1, 0)
        guard let region, region != MAP_FAILED else {
            throw SystemCallError(.memory, operation: "mmap of \(bytes) bytes for a frame pool", errno: errno)
        }
        // With transparent huge pages on "always", a first touch would map 2 MiB, not a page.
        if !prefaulted { _ = madvise(region, bytes, MADV_NOHUGEPAGE) }
        base = region
        regionSize = bytes
        self.frameSize = frameSize
        self.frameCount = frameCount
        self.headroom = headroom
        freeList = .allocate(capacity: frameCount)
        // Highest address at the bottom so frames come out in ascending order: easier to read in traces.
        for i in 0..<frameCount {
            freeList[i] = UInt64(frameCount - 1 - i) * UInt64(frameSize)
        }
        freeTop = frameCount
        regionOwner = nil
    }

    private init(partitionOf owner: FramePool, addresses: ArraySlice<UInt64>) {
        base = owner.base
        regionSize = owner.regionSize
        frameSize = owner.frameSize
        headroom = owner.headroom
        frameCount = addresses.count
        freeList = .allocate(capacity: addresses.count)
        for (i, address) in addresses.reversed().enumerated() { freeList[i] = address }
        freeTop = addresses.count
        regionOwner = owner
    }

    deinit {
        if regionOwner == nil { munmap(base, regionSize) }
        freeList.deallocate()
    }

    /// Splits the free frames into `count` pools of (nearly) equal size over the same region.
    ///
    /// For a shared AF_XDP UMEM: one region registered once, each worker thread drawing on a
    /// partition of its own, so no pool is ever touched by two threads. Addresses stay relative
    /// to the shared ``base``. This pool should not be used for frames afterwards.
    public func partition(into count: Int) -> [FramePool] {
        precondition(count > 0 && count <= freeTop, "frame pool: cannot split \(freeTop) frames \(count) ways")
        var addresses: [UInt64] = []
        while let address = allocateAddress() { addresses.append(address) }
        let share = addresses.count / count
        return (0..<count).map { i in
            let end = i == count - 1 ? addresses.count : (i + 1) * share
            return FramePool(partitionOf: self, addresses: addresses[(i * share)..<end])
        }
    }

    /// Frames on the free list now.
    @inlinable
    public var freeCount: Int { freeTop }

    /// Frames that are somewhere other than the free list: in batches, rings or the kernel.
    @inlinable
    public var outstandingCount: Int { frameCount - freeTop }

    /// Takes a frame off the free list, as a packet with `headroom` bytes before its (empty) data.
    @inlinable
    public func allocate() -> Packet? {
        guard let address = allocateAddress() else { return nil }
        return packet(at: address, offset: headroom, length: 0)
    }

    /// Takes a frame's address off the free list (for ports that hand addresses to the kernel).
    @inlinable
    public func allocateAddress() -> UInt64? {
        guard freeTop > 0 else { return nil }
        freeTop &-= 1
        return freeList[freeTop]
    }

    /// Returns a frame to the free list.
    @inlinable
    public func release(_ packet: consuming Packet) {
        releaseAddress(address(of: packet))
    }

    /// Returns a frame, named by its address (any address inside the frame), to the free list.
    @inlinable
    public func releaseAddress(_ address: UInt64) {
        precondition(freeTop < frameCount, "frame pool: more frames released than exist (double release)")
        freeList[freeTop] = address - address % UInt64(frameSize)
        freeTop &+= 1
    }

    /// The address (offset from ``base``) of the frame that holds `packet`.
    @inlinable
    public func address(of packet: borrowing Packet) -> UInt64 {
        UInt64(UInt(bitPattern: packet.frameStart - base))
    }

    /// Wraps the frame at `address` as a packet whose data is `length` bytes at `offset` from the frame start.
    ///
    /// Ports call this for frames the kernel filled; the caller must own the frame.
    @inlinable
    public func packet(at address: UInt64, offset: Int, length: Int) -> Packet {
        let frameAddress = address - address % UInt64(frameSize)
        let extra = Int(address - frameAddress)
        return Packet(
            frameStart: base + Int(frameAddress), capacity: frameSize, offset: offset + extra, length: length)
    }

    /// Checks that every frame is accounted for: the free ones plus `held` (frames the caller
    /// counts in its batches, rings and in flight) must be exactly the pool.
    ///
    /// - Returns: the tally, whose ``FrameTally/isBalanced`` says whether nothing leaked.
    public func tally(held: Int) -> FrameTally {
        FrameTally(total: frameCount, free: freeTop, held: held)
    }
}

/// Where a pool's frames are: proof that none leaked or were counted twice.
public struct FrameTally: Equatable, Sendable, CustomStringConvertible {
    /// The pool's size.
    public var total: Int
    /// Frames on the free list.
    public var free: Int
    /// Frames the owner says it holds (batches, rings, in flight).
    public var held: Int

    /// True when free and held frames add up to the pool exactly.
    public var isBalanced: Bool { free + held == total }

    public var description: String {
        "frames: \(free) free + \(held) held = \(free + held) of \(total)\(isBalanced ? "" : " (UNBALANCED)")"
    }
}
