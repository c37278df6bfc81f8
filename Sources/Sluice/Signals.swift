#if canImport(Glibc)
import Glibc
#endif

/// Takes signals synchronously with `sigtimedwait`, so a controller stops workers cleanly
/// instead of dying inside a handler.
public struct SignalWaiter: Sendable {
    /// The signals waited for.
    public let signals: [Int32]

    /// The signals that stop a server cleanly: SIGINT, SIGTERM, SIGHUP (its terminal went
    /// away) and SIGQUIT, so an XDP program is detached and the summary written whichever comes.
    public static let stopping: [Int32] = [SIGINT, SIGTERM, SIGHUP, SIGQUIT]

    /// `SIGINT`, `SIGTERM`, `SIGHUP`, `SIGQUIT`, or the number.
    public static func name(_ signal: Int32) -> String {
        switch signal {
        case SIGINT: "SIGINT"
        case SIGTERM: "SIGTERM"
        case SIGHUP: "SIGHUP"
        case SIGQUIT: "SIGQUIT"
        default: "signal \(signal)"
        }
    }

    /// Blocks `signals` in the calling thread and every thread it starts from now on.
    public static func block(_ signals: [Int32]) {
        var set = sigset_t()
        sigemptyset(&set)
        for s in signals { sigaddset(&set, s) }
        pthread_sigmask(SIG_BLOCK, &set, nil)
    }

    /// Waits for `signals`, which must be blocked already (see ``block(_:)``); none to only sleep.
    public init(_ signals: [Int32]) {
        self.signals = signals
        Self.block(signals)
    }

    /// Waits up to `duration` for one of the signals.
    ///
    /// - Returns: the signal, or `nil` when the time ran out.
    public func wait(for duration: Duration) -> Int32? {
        var timeout = duration.timespec
        guard !signals.isEmpty else {
            nanosleep(&timeout, nil)
            return nil
        }
        var set = sigset_t()
        sigemptyset(&set)
        for s in signals { sigaddset(&set, s) }
        let result = sigtimedwait(&set, nil, &timeout)
        return result > 0 ? result : nil
    }
}
