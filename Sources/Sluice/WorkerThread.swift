#if canImport(Glibc)
import Glibc
#endif
import CSluice

/// A plain OS thread for a worker: packet loops want a thread of their own, optionally pinned
/// to a CPU, not a task on a shared executor.
public struct WorkerThread: @unchecked Sendable {
    @usableFromInline let thread: pthread_t

    private final class Box {
        let name: String
        let cpu: Int?
        let body: @Sendable () -> Void
        init(name: String, cpu: Int?, body: @escaping @Sendable () -> Void) {
            self.name = name
            self.cpu = cpu
            self.body = body
        }
    }

    /// Starts `body` on a new thread named `name` (at most 15 characters show), pinned to `cpu` if given.
    ///
    /// A CPU that cannot be pinned (not in this process's set) is reported in one line and the thread runs unpinned.
    public init(name: String, cpu: Int? = nil, _ body: @escaping @Sendable () -> Void) throws(RuntimeError) {
        let box = Unmanaged.passRetained(Box(name: name, cpu: cpu, body: body))
        var thread = pthread_t()
        let result = pthread_create(&thread, nil, { raw in
            let box = Unmanaged<Box>.fromOpaque(raw!).takeRetainedValue()
            sluice_set_thread_name(String(box.name.prefix(15)))
            if let cpu = box.cpu {
                let error = sluice_pin_current_thread(Int32(cpu))
                if error != 0 {
                    print("sluice: could not pin \(box.name) to cpu \(cpu) (\(String(cString: strerror(error)))); running unpinned")
                }
            }
            box.body()
            return nil
        }, box.toOpaque())
        guard result == 0 else {
            box.release()
            throw RuntimeError("pthread_create for \(name) failed: \(String(cString: strerror(result)))")
        }
        self.thread = thread
    }

    /// Waits for the thread to finish; call exactly once.
    public func join() {
        pthread_join(thread, nil)
    }
}

/// A failure of the runtime itself (threads, signals, configuration), with what to do.
public struct RuntimeError: Error, CustomStringConvertible, Sendable {
    /// What went wrong and what to do about it.
    public var description: String

    /// Creates an error with its message.
    public init(_ description: String) { self.description = description }
}
