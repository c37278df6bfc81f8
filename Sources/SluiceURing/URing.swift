#if canImport(Glibc)
import Glibc
#endif
import CSluiceSystem
import CSluiceURing
import SluiceCore
import SluiceSystem

/// How a ``URing`` is set up: who submits, and where completions run.
public enum URingMode: Sendable, Equatable, CustomStringConvertible {
    /// Every submission and wait is an `io_uring_enter` by the owning thread.
    case plain
    /// `IORING_SETUP_SQPOLL`: a kernel thread polls the submission queue, so submitting needs no
    /// syscall while it is awake; it sleeps after `idle` without work. `cpu` pins it (`SQ_AFF`).
    case submissionPolling(idle: Duration, cpu: Int?)
    /// `IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN`: completions are processed only
    /// when the owner waits for them, in its own context. The ring must be made and used by one thread.
    case deferTaskRun
    /// `IORING_SETUP_COOP_TASKRUN | IORING_SETUP_TASKRUN_FLAG`: completion work waits for the next
    /// transition into the kernel instead of interrupting the owner.
    case cooperative

    public var description: String {
        switch self {
        case .plain: "plain"
        case let .submissionPolling(idle, cpu):
            "sqpoll(idle \(idle.millisecondsClamped) ms"
                + (cpu.map { ", cpu \($0))" } ?? ")")
        case .deferTaskRun: "defer-taskrun"
        case .cooperative: "coop-taskrun"
        }
    }
}

extension Duration {
    /// Whole milliseconds, clamped to `Int64` (SQPOLL's idle time is set in milliseconds).
    var millisecondsClamped: Int64 { nanosecondsClamped / 1_000_000 }
}

/// One completion-queue entry, copied out of the ring.
@frozen
public struct URingCompletion: Sendable, Equatable {
    /// The `user_data` of the submission this completes.
    public var userData: UInt64
    /// The result: a count or descriptor, or `-errno`.
    public var result: Int32
    /// The `IORING_CQE_F_*` flags.
    public var flags: UInt32

    /// Copies a completion.
    @inlinable
    public init(userData: UInt64, result: Int32, flags: UInt32) {
        self.userData = userData
        self.result = result
        self.flags = flags
    }

    /// The provided buffer the kernel picked (`IORING_CQE_F_BUFFER`), if any.
    @inlinable
    public var bufferID: UInt16? {
        flags & IORING_CQE_F_BUFFER != 0 ? UInt16(truncatingIfNeeded: flags >> IORING_CQE_BUFFER_SHIFT) : nil
    }

    /// Whether the request stays armed and more completions follow (`IORING_CQE_F_MORE`).
    @inlinable
    public var hasMore: Bool { flags & IORING_CQE_F_MORE != 0 }

    /// Whether this is a zero-copy send's notification that the buffer is free again (`IORING_CQE_F_NOTIF`).
    @inlinable
    public var isNotification: Bool { flags & IORING_CQE_F_NOTIF != 0 }
}

/// An io_uring instance: a submission and a completion queue shared with the kernel.
///
/// One ring per worker thread; it is not thread-safe and nothing in it locks. Fill submissions
/// with ``nextSubmission()`` and liburing's `io_uring_prep_*` functions (from `CSluice`), send
/// them with ``submit()`` or ``submitAndWait(minimumCompletions:timeout:)``, and take results
/// with ``drainCompletions(_:)``. Every `io_uring_enter` the ring makes is counted in ``enterCalls``.
public final class URing {
    /// liburing's ring state, for liburing calls this class does not wrap. Stable for the ring's life.
    public let raw: UnsafeMutablePointer<io_uring>
    /// How the ring was set up.
    public let mode: URingMode
    /// The `IORING_FEAT_*` bits the kernel reported.
    public let features: UInt32
    /// The opcodes (`IORING_OP_*`) this kernel supports, from `io_uring_get_probe_ring`.
    public let supportedOperations: Set<UInt8>
    /// Submission-queue entries.
    public let submissionEntries: UInt32
    /// Completion-queue entries.
    public let completionEntries: UInt32
    /// Whether the ring's descriptor is registered (`io_uring_register_ring_fd`), which saves a
    /// file lookup on every `io_uring_enter`.
    public let hasRegisteredDescriptor: Bool

    // One thread owns a ring (as a pool): the per-packet counters need no runtime exclusivity checks.
    @exclusivity(unchecked) @usableFromInline var _enterCalls: UInt64 = 0
    @exclusivity(unchecked) @usableFromInline var usedOperations: UInt64 = 0
    @usableFromInline let isPolling: Bool
    @usableFromInline let defersTaskRun: Bool
    /// Completions taken off the CQ ring to make room when the kernel said `EBUSY`, handed out first.
    @usableFromInline let stash: UnsafeMutablePointer<URingCompletion>
    @exclusivity(unchecked) @usableFromInline var stashCount = 0
    @usableFromInline let stashCapacity: Int
    /// Scratch for `io_uring_peek_batch_cqe`.
    @usableFromInline let peeked: UnsafeMutablePointer<UnsafeMutablePointer<io_uring_cqe>?>
    @usableFromInline let scratch: UnsafeMutablePointer<URingCompletion>
    @usableFromInline static let peekBatch = 64

    /// Sets up a ring.
    ///
    /// - Parameters:
    ///   - entries: submission-queue entries (rounded up to a power of two by the kernel); the
    ///     completion queue gets four times as many, room for multishot bursts.
    ///   - mode: SQPOLL, deferred or cooperative task work, or plain.
    /// - Throws: `SystemCallError` when the kernel refuses (`EPERM`/`ENOSYS`: io_uring disabled).
    public init(entries: UInt32 = 256, mode: URingMode = .plain) throws(SystemCallError) {
        var params = io_uring_params()
        params.flags = IORING_SETUP_CQSIZE
        params.cq_entries = entries * 4
        switch mode {
        case .plain: break
        case let .submissionPolling(idle, cpu):
            params.flags |= IORING_SETUP_SQPOLL
            params.sq_thread_idle = UInt32(clamping: max(idle.millisecondsClamped, 1))
            if let cpu {
                params.flags |= IORING_SETUP_SQ_AFF
                params.sq_thread_cpu = UInt32(cpu)
            }
        case .deferTaskRun:
            params.flags |= IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN
        case .cooperative:
            params.flags |= IORING_SETUP_COOP_TASKRUN | IORING_SETUP_TASKRUN_FLAG
        }
        let ring = UnsafeMutablePointer<io_uring>.allocate(capacity: 1)
        ring.initialize(to: io_uring())
        let result = io_uring_queue_init_params(entries, ring, &params)
        guard result == 0 else {
            ring.deallocate()
            throw SystemCallError(.uring, operation: "io_uring_setup(\(entries) entries, \(mode))", errno: -result)
        }
        raw = ring
        self.mode = mode
        features = params.features
        submissionEntries = params.sq_entries
        completionEntries = params.cq_entries
        hasRegisteredDescriptor = io_uring_register_ring_fd(ring) == 1
        var supported = Set<UInt8>()
        if let probe = io_uring_get_probe_ring(ring) {
            for op in 0...Int(probe.pointee.last_op) where io_uring_opcode_supported(probe, Int32(op)) != 0 {
                supported.insert(UInt8(op))
            }
            io_uring_free_probe(probe)
        }
        supportedOperations = supported
        if case .submissionPolling = mode { isPolling = true } else { isPolling = false }
        defersTaskRun = mode == .deferTaskRun
        stashCapacity = Int(params.cq_entries)
        stash = .allocate(capacity: stashCapacity)
        peeked = .allocate(capacity: Self.peekBatch)
        scratch = .allocate(capacity: Self.peekBatch)
    }

    deinit {
        io_uring_queue_exit(raw)
        raw.deallocate()
        stash.deallocate()
        peeked.deallocate()
        scratch.deallocate()
    }

    /// `io_uring_enter` syscalls this ring has made (submits, waits and completion flushes).
    @inlinable
    public var enterCalls: UInt64 { _enterCalls }

    /// Whether the kernel supports `opcode` (an `IORING_OP_*` value).
    public func supports(_ opcode: UInt32) -> Bool { supportedOperations.contains(UInt8(truncatingIfNeeded: opcode)) }

    /// Registers `descriptors` as the ring's fixed file table (`io_uring_register_files`): an
    /// SQE then names a file by its index with `IOSQE_FIXED_FILE`, and the kernel skips the
    /// descriptor lookup and reference counting on every request.
    ///
    /// - Throws: `SystemCallError` when the kernel refuses (a table is already registered, or too
    ///   many files for RLIMIT_NOFILE).
    public func registerFiles(_ descriptors: [Int32]) throws(SystemCallError) {
        let result = descriptors.withUnsafeBufferPointer { io_uring_register_files(raw, $0.baseAddress, UInt32($0.count)) }
        guard result == 0 else {
            throw SystemCallError(.uring, operation: "io_uring_register_files(\(descriptors.count))", errno: -result)
        }
        registeredFiles = descriptors.count
    }

    /// Empties the fixed file table, waiting until the kernel holds none of them: a file closed
    /// after this is gone at once, not when the ring's own teardown (deferred to a worker)
    /// gets to it.
    public func unregisterFiles() {
        guard registeredFiles > 0 else { return }
        _ = io_uring_unregister_files(raw)
        registeredFiles = 0
    }

    /// Files in the fixed file table (see ``registerFiles(_:)``).
    public private(set) var registeredFiles = 0

    /// `IOSQE_FIXED_FILE`: the SQE's file is an index into the fixed file table.
    public static let fixedFileFlag = UInt8(1 << IOSQE_FIXED_FILE_BIT)

    /// One line for logs: mode, queue sizes, the features this ring relies on, and the opcodes submitted so far.
    public func describe() -> String {
        var used: [String] = []
        if hasRegisteredDescriptor { used.append("registered ring fd") }
        if registeredFiles > 0 { used.append("\(registeredFiles) registered file\(registeredFiles == 1 ? "" : "s")") }
        if features & IORING_FEAT_EXT_ARG != 0 { used.append("EXT_ARG waits") }
        if features & IORING_FEAT_NODROP != 0 { used.append("NODROP") }
        if features & IORING_FEAT_FAST_POLL != 0 { used.append("FAST_POLL") }
        let ops = (0..<64).filter { usedOperations & (1 << UInt64($0)) != 0 }.map { Self.operationName($0) }
        return "io_uring \(mode), \(submissionEntries) SQ / \(completionEntries) CQ entries, "
            + (used.isEmpty ? "no optional features" : used.joined(separator: ", "))
            + "; ops used: " + (ops.isEmpty ? "none yet" : ops.joined(separator: " "))
    }

    /// The name of an `IORING_OP_*` value, as in the kernel (`RECVMSG`, `SENDMSG_ZC`, ...).
    public static func operationName(_ opcode: Int) -> String {
        opcode < operationNames.count ? operationNames[opcode] : "OP_\(opcode)"
    }

    static let operationNames = [
        "NOP", "READV", "WRITEV", "FSYNC", "READ_FIXED", "WRITE_FIXED", "POLL_ADD", "POLL_REMOVE",
        "SYNC_FILE_RANGE", "SENDMSG", "RECVMSG", "TIMEOUT", "TIMEOUT_REMOVE", "ACCEPT", "ASYNC_CANCEL",
        "LINK_TIMEOUT", "CONNECT", "FALLOCATE", "OPENAT", "CLOSE", "FILES_UPDATE", "STATX", "READ", "WRITE",
        "FADVISE", "MADVISE", "SEND", "RECV", "OPENAT2", "EPOLL_CTL", "SPLICE", "PROVIDE_BUFFERS",
        "REMOVE_BUFFERS", "TEE", "SHUTDOWN", "RENAMEAT", "UNLINKAT", "MKDIRAT", "SYMLINKAT", "LINKAT",
        "MSG_RING", "FSETXATTR", "SETXATTR", "FGETXATTR", "GETXATTR", "SOCKET", "URING_CMD", "SEND_ZC",
        "SENDMSG_ZC", "READ_MULTISHOT", "WAITID", "FUTEX_WAIT", "FUTEX_WAKE", "FUTEX_WAITV",
        "FIXED_FD_INSTALL", "FTRUNCATE", "BIND", "LISTEN", "RECV_ZC", "EPOLL_WAIT", "READV_FIXED",
        "WRITEV_FIXED", "PIPE",
    ]

    // MARK: Submission

    /// Gets an SQE, submitting first if the SQ is full. The caller fills it with the
    /// `io_uring_prep_*` functions from CSluice (liburing's inline functions are callable from
    /// Swift) and sets `user_data`; it goes to the kernel with the next submit or wait.
    @inlinable
    public func nextSubmission() throws(SystemCallError) -> UnsafeMutablePointer<io_uring_sqe> {
        if let sqe = io_uring_get_sqe(raw) { return sqe }
        _ = try submit()
        if let sqe = io_uring_get_sqe(raw) { return sqe }
        // An SQPOLL thread may not have consumed the queue yet: wake it and wait for room.
        var waited = 0
        while waited < 1000 {
            _ = try enter(submitting: 0, waitingFor: 0, flags: IORING_ENTER_SQ_WAIT, timeout: nil)
            if let sqe = io_uring_get_sqe(raw) { return sqe }
            waited += 1
        }
        throw SystemCallError(.uring, operation: "io_uring_get_sqe", errno: EBUSY,
                         hint: "the submission queue stays full; the kernel is not consuming it")
    }

    /// Hands every SQE got since the last submit to the kernel: one `io_uring_enter`, or none when
    /// an SQPOLL thread is awake to take them. Retries `EINTR`/`EAGAIN`; on `EBUSY` (completion
    /// queue full) moves ready completions aside (``drainCompletions(_:)`` hands them out first) and retries.
    ///
    /// - Returns: how many submissions the kernel took.
    @inlinable
    @discardableResult
    public func submit() throws(SystemCallError) -> Int {
        let pending = flush()
        guard pending > 0 else { return 0 }
        if isPolling {
            guard sluice_uring_sq_needs_wakeup(raw) != 0 else { return Int(pending) }
            return try enter(submitting: pending, waitingFor: 0, flags: IORING_ENTER_SQ_WAKEUP, timeout: nil)
        }
        return try enter(submitting: pending, waitingFor: 0, flags: 0, timeout: nil)
    }

    /// Submits what is pending and waits until `minimumCompletions` completions are ready or
    /// `timeout` passes (`nil`: no limit), in one `io_uring_enter` (`EXT_ARG`). A timeout (`ETIME`)
    /// or a signal (`EINTR`) just returns early; the caller looks at what arrived.
    ///
    /// - Returns: how many submissions the kernel took.
    @inlinable
    @discardableResult
    public func submitAndWait(minimumCompletions: UInt32, timeout: Duration?) throws(SystemCallError) -> Int {
        let pending = flush()
        if pending == 0, minimumCompletions > 0, stashCount + Int(io_uring_cq_ready(raw)) >= Int(minimumCompletions),
           !defersTaskRun {
            return 0
        }
        var flags = IORING_ENTER_GETEVENTS
        var toSubmit = pending
        if isPolling {
            if pending > 0, sluice_uring_sq_needs_wakeup(raw) != 0 { flags |= IORING_ENTER_SQ_WAKEUP } else { toSubmit = 0 }
        }
        let wait = stashCount > 0 ? 0 : minimumCompletions
        let taken = try enter(submitting: toSubmit, waitingFor: wait, flags: flags, timeout: timeout)
        return isPolling ? Int(pending) : taken
    }

    /// Publishes the SQEs filled so far and notes their opcodes for ``describe()``.
    @inlinable
    func flush() -> UInt32 {
        let sq = raw.pointee.sq
        var index = sq.sqe_head
        while index != sq.sqe_tail {
            usedOperations |= 1 << UInt64(sq.sqes[Int(index & sq.ring_mask)].opcode & 63)
            index &+= 1
        }
        return sluice_uring_flush_sq(raw)
    }

    /// One `io_uring_enter`, counted, with the retries described at ``submit()``.
    @usableFromInline
    func enter(submitting: UInt32, waitingFor: UInt32, flags: UInt32, timeout: Duration?) throws(SystemCallError) -> Int {
        var flags = flags
        if hasRegisteredDescriptor { flags |= IORING_ENTER_REGISTERED_RING }
        let descriptor = UInt32(bitPattern: hasRegisteredDescriptor ? raw.pointee.enter_ring_fd : raw.pointee.ring_fd)
        var spec = timeout?.kernelTimespec ?? __kernel_timespec()
        var argument = io_uring_getevents_arg()
        if timeout != nil { flags |= IORING_ENTER_EXT_ARG }
        var retries = 0
        while true {
            _enterCalls &+= 1
            let result = withUnsafeMutablePointer(to: &spec) { specPointer in
                argument.ts = UInt64(UInt(bitPattern: specPointer))
                return withUnsafeMutablePointer(to: &argument) { argumentPointer in
                    timeout == nil
                        ? io_uring_enter2(descriptor, submitting, waitingFor, flags, nil, 0)
                        : io_uring_enter2(descriptor, submitting, waitingFor, flags,
                                          UnsafeMutableRawPointer(argumentPointer).assumingMemoryBound(to: sigset_t.self),
                                          MemoryLayout<io_uring_getevents_arg>.size)
                }
            }
            if result >= 0 { return Int(result) }
            let error = -result
            switch error {
            case ETIME:
                return 0
            case EINTR where waitingFor > 0:
                return 0
            case EINTR where retries < 1000, EAGAIN where retries < 1000:
                retries += 1
            case EBUSY where retries < 1000 && stashCompletions() > 0:
                retries += 1
            default:
                throw SystemCallError(.uring, operation: "io_uring_enter(submit \(submitting), wait \(waitingFor))", errno: error)
            }
        }
    }

    /// Moves ready completions into the stash to free CQ slots; returns how many moved.
    @usableFromInline
    func stashCompletions() -> Int {
        var moved = 0
        while stashCount < stashCapacity {
            let room = min(Self.peekBatch, stashCapacity - stashCount)
            let count = Int(io_uring_peek_batch_cqe(raw, peeked, UInt32(room)))
            if count == 0 { break }
            for i in 0..<count {
                let cqe = peeked[i]!.pointee
                stash[stashCount] = URingCompletion(userData: cqe.user_data, result: cqe.res, flags: cqe.flags)
                stashCount += 1
            }
            io_uring_cq_advance(raw, UInt32(count))
            moved += count
        }
        return moved
    }

    // MARK: Completion

    /// Calls `body` for every completion ready now (`io_uring_peek_batch_cqe` + `io_uring_cq_advance`)
    /// and returns the count. Completions are copied out and the ring advanced before `body`
    /// runs, so `body` may submit. Never blocks; on a DEFER_TASKRUN ring, completions reach the
    /// ring only through a wait (``submitAndWait(minimumCompletions:timeout:)``).
    @inlinable
    @discardableResult
    public func drainCompletions(_ body: (URingCompletion) -> Void) -> Int {
        var total = 0
        if stashCount > 0 {
            var index = 0
            while index < stashCount {
                body(stash[index])
                index += 1
            }
            total = stashCount
            stashCount = 0
        }
        // Bounded, so a body that keeps submitting NOPs cannot keep this loop going.
        while total < Int(completionEntries) * 2 {
            if io_uring_cq_ready(raw) == 0, !defersTaskRun, sluice_uring_cq_needs_flush(raw) != 0 {
                _enterCalls &+= 1  // io_uring_peek_batch_cqe enters the kernel to flush
            }
            let count = Int(io_uring_peek_batch_cqe(raw, peeked, UInt32(Self.peekBatch)))
            if count == 0 { break }
            for i in 0..<count {
                let cqe = peeked[i]!.pointee
                scratch[i] = URingCompletion(userData: cqe.user_data, result: cqe.res, flags: cqe.flags)
            }
            io_uring_cq_advance(raw, UInt32(count))
            for i in 0..<count { body(scratch[i]) }
            total += count
            if count < Self.peekBatch { break }
        }
        return total
    }

    /// Cancels every request in flight (`IORING_ASYNC_CANCEL_ANY`) and waits, at most `timeout`,
    /// until the cancellation and the requests it ended have completed. Completions that arrive
    /// meanwhile go to `body` (a port uses them to take its frames back).
    ///
    /// - Returns: whether the cancellation completed within `timeout`.
    @discardableResult
    public func cancelAll(timeout: Duration = .seconds(1),
                          _ body: (URingCompletion) -> Void = { _ in }) throws(SystemCallError) -> Bool {
        let sqe = try nextSubmission()
        io_uring_prep_cancel64(sqe, 0, Int32(IORING_ASYNC_CANCEL_ANY))
        sqe.pointee.user_data = Self.cancelUserData
        let clock = ContinuousClock()
        let deadline = clock.now + timeout
        var cancelled = false
        try submitAndWait(minimumCompletions: 1, timeout: .milliseconds(10))
        while clock.now < deadline {
            let drained = drainCompletions { completion in
                if completion.userData == Self.cancelUserData { cancelled = true } else { body(completion) }
            }
            // After the cancel completes, wait one quiet round for what the cancelled requests still post.
            if cancelled && drained == 0 { break }
            try submitAndWait(minimumCompletions: 1, timeout: .milliseconds(cancelled ? 5 : 10))
        }
        return cancelled
    }

    /// The `user_data` of the cancellation ``cancelAll(timeout:_:)`` submits.
    public static let cancelUserData: UInt64 = 0xCA9C_E11A_11CA_9CE1
}
