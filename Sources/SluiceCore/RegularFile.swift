#if canImport(Glibc)
import Glibc
#endif

/// Input files (configuration, zones, PEM, a file to serve), opened as a regular file or not at
/// all: a FIFO would block the open and the read for ever, a device never end.
public enum RegularFile {
    /// `path` opened for reading (close-on-exec), or why it cannot be: "cannot open it: No such
    /// file or directory (errno 2)", or what it is instead ("a FIFO, not a regular file").
    public static func open(_ path: String) -> Result<Int32, Problem> {
        // Non-blocking: opening a FIFO with no writer would wait for one.
        let descriptor = Glibc.open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK)
        guard descriptor >= 0 else {
            let code = errno
            return .failure(Problem(description: "cannot open it: \(String(cString: strerror(code))) (errno \(code))"))
        }
        var status = stat()
        guard fstat(descriptor, &status) == 0 else {
            let code = errno
            close(descriptor)
            return .failure(Problem(description: "cannot read it: \(String(cString: strerror(code))) (errno \(code))"))
        }
        let kind = status.st_mode & S_IFMT
        guard kind == S_IFREG else {
            close(descriptor)
            let what = switch kind {
            case S_IFDIR: "a directory"
            case S_IFIFO: "a FIFO"
            case S_IFCHR, S_IFBLK: "a device"
            case S_IFSOCK: "a socket"
            default: "not a file"
            }
            return .failure(Problem(description: "\(what), not a regular file"))
        }
        // Reads from a regular file do not block; the flag goes for the descriptor's later users.
        _ = fcntl(descriptor, F_SETFL, fcntl(descriptor, F_GETFL) & ~O_NONBLOCK)
        return .success(descriptor)
    }

    /// Why `path` cannot be read as a regular file, or `nil` when it can.
    public static func problem(_ path: String) -> String? {
        switch open(path) {
        case .success(let descriptor):
            close(descriptor)
            return nil
        case .failure(let problem):
            return problem.description
        }
    }

    /// Why a file cannot be read, in words.
    public struct Problem: Error, CustomStringConvertible {
        /// The reason, as a hint to show after the path.
        public var description: String
    }
}
