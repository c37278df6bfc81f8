#if canImport(Glibc)
import Glibc
#endif
import CSluiceTestSupport

/// Why a sandboxed run could not start.
public struct SandboxError: Error, CustomStringConvertible {
    public let description: String
}

/// Runs `body` on a thread of its own under a seccomp filter that makes `io_uring_setup` fail
/// with EPERM, as a container runtime's default profile or `kernel.io_uring_disabled` would.
/// Processes `body` spawns inherit the filter; the rest of the test process never sees it.
public func withIOURingDenied<T>(_ body: () throws -> T) throws -> T {
    let result = SandboxResult<T>()
    try withoutActuallyEscaping(body) { body in
        let call = SandboxedCall { result.value = Result { try body() } }
        let raw = Unmanaged.passRetained(call).toOpaque()
        var thread = pthread_t()
        let created = pthread_create(&thread, nil, { raw in
            let call = Unmanaged<SandboxedCall>.fromOpaque(raw!).takeRetainedValue()
            if sluice_test_deny_io_uring_setup() != 0 { call.refusal = errno } else { call.run() }
            return nil
        }, raw)
        guard created == 0 else {
            Unmanaged<SandboxedCall>.fromOpaque(raw).release()
            throw SandboxError(description: "pthread_create: errno \(created)")
        }
        pthread_join(thread, nil)
        if call.refusal != 0 { throw SandboxError(description: "seccomp: errno \(call.refusal)") }
    }
    return try result.value!.get()
}

private final class SandboxedCall {
    let run: () -> Void
    var refusal: Int32 = 0
    init(_ run: @escaping () -> Void) { self.run = run }
}

private final class SandboxResult<T> {
    var value: Result<T, any Error>?
}
