/// A handle to a scheduled timer, for cancelling it.
public struct TimerID: Hashable, Sendable {
    @usableFromInline let index: Int32
    @usableFromInline let generation: UInt32

    @inlinable
    init(index: Int32, generation: UInt32) {
        self.index = index
        self.generation = generation
    }
}

/// A hashed timing wheel (Varghese and Lauck): O(1) schedule and cancel, expiry in tick-sized
/// steps, for the many short timers of protocol stages (retransmissions, idle timeouts).
///
/// All storage is allocated up front for `capacity` timers; scheduling never allocates.
/// Timers fire no earlier than their deadline and at most one tick after the first
/// ``advance(to:_:)`` past it.
public struct TimerWheel<Payload> {
    @usableFromInline struct Node {
        @usableFromInline var deadline: UInt64
        @usableFromInline var payload: Payload?
        @usableFromInline var next: Int32
        @usableFromInline var generation: UInt32
    }

    @usableFromInline var nodes: [Node]
    @usableFromInline var slots: [Int32]
    @usableFromInline var freeHead: Int32
    @usableFromInline let tickNanoseconds: UInt64
    @usableFromInline let slotMask: UInt64
    /// The first tick not yet walked: every earlier tick has fully elapsed and fired.
    @usableFromInline var nextTick: UInt64
    @usableFromInline var _count: Int

    /// Creates a wheel of `slots` slots (rounded up to a power of two) each `tick` long,
    /// holding at most `capacity` timers, with its clock starting at `start`.
    public init(tick: Duration = .milliseconds(1), slots: Int = 256, capacity: Int = 4096, start: Instant) {
        precondition(capacity > 0 && capacity < Int(Int32.max) && slots > 0)
        let slotCount = 1 << (Int.bitWidth - (max(slots, 2) - 1).leadingZeroBitCount)
        tickNanoseconds = UInt64(max(1, tick.nanosecondsClamped))
        slotMask = UInt64(slotCount - 1)
        self.slots = Array(repeating: -1, count: slotCount)
        nodes = (0..<capacity).map { Node(deadline: 0, payload: nil, next: $0 + 1 < capacity ? Int32($0 + 1) : -1, generation: 0) }
        freeHead = 0
        nextTick = start.nanoseconds / tickNanoseconds
        _count = 0
    }

    /// Timers scheduled and not yet fired or cancelled.
    @inlinable
    public var count: Int { _count }

    /// Schedules `payload` to fire at `deadline`.
    ///
    /// - Returns: the timer's handle, or `nil` when the wheel is full.
    @inlinable
    public mutating func schedule(_ payload: Payload, at deadline: Instant) -> TimerID? {
        guard freeHead >= 0 else { return nil }
        let index = freeHead
        freeHead = nodes[Int(index)].next
        // A deadline in the past lands in the next slot to be walked.
        let tick = max(deadline.nanoseconds / tickNanoseconds, nextTick)
        let slot = Int(tick & slotMask)
        nodes[Int(index)].deadline = deadline.nanoseconds
        nodes[Int(index)].payload = payload
        nodes[Int(index)].next = slots[slot]
        slots[slot] = index
        _count += 1
        return TimerID(index: index, generation: nodes[Int(index)].generation)
    }

    /// Cancels a timer that has not fired yet.
    ///
    /// - Returns: its payload, or `nil` if it already fired or was cancelled.
    @inlinable
    @discardableResult
    public mutating func cancel(_ id: TimerID) -> Payload? {
        let i = Int(id.index)
        guard i < nodes.count, nodes[i].generation == id.generation, let payload = nodes[i].payload else { return nil }
        // The node stays linked in its slot and is reclaimed when that slot is next walked.
        nodes[i].payload = nil
        nodes[i].generation &+= 1
        _count -= 1
        return payload
    }

    /// Moves the wheel's clock to `now`, calling `fire` for every timer due by then.
    @inlinable
    public mutating func advance(to now: Instant, _ fire: (Payload) -> Void) {
        // Only whole elapsed ticks are walked, so everything due in a walked slot has expired.
        let end = now.nanoseconds / tickNanoseconds
        guard end > nextTick else { return }
        // Past a whole turn every slot is due once; walking more would only repeat them.
        let steps = min(end - nextTick, slotMask + 1)
        var tick = end - steps
        while tick < end {
            walk(slot: Int(tick & slotMask), now: now.nanoseconds, fire)
            tick += 1
        }
        nextTick = end
    }

    @inlinable
    mutating func walk(slot: Int, now: UInt64, _ fire: (Payload) -> Void) {
        var previous: Int32 = -1
        var index = slots[slot]
        while index >= 0 {
            let i = Int(index)
            let next = nodes[i].next
            let cancelled = nodes[i].payload == nil
            if cancelled || nodes[i].deadline <= now {
                if previous < 0 { slots[slot] = next } else { nodes[Int(previous)].next = next }
                let payload = nodes[i].payload
                nodes[i].payload = nil
                nodes[i].next = freeHead
                freeHead = index
                if let payload {
                    nodes[i].generation &+= 1
                    _count -= 1
                    fire(payload)
                }
            } else {
                previous = index
            }
            index = next
        }
    }

    /// The earliest instant at which ``advance(to:_:)`` fires something: the end of the tick
    /// holding the earliest deadline. `nil` when no timer is pending.
    public func nextExpiry() -> Instant? {
        guard _count > 0 else { return nil }
        var earliest = UInt64.max
        for step in 0...slotMask {
            var index = slots[Int((nextTick + step) & slotMask)]
            while index >= 0 {
                let node = nodes[Int(index)]
                if node.payload != nil { earliest = min(earliest, node.deadline) }
                index = node.next
            }
            // A deadline within this turn's slot is the soonest; every later slot is later still.
            if earliest != .max, earliest / tickNanoseconds <= nextTick + step { break }
        }
        guard earliest != .max else { return nil }
        let tick = max(earliest / tickNanoseconds, nextTick)
        return Instant(nanoseconds: (tick + 1) * tickNanoseconds)
    }
}
