#if canImport(Glibc)
import Glibc
#endif
import CSluiceSystem
import CSluiceXDP
import SluiceCore
import SluiceSystem
import Synchronization


/// A `FramePool`'s memory registered with the kernel as an AF_XDP UMEM.
///
/// One UMEM can serve several XSK sockets (the queues of one interface); each worker then
/// draws frames from its own partition of the pool (`FramePool/partition(into:)`), and all
/// addresses stay relative to the one region. The UMEM lives as long as any socket using it.
///
/// libxdp's first socket on a UMEM is the UMEM's own socket, which can be bound once: a UMEM
/// serves one set of sockets, opened together; make a new UMEM to open sockets again later.
public final class XSKUmem: @unchecked Sendable {
    /// The registered memory.
    public let pool: FramePool
    @usableFromInline let umem: OpaquePointer
    /// Fill and completion rings libxdp made with the UMEM. The first socket must use these very
    /// structs: libxdp unmaps the UMEM's rings if a first bind fails with any other pair, and a
    /// retry (zero-copy, then copy) would then write through dangling pointers.
    let initialFill: UnsafeMutablePointer<xsk_ring_prod>
    let initialCompletion: UnsafeMutablePointer<xsk_ring_cons>
    private let initialRingsTaken = Atomic<Bool>(false)
    /// The network namespace the UMEM's socket lives in (its inode): the first XSK shares that
    /// socket and binds by interface index there, so every port must be opened in it too.
    let namespaceInode: UInt64
    /// Ring sizes used for every socket's fill and completion rings.
    public let fillRingSize: UInt32
    /// The completion ring size.
    public let completionRingSize: UInt32

    /// Registers `pool`'s region. Its frame size must be 2048 or 4096 (aligned chunk mode).
    public init(pool: FramePool, fillRingSize: UInt32 = 2048, completionRingSize: UInt32 = 2048) throws(SystemCallError) {
        LibraryLog.install()   // libxdp prints to stderr until its messages are taken over
        guard pool.frameSize == 2048 || pool.frameSize == 4096 else {
            throw SystemCallError(.xsk, operation: "UMEM with \(pool.frameSize)-byte frames", errno: EINVAL)
        }
        self.pool = pool
        namespaceInode = currentNetworkNamespaceInode()
        self.fillRingSize = fillRingSize
        self.completionRingSize = completionRingSize
        initialFill = .allocate(capacity: 1)
        initialFill.initialize(to: xsk_ring_prod())
        initialCompletion = .allocate(capacity: 1)
        initialCompletion.initialize(to: xsk_ring_cons())
        var config = xsk_umem_config(
            fill_size: fillRingSize, comp_size: completionRingSize, frame_size: UInt32(pool.frameSize),
            frame_headroom: 0, flags: 0)
        var created: OpaquePointer?
        let result = xsk_umem__create(&created, pool.base, UInt64(pool.regionSize), initialFill, initialCompletion, &config)
        guard result == 0, let created else {
            initialFill.deallocate()
            initialCompletion.deallocate()
            throw SystemCallError(.xsk, operation: "xsk_umem__create(\(pool.regionSize) bytes)", errno: -result)
        }
        umem = created
    }

    deinit {
        xsk_umem__delete(umem)
        if !initialRingsTaken.load(ordering: .relaxed) {
            initialFill.deallocate()
            initialCompletion.deallocate()
        }
    }

    /// Takes back ring structs from a socket that failed to open.
    func returnRings(_ fill: UnsafeMutablePointer<xsk_ring_prod>, _ completion: UnsafeMutablePointer<xsk_ring_cons>) {
        if fill == initialFill {
            initialRingsTaken.store(false, ordering: .relaxed)
        } else {
            fill.deallocate()
            completion.deallocate()
        }
    }

    /// Fill and completion ring structs for a new socket: the UMEM's own for the first one
    /// (handed over, the socket frees them), fresh ones after that.
    func ringsForNewSocket() -> (fill: UnsafeMutablePointer<xsk_ring_prod>, completion: UnsafeMutablePointer<xsk_ring_cons>) {
        if initialRingsTaken.compareExchange(expected: false, desired: true, ordering: .relaxed).exchanged {
            return (initialFill, initialCompletion)
        }
        let fill = UnsafeMutablePointer<xsk_ring_prod>.allocate(capacity: 1)
        fill.initialize(to: xsk_ring_prod())
        let completion = UnsafeMutablePointer<xsk_ring_cons>.allocate(capacity: 1)
        completion.initialize(to: xsk_ring_cons())
        return (fill, completion)
    }
}

/// The inode of the calling thread's network namespace (0 if unknown).
func currentNetworkNamespaceInode() -> UInt64 {
    var info = stat()
    guard stat("/proc/thread-self/ns/net", &info) == 0 else { return 0 }
    return UInt64(info.st_ino)
}
