#if canImport(Glibc)
import Glibc
#endif
import SluiceCore
import SystemPackage

/// Makes a system call that returns -1 and sets `errno` on failure, retrying it while it is
/// interrupted (EINTR), and throws a `SluiceCore/SystemCallError` naming `operation` otherwise.
///
/// ```swift
/// let fd = try systemCall(.socket, "socket(AF_INET, SOCK_DGRAM)") { socket(AF_INET, SOCK_DGRAM, 0) }
/// ```
@inlinable
public func systemCall<Result: FixedWidthInteger>(
    _ subsystem: SystemCallError.Subsystem, _ operation: @autoclosure () -> String, _ body: () -> Result
) throws(SystemCallError) -> Result {
    while true {
        let result = body()
        if result != -1 { return result }
        let code = errno
        if code == EINTR { continue }
        throw SystemCallError(subsystem, operation: operation(), errno: code)
    }
}

/// Like ``systemCall(_:_:_:)`` for a non-blocking descriptor: returns `nil` when the call would
/// block (EAGAIN/EWOULDBLOCK), which is not a failure.
@inlinable
public func nonBlockingSystemCall<Result: FixedWidthInteger>(
    _ subsystem: SystemCallError.Subsystem, _ operation: @autoclosure () -> String, _ body: () -> Result
) throws(SystemCallError) -> Result? {
    while true {
        let result = body()
        if result != -1 { return result }
        let code = errno
        if code == EINTR { continue }
        if code == EAGAIN || code == EWOULDBLOCK { return nil }
        throw SystemCallError(subsystem, operation: operation(), errno: code)
    }
}
