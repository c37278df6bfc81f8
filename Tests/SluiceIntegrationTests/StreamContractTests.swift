import Sluice
import SluiceTLS
import Testing

/// A transport in memory: what a stream handler sends and closes, with no kernel, as a TLS
/// record stage will be tested against Core's contract.
final class MemoryTransport: StreamTransport {
    let pool: FramePool
    var sent: [(StreamID, [UInt8])] = []
    var closed: [StreamID] = []
    var shut: [StreamID] = []
    var paused: Set<StreamID> = []

    init() throws { pool = try FramePool(frameCount: 8, frameSize: 2048, headroom: 0) }

    func send(_ chunk: consuming Packet, on stream: StreamID) -> Bool {
        sent.append((stream, Array(chunk.data)))
        release(chunk)
        return true
    }
    func shutdownWrite(_ stream: StreamID) { shut.append(stream) }
    func close(_ stream: StreamID, abort: Bool) { closed.append(stream) }
    func release(_ chunk: consuming Packet) { pool.release(chunk) }
    func framesHeld(on stream: StreamID) -> Int { 0 }
    func pauseReceiving(_ stream: StreamID) { paused.insert(stream) }
    func resumeReceiving(_ stream: StreamID) { paused.remove(stream) }
    func notifyWhenFramesFree(_ stream: StreamID) {}
    func setDeadline(_ stream: StreamID, in timeout: Duration?) {}
}

@Suite struct StreamContractTests {
    @Test func theEchoHandlerRunsOverAnyTransport() throws {
        let transport = try MemoryTransport()
        var handler = StreamEchoHandler<MemoryTransport>()
        let stream = StreamID(slot: 3, generation: 1)
        handler.accepted(stream, listener: StreamID(slot: 0, generation: 0), transport: transport)
        guard var chunk = transport.pool.allocate() else {
            Issue.record("an empty pool")
            return
        }
        chunk.setData(offset: 0, length: 3)
        chunk.data.copyBytes(from: [1, 2, 3])
        handler.received(chunk, on: stream, transport: transport)
        handler.readClosed(stream, transport: transport)
        handler.closed(stream, error: nil, transport: transport)
        #expect(transport.sent.count == 1 && transport.sent[0].0 == stream && transport.sent[0].1 == [1, 2, 3])
        #expect(transport.closed == [stream])
        #expect(handler.open == 0 && handler.failed == 0)
        #expect(transport.pool.tally(held: 0).isBalanced)
    }

    /// An application that notes which streams it is told about.
    struct NotingApplication: TLSStreamApplication {
        typealias Transport = MemoryTransport
        var closedStreams: [StreamID] = []
        mutating func established(_ stream: StreamID, writer: TLSWriter<MemoryTransport>) {}
        mutating func received(_ plaintext: UnsafeMutableRawBufferPointer, on stream: StreamID, writer: TLSWriter<MemoryTransport>) {}
        mutating func readClosed(_ stream: StreamID, writer: TLSWriter<MemoryTransport>) {}
        mutating func writable(_ stream: StreamID, writer: TLSWriter<MemoryTransport>) {}
        mutating func closed(_ stream: StreamID, error: TLSConnectionError?) { closedStreams.append(stream) }
    }

    /// A TLS application hears of the connections it served (a handshake cut short among them),
    /// not of the listener's end at a shutdown.
    @Test func aTLSApplicationIsToldOfConnectionsNotOfTheListener() throws {
        let transport = try MemoryTransport()
        let context = try TLSContext(.server(certificateChainFile: TLSInteropTests.certificate, privateKeyFile: TLSInteropTests.key))
        var handler = TLSStreamHandler(application: NotingApplication(), serverContext: context)
        let listener = StreamID(slot: 0, generation: 0)
        let connection = StreamID(slot: 3, generation: 1)
        handler.accepted(connection, listener: listener, transport: transport)
        handler.closed(connection, error: nil, transport: transport)
        handler.closed(listener, error: nil, transport: transport)
        #expect(handler.application.closedStreams == [connection])
        #expect(handler.counters.failedHandshakes == 1)
    }
}
