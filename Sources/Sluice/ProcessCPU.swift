#if canImport(Glibc)
import Glibc
#endif

/// The CPU time this process has spent, for reports that put work next to its cost.
public enum ProcessCPU {
    /// User plus system seconds since the process started (`getrusage(RUSAGE_SELF)`).
    public static func seconds() -> Double {
        var usage = rusage()
        getrusage(RUSAGE_SELF.rawValue, &usage)
        return Double(usage.ru_utime.tv_sec + usage.ru_stime.tv_sec)
            + Double(usage.ru_utime.tv_usec + usage.ru_stime.tv_usec) / 1e6
    }
}
