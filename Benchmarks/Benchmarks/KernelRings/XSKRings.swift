internal import CSluiceXDP

#if canImport(Glibc)
import Glibc
#endif

/// An AF_XDP descriptor ring in anonymous memory, laid out as the kernel maps one, with no
/// socket behind it, so that libxdp's ring functions run exactly as they do on a real ring.
///
/// `XDPPort` cannot run without a bound socket, but all it does with its rings on the packet
/// path is call libxdp's inline functions (`xsk_ring_prod__reserve`/`__submit`,
/// `xsk_ring_cons__peek`/`__release`) on `xsk_ring_prod`/`xsk_ring_cons` structs that point into
/// the ring's mapping. Here those structs point into this memory instead, set up the way libxdp
/// sets them up after its `mmap`. The kernel's side of the ring is one store to the other index
/// per batch (``consumeAll()``, ``produce(_:)``).
final class FakeXSKRing {
    /// Where the kernel puts the ring's fields: `XDP_MMAP_OFFSETS` on x86-64, from `struct
    /// xdp_ring` (producer and consumer on cache lines of their own, descriptors after the flags).
    static let producerOffset = 0
    static let consumerOffset = 128
    static let flagsOffset = 196
    static let descriptorOffset = 320

    /// Descriptors in the ring: the default `XDPPortConfiguration.ringSize`.
    static let size: UInt32 = 2048
    /// UMEM frames of 2048 bytes: a frame's address is its index shifted by 11.
    static let frameShift: UInt64 = 11
    static let frameSize: UInt64 = 1 << frameShift
    /// A minimum-size Ethernet/IPv4/UDP frame without its FCS.
    static let frameLength: UInt32 = 60

    let producer: UnsafeMutablePointer<UInt32>
    let consumer: UnsafeMutablePointer<UInt32>
    let flags: UnsafeMutablePointer<UInt32>
    let descriptors: UnsafeMutablePointer<xdp_desc>

    /// Maps a zeroed ring of ``size`` `xdp_desc` descriptors (the RX and TX rings' kind).
    init() {
        let length = Self.descriptorOffset + Int(Self.size) * MemoryLayout<xdp_desc>.stride
        let memory = mmap(nil, length, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_POPULATE, -1, 0)
        guard let memory, memory != MAP_FAILED else {
            fatalError("mmap of a \(length)-byte ring failed: \(String(cString: strerror(errno)))")
        }
        producer = (memory + Self.producerOffset).assumingMemoryBound(to: UInt32.self)
        consumer = (memory + Self.consumerOffset).assumingMemoryBound(to: UInt32.self)
        flags = (memory + Self.flagsOffset).assumingMemoryBound(to: UInt32.self)
        descriptors = (memory + Self.descriptorOffset).bindMemory(to: xdp_desc.self, capacity: Int(Self.size))
    }

    /// A producer view (TX or fill ring) as libxdp makes it: the cached consumer index is one
    /// ring ahead, so that the free space is `cached_cons - cached_prod`.
    func producerView() -> UnsafeMutablePointer<xsk_ring_prod> {
        let view = UnsafeMutablePointer<xsk_ring_prod>.allocate(capacity: 1)
        view.initialize(to: xsk_ring_prod(
            cached_prod: producer.pointee, cached_cons: consumer.pointee &+ Self.size, mask: Self.size - 1,
            size: Self.size, producer: producer, consumer: consumer, ring: UnsafeMutableRawPointer(descriptors),
            flags: flags))
        return view
    }

    /// A consumer view (RX or completion ring) as libxdp makes it.
    func consumerView() -> UnsafeMutablePointer<xsk_ring_cons> {
        let view = UnsafeMutablePointer<xsk_ring_cons>.allocate(capacity: 1)
        view.initialize(to: xsk_ring_cons(
            cached_prod: producer.pointee, cached_cons: consumer.pointee, mask: Self.size - 1,
            size: Self.size, producer: producer, consumer: consumer, ring: UnsafeMutableRawPointer(descriptors),
            flags: flags))
        return view
    }

    /// The kernel's side of a TX ring: it takes every descriptor submitted so far.
    @inline(__always)
    func consumeAll() {
        consumer.pointee = producer.pointee
    }

    /// The kernel's side of an RX ring: `count` more descriptors, those already in their slots.
    @inline(__always)
    func produce(_ count: UInt32) {
        producer.pointee &+= count
    }
}

/// The producer side of an AF_XDP ring, as `XDPPort.transmit` drives its TX ring: reserve the
/// batch's descriptors, write each one's address, length and options, submit them.
public final class XSKProducerFixture: RingFixture {
    let ring = FakeXSKRing()
    let view: UnsafeMutablePointer<xsk_ring_prod>
    var submitted = 0

    public init() {
        view = ring.producerView()
    }

    public func runBatch(_ count: Int) throws {
        let count = UInt32(count)
        var index: UInt32 = 0
        guard xsk_ring_prod__reserve(view, count, &index) == count else {
            throw ShortRingError(operation: "xsk_ring_prod__reserve")
        }
        for i in 0..<count {
            let descriptor = xsk_ring_prod__tx_desc(view, index &+ i)!
            descriptor.pointee.addr = UInt64((index &+ i) & (FakeXSKRing.size - 1)) &<< FakeXSKRing.frameShift
            descriptor.pointee.len = FakeXSKRing.frameLength
            descriptor.pointee.options = 0
        }
        xsk_ring_prod__submit(view, count)
        submitted &+= Int(count)
        ring.consumeAll()
    }

    public func verify(packets: Int) {
        precondition(submitted == packets, "xsk producer submitted \(submitted) of \(packets) descriptors")
        precondition(ring.producer.pointee == UInt32(truncatingIfNeeded: packets), "xsk producer index is off")
    }
}

/// The consumer side of an AF_XDP ring, as `XDPPort.receive` drives its RX ring: peek at the
/// batch's descriptors, check each one's address and length against the UMEM as the port does
/// and count its bytes, release them. The kernel's side puts every released slot back at once.
public final class XSKConsumerFixture: RingFixture {
    let ring = FakeXSKRing()
    let view: UnsafeMutablePointer<xsk_ring_cons>
    var received = 0
    var receivedBytes: UInt64 = 0
    var invalid = 0

    /// Puts a descriptor of one 60-byte frame in every slot and hands the whole ring over.
    public init() {
        for slot in 0..<FakeXSKRing.size {
            ring.descriptors[Int(slot)] = xdp_desc(
                addr: UInt64(slot) &<< FakeXSKRing.frameShift, len: FakeXSKRing.frameLength, options: 0)
        }
        ring.produce(FakeXSKRing.size)
        view = ring.consumerView()
    }

    /// A peek returns at most what the cached producer index shows, and refreshes it only when
    /// that is nothing: like successive `receive` calls, the batch takes one or two peeks.
    public func runBatch(_ count: Int) throws {
        var remaining = UInt32(count)
        while remaining > 0 {
            var index: UInt32 = 0
            let peeked = xsk_ring_cons__peek(view, remaining, &index)
            guard peeked > 0 else { throw ShortRingError(operation: "xsk_ring_cons__peek") }
            for i in 0..<peeked {
                let descriptor = xsk_ring_cons__rx_desc(view, index &+ i)!.pointee
                let address = xsk_umem__add_offset_to_addr(descriptor.addr)
                guard address >> FakeXSKRing.frameShift < UInt64(FakeXSKRing.size),
                      address & (FakeXSKRing.frameSize - 1) + UInt64(descriptor.len) <= FakeXSKRing.frameSize
                else {
                    invalid &+= 1
                    continue
                }
                receivedBytes &+= UInt64(descriptor.len)
            }
            xsk_ring_cons__release(view, peeked)
            received &+= Int(peeked)
            ring.produce(peeked)
            remaining -= peeked
        }
    }

    public func verify(packets: Int) {
        precondition(received == packets && invalid == 0,
                     "xsk consumer read \(received) of \(packets) descriptors, \(invalid) invalid")
        precondition(receivedBytes == UInt64(packets) * UInt64(FakeXSKRing.frameLength), "xsk consumer miscounted bytes")
    }
}
