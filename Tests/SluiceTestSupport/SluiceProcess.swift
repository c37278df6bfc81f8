#if canImport(Glibc)
import Glibc
#endif
import Sluice

/// A child process for end-to-end tests: `sluice` itself or a peer such as sockperf, with its
/// output collected in a temporary file.
///
/// Spawned with ``spawnProcess(_:_:output:)``: an empty signal mask and default handlers.
public final class ChildProcess: @unchecked Sendable {
    /// The child's process id.
    public let pid: pid_t
    private let outputPath: String
    private var exitStatus: Int32?

    /// Starts `executable` with `arguments`.
    public init(_ executable: String, _ arguments: [String]) throws {
        var template = Array("/tmp/sluice-test-XXXXXX".utf8CString)
        let fd = template.withUnsafeMutableBufferPointer { mkstemp($0.baseAddress!) }
        guard fd >= 0 else { throw ChildProcessError(message: "mkstemp failed: errno \(errno)") }
        outputPath = String(decoding: template.prefix { $0 != 0 }.map { UInt8(bitPattern: $0) }, as: UTF8.self)
        let spawned = spawnProcess(executable, arguments, output: fd)
        close(fd)
        switch spawned {
        case .success(let child): pid = child
        case .failure(let error): throw ChildProcessError(message: error.description)
        }
    }

    /// Starts this build's `sluice` with `arguments`.
    public convenience init(sluice arguments: [String]) throws {
        try self.init(SluiceExecutable.path, arguments)
    }

    deinit {
        if exitStatus == nil {
            kill(pid, SIGKILL)
            _ = reap(block: true)
        }
        unlink(outputPath)
    }

    /// Everything the child printed so far.
    public var text: String { readTextFile(outputPath) ?? "" }

    /// Whether the child is still running.
    public var isRunning: Bool { exitStatus == nil && !reap(block: false) }

    /// Waits up to `timeout` for a printed line containing `marker`; returns that line.
    public func waitForLine(containing marker: String, timeout: Duration = .seconds(10)) -> String? {
        let clock = ContinuousClock()
        let deadline = clock.now + timeout
        repeat {
            if let line = text.split(separator: "\n").first(where: { $0.contains(marker) }) { return String(line) }
            if !isRunning { break }
            usleep(10_000)
        } while clock.now < deadline
        return text.split(separator: "\n").first(where: { $0.contains(marker) }).map(String.init)
    }

    /// Sends `signal`, then waits up to `timeout` for the exit; returns the exit status, or
    /// `nil` if the child had to be killed.
    @discardableResult
    public func stop(signal: Int32 = SIGTERM, timeout: Duration = .seconds(10)) -> Int32? {
        if isRunning { kill(pid, signal) }
        return waitForExit(timeout: timeout)
    }

    /// Waits up to `timeout` for the child to exit by itself (then kills it and returns `nil`).
    public func waitForExit(timeout: Duration = .seconds(10)) -> Int32? {
        let clock = ContinuousClock()
        let deadline = clock.now + timeout
        while isRunning, clock.now < deadline { usleep(10_000) }
        guard isRunning else { return exitStatus }
        kill(pid, SIGKILL)
        _ = reap(block: true)
        return nil
    }

    /// Collects the exit status if the child has exited; true when it has.
    private func reap(block: Bool) -> Bool {
        var status: Int32 = 0
        let result = waitpid(pid, &status, block ? 0 : WNOHANG)
        guard result == pid else { return false }
        // Exit code for a normal exit, 128 + signal otherwise, as shells report it.
        exitStatus = status & 0x7F == 0 ? (status >> 8) & 0xFF : 128 + (status & 0x7F)
        return true
    }
}

/// A test helper's system call failed.
public struct ChildProcessError: Error, CustomStringConvertible {
    /// What failed.
    public var message: String
    /// Creates an error with its message.
    public init(message: String) { self.message = message }
    public var description: String { message }
}

/// The contents of the file at `path` as UTF-8 text, or `nil` if it cannot be read.
public func readTextFile(_ path: String) -> String? {
    guard let file = fopen(path, "r") else { return nil }
    defer { fclose(file) }
    var bytes: [UInt8] = []
    var buffer = [UInt8](repeating: 0, count: 65536)
    while true {
        let count = fread(&buffer, 1, buffer.count, file)
        if count <= 0 { break }
        bytes += buffer[0..<count]
    }
    return String(decoding: bytes, as: UTF8.self)
}

/// The count in a `udp-echo` summary's "received N datagrams" line.
public func datagramsReceived(in summary: String) -> Int? {
    for line in summary.split(separator: "\n") {
        let words = line.split(separator: " ")
        if let index = words.firstIndex(of: "received"), index + 2 < words.count, words[index + 2] == "datagrams" {
            return Int(words[index + 1])
        }
    }
    return nil
}

/// The number the first match of `pattern` captures in `text` (its first group), e.g.
/// `#"rx_ring_full (\d+)"#` in a server's summary.
public func capturedNumber(_ pattern: String, in text: String) -> Int? {
    (try? Regex(pattern).firstMatch(in: text)).flatMap { Int($0.output[1].substring ?? "") }
}
