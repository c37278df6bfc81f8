import SluiceCore
import SluicePackets
import SluiceSockets
import SluiceUDP

/// What a ``UDPLoadClient`` run measured.
public struct UDPLoadReport: Sendable, CustomStringConvertible {
    /// Datagrams sent.
    public var sent: UInt64 = 0
    /// Replies received intact.
    public var received: UInt64 = 0
    /// Replies whose length or bytes were not what was sent.
    public var corrupt: UInt64 = 0
    /// Replies to a datagram already answered.
    public var duplicates: UInt64 = 0
    /// Replies to nothing sent: from another address, or numbered past what was sent.
    public var strays: UInt64 = 0
    /// Replies that came after their datagram had been counted as lost.
    public var late: UInt64 = 0
    /// Seconds the run took.
    public var seconds: Double = 0
    /// The payload size used.
    public var payloadSize: Int = 0

    /// Replies per second.
    public var replyRate: Double { seconds > 0 ? Double(received) / seconds : 0 }
    /// Datagrams sent per second.
    public var sendRate: Double { seconds > 0 ? Double(sent) / seconds : 0 }
    /// Whether the run was open loop (no replies expected).
    public var openLoop = false
    /// CPU time of the sending thread from the first datagram to the end, when the sender measured it.
    public var senderCPUNanoseconds: UInt64?
    /// The share of sent datagrams without an intact reply.
    public var lossRatio: Double { sent > 0 ? Double(sent - min(sent, received)) / Double(sent) : 0 }

    public var description: String {
        if openLoop {
            return "sent \(sent) in \(String(format2: seconds)) s: \(String(format2: sendRate / 1000))k datagrams/s "
                + "(payload \(payloadSize) B, open loop)"
        }
        var text = "sent \(sent), replies \(received) intact, \(corrupt) corrupt, \(String(format2: lossRatio * 100))% lost, "
            + "\(String(format2: replyRate / 1000))k replies/s over \(String(format2: seconds)) s (payload \(payloadSize) B)"
        if duplicates + strays + late > 0 { text += "; \(duplicates) duplicate, \(strays) stray, \(late) late" }
        return text
    }
}

/// Asks a stop condition (a signal wait, a system call) at most every 50 ms of a load loop.
@usableFromInline
struct StopCheck {
    @usableFromInline var next = Instant(nanoseconds: 0)

    @inlinable
    init() {}

    /// Whether `shouldStop` says to stop, asking it only when 50 ms have passed since last time.
    @inlinable
    mutating func stops(at now: Instant, _ shouldStop: () -> Bool) -> Bool {
        guard now >= next else { return false }
        next = now + .milliseconds(50)
        return shouldStop()
    }
}

/// A bounded UDP echo load generator on the socket port: sends numbered datagrams with a
/// checkable pattern, keeps at most `window` unanswered, and checks every reply byte. Without a
/// window it sends flat out (one `sendmmsg` per batch) and expects nothing back.
public enum UDPLoadClient {
    /// Runs against `target` for `duration` (and at most `count` datagrams when given), or until
    /// `shouldStop` (asked every 50 ms) says so, then waits briefly for stragglers.
    public static func run(target: IPEndpoint, payloadSize: Int, duration: Duration, count: UInt64? = nil,
                           window: Int? = 256, batchCapacity: Int = 32, shouldStop: () -> Bool = { false }) throws -> UDPLoadReport {
        precondition(payloadSize >= 0 && payloadSize <= 65507)
        let local: IPEndpoint
        switch target.address {
        case .v4: local = IPEndpoint(address: .v4(.any), port: 0)
        case .v6: local = IPEndpoint(address: .v6(.any), port: 0)
        }
        var configuration = UDPSocketConfiguration(listen: local)
        configuration.reusePort = false
        configuration.receiveTimeout = .milliseconds(5)
        // Frames hold a batch on its way out or in, never a datagram waiting for its reply (the
        // kernel has it): a window of 65536 datagrams of 64 KiB needs no 16 GiB.
        let pool = try FramePool(frameCount: 4 * batchCapacity,
                                 frameSize: configuration.frameSize(maximumDatagram: payloadSize),
                                 headroom: DatagramHeader.minimumHeadroom)
        var port = try UDPSocketPort(configuration: configuration, pool: pool, batchCapacity: batchCapacity)
        var outgoing = PacketBatch(pool: pool, capacity: batchCapacity)
        var incoming = PacketBatch(pool: pool, capacity: batchCapacity)
        let clock = MonotonicTimeSource()
        let start = clock.now()
        let deadline = start + duration
        var report = UDPLoadReport()
        report.payloadSize = payloadSize
        guard let window else {
            report.openLoop = true
            // What the kernel refused (a full send buffer) was not sent.
            report.sent = try flood(port: &port, pool: pool, batchCapacity: batchCapacity, until: deadline, count: count,
                                    shouldStop: shouldStop) {
                fill(&$0, sequence: $1, size: payloadSize, target: target)
            }
            report.seconds = Double((clock.now() - start).nanosecondsClamped) / 1e9
            return report
        }
        var book = ReplyBook(capacity: 4 * window)
        var lastProgress = start
        var stopCheck = StopCheck()
        while clock.now() < deadline, count.map({ book.next < $0 }) ?? true, !stopCheck.stops(at: clock.now(), shouldStop) {
            var room = min(window - book.outstanding, batchCapacity)
            if let count { room = min(room, Int(clamping: count - book.next)) }
            while room > 0, book.canSend, let index = outgoing.appendNewFrame() {
                fill(&outgoing[index], sequence: book.next, size: payloadSize, target: target)
                book.sent()
                room -= 1
            }
            if !outgoing.isEmpty { try port.transmit(&outgoing) }
            if try port.receive(into: &incoming) > 0 {
                lastProgress = clock.now()
                check(&incoming, size: payloadSize, from: target, book: &book)
            } else if clock.now() - lastProgress > .milliseconds(100) {
                // Nothing came back for a while: count what is out as lost and go on.
                book.writeOffOutstanding()
                lastProgress = clock.now()
            }
        }
        let drainUntil = clock.now() + .milliseconds(200)
        while book.outstanding > 0, clock.now() < drainUntil {
            if try port.receive(into: &incoming) > 0 { check(&incoming, size: payloadSize, from: target, book: &book) }
        }
        var replies = book.replies
        replies.sent = book.next
        replies.payloadSize = payloadSize
        replies.seconds = Double((clock.now() - start).nanosecondsClamped) / 1e9
        return replies
    }

    /// Writes datagram number `sequence`: its number in the first 8 bytes, then a pattern keyed by it.
    /// Sends through any datagram port (socket or io_uring), flat out or at `rate` per second,
    /// until `deadline` (or `count` datagrams): each free frame of a batch is filled by `fill(&packet, sequence)` and the batch
    /// handed over, one transmit per batch; then waits up to 100 ms for frames in flight.
    ///
    /// - Returns: datagrams the port reports transmitted.
    @inlinable
    public static func flood<P: Port & ~Copyable>(
        port: inout P, pool: FramePool, batchCapacity: Int, until deadline: Instant, count: UInt64? = nil,
        rate: Int? = nil, shouldStop: () -> Bool = { false }, fill: (inout Packet, UInt64) -> Void
    ) throws(SystemCallError) -> UInt64 {
        var batch = PacketBatch(pool: pool, capacity: batchCapacity)
        let clock = MonotonicTimeSource()
        let pacer = Pacer(rate: rate)
        var sequence: UInt64 = 0
        var stopCheck = StopCheck()
        while clock.now() < deadline, count.map({ sequence < $0 }) ?? true, !stopCheck.stops(at: clock.now(), shouldStop) {
            pacer.waitForTurn(of: sequence)
            _ = port.reclaim()
            var room = batchCapacity
            if let count { room = min(room, Int(clamping: count - sequence)) }
            while room > 0, let index = batch.appendNewFrame() {
                fill(&batch[index], sequence)
                sequence += 1
                room -= 1
            }
            try port.transmit(&batch)
        }
        let settle = clock.now() + .milliseconds(100)
        while port.framesHeld > 0, clock.now() < settle { _ = port.reclaim() }
        return port.counters.transmittedPackets
    }

    static func fill(_ packet: inout Packet, sequence: UInt64, size: Int, target: IPEndpoint) {
        packet.length = size
        let data = packet.data
        for i in 0..<size { data[i] = pattern(sequence, i) }
        if size >= 8 { data.storeBytes(of: sequence.littleEndian, toByteOffset: 0, as: UInt64.self) }
        DatagramHeader.store(target, sockaddrAt: packet.frameStart + DatagramHeader.peerOffset, mapIPv4: false)
        DatagramHeader(frameStart: packet.frameStart).local = IPEndpoint(address: .v4(.any), port: 0)
    }

    static func pattern(_ sequence: UInt64, _ index: Int) -> UInt8 {
        UInt8(truncatingIfNeeded: sequence &* 31 &+ UInt64(index) &* 7)
    }

    static func check(_ batch: inout PacketBatch, size: Int, from target: IPEndpoint, book: inout ReplyBook) {
        for i in 0..<batch.count {
            let data = batch[i].data
            guard DatagramHeader(frameStart: batch[i].frameStart).peer == target else {
                book.replies.strays += 1
                continue
            }
            // Datagrams under 8 bytes carry no number: only their length is checked, and they
            // answer the oldest datagram still out.
            guard size >= 8, data.count >= 8 else {
                book.answerOldest(intact: data.count == size)
                continue
            }
            let sequence = UInt64(littleEndian: data.loadUnaligned(as: UInt64.self))
            var intact = data.count == size
            if intact {
                for j in 8..<size where data[j] != pattern(sequence, j) {
                    intact = false
                    break
                }
            }
            book.answer(sequence, intact: intact)
        }
        batch.releaseAll()
    }
}

/// What became of each datagram of a closed-loop run, over a ring of the most recent ones: out,
/// answered or written off, so a duplicate, late or stray reply is counted as such and never
/// twice as an answer.
struct ReplyBook {
    enum State { case free, out, answered, writtenOff }
    private var sequences: [UInt64]
    private var states: [State]
    /// The next sequence number to send (and so how many were sent).
    private(set) var next: UInt64 = 0
    /// Datagrams out without a reply.
    private(set) var outstanding = 0
    /// The replies booked so far, by kind (`received` counts the intact ones).
    var replies = UDPLoadReport()

    init(capacity: Int) {
        sequences = Array(repeating: 0, count: max(capacity, 1))
        states = Array(repeating: .free, count: max(capacity, 1))
    }

    private func slot(_ sequence: UInt64) -> Int { Int(sequence % UInt64(states.count)) }

    /// Whether the next datagram's slot is free of one still out.
    var canSend: Bool { states[slot(next)] != .out }

    /// Notes datagram ``next`` as sent.
    mutating func sent() {
        let index = slot(next)
        sequences[index] = next
        states[index] = .out
        outstanding += 1
        next += 1
    }

    /// Books a reply numbered `sequence`.
    mutating func answer(_ sequence: UInt64, intact isIntact: Bool) {
        guard sequence < next else {
            replies.strays += 1
            return
        }
        let index = slot(sequence)
        guard sequences[index] == sequence else {
            replies.late += 1   // so old that its slot went to a later datagram
            return
        }
        switch states[index] {
        case .out:
            states[index] = .answered
            outstanding -= 1
            if isIntact { replies.received += 1 } else { replies.corrupt += 1 }
        case .answered: replies.duplicates += 1
        case .writtenOff: replies.late += 1
        case .free: replies.strays += 1
        }
    }

    /// Books an unnumbered reply against the oldest datagram still out.
    mutating func answerOldest(intact isIntact: Bool) {
        guard outstanding > 0 else {
            replies.duplicates += 1
            return
        }
        var sequence = next - UInt64(min(Int(next), states.count))
        while states[slot(sequence)] != .out || sequences[slot(sequence)] != sequence { sequence += 1 }
        answer(sequence, intact: isIntact)
    }

    /// Counts every datagram still out as lost.
    mutating func writeOffOutstanding() {
        for index in states.indices where states[index] == .out { states[index] = .writtenOff }
        outstanding = 0
    }
}
