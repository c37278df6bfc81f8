#if canImport(Glibc)
import Glibc
#endif
import CSluiceSystem
import Logging
import SluiceCore

/// A plain OS thread for a worker: packet loops want a thread of their own, optionally pinned
/// to a CPU, not a task on a shared executor.
public struct WorkerThread: @unchecked Sendable {
    @usableFromInline let thread: pthread_t

    private final class Box {
        let name: String
        let cpu: Int?
        let logger: Logger
        let body: @Sendable () -> Void
        init(name: String, cpu: Int?, logger: Logger, body: @escaping @Sendable () -> Void) {
            self.name = name
            self.cpu = cpu
            self.logger = logger
            self.body = body
        }
    }

    /// Starts `body` on a new thread named `name` (at most 15 characters show), pinned to `cpu` if given.
    ///
    /// A CPU that cannot be pinned (not in this process's set) is logged as a warning and the
    /// thread runs unpinned.
    public init(name: String, cpu: Int? = nil, logger: Logger = .disabled,
                _ body: @escaping @Sendable () -> Void) throws(SystemCallError) {
        let box = Unmanaged.passRetained(Box(name: name, cpu: cpu, logger: logger, body: body))
        var thread = pthread_t()
        let result = pthread_create(&thread, nil, { raw in
            let box = Unmanaged<Box>.fromOpaque(raw!).takeRetainedValue()
            sluice_set_thread_name(String(box.name.prefix(15)))
            if let cpu = box.cpu {
                let error = sluice_pin_current_thread(Int32(cpu))
                if error != 0 {
                    box.logger.warning("could not pin thread to cpu; running unpinned",
                                       metadata: ["thread": "\(box.name)", "cpu": "\(cpu)",
                                                  "reason": "\(String(cString: strerror(error)))"])
                }
            }
            box.body()
            return nil
        }, box.toOpaque())
        guard result == 0 else {
            box.release()
            throw SystemCallError(.thread, operation: "pthread_create(\(name))", errno: result)
        }
        self.thread = thread
    }

    /// Waits for the thread to finish; call exactly once (or ``detach()``).
    public func join() {
        pthread_join(thread, nil)
    }

    /// Lets the thread's resources go when it ends, for a thread nobody will join.
    public func detach() {
        pthread_detach(thread)
    }
}
