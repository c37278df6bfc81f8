/// One sans-I/O step of a pipeline: it turns an input batch into an output batch, and keeps
/// timers, but never touches a file descriptor or reads the clock.
///
/// The shape follows quinn-proto and str0m: the caller passes `now` in, asks
/// ``pollTimeout()`` when the stage next wants to run, calls ``handleTimeout(now:output:)``
/// then, and pops all output before it feeds the next input.
public protocol Stage: ~Copyable {
    /// Processes every packet of `input` (which is empty afterwards): each is moved to `output`
    /// (rewritten in place, or as a new packet) or its frame goes back to the pool.
    ///
    /// `output` is empty on entry and at least as large as `input`.
    mutating func handle(_ input: inout PacketBatch, output: inout PacketBatch, now: Instant)

    /// When the stage next needs ``handleTimeout(now:output:)``; `nil` for never.
    func pollTimeout() -> Instant?

    /// Runs the timers due at `now`, possibly emitting packets into `output`.
    mutating func handleTimeout(now: Instant, output: inout PacketBatch)

    /// Frames the stage keeps between calls (fragments being reassembled, output waiting for
    /// room), for the worker's frame accounting.
    var framesHeld: Int { get }
}

extension Stage where Self: ~Copyable {
    /// A stage without timers never needs to be woken.
    @inlinable
    public func pollTimeout() -> Instant? { nil }

    /// A stage without timers has nothing to do on a timeout.
    @inlinable
    public mutating func handleTimeout(now: Instant, output: inout PacketBatch) {}

    /// A stage that passes every frame on before it returns keeps none.
    @inlinable
    public var framesHeld: Int { 0 }
}

/// Two stages run one after the other, composed statically: `First`'s output is `Second`'s
/// input. Nest pipelines for more stages; every call is direct and inlinable, so a pipeline
/// costs what its stages cost.
public struct Pipeline<First: Stage & ~Copyable, Second: Stage & ~Copyable>: Stage, ~Copyable {
    /// The first stage.
    public var first: First
    /// The second stage.
    public var second: Second
    @usableFromInline var middle: PacketBatch

    /// Joins `first` and `second`, with a scratch batch between them drawing on `pool`.
    public init(_ first: consuming First, _ second: consuming Second, pool: FramePool,
                capacity: Int = PacketBatch.defaultCapacity) {
        self.first = first
        self.second = second
        middle = PacketBatch(pool: pool, capacity: capacity)
    }

    @inlinable
    public mutating func handle(_ input: inout PacketBatch, output: inout PacketBatch, now: Instant) {
        first.handle(&input, output: &middle, now: now)
        second.handle(&middle, output: &output, now: now)
    }

    @inlinable
    public var framesHeld: Int { first.framesHeld + second.framesHeld + middle.count }

    @inlinable
    public func pollTimeout() -> Instant? {
        switch (first.pollTimeout(), second.pollTimeout()) {
        case let (a?, b?): min(a, b)
        case let (a?, nil): a
        case let (nil, b): b
        }
    }

    @inlinable
    public mutating func handleTimeout(now: Instant, output: inout PacketBatch) {
        first.handleTimeout(now: now, output: &middle)
        if middle.isEmpty {
            second.handleTimeout(now: now, output: &output)
        } else {
            second.handle(&middle, output: &output, now: now)
            second.handleTimeout(now: now, output: &output)
        }
    }
}
