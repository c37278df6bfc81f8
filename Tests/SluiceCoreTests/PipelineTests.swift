import Testing
@testable import SluiceCore

/// Appends a marker byte to every packet.
struct MarkStage: Stage {
    var marker: UInt8
    mutating func handle(_ input: inout PacketBatch, output: inout PacketBatch, now: Instant) {
        input.drain(keepingInto: &output) { packet in
            packet.length += 1
            packet.data[packet.length - 1] = marker
            return true
        }
    }
}

/// Drops packets whose first byte is odd; emits a one-byte "tick" packet when its timer is due.
struct OddDropStage: Stage {
    var timer: TimerWheel<UInt8>
    var handled = 0

    init(start: Instant) {
        timer = TimerWheel(tick: .milliseconds(1), slots: 8, capacity: 4, start: start)
        _ = timer.schedule(0xEE, at: start + .milliseconds(10))
    }

    mutating func handle(_ input: inout PacketBatch, output: inout PacketBatch, now: Instant) {
        handled += input.count
        input.drain(keepingInto: &output) { $0.data[0] % 2 == 0 }
    }

    func pollTimeout() -> Instant? { timer.nextExpiry() }

    mutating func handleTimeout(now: Instant, output: inout PacketBatch) {
        var due: [UInt8] = []
        timer.advance(to: now) { due.append($0) }
        for byte in due {
            guard let index = output.appendNewFrame() else { return }
            output[index].length = 1
            output[index].data[0] = byte
        }
    }
}

@Suite struct PipelineTests {
    @Test func stagesRunInOrderAndDropsReturnFrames() throws {
        let clock = ManualTimeSource()
        let pool = try FramePool(frameCount: 64)
        var pipeline = Pipeline(MarkStage(marker: 0xAB), OddDropStage(start: clock.now()), pool: pool, capacity: 8)
        var input = PacketBatch(pool: pool, capacity: 8)
        var output = PacketBatch(pool: pool, capacity: 8)
        for i in 0..<6 {
            let index = input.appendNewFrame()!
            input[index].length = 1
            input[index].data[0] = UInt8(i)
        }
        pipeline.handle(&input, output: &output, now: clock.now())
        let (drained, count) = (input.isEmpty, output.count)
        #expect(drained && count == 3)
        for i in 0..<output.count {
            let bytes = Array(output[i].data)
            #expect(bytes == [UInt8(i * 2), 0xAB])
        }
        let handled = pipeline.second.handled
        #expect(handled == 6)
        let balanced = pool.tally(held: output.count).isBalanced
        #expect(balanced)
    }

    @Test func timeoutsFollowTheFakeClock() throws {
        let clock = ManualTimeSource()
        let pool = try FramePool(frameCount: 16)
        var pipeline = Pipeline(MarkStage(marker: 1), OddDropStage(start: clock.now()), pool: pool, capacity: 4)
        var output = PacketBatch(pool: pool, capacity: 4)
        let due = pipeline.pollTimeout()!
        #expect(due == clock.now() + .milliseconds(11))
        clock.advance(by: .milliseconds(5))
        pipeline.handleTimeout(now: clock.now(), output: &output)
        let quiet = output.isEmpty
        #expect(quiet)
        clock.advance(to: due)
        pipeline.handleTimeout(now: clock.now(), output: &output)
        let bytes = output.count == 1 ? Array(output[0].data) : []
        #expect(bytes == [0xEE])
        let next = pipeline.pollTimeout()
        #expect(next == nil)
    }
}
