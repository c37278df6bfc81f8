#if canImport(Glibc)
import Glibc
#endif
import SluiceCore

/// A failed XDP operation: what was attempted, the errno the kernel (or libxdp/libbpf) gave,
/// and what to do about it.
///
/// Printed, it reads like
/// "attaching XDP to veth1 failed: Operation not permitted (errno 1); AF_XDP needs CAP_NET_ADMIN
/// and CAP_BPF: run as root or use --backend socket".
public struct XDPError: SystemCallError, Sendable {
    /// What was being done, e.g. "attaching XDP to veth1".
    public var operation: String
    /// The errno value (positive), or 0 when the failure did not come from a system call.
    public var errno: Int32
    /// What the user can do about it.
    public var hint: String

    /// An error for `operation` that failed with `errno`; `hint` defaults to advice for that errno.
    public init(operation: String, errno: Int32, hint: String? = nil) {
        self.operation = operation
        self.errno = errno < 0 ? -errno : errno
        self.hint = hint ?? Self.hint(for: self.errno)
    }

    /// The system's text for `errno`, e.g. "Operation not permitted".
    public static func message(for errno: Int32) -> String {
        String(cString: strerror(errno))
    }

    /// General advice for an errno from the bpf(2), netlink and setns(2) calls this module makes.
    public static func hint(for errno: Int32) -> String {
        switch errno {
        case EPERM, EACCES:
            return "AF_XDP needs CAP_NET_ADMIN and CAP_BPF: run as root or use --backend socket"
        case ENOBUFS:
            return "BPF maps could not be allocated: the locked-memory limit is too low "
                + "(raise `ulimit -l`, or run as root with CAP_IPC_LOCK/CAP_SYS_RESOURCE)"
        case ENOMEM:
            return "the kernel is out of memory for BPF maps or programs: free memory or raise `ulimit -l`"
        case ENODEV, ENXIO:
            return "the interface does not exist in this network namespace: check `ip link` (or pass --netns NAME)"
        case EBUSY, EEXIST:
            return "another XDP program is attached: pass --force to replace it"
        case EOPNOTSUPP:
            return "the driver or kernel does not support this XDP feature: try --mode generic"
        case ENOENT:
            return "the object or entry was not found: run `make bpf` and check the name"
        case EINVAL:
            return "the kernel rejected the request: check the interface's MTU and mode (try --mode generic)"
        default:
            return "see `dmesg` for details, or run with SLUICE_VERBOSE=1 to see libxdp's log"
        }
    }
}
