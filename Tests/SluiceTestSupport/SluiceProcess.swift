#if canImport(Glibc)
import Glibc
#endif
import Foundation

/// A `sluice` command run as a child process, its output collected, for end-to-end tests.
public final class SluiceProcess: @unchecked Sendable {
    private let process = Process()
    private let output = Pipe()
    private let lock = NSLock()
    private var collected = ""

    /// Starts `sluice` with `arguments`.
    public init(_ arguments: [String]) throws {
        process.executableURL = URL(fileURLWithPath: SluiceExecutable.path)
        process.arguments = arguments
        process.standardOutput = output
        process.standardError = output
        output.fileHandleForReading.readabilityHandler = { [weak self] handle in
            let data = handle.availableData
            guard let self, !data.isEmpty else { return }
            self.lock.withLock { self.collected += String(decoding: data, as: UTF8.self) }
        }
        try process.run()
    }

    deinit {
        if process.isRunning { process.terminate() }
    }

    /// Everything the process printed so far.
    public var text: String { lock.withLock { collected } }

    /// Waits up to `timeout` for a printed line containing `marker`; returns that line.
    public func waitForLine(containing marker: String, timeout: Duration = .seconds(10)) -> String? {
        let clock = ContinuousClock()
        let deadline = clock.now + timeout
        while clock.now < deadline {
            if let line = text.split(separator: "\n").first(where: { $0.contains(marker) }) { return String(line) }
            if !process.isRunning { break }
            usleep(10_000)
        }
        return text.split(separator: "\n").first(where: { $0.contains(marker) }).map(String.init)
    }

    /// Sends `signal` and waits up to `timeout` for the exit; returns the exit status (nil if it did not exit).
    @discardableResult
    public func stop(signal: Int32 = SIGTERM, timeout: Duration = .seconds(10)) -> Int32? {
        if process.isRunning { kill(process.processIdentifier, signal) }
        return waitForExit(timeout: timeout)
    }

    /// Waits up to `timeout` for the process to exit by itself.
    public func waitForExit(timeout: Duration = .seconds(10)) -> Int32? {
        let clock = ContinuousClock()
        let deadline = clock.now + timeout
        while process.isRunning, clock.now < deadline { usleep(10_000) }
        guard !process.isRunning else {
            process.terminate()
            return nil
        }
        // Let the last output arrive.
        usleep(50_000)
        return process.terminationStatus
    }
}
