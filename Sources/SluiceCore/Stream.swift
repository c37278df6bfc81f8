/// Names one connection (or listener) of a ``StreamTransport``: a slot and the slot's
/// generation, so an id that outlives its connection never reaches the slot's next occupant.
public struct StreamID: Hashable, Sendable, CustomStringConvertible {
    /// The slot in the transport's table.
    public let slot: UInt32
    /// The slot's generation when the connection was made.
    public let generation: UInt16

    /// An id; transports make these.
    public init(slot: UInt32, generation: UInt16) {
        self.slot = slot
        self.generation = generation
    }

    public var description: String { "tcp#\(slot).\(generation)" }
}

/// What a stream transport (the io_uring TCP engine, say) offers the handler it calls back:
/// ordered sends of pool frames, half-close, close, and frames back to the pool.
///
/// The contract a stream stage (TLS records) is written against, so it depends on Core and not
/// on a backend. Every call happens on the transport's own thread, from inside a handler callback
/// or between polls.
public protocol StreamTransport: AnyObject {
    /// The frames chunks arrive in and are sent from.
    var pool: FramePool { get }

    /// Queues `chunk`'s data for sending on `stream`, after everything queued before. The frame
    /// belongs to the transport from here on (back to the pool once sent, or at once when the
    /// stream is gone).
    ///
    /// - Returns: false when the stream is closed or shut for writing (the frame went back).
    @discardableResult
    func send(_ chunk: consuming Packet, on stream: StreamID) -> Bool

    /// Sends FIN once everything queued is sent; receiving goes on. When the peer has ended its
    /// side already (``StreamHandler/readClosed(_:transport:)`` came), the stream closes then.
    func shutdownWrite(_ stream: StreamID)

    /// Closes `stream` once its queued sends finish, or at once (RST) with `abort`.
    func close(_ stream: StreamID, abort: Bool)

    /// Stops receiving on `stream` (a handler whose output cannot keep up) until ``resumeReceiving(_:)``;
    /// TCP flow control then holds the peer back.
    func pauseReceiving(_ stream: StreamID)

    /// Receives again on a stream paused by ``pauseReceiving(_:)``.
    func resumeReceiving(_ stream: StreamID)

    /// Gives a chunk's frame back to the pool (a handler that keeps nothing of it).
    func release(_ chunk: consuming Packet)

    /// Frames `stream` holds now: queued, in flight, or awaiting a zero-copy notification.
    func framesHeld(on stream: StreamID) -> Int

    /// Calls the handler's ``StreamHandler/sendQueueDrained(_:transport:)`` for `stream` once
    /// frames come back to the pool: for a handler that found none free to send in. Its own
    /// queue may be empty, so no send of its own would come back to wake it.
    func notifyWhenFramesFree(_ stream: StreamID)

    /// Aborts `stream` (its error `ETIMEDOUT`) unless this is called again before `timeout` has
    /// passed; `nil` clears it. For a handler that must see a message whole in time, whatever
    /// the peer keeps trickling in (the idle timeout restarts with every byte).
    func setDeadline(_ stream: StreamID, in timeout: Duration?)
}

/// What a ``StreamTransport`` reports, on its thread: accepted and connected streams, data in
/// order, end of input, drained send queues, and closes.
///
/// A received chunk arrives as a ``Packet`` the handler owns: it must hand it on, back to the
/// transport with ``StreamTransport/send(_:on:)`` (an echo sends the very frame it received) or
/// to ``StreamTransport/release(_:)``. Every method may call back into the transport.
public protocol StreamHandler {
    /// The transport that calls this handler.
    associatedtype Transport: StreamTransport

    /// A listener accepted `stream`; it is receiving already.
    mutating func accepted(_ stream: StreamID, listener: StreamID, transport: Transport)
    /// An outgoing stream finished connecting (`error == nil`, receiving already) or failed (the
    /// id is closed; no ``closed(_:error:transport:)`` follows).
    mutating func connected(_ stream: StreamID, error: SystemCallError?, transport: Transport)
    /// Bytes arrived, in order, in one frame the handler now owns.
    mutating func received(_ chunk: consuming Packet, on stream: StreamID, transport: Transport)
    /// The peer shut down its write side (EOF): nothing more will be received.
    mutating func readClosed(_ stream: StreamID, transport: Transport)
    /// Every queued send of `stream` has completed, or a sent frame came back while none is queued
    /// (a good moment to queue more).
    mutating func sendQueueDrained(_ stream: StreamID, transport: Transport)
    /// The stream is gone: its descriptor closed, every operation on it finished, every frame
    /// back. `error` says why when it was not an orderly close.
    mutating func closed(_ stream: StreamID, error: SystemCallError?, transport: Transport)
}
