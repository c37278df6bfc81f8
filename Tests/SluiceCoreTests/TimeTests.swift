import SluiceTestSupport
import Testing
@testable import SluiceCore

@Suite struct InstantTests {
    @Test func arithmetic() {
        let t = Instant(nanoseconds: 5_000)
        #expect((t + .microseconds(3)).nanoseconds == 8_000)
        #expect((t + .nanoseconds(-9_000)).nanoseconds == 0, "never below the clock's start")
        #expect(Instant(nanoseconds: 8_000) - t == .microseconds(3))
        #expect(Duration.seconds(2).nanosecondsClamped == 2_000_000_000)
        #expect(Duration.seconds(Int64.max).nanosecondsClamped == .max)
    }

    @Test func monotonicClockMovesForward() {
        let clock = MonotonicTimeSource()
        let a = clock.now()
        let b = clock.now()
        #expect(b >= a)
        #expect(a.nanoseconds > 0)
    }

    @Test func manualClockOnlyMovesWhenTold() {
        let clock = ManualTimeSource(start: Instant(nanoseconds: 100))
        #expect(clock.now().nanoseconds == 100)
        clock.advance(by: .nanoseconds(50))
        #expect(clock.now().nanoseconds == 150)
        clock.advance(to: Instant(nanoseconds: 10))
        #expect(clock.now().nanoseconds == 150, "never backwards")
    }
}

@Suite struct TimerWheelTests {
    let start = Instant(nanoseconds: 1_000_000_000)

    @Test func firesAtOrAfterDeadlineAndAtMostOneTickLate() {
        var wheel = TimerWheel<Int>(tick: .milliseconds(1), slots: 16, capacity: 8, start: start)
        _ = wheel.schedule(1, at: start + .milliseconds(5))
        var fired: [Int] = []
        wheel.advance(to: start + .microseconds(4_999)) { fired.append($0) }
        #expect(fired.isEmpty)
        #expect(wheel.nextExpiry() == start + .milliseconds(6))
        wheel.advance(to: start + .milliseconds(6)) { fired.append($0) }
        #expect(fired == [1])
        #expect(wheel.count == 0)
        #expect(wheel.nextExpiry() == nil)
    }

    @Test func timersBeyondOneTurnWaitForTheirRound() {
        var wheel = TimerWheel<String>(tick: .milliseconds(1), slots: 8, capacity: 8, start: start)
        _ = wheel.schedule("far", at: start + .milliseconds(20))
        _ = wheel.schedule("near", at: start + .milliseconds(3))
        var fired: [String] = []
        wheel.advance(to: start + .milliseconds(10)) { fired.append($0) }
        #expect(fired == ["near"])
        #expect(wheel.nextExpiry() == start + .milliseconds(21))
        wheel.advance(to: start + .milliseconds(21)) { fired.append($0) }
        #expect(fired == ["near", "far"])
    }

    @Test func cancelledTimersNeverFireAndFreeTheirSlot() throws {
        var wheel = TimerWheel<Int>(tick: .milliseconds(1), slots: 8, capacity: 1, start: start)
        let id = wheel.schedule(7, at: start + .milliseconds(2))!
        let overflow = wheel.schedule(8, at: start + .milliseconds(2))
        #expect(overflow == nil, "full")
        let cancelled = wheel.cancel(id)
        #expect(cancelled == 7)
        let again = wheel.cancel(id)
        #expect(again == nil, "twice")
        var fired: [Int] = []
        wheel.advance(to: start + .milliseconds(5)) { fired.append($0) }
        #expect(fired.isEmpty)
        let reused = wheel.schedule(9, at: start + .milliseconds(6))
        #expect(reused != nil, "the cancelled node was reclaimed")
    }

    @Test func pastDeadlinesFireOnTheNextAdvance() {
        var wheel = TimerWheel<Int>(tick: .milliseconds(1), slots: 8, capacity: 4, start: start)
        _ = wheel.schedule(1, at: Instant(nanoseconds: 0))
        var fired: [Int] = []
        wheel.advance(to: start + .milliseconds(1)) { fired.append($0) }
        #expect(fired == [1])
    }

    /// Random schedules, cancels and advances against a plain list: same timers fire, none early, none more than a tick late.
    @Test(arguments: 1...20)
    func matchesAPlainListOfDeadlines(seed: UInt64) {
        var random = TestBytes(seed: seed)
        let tick: UInt64 = 1_000_000
        var wheel = TimerWheel<Int>(tick: .nanoseconds(Int64(tick)), slots: 32, capacity: 256, start: start)
        var pending: [Int: (deadline: UInt64, id: TimerID)] = [:]
        var now = start.nanoseconds
        var next = 0
        for _ in 0..<400 {
            switch random.next() % 4 {
            case 0, 1:
                let deadline = now + random.next() % (100 * tick)
                if let id = wheel.schedule(next, at: Instant(nanoseconds: deadline)) { pending[next] = (deadline, id) }
                next += 1
            case 2:
                if let key = pending.keys.sorted().first {
                    let cancelled = wheel.cancel(pending[key]!.id)
                    #expect(cancelled == key)
                    pending[key] = nil
                }
            default:
                now += random.next() % (10 * tick)
                var fired: [Int] = []
                wheel.advance(to: Instant(nanoseconds: now)) { fired.append($0) }
                let due = pending.filter { $0.value.deadline / tick < now / tick }.map(\.key)
                #expect(Set(fired) == Set(due), "at \(now)")
                for key in fired {
                    #expect(pending[key]!.deadline <= now, "fired early")
                    pending[key] = nil
                }
            }
            #expect(wheel.count == pending.count)
        }
    }
}
