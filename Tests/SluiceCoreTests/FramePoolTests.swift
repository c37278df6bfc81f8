#if canImport(Glibc)
import Glibc
#endif
import Testing
@testable import SluiceCore

@Suite struct FramePoolTests {
    @Test func framesAreDistinctAlignedAndInsideTheRegion() throws {
        let pool = try FramePool(frameCount: 64, frameSize: 2048, headroom: 256)
        #expect(Int(bitPattern: pool.base) % 4096 == 0, "region is page-aligned, as a UMEM must be")
        var seen = Set<UInt64>()
        while let address = pool.allocateAddress() {
            #expect(address % 2048 == 0)
            #expect(address < UInt64(pool.regionSize))
            #expect(seen.insert(address).inserted, "frame \(address) handed out twice")
        }
        #expect(seen.count == 64)
        #expect(pool.freeCount == 0)
        #expect(pool.allocateAddress() == nil)
        for address in seen { pool.releaseAddress(address) }
        #expect(pool.freeCount == 64)
        #expect(pool.tally(held: 0).isBalanced)
    }

    /// Resident pages of a pool's region, as `mincore` counts them.
    func residentPages(_ pool: FramePool) -> Int {
        let page = Int(sysconf(Int32(_SC_PAGESIZE)))
        var vector = [UInt8](repeating: 0, count: pool.regionSize / page)
        guard mincore(pool.base, pool.regionSize, &vector) == 0 else { return -1 }
        return vector.filter { $0 & 1 != 0 }.count
    }

    @Test("a pool not prefaulted maps a page when it is first touched; a prefaulted one maps them all at once")
    func pagesAreMappedAsTheyAreTouched() throws {
        let lazy = try FramePool(frameCount: 64, frameSize: 65536, headroom: 256, prefaulted: false)
        #expect(residentPages(lazy) == 0)
        // A small packet in each frame touches the frame's first page only.
        while let address = lazy.allocateAddress() { (lazy.base + Int(address) + 256).storeBytes(of: 1, as: UInt8.self) }
        #expect(residentPages(lazy) == 64)
        let eager = try FramePool(frameCount: 64, frameSize: 65536, headroom: 256)
        #expect(residentPages(eager) == eager.regionSize / Int(sysconf(Int32(_SC_PAGESIZE))))
    }

    @Test func releaseByAnyAddressInsideTheFrame() throws {
        let pool = try FramePool(frameCount: 2, frameSize: 4096, headroom: 0)
        let address = try #require(pool.allocateAddress())
        // AF_XDP RX descriptors point at the data, past the headroom: the frame is still found.
        pool.releaseAddress(address + 300)
        #expect(pool.allocateAddress() == address)
    }

    @Test func packetsCarryHeadroomAndStayInsideTheirFrame() throws {
        let pool = try FramePool(frameCount: 1, frameSize: 2048, headroom: 256)
        guard var packet = pool.allocate() else {
            Issue.record("no frame")
            return
        }
        let (offset, length, tailroom) = (packet.offset, packet.length, packet.tailroom)
        #expect(offset == 256)
        #expect(length == 0)
        #expect(tailroom == 2048 - 256)
        packet.length = 100
        packet.data.copyBytes(from: Array(repeating: UInt8(7), count: 100))
        packet.pushFront(14)
        let pushed = (packet.offset, packet.length, packet.data[14])
        #expect(pushed == (242, 114, 7))
        packet.pullFront(14)
        let pulled = (packet.offset, packet.length, pool.address(of: packet))
        #expect(pulled == (256, 100, 0))
        pool.release(packet)
        #expect(pool.freeCount == 1)
    }

    @Test(arguments: [
        (frameCount: 0, frameSize: 2048, headroom: 0),
        (frameCount: 4, frameSize: 100, headroom: 0),
        (frameCount: 4, frameSize: 2048, headroom: 2048),
        (frameCount: 4, frameSize: 2 << 20, headroom: 0),
    ])
    func invalidGeometryIsRefused(frameCount: Int, frameSize: Int, headroom: Int) {
        let error = #expect(throws: SystemCallError.self) {
            _ = try FramePool(frameCount: frameCount, frameSize: frameSize, headroom: headroom)
        }
        #expect(error?.code == EINVAL && error?.subsystem == .memory)
        #expect(error?.description.contains("\(frameCount) frames of \(frameSize) bytes") == true, "\(String(describing: error))")
    }

    @Test func unbalancedTallyIsReported() throws {
        let pool = try FramePool(frameCount: 8)
        _ = pool.allocateAddress()
        #expect(!pool.tally(held: 0).isBalanced)
        #expect(pool.tally(held: 1).isBalanced)
        #expect(pool.tally(held: 0).description.contains("UNBALANCED"))
    }
}

@Suite struct PacketBatchTests {
    @Test func destroyingABatchReturnsItsFrames() throws {
        let pool = try FramePool(frameCount: 16)
        do {
            var batch = PacketBatch(pool: pool, capacity: 8)
            while batch.appendNewFrame() != nil {}
            let (count, full) = (batch.count, batch.isFull)
            #expect(count == 8 && full)
            #expect(pool.freeCount == 8)
        }
        #expect(pool.freeCount == 16)
    }

    @Test func appendNewFrameStopsWhenThePoolIsEmpty() throws {
        let pool = try FramePool(frameCount: 3)
        var batch = PacketBatch(pool: pool, capacity: 8)
        while batch.appendNewFrame() != nil {}
        let count = batch.count
        #expect(count == 3)
        batch.releaseAll()
        let empty = batch.isEmpty
        #expect(empty && pool.freeCount == 3)
    }

    @Test func moveAllKeepsOrder() throws {
        let pool = try FramePool(frameCount: 16)
        var a = PacketBatch(pool: pool, capacity: 8)
        var b = PacketBatch(pool: pool, capacity: 16)
        for i in 0..<5 {
            let index = a.appendNewFrame()!
            a[index].length = 1
            a[index].data[0] = UInt8(i)
        }
        _ = b.appendNewFrame()
        b[0].length = 1
        b[0].data[0] = 99
        a.moveAll(to: &b)
        let emptied = a.isEmpty
        #expect(emptied)
        let bytes = (0..<b.count).map { b[$0].data[0] }
        #expect(bytes == [99, 0, 1, 2, 3, 4])
        let balanced = pool.tally(held: b.count).isBalanced
        #expect(balanced)
    }

    @Test func drainKeepsChosenPacketsInOrderAndFreesTheRest() throws {
        let pool = try FramePool(frameCount: 32)
        var input = PacketBatch(pool: pool, capacity: 10)
        var kept = PacketBatch(pool: pool, capacity: 10)
        for i in 0..<10 {
            let index = input.appendNewFrame()!
            input[index].length = 1
            input[index].data[0] = UInt8(i)
        }
        input.drain(keepingInto: &kept) { packet in
            packet.data[0] = packet.data[0] &* 10
            return packet.data[0] % 20 == 0
        }
        let drained = input.isEmpty
        #expect(drained)
        let first = (0..<kept.count).map { kept[$0].data[0] }
        #expect(first == [0, 20, 40, 60, 80])
        #expect(pool.freeCount == 32 - 5)
        kept.filterInPlace { $0.data[0] >= 40 }
        let second = (0..<kept.count).map { kept[$0].data[0] }
        #expect(second == [40, 60, 80])
        let balanced = pool.tally(held: kept.count).isBalanced
        #expect(balanced)
    }

    @Test func removeLastHandsOwnershipOut() throws {
        let pool = try FramePool(frameCount: 4)
        var batch = PacketBatch(pool: pool, capacity: 4)
        _ = batch.appendNewFrame()
        let packet = batch.removeLast()
        let empty = batch.isEmpty
        #expect(empty)
        #expect(pool.tally(held: 1).isBalanced)
        pool.release(packet)
        #expect(pool.tally(held: 0).isBalanced)
    }
}

@Suite struct FramePoolPartitionTests {
    @Test func partitionsShareTheRegionAndSplitTheFrames() throws {
        let pool = try FramePool(frameCount: 10, frameSize: 2048, headroom: 256)
        let parts = pool.partition(into: 3)
        #expect(parts.map(\.frameCount) == [3, 3, 4])
        #expect(parts.allSatisfy { $0.base == pool.base && $0.frameSize == 2048 && $0.headroom == 256 })
        var seen = Set<UInt64>()
        for part in parts {
            while let address = part.allocateAddress() { #expect(seen.insert(address).inserted) }
        }
        #expect(seen.count == 10 && seen.allSatisfy { $0 < UInt64(pool.regionSize) && $0 % 2048 == 0 })
        #expect(pool.freeCount == 0)
    }

    @Test func aPartitionOutlivesItsParentHandle() throws {
        var parts: [FramePool] = []
        do {
            let pool = try FramePool(frameCount: 4)
            parts = pool.partition(into: 2)
        }
        // The region stays mapped while a partition lives: writing to it must not fault.
        let packet = parts[0].allocate()!
        packet.frame.storeBytes(of: 0xAB, toByteOffset: 0, as: UInt8.self)
        parts[0].release(packet)
        #expect(parts[0].tally(held: 0).isBalanced)
    }
}
