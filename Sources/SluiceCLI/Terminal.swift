#if canImport(Glibc)
import Glibc
#endif
import ArgumentParser
import Logging
import Sluice

/// Writes `text` to standard error in one write(2), so lines from several threads do not mix
/// and a progress line on standard output is left alone.
func writeToStandardError(_ text: String) {
    var text = text
    text.withUTF8 { bytes in _ = write(2, bytes.baseAddress, bytes.count) }
}

/// The command line's log handler: what the library reports (a fallback, a refused offload)
/// becomes one line on standard error, "sluice: message (key: value, …)".
struct TerminalLogHandler: LogHandler {
    var metadata: Logger.Metadata = [:]
    var logLevel: Logger.Level

    subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { metadata[key] }
        set { metadata[key] = newValue }
    }

    func log(event: LogEvent) {
        let merged = metadata.merging(event.metadata ?? [:]) { $1 }
        var line = "sluice: \(event.message)"
        if !merged.isEmpty {
            line += " (" + merged.sorted { $0.key < $1.key }.map { "\($0.key): \($0.value)" }.joined(separator: ", ") + ")"
        }
        writeToStandardError(line + "\n")
    }
}

extension Logger {
    /// The logger every command hands the library: notices and warnings by default, everything
    /// down to debug (libbpf's and libxdp's own lines included) with `SLUICE_VERBOSE=1` or `2`.
    static let terminal: Logger = {
        let verbosity = getenv("SLUICE_VERBOSE").map { Int(String(cString: $0)) ?? 1 } ?? 0
        let level: Logger.Level = verbosity >= 2 ? .debug : verbosity == 1 ? .info : .notice
        let logger = Logger(label: "sluice") { _ in TerminalLogHandler(logLevel: level) }
        XDPProgram.routeLibraryMessages(to: logger)
        return logger
    }()
}

extension SystemCallError {
    /// The error as the command line says it: the library's words, then the flags of this tool
    /// that get around it.
    var terminalDescription: String { Self.forTerminal(description, flags: flagAdvice) }

    /// ``terminalDescription`` for a command without `--backend`: advice to pick another
    /// backend is said as `instead`, or left out.
    func terminalDescription(withoutBackend instead: String?) -> String {
        Self.forTerminal(description, flags: flagAdvice.flatMap { $0.contains("--backend") ? instead : $0 })
    }

    /// `description` with the library's advice, which names its API, said as this tool's flag,
    /// or else followed by `flags`.
    static func forTerminal(_ description: String, flags: String?) -> String {
        let text = description.replacing("attach with force: true to replace it", with: "pass --force to replace it")
        guard let flags, text == description else { return text }
        return "\(text); \(flags)"
    }

    var flagAdvice: String? {
        switch (subsystem, errno) {
        case (.xdp, .notPermitted), (.xdp, .permissionDenied), (.xsk, .notPermitted), (.xsk, .permissionDenied):
            "or use --backend socket, which needs none of them"
        case (.uring, .notPermitted), (.uring, .noFunction), (.uring, .invalidArgument), (.uring, .notSupported):
            "use --backend socket"
        case (.xdp, .resourceBusy), (.xdp, .fileExists):
            "pass --force to replace it"
        case (.xdp, .notSupported), (.xdp, .invalidArgument), (.xdp, .outOfRange):
            "try --mode generic"
        case (.xsk, .noBufferSpace), (.xsk, .noMemory):
            "or use fewer --queues"
        case (.xdp, .operationNotSupportedByDevice), (.xdp, .noSuchAddressOrDevice),
             (.xsk, .operationNotSupportedByDevice), (.xsk, .noSuchAddressOrDevice):
            "check --dev (and --netns)"
        case (.namespace, .noSuchFileOrDirectory):
            "create it with `ip netns add NAME`, or check --netns"
        default:
            nil
        }
    }
}

extension RuntimeError {
    /// The error as the command line says it, with the flags that get around its cause.
    var terminalDescription: String { SystemCallError.forTerminal(description, flags: cause?.flagAdvice) }
}

/// Runs `body`; a ``RuntimeError`` becomes one "sluice COMMAND: …" line on stderr and exit code 1.
func reportingRuntimeErrors<T>(_ command: String, _ body: () throws -> T) throws -> T {
    do {
        return try body()
    } catch let error as RuntimeError {
        writeToStandardError("sluice \(command): \(error.terminalDescription)\n")
        throw ExitCode(1)
    }
}
