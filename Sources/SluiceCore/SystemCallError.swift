#if canImport(Glibc)
import Glibc
#endif

/// An error from a system call or a library over one: what was attempted, the errno, and what
/// the user can do. Every module's error type has this shape and reads the same printed:
/// "bind(198.18.0.1:53) failed: Address already in use (errno 98); another socket holds …".
public protocol SystemCallError: Error, CustomStringConvertible {
    /// What was attempted, e.g. `"recvmmsg on 0.0.0.0:53"`.
    var operation: String { get }
    /// The errno it gave (positive), or 0 when the failure came from no system call.
    var errno: Int32 { get }
    /// What the user can do about it; empty when there is nothing useful to say.
    var hint: String { get }
}

extension SystemCallError {
    public var description: String {
        var text = "\(operation) failed"
        if errno != 0 { text += ": \(String(cString: strerror(errno))) (errno \(errno))" }
        if !hint.isEmpty { text += "; \(hint)" }
        return text
    }
}

/// Writes `text` to standard error in one write(2), so lines from several threads do not mix
/// and a progress line on standard output is left alone.
public func writeToStandardError(_ text: String) {
    var text = text
    text.withUTF8 { bytes in _ = write(2, bytes.baseAddress, bytes.count) }
}
