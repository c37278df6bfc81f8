#if canImport(Glibc)
import Glibc
#endif
import CSluiceSystem
import CSluiceURing
import SluiceCore
import SluicePackets
import SluiceTestSupport
import Testing
@testable import SluiceURing

/// Every mode the ring offers, as test arguments.
let allModes: [URingMode] = [
    .plain, .submissionPolling(idle: .milliseconds(50), cpu: nil), .deferTaskRun, .cooperative,
]

/// Waits until `count` completions have come, or 2 s pass.
func collect(_ ring: URing, _ count: Int) throws -> [URingCompletion] {
    var completions: [URingCompletion] = []
    let clock = ContinuousClock()
    let deadline = clock.now + .seconds(2)
    while completions.count < count, clock.now < deadline {
        try ring.submitAndWait(minimumCompletions: 1, timeout: .milliseconds(100))
        ring.drainCompletions { completions.append($0) }
    }
    return completions
}

@Suite struct URingTests {
    /// SQPOLL's idle time is given in milliseconds, clamped rather than overflowing for absurd durations.
    @Test func sqpollIdleTimeInMillisecondsIsClamped() {
        #expect(URingMode.submissionPolling(idle: .milliseconds(1500), cpu: 2).description == "sqpoll(idle 1500 ms, cpu 2)")
        #expect(Duration.seconds(Int64.max).millisecondsClamped == Int64.max / 1_000_000)
        #expect(URingMode.submissionPolling(idle: .seconds(Int64.max), cpu: nil).description
                == "sqpoll(idle \(Int64.max / 1_000_000) ms)")
    }

    @Test(arguments: allModes)
    func setsUpAndCompletesNOPs(mode: URingMode) throws {
        let ring = try URing(entries: 8, mode: mode)
        #expect(ring.mode == mode)
        #expect(ring.submissionEntries == 8)
        for i in 0..<20 {  // more than the SQ holds: nextSubmission submits when full
            let sqe = try ring.nextSubmission()
            io_uring_prep_nop(sqe)
            sqe.pointee.user_data = UInt64(i)
        }
        let completions = try collect(ring, 20)
        #expect(completions.map(\.userData).sorted() == Array(0..<20))
        #expect(completions.allSatisfy { $0.result == 0 && $0.bufferID == nil && !$0.hasMore })
        #expect(ring.enterCalls > 0)
        #expect(ring.describe().contains("NOP"))
    }

    /// Ten times more completions than the completion queue holds, none reaped while they are
    /// submitted: the kernel keeps the overflow (IORING_FEAT_NODROP), a submit that meets a full
    /// queue moves ready completions aside and goes on, and every completion arrives exactly once.
    @Test(arguments: allModes)
    func aCompletionQueueOverflowLosesNothing(mode: URingMode) throws {
        let ring = try URing(entries: 8, mode: mode)
        let count = Int(ring.completionEntries) * 10
        for i in 0..<count {
            let sqe = try ring.nextSubmission()
            io_uring_prep_nop(sqe)
            sqe.pointee.user_data = UInt64(i)
        }
        try ring.submit()
        let completions = try collect(ring, count)
        #expect(completions.map(\.userData).sorted() == (0..<count).map(UInt64.init), "\(mode)")
        #expect(completions.allSatisfy { $0.result == 0 })
    }

    @Test func probeListsTheOperationsSluiceUses() throws {
        let ring = try URing()
        for op in [IORING_OP_NOP, IORING_OP_SENDMSG, IORING_OP_RECVMSG, IORING_OP_ASYNC_CANCEL, IORING_OP_SENDMSG_ZC] {
            #expect(ring.supports(UInt32(op.rawValue)), "\(URing.operationName(Int(op.rawValue)))")
        }
        #expect(ring.supportedOperations.count > 40)
        #expect(URing.operationName(Int(IORING_OP_SENDMSG_ZC.rawValue)) == "SENDMSG_ZC")
    }

    @Test(arguments: allModes)
    func udpRoundTripThroughSendmsgAndRecvmsg(mode: URingMode) throws {
        let ring = try URing(entries: 16, mode: mode)
        let a = KernelUDPSocket(bind: IPEndpoint("127.0.0.1:0")!)
        let b = KernelUDPSocket(bind: IPEndpoint("127.0.0.1:0")!)
        var out: [UInt8] = Array("hello-io_uring-udp".utf8)
        var into = [UInt8](repeating: 0, count: 64)
        var target = sockaddr_in()
        target.sin_family = sa_family_t(AF_INET)
        target.sin_port = b.localEndpoint.port.bigEndian
        target.sin_addr.s_addr = UInt32(0x7F00_0001).bigEndian
        try out.withUnsafeMutableBytes { o in
            try into.withUnsafeMutableBytes { i in
                let vectors = UnsafeMutablePointer<iovec>.allocate(capacity: 2)
                defer { vectors.deallocate() }
                vectors[0] = iovec(iov_base: o.baseAddress, iov_len: o.count)
                vectors[1] = iovec(iov_base: i.baseAddress, iov_len: i.count)
                try withUnsafeMutablePointer(to: &target) { t in
                    var sendMessage = msghdr(msg_name: t, msg_namelen: socklen_t(MemoryLayout<sockaddr_in>.size),
                                             msg_iov: vectors, msg_iovlen: 1, msg_control: nil, msg_controllen: 0,
                                             msg_flags: 0)
                    var receiveMessage = msghdr(msg_name: nil, msg_namelen: 0, msg_iov: vectors + 1, msg_iovlen: 1,
                                                msg_control: nil, msg_controllen: 0, msg_flags: 0)
                    let receive = try ring.nextSubmission()
                    io_uring_prep_recvmsg(receive, b.descriptor, &receiveMessage, 0)
                    receive.pointee.user_data = 2
                    let send = try ring.nextSubmission()
                    io_uring_prep_sendmsg(send, a.descriptor, &sendMessage, 0)
                    send.pointee.user_data = 1
                    let completions = try collect(ring, 2)
                    #expect(completions.count == 2)
                    for c in completions { #expect(c.result == Int32(o.count), "user_data \(c.userData)") }
                }
            }
        }
        #expect(into.prefix(out.count).elementsEqual(out))
    }

    @Test func cancelAllEndsARequestInFlight() throws {
        let ring = try URing(entries: 8)
        let socket = KernelUDPSocket(bind: IPEndpoint("127.0.0.1:0")!)
        var buffer = [UInt8](repeating: 0, count: 16)
        try buffer.withUnsafeMutableBytes { raw in
            let sqe = try ring.nextSubmission()
            io_uring_prep_recv(sqe, socket.descriptor, raw.baseAddress, raw.count, 0)
            sqe.pointee.user_data = 7
            try ring.submit()
            var ended: [URingCompletion] = []
            let done = try ring.cancelAll { ended.append($0) }
            #expect(done)
            #expect(ended.count == 1 && ended.first?.userData == 7 && ended.first?.result == -ECANCELED)
        }
    }
}
