#if canImport(Glibc)
import Glibc
#endif
import CSluiceSystem
import SluiceCore

/// Moving the calling thread into a named network namespace.
public enum NetworkNamespace {
    /// Moves the calling thread into network namespace `name` (`/run/netns/NAME`, as made by
    /// `ip netns add`; a path with a slash is used as it is) with `setns(2)`.
    ///
    /// Unlike `ip netns exec`, this keeps the mount namespace, so `/sys/fs/bpf` stays visible.
    /// Only the calling thread moves: call it before starting other threads that need the namespace.
    public static func enter(_ name: String) throws(SystemCallError) {
        let advice = "give a name `ip netns list` shows, or the path of a namespace (/proc/PID/ns/net)"
        guard !name.isEmpty, name != ".", name != ".." else {
            throw SystemCallError(.namespace, operation: "entering network namespace '\(name)'", errno: EINVAL, hint: advice)
        }
        let path = name.contains("/") ? name : "/run/netns/\(name)"
        let fd = try systemCall(.namespace, "opening network namespace '\(name)' at \(path)") { open(path, O_RDONLY | O_CLOEXEC) }
        defer { close(fd) }
        guard sluice_enter_network_namespace(fd) == 0 else {
            let code = errno
            throw SystemCallError(.namespace, operation: "entering network namespace '\(name)'", errno: code,
                                  hint: code == EINVAL ? "\(path) is not a network namespace: " + advice : nil)
        }
    }
}
