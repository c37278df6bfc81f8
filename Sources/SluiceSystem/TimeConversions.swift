#if canImport(Glibc)
import Glibc
#endif
import CSluiceSystem
import SluiceCore

/// A `Duration` as the kernel's time structures want it: negative durations become zero, and
/// the parts are split the way each structure counts.
extension Duration {
    /// As a `timespec` (`nanosleep`, `sigtimedwait`).
    public var timespec: Glibc.timespec {
        let nanoseconds = max(nanosecondsClamped, 0)
        return Glibc.timespec(tv_sec: Int(nanoseconds / 1_000_000_000), tv_nsec: Int(nanoseconds % 1_000_000_000))
    }

    /// As a `__kernel_timespec` (io_uring timeouts and `EXT_ARG` waits).
    public var kernelTimespec: __kernel_timespec {
        let nanoseconds = max(nanosecondsClamped, 0)
        return __kernel_timespec(tv_sec: nanoseconds / 1_000_000_000, tv_nsec: nanoseconds % 1_000_000_000)
    }

    /// As a `timeval` (`SO_RCVTIMEO`), at least one microsecond: a zero `timeval` means "wait forever".
    public var timeval: Glibc.timeval {
        let microseconds = max(nanosecondsClamped / 1000, 1)
        return Glibc.timeval(tv_sec: Int(microseconds / 1_000_000), tv_usec: Int(microseconds % 1_000_000))
    }
}
