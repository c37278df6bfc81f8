#if canImport(Glibc)
import Glibc
#endif
import SluiceCore

/// A name only one socket of a network namespace can hold at a time: an abstract UNIX socket
/// name (no file, so any user can take one, and it goes away with the process that holds it).
/// Sluice's processes agree on such names for what one of them does at a time.
public enum AbstractSocketName {
    /// Binds a new socket to `name` and returns its descriptor: the name is held until it is closed.
    ///
    /// - Throws: `SystemCallError`, `EADDRINUSE` when another socket holds the name.
    public static func claim(_ name: String) throws(SystemCallError) -> Int32 {
        let descriptor = socket(AF_UNIX, Int32(SOCK_DGRAM.rawValue) | Int32(SOCK_CLOEXEC.rawValue), 0)
        guard descriptor >= 0 else { throw SystemCallError(.socket, operation: "socket(AF_UNIX)", errno: errno) }
        var address = sockaddr_un()
        address.sun_family = sa_family_t(AF_UNIX)
        let path = [0] + Array(name.utf8)
        withUnsafeMutableBytes(of: &address.sun_path) { $0.copyBytes(from: path.prefix($0.count)) }
        let length = socklen_t(MemoryLayout<sa_family_t>.size + min(path.count, MemoryLayout.size(ofValue: address.sun_path)))
        let bound = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(descriptor, $0, length) }
        }
        guard bound == 0 else {
            let code = errno
            close(descriptor)
            throw SystemCallError(.socket, operation: "binding the abstract socket name \(name)", errno: code)
        }
        return descriptor
    }
}
