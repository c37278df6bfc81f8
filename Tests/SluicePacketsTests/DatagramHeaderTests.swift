import SluicePackets
import Testing

@Suite struct DatagramHeaderTests {
    /// Frames a whole number of pages apart would put every header in the same few L1 cache sets;
    /// 64 consecutive frames must start on 64 different lines of a page.
    @Test(arguments: [1, 18, 1472, 9000, 65507])
    func consecutiveFramesStartOnDifferentCacheLines(payload: Int) {
        let size = DatagramHeader.frameSize(forPayload: payload)
        #expect(size >= DatagramHeader.minimumHeadroom + payload && size % 64 == 0)
        let lines = Set((0..<64).map { $0 * size % 4096 / 64 })
        #expect(lines.count == 64)
    }
}
