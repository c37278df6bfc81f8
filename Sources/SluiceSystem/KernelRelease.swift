#if canImport(Glibc)
import Glibc
#endif

/// The running kernel's release (`uname -r`), for the few features no probe can see: an
/// operation the kernel has always had that learnt a new argument.
public struct KernelRelease: Sendable {
    /// The release as `uname -r` prints it.
    public let text: String
    /// The major and minor version, `(0, 0)` when the release does not start with them.
    public let version: (major: Int, minor: Int)

    /// Parses a release such as `6.1.0-18-amd64`.
    public init(_ text: String) {
        self.text = text
        let numbers = text.split(whereSeparator: { !$0.isNumber }).prefix(2).compactMap { Int($0) }
        version = numbers.count == 2 && text.first?.isNumber == true ? (numbers[0], numbers[1]) : (0, 0)
    }

    /// The running kernel's.
    public static var current: KernelRelease {
        var names = utsname()
        uname(&names)
        return KernelRelease(withUnsafeBytes(of: names.release) { String(decoding: $0.prefix { $0 != 0 }, as: UTF8.self) })
    }

    /// Whether this release is `major.minor` or later.
    public func isAtLeast(_ major: Int, _ minor: Int) -> Bool {
        version.major > major || (version.major == major && version.minor >= minor)
    }
}
