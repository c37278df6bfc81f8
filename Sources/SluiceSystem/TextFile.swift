#if canImport(Glibc)
import Glibc
#endif
import SluiceCore

/// Files read whole: configuration (`/etc/resolv.conf`, zone files, PEM), `/proc`, a file to serve.
public enum TextFile {
    /// The file at `path` as UTF-8 text, or `nil` when it cannot be read.
    public static func read(_ path: String) -> String? {
        bytes(path).map { String(decoding: $0, as: UTF8.self) }
    }

    /// The bytes of the file at `path`, or `nil` when it cannot be read. Only a regular file is
    /// read (`RegularFile`, in SluiceCore): `/dev/zero` would never end, a FIFO never open.
    public static func bytes(_ path: String) -> [UInt8]? {
        guard case .success(let descriptor) = RegularFile.open(path) else { return nil }
        defer { close(descriptor) }
        var bytes: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 65536)
        while true {
            let count = chunk.withUnsafeMutableBytes { Glibc.read(descriptor, $0.baseAddress, $0.count) }
            if count < 0 && errno == EINTR { continue }
            guard count >= 0 else { return nil }
            if count == 0 { return bytes }
            bytes += chunk[..<count]
        }
    }
}

/// The kernel's settings (`sysctl`), read from `/proc/sys` as the calling thread's network
/// namespace sees them.
public enum KernelSetting {
    /// The integer setting `name` (`net.ipv4.icmp_ratelimit`), or `nil` when it cannot be read.
    public static func integer(_ name: String) -> Int? {
        let path = "/proc/sys/" + name.split(separator: ".").joined(separator: "/")
        return TextFile.read(path).flatMap { Int($0.filter { !$0.isWhitespace }) }
    }
}
