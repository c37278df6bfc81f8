#if canImport(Glibc)
import Glibc
#endif
import CSluiceTestSupport
import Sluice

/// Why a sandboxed run could not start.
public struct SandboxError: Error, CustomStringConvertible {
    public let description: String
}

/// Runs `body` on a thread of its own under a seccomp filter that makes `io_uring_setup` fail
/// with EPERM, as a container runtime's default profile or `kernel.io_uring_disabled` would.
/// Processes `body` spawns inherit the filter; the rest of the test process never sees it.
public func withIOURingDenied<T>(_ body: () throws -> T) throws -> T {
    let call = SandboxedCall<T>()
    try withoutActuallyEscaping(body) { body in
        call.body = body
        // Joined before `body` leaves this scope, so it never really escapes.
        let thread = try WorkerThread(name: "sluice-sandbox") {
            if sluice_test_deny_io_uring_setup() != 0 {
                call.result = .failure(SandboxError(description: "seccomp: errno \(errno)"))
            } else {
                call.result = Result { try call.body!() }
            }
        }
        thread.join()
        call.body = nil
    }
    return try call.result!.get()
}

/// The body and its result, handed to the sandbox thread and back; only one thread touches it
/// at a time (the caller waits in `join`).
private final class SandboxedCall<T>: @unchecked Sendable {
    var body: (() throws -> T)?
    var result: Result<T, any Error>?
}
